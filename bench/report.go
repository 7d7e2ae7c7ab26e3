package main

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
)

// table is a Markdown table whose columns are padded to align in a
// terminal too.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		b.WriteString("|")
		for i := range t.header {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)) + " |")
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.header)
	sep := make([]string, len(t.header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
}

// group formats n with thousands separators.
func group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func us(ns float64) string { return fmt.Sprintf("%.2f µs", ns/1000) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func rate(r float64) string { return group(uint64(r+0.5)) + "/s" }

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**MISSED**"
}

func short(err error, n int) string {
	s := err.Error()
	if i := strings.Index(s, " (verifier log"); i > 0 {
		s = s[:i]
	}
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n]) + "…"
	}
	return s
}

func cores(c float64) string {
	if c < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f cores", c)
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func printReport(w io.Writer, o options, r *results) {
	fmt.Fprintf(w, "\nconnwatch benchmark — kernel %s, %d CPUs, %s, %s, %d load workers on 127.0.0.1, load average at start %s\n\n",
		kernelRelease(), runtime.NumCPU(), runtime.Version(), r.started.UTC().Format("2006-01-02 15:04 UTC"), o.workers, r.loadavg)

	t := &table{header: []string{"#", "measure", "connwatch", "baseline (same run)", "bpftrace (same run)", "target", "result"}}

	// 1. Kernel cost.
	emptyCell := "error: " + errString(r.emptyErr)
	if r.emptyErr == nil {
		emptyCell = fmt.Sprintf("empty prog: %s (%.1f runs × %.0f ns)", us(r.empty.NsPerConn()), r.empty.RunsPerConn(), r.empty.NsPerRun())
	}
	for _, m := range r.modes {
		name := fmt.Sprintf("BPF time / connection, %s mode (in process)", m.Mode)
		switch {
		case m.Unsupported != nil:
			t.add("1", name, "not supported here", "", "", "≤ 2 µs", "skipped")
		case m.Err != nil:
			t.add("1", name, "error: "+short(m.Err, 60), "", "", "≤ 2 µs", "error")
		default:
			cell := fmt.Sprintf("%s (%.1f runs × %.0f ns)", us(m.Cost.NsPerConn()), m.Cost.RunsPerConn(), m.Cost.NsPerRun())
			res := verdict(m.Cost.NsPerConn() <= 2000)
			if m.Mode != bpf.ModeTracepoint {
				res += " (target is for tracepoint)"
			}
			t.add("1", name, cell, emptyCell, "", "≤ 2 µs", res)
		}
	}
	peerKernel := "—"
	if r.peer.Err == nil {
		peerKernel = fmt.Sprintf("%s (%.1f runs × %.0f ns)", us(r.peer.Kernel.NsPerConn()), r.peer.Kernel.RunsPerConn(), r.peer.Kernel.NsPerRun())
	} else {
		peerKernel = "unavailable: " + short(r.peer.Err, 50)
	}
	if r.agent.Err == nil {
		t.add("1", fmt.Sprintf("BPF time / connection, agent process (%s) in its rate run", r.agentLog.Mode),
			fmt.Sprintf("%s (%.1f runs × %.0f ns)", us(r.agent.Kernel.NsPerConn()), r.agent.Kernel.RunsPerConn(), r.agent.Kernel.NsPerRun()),
			"", peerKernel, "≤ 2 µs", verdict(r.agent.Kernel.NsPerConn() <= 2000))
	} else {
		t.add("1", "BPF time / connection, agent process", "error: "+short(r.agent.Err, 60), "", peerKernel, "≤ 2 µs", "error")
	}

	// 2. Connection rate.
	base := (r.baseA.Rate() + r.baseB.Rate()) / 2
	baseCell := fmt.Sprintf("without: %s (before %s, after %s)", rate(base), rate(r.baseA.Rate()), rate(r.baseB.Rate()))
	peerRate := "—"
	if r.peer.Err == nil && base > 0 {
		peerRate = fmt.Sprintf("%s = %.1f %%", rate(r.peer.Load.Rate()), 100*r.peer.Load.Rate()/base)
	} else if r.peer.Err != nil {
		peerRate = "unavailable"
	}
	if r.agent.Err == nil && base > 0 {
		ratio := r.agent.Load.Rate() / base
		t.add("2", fmt.Sprintf("connections/s, %s, agent exporting OTLP", o.rateDur),
			fmt.Sprintf("%s = %.1f %%", rate(r.agent.Load.Rate()), 100*ratio), baseCell, peerRate, "≥ 90 % of without", verdict(ratio >= 0.9))
		peerCPU := "—"
		if r.peer.Err == nil {
			peerCPU = cores(r.peer.CPU)
		}
		t.add("2", "observer CPU in that run", fmt.Sprintf("%s (+ receiver %s)", cores(r.agent.CPU), cores(r.agent.HelperCPU)), "", peerCPU, "", "")
		if r.events.Err == nil {
			t.add("2", "connections/s, agent printing -format events to /dev/null (no OpenTelemetry)",
				fmt.Sprintf("%s = %.1f %%, agent %s", rate(r.events.Load.Rate()), 100*r.events.Load.Rate()/base, cores(r.events.CPU)), "", "", "", "")
		} else {
			t.add("2", "connections/s, agent -format events", "error: "+short(r.events.Err, 60), "", "", "", "")
		}
	} else {
		t.add("2", "connections/s with the agent", "error: "+short(errOr(r.agent.Err, errNoMeasure), 60), baseCell, peerRate, "≥ 90 % of without", "error")
	}

	// 3. Loss.
	l := r.loss
	if l.Err == nil || l.Load.Conns > 0 {
		perfErr, havePerf := l.Log.counter("event_write_errors")
		perfCell := group(perfErr)
		if !havePerf {
			perfCell = "? (no counters at exit)"
		}
		lossMet := havePerf && perfErr == 0 && l.Log.LostSamples == 0
		t.add("3", fmt.Sprintf("lost samples, %s flat out (%s conns, %s)", o.lossDur, group(l.Load.Conns), rate(l.Load.Rate())),
			fmt.Sprintf("%s lost, %s failed writes", group(l.Log.LostSamples), perfCell), "", "", "0", verdict(lossMet))
		exp, got := l.Expected.records(), l.Delivered.records()
		drops := uint64(0)
		if exp > got {
			drops = exp - got
		}
		pct := 0.0
		if exp > 0 {
			pct = 100 * float64(got) / float64(exp)
		}
		t.add("3", "records delivered / expected (span + 2 logs per connect, span + log per accept)",
			fmt.Sprintf("%.2f %% (%s / %s, %s dropped)", pct, group(got), group(exp), group(drops)), "", "", "0 dropped", verdict(drops == 0 && exp > 0))
		t.add("3", "agent CPU in that run", fmt.Sprintf("%s (+ receiver %s)", cores(l.CPU), cores(l.HelperCPU)), "", "", "", "")
	} else {
		t.add("3", "loss at full speed", "error: "+short(l.Err, 60), "", "", "0 lost, 0 dropped", "error")
	}

	// 4. User space.
	p := r.pipe
	if r.pipeErr == nil {
		e := p.E2E
		cell := fmt.Sprintf("%s events/s (%.1f allocs, %s B / event)", group(uint64(e.PerSecond()+0.5)), e.AllocsPerEvent(), group(uint64(e.BytesPerEvent()+0.5)))
		ok := e.PerSecond() >= 100_000 && p.Delivered.records() >= p.Expected.records()
		if p.Delivered.records() < p.Expected.records() {
			cell += fmt.Sprintf(", only %s of %s records delivered", group(p.Delivered.records()), group(p.Expected.records()))
		}
		t.add("4", "user space end to end, 1 core: decode → enrich → Emit → OTLP, flushed", cell, "", "", "≥ 100,000 events/s", verdict(ok))
		d := p.Decode
		t.add("4", "decode", fmt.Sprintf("%.0f ns, %.2f allocs / event", d.NsPerEvent(), d.AllocsPerEvent()), "", "", "≤ 200 ns, 0 allocs",
			verdict(d.NsPerEvent() <= 200 && d.Mallocs == 0))
		t.add("4", "stages alone: + enrich (warm) / + Emit (exporters discard)",
			fmt.Sprintf("%.0f ns, %.2f allocs / %.0f ns, %.1f allocs", p.Enrich.NsPerEvent(), p.Enrich.AllocsPerEvent(), p.Emit.NsPerEvent(), p.Emit.AllocsPerEvent()),
			"", "", "", "")
	} else {
		t.add("4", "user space pipeline", "error: "+short(r.pipeErr, 60), "", "", "≥ 100,000 events/s", "error")
	}

	// 5. Memory.
	if l.IdleMem.RSS > 0 {
		t.add("5", fmt.Sprintf("agent RSS idle (VmRSS %s after start)", o.idle), mib(l.IdleMem.RSS), "", "", "≤ 40 MiB", verdict(l.IdleMem.RSS <= 40<<20))
	}
	if l.EndMem.HWM > 0 {
		peer := "—"
		if r.peer.Err == nil && r.peer.Mem.RSS > 0 {
			peer = "VmRSS " + mib(r.peer.Mem.RSS)
		}
		t.add("5", fmt.Sprintf("agent RSS at full speed (VmHWM after %s; VmRSS peak sampled)", o.lossDur),
			fmt.Sprintf("%s (%s)", mib(l.EndMem.HWM), mib(l.PeakRSS)), "", peer, "≤ 100 MiB", verdict(l.EndMem.HWM <= 100<<20))
	}
	t.write(w)
	printNotes(w, o, r)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return short(err, 60)
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

func printNotes(w io.Writer, o options, r *results) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Notes:")
	note := func(format string, args ...any) { fmt.Fprintf(w, "- "+format+"\n", args...) }
	if c := othersMax.Load().(float64); c > 0.15 {
		note("**WARNING: other processes used up to %.2f cores during a load run; the machine was not quiet and the rates are disturbed**", c)
	} else {
		note("other processes used at most %.2f cores during any load run", c)
	}
	if f := foreignSeen(); len(f) > 0 {
		note("**WARNING: other tracing BPF programs were loaded during the runs (another agent or test on this machine); every figure is disturbed — rerun on a quiet machine**: %s", strings.Join(f, ", "))
	}
	for _, m := range r.modes {
		switch {
		case m.Unsupported != nil:
			note("%s mode skipped: %s", m.Mode, short(m.Unsupported, 220))
		case m.Err == nil:
			var parts []string
			for _, p := range m.Cost.Programs {
				if p.Runs == 0 {
					parts = append(parts, p.Name+" 0 runs")
					continue
				}
				parts = append(parts, fmt.Sprintf("%s %.2f runs × %.0f ns = %s", p.Name,
					float64(p.Runs)/float64(max(m.Cost.Conns, 1)), float64(p.Runtime.Nanoseconds())/float64(p.Runs),
					us(float64(p.Runtime.Nanoseconds())/float64(max(m.Cost.Conns, 1)))))
			}
			note("%s mode, per connection: %s; %s conns at %s, %s samples read, %s lost, %s failed writes",
				m.Mode, strings.Join(parts, "; "), group(m.Load.Conns), rate(m.Load.Rate()), group(m.Samples), group(m.Lost), group(m.PerfErrors))
		}
	}
	if r.agent.Err == nil {
		var parts []string
		for _, p := range r.agent.Kernel.Programs {
			parts = append(parts, fmt.Sprintf("%s %s", p.Name, us(float64(p.Runtime.Nanoseconds())/float64(max(r.agent.Kernel.Conns, 1)))))
		}
		note("agent programs per connection in the rate run: %s", strings.Join(parts, "; "))
	}
	if r.peer.Err != nil {
		note("bpftrace column: %s", short(r.peer.Err, 300))
	} else {
		note("bpftrace: `%s` > /dev/null", bpftraceScript)
	}
	errs := r.baseA.Errors + r.baseB.Errors + r.agent.Load.Errors + r.peer.Load.Errors + r.loss.Load.Errors
	note("load generator errors (failed dials/reads) over the rate and loss runs: %d", errs)
	l := r.loss
	if l.Load.Conns > 0 {
		d, e := l.Delivered, l.Expected
		note("loss run delivered/expected: client spans %s/%s, connect logs %s/%s, result logs %s/%s, server spans %s/%s, accept logs %s/%s",
			group(d.ClientSpans), group(e.ClientSpans), group(d.ConnectLogs), group(e.ConnectLogs), group(d.ResultLogs), group(e.ResultLogs),
			group(d.ServerSpans), group(e.ServerSpans), group(d.AcceptLogs), group(e.AcceptLogs))
		if l.Log.Counters != nil {
			var kv []string
			for _, k := range []string{"attempts_tracked", "results", "results_untracked", "accepts", "event_write_errors", "enrich_hits", "enrich_misses"} {
				if v, ok := l.Log.Counters[k]; ok {
					kv = append(kv, k+"="+v)
				}
			}
			note("agent counters at exit: %s; lost-sample warnings: %d", strings.Join(kv, " "), l.Log.LostWarnings)
		}
		for i, wl := range l.Log.Warnings {
			if i == 3 {
				note("… %d more agent warnings (see %s)", len(l.Log.Warnings)-3, o.dir)
				break
			}
			note("agent warning: %s", short(fmt.Errorf("%s", wl), 200))
		}
	}
	if r.pipeErr == nil {
		p := r.pipe
		note("user space: %s events end to end in %s using %.2f cores of CPU (%s events per CPU-second; producer waited %s for the exporters); delivered %s of %s records; queue-full refusals %d logs, %d spans; enrich hits %d, misses %d",
			group(p.E2E.Events), p.E2E.Elapsed.Round(1e6), p.E2E.CPU.Seconds()/p.E2E.Elapsed.Seconds(),
			group(uint64(float64(p.E2E.Events)/max(p.E2E.CPU.Seconds(), 1e-9))), p.Throttled.Round(1e6),
			group(p.Delivered.records()), group(p.Expected.records()),
			p.Stats.LogsQueueFull, p.Stats.SpansQueueFull, p.EnrichStats.Hits, p.EnrichStats.Misses)
	}
	note("the OTLP receiver is a separate process on the same 2 cores; logs: %s; bench took %s", o.dir, r.elapsed.Round(1e9))
}
