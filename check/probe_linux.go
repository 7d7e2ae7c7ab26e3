//go:build linux

package check

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
)

const (
	vmlinuxBTF      = "/sys/kernel/btf/vmlinux"
	securityfsDir   = "/sys/kernel/security"
	lockdownFile    = securityfsDir + "/lockdown"
	securityfsMagic = 0x73636673

	// errENOTSUPP is the kernel-internal ENOTSUPP (524) that leaks to user
	// space, e.g. when BPF trampolines cannot patch a function.
	errENOTSUPP = unix.Errno(524)
)

func realProber() prober {
	return prober{
		kernel:             probeKernel,
		lockdown:           probeLockdown,
		btf:                probeBTF,
		fentry:             probeFentry,
		kprobe:             probeKprobe,
		rawTracepoint:      probeRawTracepoint,
		probeReadKernel:    probeProbeReadKernel,
		syscallTracepoints: probeSyscallTracepoints,
		perfEventArray: func() result {
			return mapType(ebpf.PerfEventArray, "connwatch's transport where the ring buffer is missing, and with probe.transport: perf")
		},
		ringBuf: func() result {
			return mapType(ebpf.RingBuf, "connwatch's transport when present (probe.transport: auto), else it falls back to the perf event array")
		},
		capEff: EffectiveCaps,
		euid:   os.Geteuid,
		sysctl: func(name string) (string, error) {
			b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
			return strings.TrimSpace(string(b)), err
		},
	}
}

func probeKernel() result {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return result{StatusUnknown, "uname: " + err.Error()}
	}
	return ok(unix.ByteSliceToString(u.Release[:]) + " (" + unix.ByteSliceToString(u.Machine[:]) + ")")
}

func probeLockdown() result {
	b, err := os.ReadFile(lockdownFile)
	if err == nil {
		mode, err := parseLockdown(string(b))
		if err != nil {
			return result{StatusUnknown, lockdownFile + ": " + err.Error()}
		}
		return describeLockdown(mode)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return result{StatusUnknown, err.Error()}
	}
	var st unix.Statfs_t
	if unix.Statfs(securityfsDir, &st) == nil && uint32(st.Type) == securityfsMagic {
		return ok("none (securityfs has no lockdown file: the lockdown LSM is not built in)")
	}
	return result{StatusUnknown, "securityfs is not mounted at " + securityfsDir + ", so the mode cannot be read (mount -t securityfs securityfs " + securityfsDir + ")"}
}

func probeBTF() result {
	f, err := os.Open(vmlinuxBTF)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return result{StatusUnsupported, "no " + vmlinuxBTF + " (kernel built without CONFIG_DEBUG_INFO_BTF); fentry needs it"}
		}
		return result{StatusMissing, vmlinuxBTF + " is not readable: " + err.Error()}
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return result{StatusUnknown, "reading " + vmlinuxBTF + ": " + err.Error()}
	}
	if magic != [2]byte{0x9f, 0xeb} && magic != [2]byte{0xeb, 0x9f} {
		return result{StatusUnknown, fmt.Sprintf("%s does not start with the BTF magic (%#x)", vmlinuxBTF, magic)}
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return result{StatusUnknown, "parsing kernel BTF: " + err.Error()}
	}
	size := ""
	if fi, err := f.Stat(); err == nil {
		size = fmt.Sprintf(" (%.1f MiB)", float64(fi.Size())/(1<<20))
	}
	detail := vmlinuxBTF + size + " loads"
	var absent []string
	for _, fn := range []string{"tcp_connect", "inet_csk_accept"} {
		if _, err := spec.AnyTypeByName(fn); err != nil {
			absent = append(absent, fn)
		}
	}
	if len(absent) > 0 {
		detail += "; no BTF for " + strings.Join(absent, ", ")
	}
	return ok(detail)
}

// target is one place a trivial program is attached to prove a mode works.
// The agent carries on without an optional target (the accept side).
type target struct {
	desc     string
	optional bool
	spec     ebpf.ProgramSpec
	attach   func(*ebpf.Program) (link.Link, error)
}

var (
	memlockOnce sync.Once
	memlockErr  error
)

