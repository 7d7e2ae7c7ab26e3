package check

import (
	"context"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/connwatch/connwatch/bpf"
)

const allCaps = uint64(0x000001ffffffffff)

// fake builds a prober from canned results: every probe is ok unless
// results says otherwise.
type fake struct {
	results map[string]result
	caps    uint64
	capErr  error
	euid    int
	sysctls map[string]string
}

func (f fake) prober() prober {
	get := func(name, okDetail string) func() result {
		return func() result {
			if r, found := f.results[name]; found {
				return r
			}
			return ok(okDetail)
		}
	}
	return prober{
		kernel:             get(NameKernel, "6.12.48+deb12-cloud-amd64 (x86_64)"),
		lockdown:           get(NameLockdown, "none"),
		btf:                get(NameBTF, "/sys/kernel/btf/vmlinux loads"),
		fentry:             get(NameFentry, "fentry attaches"),
		kprobe:             get(NameKprobe, "kprobe attaches"),
		rawTracepoint:      get(NameRawTracepoint, "raw tracepoint attaches"),
		probeReadKernel:    get(NameProbeReadKernel, "raw tracepoint programs may call bpf_probe_read_kernel"),
		syscallTracepoints: get(NameSyscallTracepoints, "syscall tracepoints attach"),
		perfEventArray:     get(NamePerfEventArray, "supported"),
		ringBuf:            get(NameRingBuf, "supported"),
		capEff:             func() (uint64, error) { return f.caps, f.capErr },
		euid:               func() int { return f.euid },
		sysctl: func(name string) (string, error) {
			if v, found := f.sysctls[name]; found {
				return v, nil
			}
			return "", fs.ErrNotExist
		},
	}
}

