package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Mode is how the program is attached to the kernel.
type Mode string

const (
	// ModeAuto tries the attach modes in order of preference and keeps the
	// first the kernel supports.
	ModeAuto Mode = "auto"
	// ModeFentry attaches fentry/fexit programs to tcp_connect and fexit
	// to inet_csk_accept (needs BTF and BPF trampolines).
	ModeFentry Mode = "fentry"
	// ModeKprobe attaches a kprobe to tcp_connect (needs CONFIG_KPROBES).
	ModeKprobe Mode = "kprobe"
	// ModeTracepoint attaches to the raw tracepoint sock/inet_sock_set_state
	// (Linux 4.17+).
	ModeTracepoint Mode = "tracepoint"
)

// autoOrder is the preference order of ModeAuto.
var autoOrder = []Mode{ModeFentry, ModeKprobe, ModeTracepoint}

// ParseMode checks a mode name from the command line or the config file.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeFentry, ModeKprobe, ModeTracepoint:
		return m, nil
	case "":
		return ModeAuto, nil
	}
	return "", fmt.Errorf("unknown attach mode %q (expected auto, fentry, kprobe or tracepoint)", s)
}

// Skipped records why ModeAuto passed over a mode.
type Skipped struct {
	Mode Mode
	Err  error
}

// Reason is why the mode was passed over, in plain words: the
// Unsupported reason in Err, else Err's whole text.
func (s Skipped) Reason() string {
	var u *Unsupported
	if errors.As(s.Err, &u) {
		return u.Reason
	}
	return s.Err.Error()
}

// Unsupported is an attach mode this kernel cannot run: Reason says why
// in plain words, for a person; Err is the whole chain (ErrNotSupported
// and what the kernel answered), for debugging.
type Unsupported struct {
	Reason string
	Err    error
}

func (e *Unsupported) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Unsupported) Unwrap() error { return e.Err }

// selectMode runs attach for the requested mode, or for each mode of
// autoOrder until one succeeds. It falls back only when attach fails with
// ebpf.ErrNotSupported; any other failure is returned as is, since trying a
// worse mode would hide a real problem (a verifier rejection, missing
// privileges).
func selectMode(requested Mode, attach func(Mode) error) (Mode, []Skipped, error) {
	if requested != ModeAuto {
		if err := attach(requested); err != nil {
			return "", nil, fmt.Errorf("attaching in %s mode: %w", requested, err)
		}
		return requested, nil, nil
	}

	var skipped []Skipped
	for _, m := range autoOrder {
		err := attach(m)
		if err == nil {
			return m, skipped, nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return "", skipped, fmt.Errorf("attaching in %s mode: %w", m, err)
		}
		skipped = append(skipped, Skipped{Mode: m, Err: err})
	}
	return "", skipped, fmt.Errorf("no attach mode is supported by this kernel: %w", ebpf.ErrNotSupported)
}
