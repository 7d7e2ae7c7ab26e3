//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// AttachKind is the kind of kernel hook a program attaches to.
type AttachKind string

const (
	KindFentry        AttachKind = "fentry"         // BPF trampoline at a function's entry
	KindFexit         AttachKind = "fexit"          // BPF trampoline at its return
	KindKprobe        AttachKind = "kprobe"         // kprobe at a function's entry
	KindKretprobe     AttachKind = "kretprobe"      // kprobe at its return
	KindRawTracepoint AttachKind = "raw_tracepoint" // raw tracepoint
	KindTPBTF         AttachKind = "tp_btf"         // BTF-typed raw tracepoint (a tracing program)
	KindTracepoint    AttachKind = "tracepoint"     // classic tracepoint, found by its id in tracefs
)

// AttachPoint is one place in the kernel a connwatch program attaches to:
// what the agent attaches and what `connwatch check` tries with a trivial
// program.
type AttachPoint struct {
	Kind AttachKind
	// Symbol is the kernel function (fentry, fexit, kprobe, kretprobe) or
	// tracepoint (raw_tracepoint, tp_btf) name; for a classic tracepoint,
	// Group/Symbol.
	Group, Symbol string
	// Optional points (the accept side) may fail without failing the mode:
	// the agent runs and reports no accepted connections.
	Optional bool
	// NeedsFuncRet is set where the program reads the function's return
	// value with bpf_get_func_ret (Linux 5.17+).
	NeedsFuncRet bool
}

func (a AttachPoint) String() string {
	if a.Group != "" {
		return string(a.Kind) + " " + a.Group + "/" + a.Symbol
	}
	return string(a.Kind) + " " + a.Symbol
}

// ProgramSpec is the type (and attach target) a program attached at a must
// be loaded with; Instructions, Name and License are left to the caller.
func (a AttachPoint) ProgramSpec() ebpf.ProgramSpec {
	switch a.Kind {
	case KindFentry, KindFexit, KindTPBTF:
		return ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: a.tracingType(), AttachTo: a.Symbol}
	case KindKprobe, KindKretprobe:
		return ebpf.ProgramSpec{Type: ebpf.Kprobe}
	case KindRawTracepoint:
		return ebpf.ProgramSpec{Type: ebpf.RawTracepoint}
	default:
		return ebpf.ProgramSpec{Type: ebpf.TracePoint}
	}
}

func (a AttachPoint) tracingType() ebpf.AttachType {
	switch a.Kind {
	case KindFentry:
		return ebpf.AttachTraceFEntry
	case KindFexit:
		return ebpf.AttachTraceFExit
	}
	return ebpf.AttachTraceRawTp
}

// Attach attaches p at a. Kprobes are refused with an Unsupported error
// where the kernel has none, and tracefs is mounted for classic
// tracepoints where it is not.
func (a AttachPoint) Attach(p *ebpf.Program) (link.Link, error) {
	switch a.Kind {
	case KindFentry, KindFexit, KindTPBTF:
		return link.AttachTracing(link.TracingOptions{Program: p, AttachType: a.tracingType()})
	case KindKprobe, KindKretprobe:
		if KprobeInterface() == "" {
			return nil, &Unsupported{Reason: "this kernel has no kprobes (CONFIG_KPROBES is off)",
				Err: fmt.Errorf("no kprobe PMU, no kprobe_events in tracefs: %w", ebpf.ErrNotSupported)}
		}
		if a.Kind == KindKretprobe {
			return link.Kretprobe(a.Symbol, p, nil)
		}
		return link.Kprobe(a.Symbol, p, nil)
	case KindRawTracepoint:
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.Symbol, Program: p})
	case KindTracepoint:
		if err := EnsureTracefs(); err != nil {
			return nil, err
		}
		return link.Tracepoint(a.Group, a.Symbol, p, nil)
	}
	return nil, fmt.Errorf("unknown attach kind %q", a.Kind)
}

// attachment is one program of a mode and where it attaches. A required
// one that fails fails the mode; an optional one is skipped with a
// warning (see Probe.Warnings).
type attachment struct {
	prog func(*connwatchProgramSpecs) *ebpf.ProgramSpec
	AttachPoint
	// fallback, for an optional program the kernel may refuse to load,
	// are the programs that do its work instead (see loadAttach).
	fallback []attachment
}

// The accept and state-change attach points some modes share.
var (
	stateChanges  = AttachPoint{Kind: KindRawTracepoint, Symbol: "inet_sock_set_state"}
	stateChangesB = AttachPoint{Kind: KindTPBTF, Symbol: "inet_sock_set_state"}
	exitAccept4   = AttachPoint{Kind: KindTracepoint, Group: "syscalls", Symbol: "sys_exit_accept4", Optional: true}
	exitAccept    = AttachPoint{Kind: KindTracepoint, Group: "syscalls", Symbol: "sys_exit_accept", Optional: true}
)

// outcomes is attached in every mode: it reports how each attempt ended.
var outcomes = attachment{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.TpInetSockSetState }, AttachPoint: stateChanges}

// syscallAccepts report accepted connections from the accept syscalls'
// exit: tracepoint mode's accept side, and fentry mode's where its fexit
// program does not load (it reads the new socket with bpf_get_func_ret,
// Linux 5.17+).
var syscallAccepts = []attachment{
	{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.TpSysExitAccept4 }, AttachPoint: exitAccept4},
	{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.TpSysExitAccept }, AttachPoint: exitAccept},
}

