// Package check reports whether connwatch can run on this kernel and which
// attach mode `auto` would pick: it is what `connwatch check` prints.
//
// Run probes the kernel for real: it loads trivial BPF programs (return 0) and
// attaches them where the agent would (tcp_connect, inet_csk_accept,
// inet_sock_set_state, syscalls/sys_exit_accept4), then detaches them at once.
// Nothing stays loaded after Run returns.
package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/connwatch/connwatch/bpf"
)

// Statuses of a Check.
const (
	StatusOK          = "ok"          // present and working
	StatusMissing     = "missing"     // absent, but the administrator can fix it (mount, grant)
	StatusUnsupported = "unsupported" // this kernel cannot do it
	StatusUnknown     = "unknown"     // could not be determined (permissions, unexpected error)
)

// Names of the checks, in report order.
const (
	NameKernel             = "kernel"
	NameLockdown           = "lockdown"
	NameBTF                = "btf"
	NameFentry             = "fentry"
	NameKprobe             = "kprobe"
	NameRawTracepoint      = "raw_tracepoint"
	NameProbeReadKernel    = "probe_read_kernel"
	NameSyscallTracepoints = "syscall_tracepoints"
	NamePerfEventArray     = "perf_event_array"
	NameRingBuf            = "ringbuf"
	NamePrivileges         = "privileges"
	NameUnprivilegedBPF    = "kernel.unprivileged_bpf_disabled"
	NameBPFStats           = "kernel.bpf_stats_enabled"
)

// modeNeeds are, for each attach mode, the check it needs besides
// commonNeeds (none for tracepoint), and the check for its accept side,
// without which the agent runs but reports no accepted connections. The
// fentry and kprobe checks cover their accept side themselves and stay ok
// without it, as the agent does. decide walks them in bpf.AutoOrder, the
// agent's order.
var modeNeeds = map[bpf.Mode]struct{ needs, accept string }{
	bpf.ModeFentry:     {NameFentry, ""},
	bpf.ModeKprobe:     {NameKprobe, ""},
	bpf.ModeTracepoint: {"", NameSyscallTracepoints},
}

// commonNeeds are needed by every mode: outcome tracking falls back to the
// raw tracepoint where the BTF-typed one does not load, programs read
// sockets with bpf_probe_read_kernel (BPF_CORE_READ), and events leave
// through a transport (see satisfied).
var commonNeeds = []string{NameRawTracepoint, NameProbeReadKernel, NamePerfEventArray}

// satisfied reports whether the need called name is met. The transport is
// what the agent's probe.transport: auto picks (bpf.Open): the ring buffer
// where the kernel has one, else the perf event array; so the perf event
// array is needed only where the ring buffer is missing.
func satisfied(name string, byName map[string]Check) bool {
	if name == NamePerfEventArray && byName[NameRingBuf].Status == StatusOK {
		return true
	}
	return byName[name].Status == StatusOK
}

// Options configure Run. There are none yet; the type keeps Run's signature
// stable when some are added.
type Options struct{}

// Check is the result of one check.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Skipped is a mode auto would pass over, and why.
type Skipped struct {
	Mode   string `json:"mode"`
	Reason string `json:"reason"`
}

// Report is everything Run found out.
type Report struct {
	Kernel string  `json:"kernel"`
	Checks []Check `json:"checks"`
	// AutoMode is the mode `auto` would attach in, or "" when it would fail.
	AutoMode string `json:"auto_mode"`
	// AutoReason says why: the modes skipped before AutoMode and their
	// reasons, or why auto would fail.
	AutoReason string    `json:"auto_reason"`
	Skipped    []Skipped `json:"skipped,omitempty"`
	// CanRun is whether the agent can load and attach here, in this process.
	CanRun bool   `json:"can_run"`
	Reason string `json:"reason"`
}

