package check

// The parsers of /proc and /sys contents, and the report's text and JSON
// forms; check_test.go tests the decisions.

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

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
