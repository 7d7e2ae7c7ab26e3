package check

import (
	"fmt"
	"os"
	"strings"
)

// capability is one Linux capability the report lists.
type capability struct {
	name    string
	bit     uint
	purpose string
}

// Bits from include/uapi/linux/capability.h.
const (
	capDACReadSearch = 2
	capSysPtrace     = 19
	capSysAdmin      = 21
	capSysResource   = 24
	capPerfmon       = 38
	capBPF           = 39
)

var (
	capsBPF         = capability{"CAP_BPF", capBPF, "load BPF programs and create maps (Linux 5.8+)"}
	capsPerfmon     = capability{"CAP_PERFMON", capPerfmon, "attach kprobes/tracepoints and read kernel memory from BPF (Linux 5.8+)"}
	capsSysAdmin    = capability{"CAP_SYS_ADMIN", capSysAdmin, "do all that CAP_BPF and CAP_PERFMON allow; the only way before Linux 5.8"}
	capsSysResource = capability{"CAP_SYS_RESOURCE", capSysResource, "raise RLIMIT_MEMLOCK for BPF memory (kernels before 5.11 only)"}
)

var reportedCaps = []capability{
	capsBPF, capsPerfmon, capsSysAdmin, capsSysResource,
	{"CAP_SYS_PTRACE", capSysPtrace, "read other processes' /proc/<pid> entries for enrichment"},
	{"CAP_DAC_READ_SEARCH", capDACReadSearch, "read /proc and cgroup files whatever their permissions"},
}

func hasCap(set uint64, bit uint) bool { return set&(1<<bit) != 0 }

func capCheck(c capability, set uint64, err error) Check {
	switch {
	case err != nil:
		return Check{Name: c.name, Status: StatusUnknown, Detail: "effective capabilities unreadable: " + err.Error()}
	case hasCap(set, c.bit):
		return Check{Name: c.name, Status: StatusOK, Detail: "effective; lets connwatch " + c.purpose}
	default:
		return Check{Name: c.name, Status: StatusMissing, Detail: "not effective; needed to " + c.purpose}
	}
}

// EffectiveCaps returns this process's effective capability set, from
// /proc/self/status.
func EffectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseCapEff(string(b))
}

// LoadNeeds is what loading and attaching connwatch's programs asks of a
// process's effective capabilities on one kernel release: the one rule the
// agent's errors and `connwatch check` both apply.
type LoadNeeds struct {
	// Need names what is needed: CAP_BPF and CAP_PERFMON from Linux 5.8
	// (CAP_SYS_ADMIN grants both), CAP_SYS_ADMIN before; and
	// CAP_SYS_RESOURCE before 5.11, where BPF memory is charged to
	// RLIMIT_MEMLOCK rather than to the memory cgroup.
	Need []string
	// Missing are those of Need the set lacks (none: the set suffices).
	Missing []string
	// Via says what grants loading when nothing is missing:
	// "CAP_SYS_ADMIN" or "CAP_BPF and CAP_PERFMON".
	Via string
}

// NeedsToLoad applies the rule of LoadNeeds to the effective set on
// release (an unparsable release is taken as a current kernel).
func NeedsToLoad(set uint64, release string) LoadNeeds {
	var n LoadNeeds
	admin := hasCap(set, capSysAdmin)
	if versionBefore(release, 5, 8) {
		n.Need, n.Via = []string{capsSysAdmin.name}, capsSysAdmin.name
		if !admin {
			n.Missing = append(n.Missing, capsSysAdmin.name)
		}
	} else {
		n.Need, n.Via = []string{capsBPF.name, capsPerfmon.name}, capsSysAdmin.name
		if !admin {
			n.Via = capsBPF.name + " and " + capsPerfmon.name
			for _, c := range []capability{capsBPF, capsPerfmon} {
				if !hasCap(set, c.bit) {
					n.Missing = append(n.Missing, c.name)
				}
			}
		}
	}
	if versionBefore(release, 5, 11) {
		n.Need = append(n.Need, capsSysResource.name)
		if !hasCap(set, capSysResource) {
			n.Missing = append(n.Missing, capsSysResource.name)
		}
	}
	return n
}

// privileges tells whether the process may load and attach the agent's
// programs (NeedsToLoad). Being root is what normally grants them; a root
// process whose capabilities were dropped (some containers) cannot load
// BPF, so the effective set decides, and the user id only when the set
// cannot be read.
func privileges(set uint64, err error, euid int, release string) result {
	if err != nil {
		if euid == 0 {
			return ok("running as root (effective capabilities unreadable: " + err.Error() + ")")
		}
		return result{StatusMissing, fmt.Sprintf("not root (euid %d) and the effective capabilities are unreadable: %v", euid, err)}
	}
	who := "root"
	if euid != 0 {
		who = fmt.Sprintf("euid %d", euid)
	}
	n := NeedsToLoad(set, release)
	switch {
	case len(n.Missing) == 0:
		return ok(who + " with " + n.Via)
	case versionBefore(release, 5, 8) && hasCap(set, capBPF) && hasCap(set, capPerfmon):
		return result{StatusMissing, fmt.Sprintf("%s has CAP_BPF and CAP_PERFMON, but Linux %s predates them (5.8): CAP_SYS_ADMIN is needed", who, release)}
	case !versionBefore(release, 5, 8) && hasCap(set, capBPF) && hasCap(set, capPerfmon) || hasCap(set, capSysAdmin):
		// Only CAP_SYS_RESOURCE is missing, before 5.11.
		return result{StatusMissing, fmt.Sprintf("%s lacks %s: Linux %s charges BPF memory to RLIMIT_MEMLOCK (before 5.11)", who, strings.Join(n.Missing, ", "), release)}
	}
	lack := n.Missing
	if !hasCap(set, capSysAdmin) && !versionBefore(release, 5, 8) {
		lack = append(lack, capsSysAdmin.name)
	}
	return result{StatusMissing, fmt.Sprintf("%s lacks %s: loading BPF needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN (run as root)", who, strings.Join(lack, ", "))}
}
