package check

import (
	"bytes"
	"context"
	"encoding/json"
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

func TestParseLockdown(t *testing.T) {
	for in, want := range map[string]string{
		"none [integrity] confidentiality\n": "integrity",
		"[none] integrity confidentiality\n": "none",
		"none integrity [confidentiality]":   "confidentiality",
	} {
		got, err := parseLockdown(in)
		if err != nil || got != want {
			t.Errorf("parseLockdown(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "none integrity confidentiality\n", "[]"} {
		if got, err := parseLockdown(in); err == nil {
			t.Errorf("parseLockdown(%q) = %q, want an error", in, got)
		}
	}
	for mode, status := range map[string]string{"none": StatusOK, "integrity": StatusOK, "confidentiality": StatusUnsupported, "bogus": StatusUnknown} {
		if r := describeLockdown(mode); r.status != status {
			t.Errorf("describeLockdown(%q) = %+v, want status %s", mode, r, status)
		}
	}
}

func TestParseCapEff(t *testing.T) {
	status := "Name:\tcat\nUmask:\t0022\nState:\tR (running)\n" +
		"CapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\n" +
		"CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"
	set, err := parseCapEff(status)
	if err != nil {
		t.Fatal(err)
	}
	if set != 0x000001fffeffffff {
		t.Fatalf("CapEff = %#x", set)
	}
	for bit, want := range map[uint]bool{capBPF: true, capPerfmon: true, capSysAdmin: true,
		capSysResource: false, capSysPtrace: true, capDACReadSearch: true} {
		if hasCap(set, bit) != want {
			t.Errorf("bit %d: %v, want %v", bit, !want, want)
		}
	}

	set, err = parseCapEff("CapEff:\t00000000a80425fb\n") // a typical non-root container
	if err != nil || hasCap(set, capSysAdmin) || hasCap(set, capBPF) || !hasCap(set, 0) {
		t.Errorf("container set %#x, %v", set, err)
	}
	if _, err := parseCapEff("CapPrm:\t0\n"); err == nil {
		t.Error("no CapEff line: want an error")
	}
	if _, err := parseCapEff("CapEff:\tzz\n"); err == nil {
		t.Error("bad hex: want an error")
	}
}

func TestKernelVersion(t *testing.T) {
	for in, want := range map[string][2]int{
		"6.18.44-fc-v669":           {6, 18},
		"6.1.0-40-cloud-amd64":      {6, 1},
		"6.12.48+deb12-cloud-amd64": {6, 12},
		"5.4.0-150-generic":         {5, 4},
		"4.19":                      {4, 19},
	} {
		ma, mi, ok := kernelVersion(in)
		if !ok || ma != want[0] || mi != want[1] {
			t.Errorf("kernelVersion(%q) = %d, %d, %v", in, ma, mi, ok)
		}
	}
	for _, in := range []string{"", "six", "6"} {
		if _, _, ok := kernelVersion(in); ok {
			t.Errorf("kernelVersion(%q) ok", in)
		}
	}
	if !versionBefore("5.4.0", 5, 8) || versionBefore("5.8.0", 5, 8) || versionBefore("6.1.0", 5, 8) || versionBefore("", 5, 8) {
		t.Error("versionBefore")
	}
}

// sample is the report of this project's CI host, shortened.
func sample() Report {
	r := Report{
		Kernel: "6.18.44-fc-v669",
		Checks: []Check{
			{"kernel", "ok", "6.18.44-fc-v669 (x86_64)"},
			{"lockdown", "unknown", "securityfs is not mounted at /sys/kernel/security"},
			{"fentry", "unsupported", "no trampolines"},
			{"kprobe", "unsupported", "kprobes unavailable: CONFIG_KPROBES unset"},
			{"raw_tracepoint", "ok", "sock/inet_sock_set_state attaches"},
			{"probe_read_kernel", "ok", "allowed"},
			{"privileges", "ok", "root with CAP_SYS_ADMIN"},
		},
	}
	decide(&r)
	return r
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	sample().WriteText(&b)
	want := `CHECK              STATUS       DETAIL
kernel             ok           6.18.44-fc-v669 (x86_64)
lockdown           unknown      securityfs is not mounted at /sys/kernel/security
fentry             unsupported  no trampolines
kprobe             unsupported  kprobes unavailable: CONFIG_KPROBES unset
raw_tracepoint     ok           sock/inet_sock_set_state attaches
probe_read_kernel  ok           allowed
privileges         ok           root with CAP_SYS_ADMIN

auto mode: none — every mode needs ringbuf or perf_event_array: not checked
can run: no — no attach mode works: every mode needs ringbuf or perf_event_array: not checked
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	r := sample()
	r.Checks = append(r.Checks, Check{"perf_event_array", "ok", "supported"})
	decide(&r)
	b.Reset()
	r.WriteText(&b)
	tail := "\nauto mode: tracepoint — fentry: not supported (no trampolines); " +
		"kprobe: not supported (kprobes unavailable: CONFIG_KPROBES unset); " +
		"accepts will not be reported: syscall_tracepoints not checked\n" +
		"can run: yes — root with CAP_SYS_ADMIN; would attach in tracepoint mode\n"
	if !strings.HasSuffix(b.String(), tail) {
		t.Errorf("got\n%s\nwant it to end with\n%s", b.String(), tail)
	}
	if !strings.Contains(b.String(), "\nperf_event_array   ok           supported\n") {
		t.Errorf("columns not aligned:\n%s", b.String())
	}
}

func TestWriteJSON(t *testing.T) {
	r := sample()
	r.Checks = append(r.Checks, Check{"perf_event_array", "ok", "supported"}, Check{"syscall_tracepoints", "ok", ""})
	decide(&r)
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`"kernel": "6.18.44-fc-v669",`,
		`"auto_mode": "tracepoint",`,
		`"auto_reason": "fentry: not supported (no trampolines); kprobe: not supported (kprobes unavailable: CONFIG_KPROBES unset)",`,
		`"can_run": true,`,
		`"reason": "root with CAP_SYS_ADMIN; would attach in tracepoint mode"`,
		`{
      "name": "kprobe",
      "status": "unsupported",
      "detail": "kprobes unavailable: CONFIG_KPROBES unset"
    },`,
		`{
      "name": "syscall_tracepoints",
      "status": "ok"
    }`,
		`"skipped": [
    {
      "mode": "fentry",
      "reason": "not supported (no trampolines)"
    },`,
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("JSON lacks %s\n%s", s, b.String())
		}
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back, r)
	}

	b.Reset()
	if err := (Report{}).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"checks": [],`) {
		t.Errorf("empty report: %s", b.String())
	}
}
