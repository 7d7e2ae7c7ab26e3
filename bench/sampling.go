package main

// Part 2b: the connection rate with the agent exporting OTLP at
// export.sampling.ratio 0.01 against the same agent with OTLP off, runs
// interleaved (off, on, off, on, ...) so that drift of the machine falls
// on both sides alike: the baseline moves by ±4 % between runs minutes
// apart, as much as the 5 % the target allows.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	samplingRatio  = 0.01
	samplingPairs  = 3
	samplingTarget = 0.95 // of the rate with OTLP off
	// samplingRateDur bounds each run (o.rateDur is 10 s) so that the six
	// runs add about 45 s to `make bench`.
	samplingRateDur = 5 * time.Second
)

type samplingResult struct {
	Off, On []rateRun
	Got     counts // what the receiver got in the sampled runs (watched port; metrics of any)
	Conns   uint64 // connections the load generator made in the sampled runs
	Err     error
}

// rateStats returns the mean, lowest and highest connection rate of runs.
func rateStats(runs []rateRun) (mean, lo, hi float64) {
	for i, r := range runs {
		v := r.Load.Rate()
		mean += v
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
	}
	if len(runs) > 0 {
		mean /= float64(len(runs))
	}
	return mean, lo, hi
}

// runsCell lists the rates of runs in their order and the mean CPU of the
// agent in them.
func runsCell(runs []rateRun) string {
	var rs []string
	var cpu float64
	for _, r := range runs {
		rs = append(rs, rate(r.Load.Rate()))
		cpu += r.CPU
	}
	return fmt.Sprintf("runs: %s; agent %s", strings.Join(rs, ", "), cores(cpu/max(float64(len(runs)), 1)))
}

// samplingConfig writes a config file, the bench's telemetry setting and
// the given export section, and has the agent validate it: an agent
// without export.sampling says so here rather than in a failed run.
func samplingConfig(o options, name, export string) (string, error) {
	path := filepath.Join(o.dir, name)
	telemetry := "telemetry:\n  listen: \"127.0.0.1:0\"\n"
	if o.agentConfig == "" {
		telemetry = "" // this agent does not take the bench's usual config either
	}
	if err := os.WriteFile(path, []byte(telemetry+export), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command(o.agent, "config", "validate", "-c", path).CombinedOutput(); err != nil {
		return "", fmt.Errorf("the agent does not accept %s: %s", path, strings.TrimSpace(string(out)))
	}
	return path, nil
}

func samplingRuns(srv *server, rcv *receiver, o options) (r samplingResult) {
	// Off: no endpoint and neither spans nor log records, so nothing is
	// printed or sent; the agent still reads, decodes, enriches and counts
	// its metrics.
	off, err := samplingConfig(o, "agent-otlp-off.yaml", "export:\n  traces: false\n  logs: false\n")
	if err != nil {
		r.Err = err
		return
	}
	on, err := samplingConfig(o, "agent-sampled.yaml", fmt.Sprintf("export:\n  sampling:\n    ratio: %g\n", samplingRatio))
	if err != nil {
		r.Err = err
		return
	}
	oOff, oOn := o, o
	oOff.agentConfig, oOn.agentConfig, oOn.sampledAgent = off, on, true
	oOff.rateDur, oOn.rateDur = min(o.rateDur, samplingRateDur), min(o.rateDur, samplingRateDur)
	for i := range samplingPairs {
		oOff.agentLog, oOn.agentLog = fmt.Sprintf("agent-otlp-off-%d", i+1), fmt.Sprintf("agent-sampled-%d", i+1)
		progress("2b/5 connection rate, agent with OTLP off (%d/%d, %s)", i+1, samplingPairs, oOff.rateDur)
		run, _ := agentRateRun(srv, nil, outStdout, oOff)
		if run.Err != nil {
			r.Err = fmt.Errorf("OTLP off: %w", run.Err)
			return
		}
		r.Off = append(r.Off, run)
		progress("2b/5 connection rate, agent exporting OTLP at sampling ratio %g (%d/%d, %s)", samplingRatio, i+1, samplingPairs, oOn.rateDur)
		before, err := rcv.counts()
		if err != nil {
			r.Err = err
			return
		}
		// The agent has exited (flushed) when this returns: what it sent
		// has arrived.
		run, _ = agentRateRun(srv, rcv, outOTLP, oOn)
		if run.Err != nil {
			r.Err = fmt.Errorf("OTLP sampled: %w", run.Err)
			return
		}
		after, err := rcv.counts()
		if err != nil {
			r.Err = err
			return
		}
		r.On = append(r.On, run)
		r.Got = r.Got.add(after.sub(before))
		r.Conns += run.Load.Conns
	}
	return
}

// samplingRows adds the part's rows to the table and the targets.
func samplingRows(t, tg *table, s samplingResult) {
	const target = "≥ 95 % of OTLP off"
	name := fmt.Sprintf("connections/s, agent exporting OTLP with export.sampling.ratio %g vs OTLP off (interleaved %d+%d)",
		samplingRatio, samplingPairs, samplingPairs)
	goal := fmt.Sprintf("connection rate, OTLP with sampling %g vs OTLP off", samplingRatio)
	if s.Err == nil && (len(s.On) == 0 || len(s.Off) == 0) {
		s.Err = errNoMeasure
	}
	if s.Err != nil {
		if !errors.Is(s.Err, errSkipped) {
			t.add("2", name, "error: "+short(s.Err, 60), "", "", target, "error")
		}
		tg.add(goal, "not measured: "+short(s.Err, 40), target, "—")
		return
	}
	on, _, _ := rateStats(s.On)
	off, _, _ := rateStats(s.Off)
	ratio := on / max(off, 1e-9)
	met := ratio >= samplingTarget
	t.add("2", name,
		fmt.Sprintf("%s = %.1f %% of OTLP off (%s)", rate(on), 100*ratio, runsCell(s.On)),
		fmt.Sprintf("OTLP off: %s (%s)", rate(off), runsCell(s.Off)), "", target, verdict(met))
	share := 0.0
	if s.Conns > 0 {
		share = 100 * float64(s.Got.ClientSpans) / float64(s.Conns)
	}
	g := s.Got
	t.add("2", "what the receiver got in the sampled runs (the warm-ups' few spans included)",
		fmt.Sprintf("%s client spans of %s connections (%.2f %%), %s server spans, %s log records; metrics: %s requests, %s data points",
			group(g.ClientSpans), group(s.Conns), share, group(g.ServerSpans), group(g.ConnectLogs+g.ResultLogs+g.AcceptLogs+g.CloseLogs),
			group(g.MetricReqs), group(g.MetricPoints)),
		"", "", fmt.Sprintf("≈ %g %% of connections", 100*samplingRatio), "")
	tg.add(goal, fmt.Sprintf("%.1f %% (%s of %s)", 100*ratio, rate(on), rate(off)), target, verdict(met))
}
