package bpf

import (
	"errors"
	"fmt"
	"strings"

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

// AutoOrder returns the attach modes in the order ModeAuto tries them.
func AutoOrder() []Mode { return append([]Mode(nil), autoOrder...) }

// ParseMode checks a mode name from the command line or the config file;
// "" is ModeAuto.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeFentry, ModeKprobe, ModeTracepoint:
		return m, nil
	case "":
		return ModeAuto, nil
	}
	return "", fmt.Errorf("unknown attach mode %q (expected %s)", s, oneOf(ModeAuto, ModeFentry, ModeKprobe, ModeTracepoint))
}

// Transport is how events leave the kernel.
type Transport string

const (
	// TransportAuto uses the ring buffer where the kernel has one (5.8+),
	// else the perf event array.
	TransportAuto Transport = "auto"
	// TransportPerf is the design's perf event array sys_events: one
	// buffer per CPU.
	TransportPerf Transport = "perf"
	// TransportRingbuf is one BPF ring buffer shared by all CPUs: the same
	// bytes per event at a lower cost per write.
	TransportRingbuf Transport = "ringbuf"
)

// ParseTransport checks a transport name; "" is TransportAuto.
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(s); t {
	case TransportAuto, TransportPerf, TransportRingbuf:
		return t, nil
	case "":
		return TransportAuto, nil
	}
	return "", fmt.Errorf("unknown transport %q (expected %s)", s, oneOf(TransportAuto, TransportPerf, TransportRingbuf))
}

// Monitor selects which processes the kernel program reports; it is the
// seed's MONITOR_* build switch, set at load time.
type Monitor string

const (
	MonitorAll        Monitor = "all"        // host and namespaced processes, told apart
	MonitorHost       Monitor = "host"       // every process reported as a host process
	MonitorContainers Monitor = "containers" // only processes outside the initial pid namespace
)

// ParseMonitor checks a monitor name; "" is MonitorAll.
func ParseMonitor(s string) (Monitor, error) {
	switch m := Monitor(s); m {
	case MonitorAll, MonitorHost, MonitorContainers:
		return m, nil
	case "":
		return MonitorAll, nil
	}
	return "", fmt.Errorf("unknown monitor %q (expected %s)", s, oneOf(MonitorAll, MonitorHost, MonitorContainers))
}

// oneOf lists names as "a, b, c or d".
func oneOf[T ~string](names ...T) string {
	var b strings.Builder
	for i, n := range names {
		switch {
		case i == len(names)-1 && i > 0:
			b.WriteString(" or ")
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString(string(n))
	}
	return b.String()
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