// tryTargets loads a program returning 0 for each target, attaches it and
// detaches it at once. It stops at the first required target that fails and
// returns the failures of optional targets separately.
func tryTargets(ts []target) (optional []error, err error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; the agent
	// lifts the limit too. It is a no-op where memory cgroups are charged.
	memlockOnce.Do(func() { memlockErr = rlimit.RemoveMemlock() })
	for _, t := range ts {
		if err := tryTarget(t); err != nil {
			if !t.optional {
				return optional, err
			}
			optional = append(optional, err)
		}
	}
	return optional, nil
}

func tryTarget(t target) error {
	prog, err := loadTrivial(t.spec)
	if err != nil {
		return fmt.Errorf("loading %s program: %w", t.desc, err)
	}
	defer prog.Close()
	l, err := t.attach(prog)
	if err != nil {
		return fmt.Errorf("attaching %s: %w", t.desc, err)
	}
	return l.Close()
}

// memlockHint is what cilium/ebpf appends to EPERM; it misleads once the
// limit has been lifted.
const memlockHint = " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)"

func loadTrivial(spec ebpf.ProgramSpec) (*ebpf.Program, error) {
	spec.Name = "connwatch_chk"
	spec.License = "GPL"
	if spec.Instructions == nil {
		spec.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	}
	prog, err := ebpf.NewProgram(&spec)
	if err != nil && errors.Is(err, unix.EPERM) {
		if memlockErr != nil {
			return nil, fmt.Errorf("%w (raising RLIMIT_MEMLOCK failed: %v)", err, memlockErr)
		}
		return nil, trimmedError{strings.Replace(err.Error(), memlockHint, "", 1), err}
	}
	return prog, err
}

// trimmedError rewords an error and keeps what it wraps.
type trimmedError struct {
	msg string
	err error
}

func (e trimmedError) Error() string { return e.msg }
func (e trimmedError) Unwrap() error { return e.err }

// classify turns a load or attach error into a result. Like the agent, it
// takes only "not supported" (and a missing attach point) as the kernel's
// answer; anything else leaves the question open.
func classify(err error, okDetail string, optional []error) result {
	switch {
	case err == nil:
		for _, e := range optional {
			okDetail += "; " + e.Error() + " (accepts will not be reported)"
		}
		return ok(okDetail)
	case errors.Is(err, errENOTSUPP):
		return result{StatusUnsupported, err.Error() + " (ENOTSUPP)"}
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EOPNOTSUPP):
		return result{StatusUnsupported, err.Error()}
	case errors.Is(err, btf.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return result{StatusUnsupported, err.Error()}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return result{StatusUnknown, "permission denied: " + err.Error()}
	}
	return result{StatusUnknown, err.Error()}
}

// modeTargets are trivial programs at the attach points of mode m of the
// given kinds, as the agent attaches them (bpf.AttachPoints).
func modeTargets(m bpf.Mode, kinds ...bpf.AttachKind) ([]target, string) {
	var ts []target
	var descs []string
	for _, pt := range bpf.AttachPoints(m) {
		if !slices.Contains(kinds, pt.Kind) {
			continue
		}
		spec := pt.ProgramSpec()
		if pt.NeedsFuncRet {
			// The agent's program reads the return value this way.
			spec.Instructions = funcRetCall
		}
		ts = append(ts, target{desc: pt.String(), optional: pt.Optional, spec: spec, attach: pt.Attach})
		descs = append(descs, pt.String())
	}
	return ts, strings.Join(descs, ", ")
}

// funcRetCall is a program that calls bpf_get_func_ret(ctx, &ret) and
// returns 0: a kernel without the helper (before 5.17) refuses it.
var funcRetCall = asm.Instructions{
	asm.Mov.Imm(asm.R3, 0),
	asm.StoreMem(asm.RFP, -8, asm.R3, asm.DWord),
	asm.Mov.Reg(asm.R2, asm.RFP),
	asm.Add.Imm(asm.R2, -8),
	asm.FnGetFuncRet.Call(),
	asm.Mov.Imm(asm.R0, 0),
	asm.Return(),
}