var (
	noKprobes  = result{StatusUnsupported, "kprobes unavailable: CONFIG_KPROBES unset"}
	noFentry   = result{StatusUnsupported, "BPF trampolines unavailable: attaching fentry tcp_connect: operation not supported (ENOTSUPP)"}
	fentryPerm = result{StatusUnknown, "permission denied: loading fentry tcp_connect program: operation not permitted"}
)

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name       string
		f          fake
		autoMode   string
		autoReason string
		skipped    []string
		canRun     bool
		reason     string // substring
	}{
		{
			name:       "everything works: fentry",
			f:          fake{caps: allCaps},
			autoMode:   string(bpf.ModeFentry),
			autoReason: "fentry is supported (preferred mode)",
			canRun:     true,
			reason:     "root with CAP_SYS_ADMIN; would attach in fentry mode",
		},
		{
			name:       "no trampolines: kprobe",
			f:          fake{caps: allCaps, results: map[string]result{NameFentry: noFentry}},
			autoMode:   string(bpf.ModeKprobe),
			autoReason: "fentry: not supported (" + noFentry.detail + ")",
			skipped:    []string{string(bpf.ModeFentry)},
			canRun:     true,
			reason:     "would attach in kprobe mode",
		},
		{
			name:     "neither kprobes nor fentry: tracepoint",
			f:        fake{caps: allCaps, results: map[string]result{NameFentry: noFentry, NameKprobe: noKprobes}},
			autoMode: string(bpf.ModeTracepoint),
			autoReason: "fentry: not supported (" + noFentry.detail + "); " +
				"kprobe: not supported (kprobes unavailable: CONFIG_KPROBES unset)",
			skipped: []string{string(bpf.ModeFentry), string(bpf.ModeKprobe)},
			canRun:  true,
		},
		{
			name: "tracepoint without syscall tracepoints still runs",
			f: fake{caps: allCaps, results: map[string]result{NameFentry: noFentry, NameKprobe: noKprobes,
				NameSyscallTracepoints: {StatusUnsupported, "CONFIG_FTRACE_SYSCALLS unset"}}},
			autoMode: string(bpf.ModeTracepoint),
			autoReason: "fentry: not supported (" + noFentry.detail + "); " +
				"kprobe: not supported (kprobes unavailable: CONFIG_KPROBES unset); " +
				"accepts will not be reported: syscall_tracepoints not supported (CONFIG_FTRACE_SYSCALLS unset)",
			skipped: []string{string(bpf.ModeFentry), string(bpf.ModeKprobe)},
			canRun:  true,
		},
		{
			name:       "syscall tracepoints do not matter to fentry",
			f:          fake{caps: allCaps, results: map[string]result{NameSyscallTracepoints: {StatusMissing, "tracefs is not mounted"}}},
			autoMode:   string(bpf.ModeFentry),
			autoReason: "fentry is supported (preferred mode)",
			canRun:     true,
		},
		{
			name:       "an undetermined mode stops auto",
			f:          fake{caps: allCaps, results: map[string]result{NameFentry: fentryPerm}},
			autoMode:   "",
			autoReason: "fentry: could not be determined (" + fentryPerm.detail + "); auto stops here",
			canRun:     false,
			reason:     "no attach mode works: fentry: could not be determined",
		},
		{
			name: "no raw tracepoint: no mode at all",
			f: fake{caps: allCaps, results: map[string]result{
				NameRawTracepoint: {StatusUnsupported, "raw tracepoint programs (Linux 4.17+): not supported"}}},
			autoMode:   "",
			autoReason: "every mode needs raw_tracepoint: not supported (raw tracepoint programs (Linux 4.17+): not supported)",
			canRun:     false,
			reason:     "no attach mode works: every mode needs raw_tracepoint",
		},
		{
			name: "lockdown=confidentiality seen by the verifier",
			f: fake{caps: allCaps, results: map[string]result{
				NameLockdown:        {StatusUnknown, "securityfs is not mounted"},
				NameProbeReadKernel: {StatusUnsupported, "the verifier refuses bpf_probe_read_kernel"}}},
			autoMode:   "",
			autoReason: "every mode needs probe_read_kernel: not supported (the verifier refuses bpf_probe_read_kernel)",
			canRun:     false,
			reason:     "no attach mode works: every mode needs probe_read_kernel: not supported",
		},
		{
			name: "neither transport",
			f: fake{caps: allCaps, results: map[string]result{
				NamePerfEventArray: {StatusUnsupported, "not supported"},
				NameRingBuf:        {StatusUnsupported, "Linux 5.8+"}}},
			autoMode:   "",
			autoReason: "every mode needs ringbuf or perf_event_array: not supported (not supported)",
		},
		{
			name: "the ring buffer stands in for the perf event array",
			f: fake{caps: allCaps, results: map[string]result{
				NamePerfEventArray: {StatusUnsupported, "not supported"}}},
			autoMode: string(bpf.ModeFentry),
			canRun:   true,
		},
		{
			name: "common needs failing differently are listed apart",
			f: fake{caps: allCaps, results: map[string]result{
				NameRawTracepoint:   {StatusUnsupported, "Linux 4.17+"},
				NameProbeReadKernel: {StatusUnknown, "EINVAL"},
				NamePerfEventArray:  {StatusUnknown, "EINVAL"},
				NameRingBuf:         {StatusUnknown, "EINVAL"}}},
			autoMode:   "",
			autoReason: "every mode needs raw_tracepoint: not supported (Linux 4.17+); every mode needs probe_read_kernel, ringbuf or perf_event_array: could not be determined (EINVAL)",
			canRun:     false,
		},
		{
			name: "unprivileged user",
			f: fake{euid: 1000, results: map[string]result{
				NameFentry: fentryPerm, NameKprobe: {StatusUnknown, "permission denied"}, NameRawTracepoint: {StatusUnknown, "permission denied"}}},
			autoMode: "",
			canRun:   false,
			reason:   "euid 1000 lacks CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN: loading BPF needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN (run as root)",
		},
		{
			name:     "CAP_BPF and CAP_PERFMON suffice on 5.8+",
			f:        fake{euid: 1000, caps: 1<<capBPF | 1<<capPerfmon},
			autoMode: string(bpf.ModeFentry),
			canRun:   true,
			reason:   "euid 1000 with CAP_BPF and CAP_PERFMON; would attach in fentry mode",
		},
		{
			name: "CAP_BPF and CAP_PERFMON do not exist before 5.8",
			f: fake{euid: 1000, caps: 1<<capBPF | 1<<capPerfmon,
				results: map[string]result{NameKernel: ok("5.4.0-150-generic (x86_64)")}},
			autoMode: "",
			canRun:   false,
			reason:   "Linux 5.4.0-150-generic predates them (5.8): CAP_SYS_ADMIN is needed",
		},
		{
			name:     "root whose capabilities were dropped",
			f:        fake{euid: 0, caps: 1 << capSysPtrace},
			autoMode: "",
			canRun:   false,
			reason:   "root lacks CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN",
		},
		{
			name:     "unreadable capabilities fall back to the user id",
			f:        fake{euid: 0, capErr: errors.New("no /proc")},
			autoMode: string(bpf.ModeFentry),
			canRun:   true,
			reason:   "running as root (effective capabilities unreadable: no /proc)",
		},
		{
			name: "lockdown confidentiality",
			f: fake{caps: allCaps, results: map[string]result{
				NameLockdown: describeLockdown("confidentiality")}},
			autoMode: string(bpf.ModeFentry),
			canRun:   false,
			reason:   "lockdown: confidentiality: BPF reads of kernel memory, kprobes, perf and tracefs are blocked",
		},
		{
			name:     "unknown lockdown does not stop it",
			f:        fake{caps: allCaps, results: map[string]result{NameLockdown: {StatusUnknown, "securityfs is not mounted"}}},
			autoMode: string(bpf.ModeFentry),
			canRun:   true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(context.Background(), Options{}, tc.f.prober())
			if r.AutoMode != tc.autoMode {
				t.Errorf("AutoMode = %q, want %q (reason %q)", r.AutoMode, tc.autoMode, r.AutoReason)
			}
			if tc.autoReason != "" && r.AutoReason != tc.autoReason {
				t.Errorf("AutoReason =\n  %q\nwant\n  %q", r.AutoReason, tc.autoReason)
			}
			var skipped []string
			for _, s := range r.Skipped {
				skipped = append(skipped, s.Mode)
			}
			if !reflect.DeepEqual(skipped, tc.skipped) {
				t.Errorf("skipped %v, want %v", skipped, tc.skipped)
			}
			if r.CanRun != tc.canRun {
				t.Errorf("CanRun = %v, want %v (reason %q)", r.CanRun, tc.canRun, r.Reason)
			}
			if !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("Reason = %q, want it to contain %q", r.Reason, tc.reason)
			}
			if r.Reason == "" {
				t.Error("empty Reason")
			}
		})
	}
}