// Check returns the check called name.
func (r Report) Check(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Run runs every check against the running kernel. It needs the privileges
// the agent needs (root, or CAP_BPF and CAP_PERFMON) to tell what the kernel
// supports; without them the attach checks report "unknown".
func Run(ctx context.Context, opts Options) Report {
	return run(ctx, opts, realProber())
}

// result is what a probe found.
type result struct {
	status, detail string
}

func ok(detail string) result { return result{StatusOK, detail} }

// prober is the kernel-facing half of Run. realProber fills it in; tests use
// fakes so that the decisions are checked without root or a particular kernel.
type prober struct {
	kernel             func() result
	lockdown           func() result
	btf                func() result
	fentry             func() result
	kprobe             func() result
	rawTracepoint      func() result
	probeReadKernel    func() result
	syscallTracepoints func() result
	perfEventArray     func() result
	ringBuf            func() result
	// capEff returns the effective capability set of this process.
	capEff func() (uint64, error)
	euid   func() int
	// sysctl reads /proc/sys/<name with dots as slashes>, trimmed.
	sysctl func(name string) (string, error)
}

func run(ctx context.Context, _ Options, p prober) Report {
	var r Report
	add := func(name string, probe func() result) {
		res := result{StatusUnknown, "not run: " + fmt.Sprint(ctx.Err())}
		if ctx.Err() == nil {
			res = probe()
		}
		r.Checks = append(r.Checks, Check{Name: name, Status: res.status, Detail: res.detail})
	}

	add(NameKernel, p.kernel)
	if c, _ := r.Check(NameKernel); c.Status == StatusOK {
		r.Kernel, _, _ = strings.Cut(c.Detail, " ")
	}
	caps, capErr := p.capEff()
	priv := privileges(caps, capErr, p.euid(), r.Kernel)
	// Without the privileges to load BPF every load fails with EPERM,
	// which says nothing about the kernel: do not try.
	loads := func(probe func() result) func() result {
		if priv.status == StatusOK {
			return probe
		}
		return func() result {
			return result{StatusUnknown, "not probed: loading BPF needs privileges (see privileges)"}
		}
	}

	add(NameLockdown, p.lockdown)
	add(NameBTF, p.btf)
	add(NameFentry, loads(p.fentry))
	add(NameKprobe, loads(p.kprobe))
	add(NameRawTracepoint, loads(p.rawTracepoint))
	add(NameProbeReadKernel, loads(p.probeReadKernel))
	add(NameSyscallTracepoints, loads(p.syscallTracepoints))
	add(NamePerfEventArray, loads(p.perfEventArray))
	add(NameRingBuf, loads(p.ringBuf))

	for _, c := range reportedCaps {
		r.Checks = append(r.Checks, capCheck(c, caps, capErr))
	}
	r.Checks = append(r.Checks, Check{Name: NamePrivileges, Status: priv.status, Detail: priv.detail})

	r.Checks = append(r.Checks, sysctlCheck(NameUnprivilegedBPF, p.sysctl, describeUnprivilegedBPF))
	r.Checks = append(r.Checks, sysctlCheck(NameBPFStats, p.sysctl, describeBPFStats))

	decide(&r)
	return r
}

// decide fills in AutoMode, AutoReason, Skipped, CanRun and Reason from the
// checks. It mirrors the agent's auto mode: a mode is skipped only when it is
// unsupported (or missing); a check that could not be determined stops auto,
// as an attach error other than "not supported" stops the agent.
func decide(r *Report) {
	byName := map[string]Check{}
	for _, c := range r.Checks {
		byName[c.Name] = c
	}

	r.AutoMode, r.Skipped = "", nil
	var reasons []string
	// Needs that fail alike (e.g. none probed) are reported together.
	var failing, phrases []string
	for _, n := range commonNeeds {
		if !satisfied(n, byName) {
			name := n
			if n == NamePerfEventArray {
				name = NameRingBuf + " or " + NamePerfEventArray
			}
			failing, phrases = append(failing, name), append(phrases, phrase(byName[n]))
		}
	}
	for i := 0; i < len(failing); {
		j := i + 1
		for j < len(failing) && phrases[j] == phrases[i] {
			j++
		}
		reasons = append(reasons, fmt.Sprintf("every mode needs %s: %s", strings.Join(failing[i:j], ", "), phrases[i]))
		i = j
	}
	if len(reasons) == 0 {
		order := bpf.AutoOrder()
		for _, mode := range order {
			m := modeNeeds[mode]
			c := byName[m.needs]
			if m.needs == "" || c.Status == StatusOK {
				r.AutoMode = string(mode)
				if a := byName[m.accept]; m.accept != "" && a.Status != StatusOK {
					reasons = append(reasons, fmt.Sprintf("accepts will not be reported: %s %s", m.accept, phrase(a)))
				}
				break
			}
			if c.Status == StatusUnknown {
				reasons = append(reasons, fmt.Sprintf("%s: %s; auto stops here", mode, phrase(c)))
				break
			}
			r.Skipped = append(r.Skipped, Skipped{Mode: string(mode), Reason: phrase(c)})
			reasons = append(reasons, fmt.Sprintf("%s: %s", mode, phrase(c)))
		}
		if r.AutoMode == string(order[0]) {
			reasons = append([]string{r.AutoMode + " is supported (preferred mode)"}, reasons...)
		}
	}
	r.AutoReason = strings.Join(reasons, "; ")

	var why []string
	if c := byName[NamePrivileges]; c.Status != StatusOK {
		why = append(why, c.Detail)
	}
	if c := byName[NameLockdown]; c.Status == StatusUnsupported {
		why = append(why, "lockdown: "+c.Detail)
	}
	if r.AutoMode == "" {
		why = append(why, "no attach mode works: "+r.AutoReason)
	}
	r.CanRun = len(why) == 0
	if r.CanRun {
		r.Reason = fmt.Sprintf("%s; would attach in %s mode", byName[NamePrivileges].Detail, r.AutoMode)
	} else {
		r.Reason = strings.Join(why, "; ")
	}
}

// phrase turns a non-ok check into "not supported (detail)" and the like.
func phrase(c Check) string {
	var s string
	switch c.Status {
	case StatusUnsupported:
		s = "not supported"
	case StatusMissing:
		s = "missing"
	case StatusUnknown:
		s = "could not be determined"
	case StatusOK:
		s = "ok"
	case "":
		return "not checked"
	default:
		s = c.Status
	}
	if c.Detail != "" {
		s += " (" + c.Detail + ")"
	}
	return s
}

// WriteText writes the report for people: an aligned table of the checks,
// then the auto mode and whether connwatch can run.
func (r Report) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Status, c.Detail)
	}
	tw.Flush()
	fmt.Fprintln(w)
	mode := r.AutoMode
	if mode == "" {
		mode = "none"
	}
	fmt.Fprintf(w, "auto mode: %s — %s\n", mode, r.AutoReason)
	can := "no"
	if r.CanRun {
		can = "yes"
	}
	fmt.Fprintf(w, "can run: %s — %s\n", can, r.Reason)
}

// WriteJSON writes the report as one indented JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	if r.Checks == nil {
		r.Checks = []Check{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
