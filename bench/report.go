package main

// The report the bench prints at the end: a table of every measurement
// next to its baseline and bpftrace, a table of the targets, and notes on
// the run. Its cells are made in cells.go.

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"

	"github.com/connwatch/connwatch/bpf"
)

func printReport(w io.Writer, o options, r *results) {
	fmt.Fprintf(w, "\nconnwatch benchmark — kernel %s, %d CPUs, %s, %s, %d load workers on 127.0.0.1, load average at start %s\n\n",
		kernelRelease(), runtime.NumCPU(), runtime.Version(), r.started.UTC().Format("2006-01-02 15:04 UTC"), o.workers, r.loadavg)

	t := &table{header: []string{"#", "measure", "connwatch", "baseline (same run)", "bpftrace (same run)", "target", "result"}}
	// tg is the targets table: one row per target of the issue, its value
	// now and the target.
	tg := &table{header: []string{"target", "now", "goal", "result"}}

	// 1. Kernel cost.
	emptyCell := "error: " + errString(r.emptyErr)
	if r.emptyErr == nil {
		emptyCell = "empty prog: " + kernelCell(r.empty)
	}
	var tpCost *kernelCost
	withCloses := map[bpf.Mode]kernelCost{}
	for _, m := range r.modes {
		name := fmt.Sprintf("BPF time / connection, %s mode (in process)", m.Mode)
		if m.NoCloses {
			// The same mode without close tracking: what closes cost.
			with, ok := withCloses[m.Mode]
			if m.Err != nil || !ok {
				continue
			}
			d := with.NsPerConn() - m.Cost.NsPerConn()
			t.add("1", fmt.Sprintf("BPF time / connection, %s mode: what close records add", m.Mode),
				fmt.Sprintf("%+.2f µs (%s with, %s without)", d/1000, us(with.NsPerConn()), us(m.Cost.NsPerConn())),
				"without: "+kernelCell(m.Cost), "", targetCloseCell, verdict(d <= targetCloseNs))
			if m.Mode == bpf.ModeTracepoint {
				tg.add("BPF time close records add per connection (tracepoint)", fmt.Sprintf("%+.2f µs", d/1000), targetCloseCell, verdict(d <= targetCloseNs))
			}
			continue
		}
		switch {
		case m.Unsupported != nil:
			t.add("1", name, "not supported here", "", "", targetBPFCell, "skipped")
		case m.Err != nil:
			t.add("1", name, "error: "+short(m.Err, 60), "", "", targetBPFCell, "error")
		default:
			res := verdict(m.Cost.NsPerConn() <= targetBPFNs)
			if m.Mode != bpf.ModeTracepoint {
				res += " (target is for tracepoint)"
			} else {
				tpCost = &m.Cost
			}
			withCloses[m.Mode] = m.Cost
			t.add("1", name, kernelCell(m.Cost), emptyCell, "", targetBPFCell, res)
		}
	}
	peerKernel := "—"
	if r.peer.Err == nil {
		peerKernel = kernelCell(r.peer.Kernel)
	} else {
		peerKernel = "unavailable: " + short(r.peer.Err, 50)
	}
	if r.agent.Err == nil {
		t.add("1", fmt.Sprintf("BPF time / connection, agent process (%s) in its rate run", r.agentLog.Mode),
			kernelCell(r.agent.Kernel), "", peerKernel, targetBPFCell, verdict(r.agent.Kernel.NsPerConn() <= targetBPFNs))
	} else {
		t.add("1", "BPF time / connection, agent process", "error: "+short(r.agent.Err, 60), "", peerKernel, targetBPFCell, "error")
	}
	{
		var now []string
		met, measured := true, false
		if tpCost != nil {
			now = append(now, us(tpCost.NsPerConn())+" in process")
			met, measured = met && tpCost.NsPerConn() <= targetBPFNs, true
		}
		if r.agent.Err == nil {
			now = append(now, us(r.agent.Kernel.NsPerConn())+" in the agent")
			met, measured = met && r.agent.Kernel.NsPerConn() <= targetBPFNs, true
		}
		res := verdict(met)
		if !measured {
			now, res = []string{"not measured"}, "—"
		}
		tg.add("BPF time per connection (tracepoint)", strings.Join(now, ", "), targetBPFCell, res)
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
			fmt.Sprintf("%s = %.1f %%", rate(r.agent.Load.Rate()), 100*ratio), baseCell, peerRate, targetRateCell, verdict(ratio >= targetRateRatio))
		peerCPU := "—"
		if r.peer.Err == nil {
			peerCPU = cores(r.peer.CPU)
		}
		t.add("2", "observer CPU in that run", fmt.Sprintf("%s (+ receiver %s)", cores(r.agent.CPU), cores(r.agent.HelperCPU)), "", peerCPU, "", "")
		tg.add("connection rate with the agent exporting OTLP", fmt.Sprintf("%.1f %% (%s of %s)", 100*ratio, rate(r.agent.Load.Rate()), rate(base)),
			targetRateCell, verdict(ratio >= targetRateRatio))
	} else {
		if !errors.Is(r.agent.Err, errSkipped) {
			t.add("2", "connections/s with the agent", "error: "+short(errOr(r.agent.Err, errNoMeasure), 60), baseCell, peerRate, targetRateCell, "error")
		}
		tg.add("connection rate with the agent exporting OTLP", "not measured: "+short(errOr(r.agent.Err, errNoMeasure), 40), targetRateCell, "—")
	}
	if r.events.Err == nil && base > 0 {
		t.add("2", "connections/s, agent printing -format events to /dev/null (no OpenTelemetry)",
			fmt.Sprintf("%s = %.1f %%, agent %s, dropped %s", rate(r.events.Load.Rate()), 100*r.events.Load.Rate()/base, cores(r.events.CPU), r.events.Drops.cell()), "", "", "", "")
	} else if !errors.Is(r.events.Err, errSkipped) {
		t.add("2", "connections/s, agent -format events", "error: "+short(errOr(r.events.Err, errNoMeasure), 60), "", "", "", "")
	}
	stdoutTarget := fmt.Sprintf("0 dropped, ≤ %.1f cores", targetStdoutCores)
	if s := r.stdout; s.Err == nil && base > 0 {
		met := s.Drops.Scraped && s.Drops.Dropped == 0 && s.Drops.Lost == 0 && s.CPU >= 0 && s.CPU <= targetStdoutCores
		t.add("2", "connections/s, agent printing OTel JSON lines to /dev/null (no endpoint); its CPU; connwatch_dropped_total",
			fmt.Sprintf("%s = %.1f %%, agent %s, dropped %s", rate(s.Load.Rate()), 100*s.Load.Rate()/base, cores(s.CPU), s.Drops.cell()),
			baseCell, "", stdoutTarget, verdict(met))
		now := fmt.Sprintf("%s dropped, %s", s.Drops.cell(), cores(s.CPU))
		if s.Drops.Lost > 0 {
			now += fmt.Sprintf(", %s samples lost", group(s.Drops.Lost))
		}
		tg.add(fmt.Sprintf("stdout OTel JSON lines at full speed to /dev/null (%s, %s)", o.rateDur, rate(s.Load.Rate())), now, stdoutTarget, verdict(met))
	} else {
		if !errors.Is(s.Err, errSkipped) {
			t.add("2", "connections/s, agent printing OTel JSON lines", "error: "+short(errOr(s.Err, errNoMeasure), 60), "", "", stdoutTarget, "error")
		}
		tg.add("stdout OTel JSON lines at full speed to /dev/null", "not measured: "+short(errOr(s.Err, errNoMeasure), 40), stdoutTarget, "—")
	}
	samplingRows(t, tg, r.sampling)

	// 3. Loss.
	l := r.loss
	lossTarget := "100 %, connwatch_dropped_total 0"
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
		met := got == exp && exp > 0 && l.Drops.Scraped && l.Drops.Dropped == 0
		t.add("3", "records delivered / expected (span + 2 logs per connect, span + log per accept, a log per close); connwatch_dropped_total",
			deliveredCell(got, exp)+"; dropped "+l.Drops.cell(), "", "", lossTarget, verdict(met))
		t.add("3", "agent CPU in that run", fmt.Sprintf("%s (+ receiver %s)", cores(l.CPU), cores(l.HelperCPU)), "", "", "", "")
		pct := 0.0
		if exp > 0 {
			pct = 100 * float64(got) / float64(exp)
		}
		tg.add(fmt.Sprintf("records delivered at full speed, %s (%s conns)", o.lossDur, group(l.Load.Conns)),
			fmt.Sprintf("%.2f %%, connwatch_dropped_total %s", pct, l.Drops.cell()), lossTarget, verdict(met))
	} else {
		if !errors.Is(l.Err, errSkipped) {
			t.add("3", "loss at full speed", "error: "+short(l.Err, 60), "", "", "0 lost, 0 dropped", "error")
		}
		tg.add("records delivered at full speed", "not measured: "+short(errOr(l.Err, errNoMeasure), 40), lossTarget, "—")
	}

	// 4. User space.
	p := r.pipe
	if r.pipeErr == nil {
		e := p.E2E
		kinds, allKinds := perKind(p.Delivered, p.Expected)
		// The process runs on one core (GOMAXPROCS 1) and shares the
		// machine with the receiver, whose decoding bounds the wall-clock
		// rate here: the per-core figure is events per CPU-second of the
		// process, the wall-clock rate is shown beside it.
		perCore := float64(e.Events) / max(e.CPU.Seconds(), 1e-9)
		cell := fmt.Sprintf("%s events per CPU-second (wall: %s events/s, process %s, receiver %s), %.2f allocs, %s B / event",
			group(uint64(perCore+0.5)), group(uint64(e.PerSecond()+0.5)), cores(e.Cores()), cores(p.Receiver),
			e.AllocsPerEvent(), group(uint64(e.BytesPerEvent()+0.5)))
		ok := perCore >= targetE2ERate && e.AllocsPerEvent() <= targetE2EAllocs && allKinds
		t.add("4", "user space end to end, 1 core: pipeline.Path → otel.Exporter → OTLP/gRPC → receiver, flushed", cell, "", "", targetE2ECell, verdict(ok))
		t.add("4", "records delivered / expected, per kind (e2e)", deliveredCell(p.Delivered.records(), p.Expected.records())+": "+kinds,
			"", "", "100 % each", verdict(allKinds))
		d := p.Decode
		t.add("4", "decode", fmt.Sprintf("%.0f ns, %.2f allocs / event", d.NsPerEvent(), d.AllocsPerEvent()), "", "", "≤ 200 ns, 0 allocs",
			verdict(d.NsPerEvent() <= 200 && d.Mallocs == 0))
		t.add("4", "decode + clock + enrich (warm)", fmt.Sprintf("%.0f ns, %.2f allocs / event", p.Enrich.NsPerEvent(), p.Enrich.AllocsPerEvent()), "", "", "", "")
		t.add("4", "pipeline.Path into a discarding sink (the path's own cost)",
			fmt.Sprintf("%.0f ns, %.2f allocs, %.0f B / event", p.Path.NsPerEvent(), p.Path.AllocsPerEvent(), p.Path.BytesPerEvent()), "", "", "", "")
		now := fmt.Sprintf("%s events per CPU-second (wall %s/s), %.2f allocs / event", group(uint64(perCore+0.5)), group(uint64(e.PerSecond()+0.5)), e.AllocsPerEvent())
		if !allKinds {
			now += "; delivered " + kinds
		}
		tg.add("user space end to end, 1 core (OTLP, flushed)", now, targetE2ECell, verdict(ok))
	} else {
		if !errors.Is(r.pipeErr, errSkipped) {
			t.add("4", "user space pipeline", "error: "+short(r.pipeErr, 60), "", "", targetE2ECell, "error")
		}
		tg.add("user space end to end, 1 core (OTLP, flushed)", "not measured: "+short(errOr(r.pipeErr, errNoMeasure), 40), targetE2ECell, "—")
	}

	// 5. Memory.
	if l.IdleMem.RSS > 0 {
		t.add("5", fmt.Sprintf("agent RSS idle (VmRSS %s after start)", o.idle), mib(l.IdleMem.RSS), "", "", "≤ "+mib(targetRSSIdle), verdict(l.IdleMem.RSS <= targetRSSIdle))
	}
	rssTarget := "≤ " + mib(targetRSSFull)
	if l.EndMem.HWM > 0 {
		peer := "—"
		if r.peer.Err == nil && r.peer.Mem.RSS > 0 {
			peer = "VmRSS " + mib(r.peer.Mem.RSS)
		}
		t.add("5", fmt.Sprintf("agent RSS at full speed (VmHWM after %s; VmRSS peak sampled)", o.lossDur),
			fmt.Sprintf("%s (%s)", mib(l.EndMem.HWM), mib(l.PeakRSS)), "", peer, rssTarget, verdict(l.EndMem.HWM <= targetRSSFull))
		tg.add("agent RSS at full speed (VmHWM)", mib(l.EndMem.HWM), rssTarget, verdict(l.EndMem.HWM <= targetRSSFull))
	} else {
		tg.add("agent RSS at full speed (VmHWM)", "not measured", rssTarget, "—")
	}
	t.write(w)

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Targets (all measured in this run):")
	fmt.Fprintln(w)
	sortTargets(tg)
	tg.write(w)
	printNotes(w, o, r)
}