func TestRunChecks(t *testing.T) {
	f := fake{
		euid: 0,
		caps: 0x000001fffeffffff, // everything but CAP_SYS_RESOURCE
		sysctls: map[string]string{
			NameUnprivilegedBPF: "2",
		},
	}
	r := run(context.Background(), Options{}, f.prober())
	if r.Kernel != "6.12.48+deb12-cloud-amd64" {
		t.Errorf("Kernel = %q", r.Kernel)
	}
	var names []string
	for _, c := range r.Checks {
		names = append(names, c.Name)
	}
	want := []string{"kernel", "lockdown", "btf", "fentry", "kprobe", "raw_tracepoint", "probe_read_kernel", "syscall_tracepoints",
		"perf_event_array", "ringbuf", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE",
		"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "privileges",
		"kernel.unprivileged_bpf_disabled", "kernel.bpf_stats_enabled"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("checks %v\nwant   %v", names, want)
	}
	for name, status := range map[string]string{
		"CAP_BPF":                          StatusOK,
		"CAP_SYS_RESOURCE":                 StatusMissing,
		"kernel.unprivileged_bpf_disabled": StatusOK,
		"kernel.bpf_stats_enabled":         StatusUnknown, // not in the fake /proc/sys
	} {
		if c, _ := r.Check(name); c.Status != status {
			t.Errorf("%s: status %q, want %q (%s)", name, c.Status, status, c.Detail)
		}
	}
	if c, _ := r.Check(NameUnprivilegedBPF); !strings.HasPrefix(c.Detail, "2: unprivileged BPF off") {
		t.Errorf("unprivileged_bpf_disabled detail %q", c.Detail)
	}
	if c, _ := r.Check(NameBPFStats); c.Detail != "not present on this kernel" {
		t.Errorf("bpf_stats_enabled detail %q", c.Detail)
	}
	if c, _ := r.Check("CAP_SYS_RESOURCE"); !strings.HasPrefix(c.Detail, "not effective; needed to raise RLIMIT_MEMLOCK") {
		t.Errorf("CAP_SYS_RESOURCE detail %q", c.Detail)
	}
}

func TestRunUnprivilegedDoesNotLoad(t *testing.T) {
	p := fake{euid: 1000}.prober()
	loaded := false
	load := func() result { loaded = true; return ok("") }
	p.fentry, p.kprobe, p.rawTracepoint, p.probeReadKernel = load, load, load, load
	p.syscallTracepoints, p.perfEventArray, p.ringBuf = load, load, load
	r := run(context.Background(), Options{}, p)
	if loaded {
		t.Error("a loading probe ran without privileges")
	}
	if c, _ := r.Check(NameFentry); c.Status != StatusUnknown || c.Detail != "not probed: loading BPF needs privileges (see privileges)" {
		t.Errorf("fentry = %+v", c)
	}
	if c, _ := r.Check(NameBTF); c.Status != StatusOK {
		t.Errorf("btf = %+v, want it probed", c)
	}
	if r.CanRun || r.AutoMode != "" {
		t.Errorf("CanRun %v, AutoMode %q", r.CanRun, r.AutoMode)
	}
	if want := "every mode needs raw_tracepoint, probe_read_kernel, ringbuf or perf_event_array: could not be determined (not probed: loading BPF needs privileges (see privileges))"; r.AutoReason != want {
		t.Errorf("AutoReason %q", r.AutoReason)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	p := fake{caps: allCaps}.prober()
	p.fentry = func() result { called = true; return ok("") }
	r := run(ctx, Options{}, p)
	if called {
		t.Error("probe ran after the context was canceled")
	}
	if c, _ := r.Check(NameFentry); c.Status != StatusUnknown || c.Detail != "not run: context canceled" {
		t.Errorf("fentry = %+v", c)
	}
	if r.CanRun || r.AutoMode != "" {
		t.Errorf("CanRun %v, AutoMode %q after cancel", r.CanRun, r.AutoMode)
	}
}
