package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/enrich"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel"
)

// stageResult is one stage of the user-space pipeline run on one core.
type stageResult struct {
	Name    string
	Events  uint64
	Elapsed time.Duration
	Mallocs uint64
	Bytes   uint64
	CPU     time.Duration // process CPU time (user+system) over the stage
}

func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (s stageResult) NsPerEvent() float64 {
	return per(float64(s.Elapsed.Nanoseconds()), float64(s.Events))
}

func (s stageResult) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Events) / s.Elapsed.Seconds()
}

func (s stageResult) AllocsPerEvent() float64 { return per(float64(s.Mallocs), float64(s.Events)) }

func (s stageResult) BytesPerEvent() float64 { return per(float64(s.Bytes), float64(s.Events)) }

// pipelineResult is part 4: the stages and the end-to-end run.
type pipelineResult struct {
	Decode, Enrich, Emit stageResult // in-process, exporters discarding
	E2E                  stageResult // decode → enrich → Emit → OTLP export, flushed
	Expected             counts      // records the end-to-end run should deliver
	Delivered            counts      // what the receiver counted
	Stats                otel.Stats  // the pipeline's counters after Shutdown
	EnrichStats          enrich.Stats
	Throttled            time.Duration // time the producer waited for the exporters
}

// syntheticEvents builds n connections' worth of samples (attempt, result,
// accept) of this process, so that enrichment reads /proc once and then
// hits its cache.
func syntheticEvents(n int, serverPort uint16) [][]byte {
	comm, _ := os.ReadFile("/proc/self/comm")
	c := strings.TrimSpace(string(comm))
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	now := uint64(ts.Nano())
	out := make([][]byte, 0, 3*n)
	for i := range n {
		s := connectionSamples(uint32(os.Getpid()), uint32(os.Getppid()), uint32(os.Getuid()), c,
			now+uint64(i)*1000, uint16(40000+i), serverPort)
		out = append(out, s[0], s[1], s[2])
	}
	return out
}

// measure runs f for about d (whole passes over n events) and returns the
// time and allocations per event.
func measure(name string, n int, d time.Duration, f func(i int)) stageResult {
	for i := range n { // warm up: caches, intern tables, providers
		f(i)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	var events uint64
	for time.Since(start) < d {
		for i := range n {
			f(i)
		}
		events += uint64(n)
	}
	el := time.Since(start)
	runtime.ReadMemStats(&m1)
	return stageResult{Name: name, Events: events, Elapsed: el, Mallocs: m1.Mallocs - m0.Mallocs, Bytes: m1.TotalAlloc - m0.TotalAlloc}
}

type discardLogs struct{}

func (discardLogs) Export(context.Context, []sdklog.Record) error { return nil }
func (discardLogs) Shutdown(context.Context) error                { return nil }
func (discardLogs) ForceFlush(context.Context) error              { return nil }

// runPipeline measures the user-space path with GOMAXPROCS(1): each stage
// alone, then end to end with OTLP export to rcv (a separate process, so
// the one core is the pipeline's own).
func runPipeline(rcv *receiver, o options) (pipelineResult, error) {
	d, cpuProfile := o.pipeDur, o.cpuProfile
	traces, logs := o.signals != "logs", o.signals != "traces"
	var res pipelineResult
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)

	const conns = 1024
	const serverPort = 9 // discard: no real connection is made
	samples := syntheticEvents(conns, serverPort)
	n := len(samples)
	clock := event.NewClock()

	var dec event.Decoder
	var ev event.Event
	res.Decode = measure("decode", n, d/5, func(i int) {
		if err := dec.Decode(samples[i], &ev); err != nil {
			panic(err)
		}
	})

	enr, err := enrich.New(enrich.Options{})
	if err != nil {
		return res, fmt.Errorf("enrich: %w", err)
	}
	res.Enrich = measure("decode+enrich", n, d/5, func(i int) {
		dec.Decode(samples[i], &ev)
		clock.Stamp(&ev)
		enr.Enrich(&ev)
	})

	p, err := otel.NewWithExporters(tracetest.NewNoopExporter(), discardLogs{}, otel.Options{Traces: true, Logs: true})
	if err != nil {
		return res, fmt.Errorf("otel pipeline: %w", err)
	}
	res.Emit = measure("decode+enrich+emit (exporters discard)", n, d/5, func(i int) {
		dec.Decode(samples[i], &ev)
		clock.Stamp(&ev)
		enr.Enrich(&ev)
		p.Emit(&ev)
	})
	p.Shutdown(context.Background())

	// End to end: the agent's loop body, exporting over OTLP/gRPC.
	if err := rcv.watchPort(serverPort); err != nil {
		return res, err
	}
	base, err := rcv.counts()
	if err != nil {
		return res, err
	}
	ctx := context.Background()
	p, err = otel.New(ctx, otel.Options{Endpoint: rcv.endpoint(), Insecure: true, Traces: traces, Logs: logs,
		Getenv: func(string) string { return "" }})
	if err != nil {
		return res, fmt.Errorf("otel pipeline: %w", err)
	}
	// Producer flow control: stay below the queue size so that the
	// pipeline's admission control never refuses a record; the rate is
	// then what the exporters sustain, not what Emit can enqueue.
	const window = otel.DefaultMaxQueueSize - 1024
	inflight := func() uint64 {
		st := p.Stats()
		return max(st.LogsEmitted-st.LogsExported-st.LogsFailed, st.SpansEmitted-st.SpansExported-st.SpansFailed)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if o.memProfile != "" {
		runtime.MemProfileRate = 4096
		defer func() {
			runtime.MemProfileRate = 512 * 1024
			if f, err := os.Create(o.memProfile); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	cpu0 := processCPU()
	start := time.Now()
	var events uint64
	for time.Since(start) < d {
		for i := range n {
			if i%64 == 0 {
				if inflight() > window {
					t := time.Now()
					for inflight() > window {
						time.Sleep(50 * time.Microsecond)
					}
					res.Throttled += time.Since(t)
				}
			}
			dec.Decode(samples[i], &ev)
			clock.Stamp(&ev)
			enr.Enrich(&ev)
			p.Emit(&ev)
		}
		events += uint64(n)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		return res, fmt.Errorf("flushing the OTLP export: %w", err)
	}
	el := time.Since(start)
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&m1)
	res.E2E = stageResult{Name: "end to end (OTLP export, flushed)", Events: events, Elapsed: el,
		Mallocs: m1.Mallocs - m0.Mallocs, Bytes: m1.TotalAlloc - m0.TotalAlloc, CPU: cpu}
	res.Stats = p.Stats()
	res.EnrichStats = enr.Stats()
	conn := events / 3
	if traces {
		res.Expected.ClientSpans, res.Expected.ServerSpans = conn, conn
	}
	if logs {
		res.Expected.ConnectLogs, res.Expected.ResultLogs, res.Expected.AcceptLogs = conn, conn, conn
	}
	got, err := rcv.settle(res.Expected.records(), base, 2*time.Second, 10*time.Second)
	if err != nil {
		return res, err
	}
	res.Delivered = got.sub(base)
	return res, nil
}