func probeFentry() result {
	if err := features.HaveProgramType(ebpf.Tracing); errors.Is(err, ebpf.ErrNotSupported) {
		return result{StatusUnsupported, "tracing programs (Linux 5.5+): " + err.Error()}
	}
	ts, descs := modeTargets(bpf.ModeFentry, bpf.KindFentry, bpf.KindFexit)
	optional, err := tryTargets(ts)
	var accepts []error
	for _, e := range optional {
		// The agent takes accepts from the syscall tracepoints then.
		accepts = append(accepts, fmt.Errorf("%w (the agent takes accepts from the syscall tracepoints instead)", e))
	}
	r := classify(err, descs+" attach", nil)
	for _, e := range accepts {
		r.detail += "; " + e.Error()
	}
	switch {
	case r.status == StatusUnsupported && strings.HasPrefix(err.Error(), "attaching"):
		r.detail = "BPF trampolines unavailable: " + r.detail
	case errors.Is(err, unix.EPERM) && bpf.CanLoadTrivial():
		// Privileged enough for BPF, yet tracing programs are refused.
		r = result{StatusUnsupported, "tracing programs refused although BPF is permitted " +
			"(lockdown, an LSM or no BPF trampolines): " + err.Error()}
	}
	return r
}

func probeKprobe() result {
	iface := bpf.KprobeInterface()
	ts, descs := modeTargets(bpf.ModeKprobe, bpf.KindKprobe, bpf.KindKretprobe)
	optional, err := tryTargets(ts)
	r := classify(err, descs+" attach via "+iface, optional)
	if r.status == StatusUnsupported && iface == "" {
		r.detail = "kprobes unavailable: CONFIG_KPROBES unset; no kprobe PMU and no kprobe_events in tracefs"
	}
	return r
}

func probeRawTracepoint() result {
	if err := features.HaveProgramType(ebpf.RawTracepoint); errors.Is(err, ebpf.ErrNotSupported) {
		return result{StatusUnsupported, "raw tracepoint programs (Linux 4.17+): " + err.Error()}
	}
	ts, descs := modeTargets(bpf.ModeTracepoint, bpf.KindRawTracepoint)
	_, err := tryTargets(ts)
	return classify(err, descs+" attaches", nil)
}

// probeProbeReadKernel asks the verifier whether tracing programs may call
// bpf_probe_read_kernel: it is missing before Linux 5.5 and withheld under
// lockdown=confidentiality, which trivial attach probes cannot see.
func probeProbeReadKernel() result {
	err := features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnProbeReadKernel)
	if errors.Is(err, ebpf.ErrNotSupported) {
		return result{StatusUnsupported, "the verifier refuses bpf_probe_read_kernel (Linux before 5.5, or lockdown=confidentiality): " + err.Error()}
	}
	return classify(err, "raw tracepoint programs may call bpf_probe_read_kernel", nil)
}

func probeSyscallTracepoints() result {
	dirs := bpf.TracefsDirs()
	dir := ""
	for _, d := range dirs {
		fi, err := os.Stat(filepath.Join(d, "events"))
		if err == nil && fi.IsDir() {
			dir = d
			break
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return result{StatusUnknown, err.Error()}
		}
	}
	if dir == "" {
		if fs, err := os.ReadFile("/proc/filesystems"); err == nil && !bytes.Contains(fs, []byte("\ttracefs\n")) {
			return result{StatusUnsupported, "no tracefs in this kernel (CONFIG_FTRACE unset)"}
		}
		return result{StatusMissing, "tracefs is not mounted at " + strings.Join(dirs, " or ") +
			" (connwatch mounts it at " + dirs[0] + " when it starts)"}
	}
	for _, pt := range bpf.AttachPoints(bpf.ModeTracepoint) {
		if pt.Kind != bpf.KindTracepoint {
			continue
		}
		id := filepath.Join(dir, "events", pt.Group, pt.Symbol, "id")
		if _, err := os.Stat(id); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return result{StatusUnsupported, "no " + id + " (CONFIG_FTRACE_SYSCALLS unset)"}
			}
			return result{StatusUnknown, err.Error()}
		}
	}
	ts, descs := modeTargets(bpf.ModeTracepoint, bpf.KindTracepoint)
	for i := range ts {
		ts[i].optional = false // the check is about these very tracepoints
	}
	_, err := tryTargets(ts)
	return classify(err, descs+" attach (tracefs at "+dir+")", nil)
}

func mapType(mt ebpf.MapType, note string) result {
	err := features.HaveMapType(mt)
	if err == nil {
		return ok("supported; " + note)
	}
	r := classify(err, "", nil)
	r.detail += "; " + note
	return r
}