// sortTargets puts the rows in the order.
func sortTargets(t *table) {
	order := []string{"user space", "connection rate", "records delivered", "stdout", "agent RSS", "BPF time"}
	rank := func(r []string) int {
		for i, p := range order {
			if strings.HasPrefix(r[0], p) {
				return i
			}
		}
		return len(order)
	}
	sort.SliceStable(t.rows, func(i, j int) bool { return rank(t.rows[i]) < rank(t.rows[j]) })
}

func printNotes(w io.Writer, o options, r *results) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Notes:")
	note := func(format string, args ...any) { fmt.Fprintf(w, "- "+format+"\n", args...) }
	if c := othersMax.Load().(float64); c > 0.15 {
		note("**WARNING: other processes used up to %.2f cores during a load run or the end-to-end user-space run; the machine was not quiet and the rates are disturbed**", c)
	} else {
		note("other processes used at most %.2f cores during any load run and the end-to-end user-space run", c)
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
			mode := string(m.Mode)
			if m.NoCloses {
				mode += " (close tracking off)"
			}
			note("%s mode, per connection: %s; %s conns at %s, %s samples read, %s lost, %s failed writes",
				mode, strings.Join(parts, "; "), group(m.Load.Conns), rate(m.Load.Rate()), group(m.Samples), group(m.Lost), group(m.PerfErrors))
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
	errs := r.baseA.Errors + r.baseB.Errors + r.agent.Load.Errors + r.events.Load.Errors + r.stdout.Load.Errors + r.peer.Load.Errors + r.loss.Load.Errors
	note("load generator errors (failed dials/reads) over the rate and loss runs: %d", errs)
	l := r.loss
	if l.Load.Conns > 0 {
		d, e := l.Delivered, l.Expected
		note("loss run delivered/expected: client spans %s/%s, connect logs %s/%s, result logs %s/%s, server spans %s/%s, accept logs %s/%s, close logs %s/%s",
			group(d.ClientSpans), group(e.ClientSpans), group(d.ConnectLogs), group(e.ConnectLogs), group(d.ResultLogs), group(e.ResultLogs),
			group(d.ServerSpans), group(e.ServerSpans), group(d.AcceptLogs), group(e.AcceptLogs), group(d.CloseLogs), group(e.CloseLogs))
		if l.Log.Counters != nil {
			var kv []string
			for _, k := range []string{"attempts_tracked", "results", "results_untracked", "accepts", "connections_tracked", "connections_closed", "connections_forgotten", "event_write_errors", "enrich_hits", "enrich_misses"} {
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
		note("user space: %s samples (%s events) end to end in %s, process CPU %s (%s events per CPU-second), receiver process %s, other processes %s; producer throttled %s by flow control (emitted − exported − failed ≤ %s records per signal; peak queue %s of %s); queue-full refusals %d logs, %d spans; export failures %d logs, %d spans; enrich hits %d, misses %d",
			group(p.E2E.Samples), group(p.E2E.Events), p.E2E.Elapsed.Round(1e6), cores(p.E2E.Cores()),
			group(uint64(float64(p.E2E.Events)/max(p.E2E.CPU.Seconds(), 1e-9))), cores(p.Receiver), cores(p.Others), p.Throttled.Round(1e6), group(p.Window),
			mib(uint64(p.PeakQueue)), mib(uint64(max(p.Stats.Traces.Limit, p.Stats.Logs.Limit))),
			p.Stats.LogsQueueFull, p.Stats.SpansQueueFull, p.Stats.LogsFailed, p.Stats.SpansFailed, p.EnrichStats.Hits, p.EnrichStats.Misses)
		note("user-space stages, ns / allocs / bytes per event and process CPU: decode %.0f / %.2f / %.0f (%s); + enrich %.0f / %.2f / %.0f (%s); path, discarding sink %.0f / %.2f / %.0f (%s); end to end %.0f / %.2f / %.0f (%s)",
			p.Decode.NsPerEvent(), p.Decode.AllocsPerEvent(), p.Decode.BytesPerEvent(), cores(p.Decode.Cores()),
			p.Enrich.NsPerEvent(), p.Enrich.AllocsPerEvent(), p.Enrich.BytesPerEvent(), cores(p.Enrich.Cores()),
			p.Path.NsPerEvent(), p.Path.AllocsPerEvent(), p.Path.BytesPerEvent(), cores(p.Path.Cores()),
			p.E2E.NsPerEvent(), p.E2E.AllocsPerEvent(), p.E2E.BytesPerEvent(), cores(p.E2E.Cores()))
		d, e := p.Delivered, p.Expected
		note("user space delivered/expected: client spans %s/%s, connect logs %s/%s, result logs %s/%s, server spans %s/%s, accept logs %s/%s",
			group(d.ClientSpans), group(e.ClientSpans), group(d.ConnectLogs), group(e.ConnectLogs), group(d.ResultLogs), group(e.ResultLogs),
			group(d.ServerSpans), group(e.ServerSpans), group(d.AcceptLogs), group(e.AcceptLogs))
	}
	if s := r.stdout; s.Err == nil {
		note("stdout run (no endpoint, OTel JSON lines to /dev/null): %s conns, agent CPU %s from /proc/PID/stat, records emitted %s, written %s (≈ 5 per connection, plus the scrapes' own), connwatch_dropped_total %s, lost samples %s",
			group(s.Load.Conns), cores(s.CPU), group(s.Drops.Emitted), group(s.Drops.Exported), s.Drops.cell(), group(s.Drops.Lost))
	}
	if l := r.loss; l.Drops.Scraped {
		note("loss run /metrics after the load: records emitted %s, exported %s, connwatch_dropped_total %s, lost samples %s",
			group(l.Drops.Emitted), group(l.Drops.Exported), l.Drops.cell(), group(l.Drops.Lost))
	} else if l.Load.Conns > 0 {
		note("loss run /metrics: %s", short(errOr(l.Drops.Err, errNoMeasure), 200))
	}
	note("the OTLP receiver is a separate process on the same 2 cores; logs: %s; bench took %s", o.dir, r.elapsed.Round(1e9))
}