// modePrograms are the programs of each mode, in attach order. Where the
// kernel takes them, the BTF twins (btfTwin) of some are attached instead.
var modePrograms = map[Mode][]attachment{
	ModeFentry: {
		{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.FentryTcpConnect }, AttachPoint: AttachPoint{Kind: KindFentry, Symbol: "tcp_connect"}},
		{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.FexitTcpConnect }, AttachPoint: AttachPoint{Kind: KindFexit, Symbol: "tcp_connect"}},
		outcomes,
		{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.FexitInetCskAccept },
			AttachPoint: AttachPoint{Kind: KindFexit, Symbol: "inet_csk_accept", Optional: true, NeedsFuncRet: true},
			fallback:    syscallAccepts},
	},
	ModeKprobe: {
		{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.KprobeTcpConnect }, AttachPoint: AttachPoint{Kind: KindKprobe, Symbol: "tcp_connect"}},
		{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.KretprobeTcpConnect }, AttachPoint: AttachPoint{Kind: KindKretprobe, Symbol: "tcp_connect"}},
		outcomes,
		{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.KretprobeInetCskAccept },
			AttachPoint: AttachPoint{Kind: KindKretprobe, Symbol: "inet_csk_accept", Optional: true}},
	},
	ModeTracepoint: append([]attachment{outcomes}, syscallAccepts...),
}

// withFallbacks returns atts with each attachment that has a fallback
// replaced by it, and whether there was any.
func withFallbacks(atts []attachment) ([]attachment, bool) {
	var out []attachment
	changed := false
	for _, a := range atts {
		if a.fallback != nil {
			out, changed = append(out, a.fallback...), true
			continue
		}
		out = append(out, a)
	}
	return out, changed
}

// btfTwin returns the attachment that replaces a where the kernel takes
// BTF-typed programs: the same code, reading the socket (a BTF-typed
// tracepoint's argument) and the current task (bpf_get_current_task_btf)
// directly instead of through bpf_probe_read_kernel. ok is false for a
// program without a twin.
func btfTwin(a attachment, s *connwatchProgramSpecs) (twin attachment, ok bool) {
	switch a.prog(s) {
	case s.TpInetSockSetState:
		return attachment{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.TpBtfInetSockSetState }, AttachPoint: stateChangesB}, true
	case s.TpSysExitAccept4:
		return attachment{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.TpSysExitAccept4Btf }, AttachPoint: exitAccept4}, true
	case s.TpSysExitAccept:
		return attachment{prog: func(s *connwatchProgramSpecs) *ebpf.ProgramSpec { return s.TpSysExitAcceptBtf }, AttachPoint: exitAccept}, true
	}
	return a, false
}

// withBTFTwins returns atts with the programs that have a BTF twin
// replaced by it.
func withBTFTwins(atts []attachment, s *connwatchProgramSpecs) []attachment {
	out := make([]attachment, len(atts))
	for i, a := range atts {
		out[i], _ = btfTwin(a, s)
	}
	return out
}

// AttachPoints lists where mode m attaches its programs (the raw
// state-change tracepoint standing for its BTF twin), in attach order.
func AttachPoints(m Mode) []AttachPoint {
	var pts []AttachPoint
	for _, a := range modePrograms[m] {
		pts = append(pts, a.AttachPoint)
	}
	return pts
}

// tracefsDirs are where tracefs is found, in the order cilium/ebpf looks.
var tracefsDirs = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// TracefsDirs returns where tracefs is looked for, in order; EnsureTracefs
// mounts it at the first.
func TracefsDirs() []string { return append([]string(nil), tracefsDirs...) }

// kprobePMU exists where the kernel offers kprobes through perf.
const kprobePMU = "/sys/bus/event_source/devices/kprobe/type"

// KprobeInterface names what the kernel offers for kprobes: "kprobe PMU",
// the path of tracefs's kprobe_events, or "" where it has none
// (CONFIG_KPROBES is off).
func KprobeInterface() string {
	if _, err := os.Stat(kprobePMU); err == nil {
		return "kprobe PMU"
	}
	for _, d := range tracefsDirs {
		if p := filepath.Join(d, "kprobe_events"); fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// EnsureTracefs mounts tracefs at the first of TracefsDirs when none is
// mounted: classic tracepoints are found by their id there.
func EnsureTracefs() error {
	for _, d := range tracefsDirs {
		p := filepath.Join(d, "events")
		_, err := os.Stat(p)
		if err == nil {
			return nil
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("tracefs is mounted but %s is not readable (CAP_DAC_READ_SEARCH missing?): %w", p, err)
		}
	}
	if err := unix.Mount("tracefs", tracefsDirs[0], "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w", tracefsDirs[0], err)
	}
	return nil
}

// CanLoadTrivial reports whether this process may load a trivial raw
// tracepoint program, which tells a lack of privilege apart from a kernel
// that refuses one program type.
func CanLoadTrivial() bool {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.RawTracepoint,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return false
	}
	prog.Close()
	return true
}

// errENOTSUPP is the kernel-internal ENOTSUPP (524) that leaks to user
// space, e.g. when BPF trampolines cannot patch a function.
const errENOTSUPP = unix.Errno(524)

// notSupported marks the errors that mean "this kernel cannot do that" as
// ebpf.ErrNotSupported, so ModeAuto falls back on them: trampolines
// missing (ENOTSUPP, EOPNOTSUPP) or an attach point the kernel lacks.
func notSupported(err error) error {
	if err == nil || errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, errENOTSUPP) {
		return fmt.Errorf("%w (%w)", ebpf.ErrNotSupported, err)
	}
	return err
}
