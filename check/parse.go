package check

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// parseCapEff returns the CapEff field of /proc/<pid>/status content.
func parseCapEff(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		v, found := strings.CutPrefix(line, "CapEff:")
		if !found {
			continue
		}
		set, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing CapEff %q: %w", strings.TrimSpace(v), err)
		}
		return set, nil
	}
	return 0, errors.New("no CapEff line")
}

// parseLockdown returns the active mode from /sys/kernel/security/lockdown
// content, the bracketed word of e.g. "none [integrity] confidentiality".
func parseLockdown(content string) (string, error) {
	for _, f := range strings.Fields(content) {
		if len(f) > 2 && strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return f[1 : len(f)-1], nil
		}
	}
	return "", fmt.Errorf("no bracketed mode in %q", strings.TrimSpace(content))
}

// describeLockdown judges a lockdown mode. Integrity mode blocks
// bpf_probe_write_user and debugfs, neither of which connwatch uses;
// confidentiality also blocks kprobes, tracefs, perf and BPF reads of kernel
// memory, which every mode needs.
func describeLockdown(mode string) result {
	switch mode {
	case "none":
		return ok("none")
	case "integrity":
		return ok("integrity: BPF may read the kernel; only bpf_probe_write_user and debugfs are blocked")
	case "confidentiality":
		return result{StatusUnsupported, "confidentiality: BPF reads of kernel memory, kprobes, perf and tracefs are blocked"}
	}
	return result{StatusUnknown, fmt.Sprintf("unrecognised lockdown mode %q", mode)}
}

// kernelVersion parses the major and minor numbers of a release such as
// "6.1.0-40-cloud-amd64".
func kernelVersion(release string) (major, minor int, ok bool) {
	ma, rest, found := strings.Cut(release, ".")
	if !found {
		return 0, 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(ma)
	minor, err2 = strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return major, minor, true
}

func versionBefore(release string, major, minor int) bool {
	ma, mi, ok := kernelVersion(release)
	return ok && (ma < major || ma == major && mi < minor)
}

func sysctlCheck(name string, read func(string) (string, error), describe func(string) result) Check {
	v, err := read(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Check{Name: name, Status: StatusUnknown, Detail: "not present on this kernel"}
		}
		return Check{Name: name, Status: StatusUnknown, Detail: err.Error()}
	}
	r := describe(v)
	return Check{Name: name, Status: r.status, Detail: r.detail}
}

func describeUnprivilegedBPF(v string) result {
	switch v {
	case "0":
		return ok("0: unprivileged users may load BPF; connwatch runs privileged either way")
	case "1":
		return ok("1: unprivileged BPF off until reboot; connwatch runs privileged, not affected")
	case "2":
		return ok("2: unprivileged BPF off (admin may re-enable); connwatch runs privileged, not affected")
	}
	return ok(v)
}

func describeBPFStats(v string) result {
	switch v {
	case "0":
		return ok("0: BPF run time not counted (set to 1 to measure connwatch's kernel cost)")
	case "1":
		return ok("1: BPF run time and run counts collected (small cost on every program run)")
	}
	return ok(v)
}
