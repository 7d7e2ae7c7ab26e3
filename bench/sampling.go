package main

// Part 2b: the connection rate with the agent exporting OTLP at
// export.sampling.ratio 0.01 against the same agent with OTLP off, runs
// interleaved (off, on, off, on, ...) so that drift of the machine falls
// on both sides alike.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const (
	samplingRatio   = 0.01
	samplingPairs   = 3
	samplingTarget  = 0.95 // of the rate with OTLP off
	samplingRateDur = 6 * time.Second
)

type samplingResult struct {
	Off, On  []rateRun
	Got      counts // what the receiver got in the sampled runs (watched port, metric requests)
	Conns    uint64 // connections made in the sampled runs
	Err      error
	OnConfig string
}

func meanRate(runs []rateRun) (mean float64, lo, hi float64) {
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

func meanCPU(runs []rateRun) float64 {
	var s float64
	for _, r := range runs {
		s += r.CPU
	}
	return s / max(float64(len(runs)), 1)
}

// samplingConfig writes a config file: the bench's telemetry setting and
// the given export section.
func samplingConfig(o options, name, export string) (string, error) {
	path := filepath.Join(o.dir, name)
	telemetry := "telemetry:\n  listen: \"127.0.0.1:0\"\n"
	if o.agentConfig == "" {
		telemetry = ""
	}
	return path, os.WriteFile(path, []byte(telemetry+export), 0o644)
}

func samplingRuns(srv *server, rcv *receiver, o options) (r samplingResult) {
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
	r.OnConfig = on
	oOff, oOn := o, o
	oOff.agentConfig, oOn.agentConfig, oOn.sampledAgent = off, on, true
	oOff.rateDur, oOn.rateDur = min(o.rateDur, samplingRateDur), min(o.rateDur, samplingRateDur)
	for i := range samplingPairs {
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
	name := fmt.Sprintf("connections/s, agent exporting OTLP with export.sampling.ratio %g vs the same agent with OTLP off (interleaved %d+%d runs)",
		samplingRatio, samplingPairs, samplingPairs)
	if s.Err != nil {
		if !errors.Is(s.Err, errSkipped) {
			t.add("2", name, "error: "+short(s.Err, 60), "", "", target, "error")
		}
		tg.add("connection rate, OTLP at sampling 0.01 vs OTLP off", "not measured: "+short(errOr(s.Err, errNoMeasure), 40), target, "—")
		return
	}
	on, onLo, onHi := meanRate(s.On)
	off, offLo, offHi := meanRate(s.Off)
	ratio := on / max(off, 1e-9)
	met := ratio >= samplingTarget
	t.add("2", name,
		fmt.Sprintf("%s = %.1f %% of OTLP off (runs %s–%s), agent %s", rate(on), 100*ratio, rate(onLo), rate(onHi), cores(meanCPU(s.On))),
		fmt.Sprintf("OTLP off: %s (runs %s–%s), agent %s", rate(off), rate(offLo), rate(offHi), cores(meanCPU(s.Off))), "", target, verdict(met))
	share := 0.0
	if s.Conns > 0 {
		share = 100 * float64(s.Got.ClientSpans) / float64(s.Conns)
	}
	t.add("2", "records the receiver got in the sampled runs",
		fmt.Sprintf("%s client spans of %s connections (%.2f %%), %s log records, %s metric requests",
			group(s.Got.ClientSpans), group(s.Conns), share, group(s.Got.ConnectLogs+s.Got.ResultLogs+s.Got.AcceptLogs+s.Got.CloseLogs), group(s.Got.MetricReqs)),
		"", "", "", "")
	tg.add("connection rate, OTLP at sampling 0.01 vs OTLP off", fmt.Sprintf("%.1f %% (%s of %s)", 100*ratio, rate(on), rate(off)), target, verdict(met))
}
