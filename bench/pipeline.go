package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/enrich"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/metrics"
	"github.com/connwatch/connwatch/otel"
	"github.com/connwatch/connwatch/pipeline"
)

// stageResult is one stage of the user-space event path run on one core.
type stageResult struct {
	Name    string
	Samples uint64 // kernel samples handled
	Events  uint64 // events they carried (handed to the sink)
	Elapsed time.Duration
	Mallocs uint64
	Bytes   uint64
	CPU     time.Duration // process CPU time (user+system, all threads) over the stage
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

// Cores is the process's CPU over the stage divided by its wall time.
func (s stageResult) Cores() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return s.CPU.Seconds() / s.Elapsed.Seconds()
}

// pipelineResult is part 4: the stages and the end-to-end run.
type pipelineResult struct {
	Decode      stageResult // event.Decoder.DecodeSample
	Enrich      stageResult // + clock + enrich.Enricher (warm)
	Path        stageResult // pipeline.Path (decode, clock, enrich, observe) into a sink that discards
	E2E         stageResult // pipeline.Path into otel.Exporter → OTLP/gRPC → receiver, flushed
	Expected    counts      // records the end-to-end run should deliver
	Delivered   counts      // what the receiver counted
	Stats       otel.Stats  // the exporter's counters after Shutdown
	PathStats   pipeline.Stats
	EnrichStats enrich.Stats
	Throttled   time.Duration // time the producer waited for the exporter (flow control)
	Window      uint64        // records per signal the producer lets be in flight
	PeakQueue   int64         // highest queued bytes seen (both signals), against Stats.*.Limit
	Receiver    float64       // the receiver process's CPU over the end-to-end run, cores
	Others      float64       // CPU of processes other than the bench's over that run, cores
}

// syntheticSamples builds n connections' worth of tracepoint-mode samples
// (attempt+result, accept) of this process, so that enrichment reads
// /proc once and then hits its cache.
func syntheticSamples(n int, serverPort uint16) [][]byte {
	comm, _ := os.ReadFile("/proc/self/comm")
	c := strings.TrimSpace(string(comm))
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	now := uint64(ts.Nano())
	out := make([][]byte, 0, 2*n)
	for i := range n {
		s := connectionSamples(uint32(os.Getpid()), uint32(os.Getppid()), uint32(os.Getuid()), c,
			now+uint64(i)*1000, uint16(40000+i), serverPort)
		out = append(out, s[0], s[1])
	}
	return out
}

// measure runs f over samples for about d (whole passes) after one pass
// of warm-up; f returns the events a sample carried, or, when count is
// set, count reports the events handled so far.
func measure(name string, samples [][]byte, d time.Duration, count func() uint64, f func(b []byte) int) stageResult {
	for _, b := range samples { // warm up: caches, intern tables, resources
		f(b)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	var c0 uint64
	if count != nil {
		c0 = count()
	}
	cpu0 := processCPU()
	start := time.Now()
	var nsamples, events uint64
	for time.Since(start) < d {
		for _, b := range samples {
			events += uint64(f(b))
		}
		nsamples += uint64(len(samples))
	}
	el := time.Since(start)
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&m1)
	if count != nil {
		events = count() - c0
	}
	return stageResult{Name: name, Samples: nsamples, Events: events, Elapsed: el,
		Mallocs: m1.Mallocs - m0.Mallocs, Bytes: m1.TotalAlloc - m0.TotalAlloc, CPU: cpu}
}

// discardSink is a pipeline.Sink that drops everything: the path's own
// cost without an output.
type discardSink struct{}

func (discardSink) Emit(*event.Event)              {}
func (discardSink) Flush(context.Context) error    { return nil }
func (discardSink) Shutdown(context.Context) error { return nil }

// observer counts events by ID with atomics, as the agent's Observe does
// for its /metrics (cmd/connwatch newPath), so that the path measured is
// the agent's.
type observer struct {
	byID      [8]atomic.Uint64
	processed atomic.Uint64
}

func (o *observer) observe(ev *event.Event) {
	o.byID[ev.EventID%uint32(len(o.byID))].Add(1)
	o.processed.Add(1)
}

// flowWindow bounds the records of each signal emitted and neither
// exported nor failed yet (open batch included): 64 full batches, a few
// MiB, far below the exporter's queue bound, so that the queue never
// refuses a batch and the rate measured is what the export sustains,
// not what Emit can enqueue.
const flowWindow = 64 * otel.DefaultMaxExportBatchSize

// runPipeline measures the agent's event path with GOMAXPROCS(1): decode
// alone, decode+enrich, the path into a discarding sink, then the path
// end to end into a real otel.Exporter sending OTLP/gRPC to rcv (a
// separate process, so the one core is the path's own).
func runPipeline(rcv *receiver, o options) (pipelineResult, error) {
	d, cpuProfile := o.pipeDur, o.cpuProfile
	traces, logs := o.signals != "logs", o.signals != "traces"
	var res pipelineResult
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)

	const conns = 1024
	const serverPort = 9 // discard: no real connection is made
	samples := syntheticSamples(conns, serverPort)
	clock := event.NewClock()

	var dec event.Decoder
	var evs [2]event.Event
	res.Decode = measure("decode", samples, d/5, nil, func(b []byte) int {
		n, err := dec.DecodeSample(b, &evs)
		if err != nil {
			panic(err)
		}
		return n
	})

	enr, err := enrich.New(enrich.Options{})
	if err != nil {
		return res, fmt.Errorf("enrich: %w", err)
	}
	res.Enrich = measure("decode+enrich", samples, d/5, nil, func(b []byte) int {
		n, _ := dec.DecodeSample(b, &evs)
		for i := range n {
			clock.Stamp(&evs[i])
		}
		enr.Enrich(&evs[0])
		evs[1].Workload = evs[0].Workload
		return n
	})

	var obs observer
	dpath := pipeline.New(pipeline.Options{Sink: discardSink{}, Enricher: enr, Clock: clock, Observe: obs.observe})
	res.Path = measure("path, discarding sink", samples, d/5, func() uint64 { return dpath.Stats().Events }, func(b []byte) int {
		if err := dpath.Handle(b); err != nil {
			panic(err)
		}
		return 0
	})

	// End to end: the agent's path and exporter, over OTLP/gRPC.
	if err := rcv.watchPort(serverPort); err != nil {
		return res, err
	}
	base, err := rcv.counts()
	if err != nil {
		return res, err
	}
	ctx := context.Background()
	// The connection metrics are counted as in the agent (they are not
	// sent: the run is shorter than an interval).
	exp, err := otel.New(ctx, otel.Options{Endpoint: rcv.endpoint(), Insecure: true, Traces: traces, Logs: logs,
		QueueBytes: otel.DefaultQueueBytes, Getenv: func(string) string { return "" },
		Metrics: metrics.New(metrics.Options{})})
	if err != nil {
		return res, fmt.Errorf("otel exporter: %w", err)
	}
	path := pipeline.New(pipeline.Options{Sink: exp, Enricher: enr, Clock: clock, Observe: obs.observe})

	// Producer flow control: keep emitted − exported − failed of each
	// signal within flowWindow.
	res.Window = flowWindow
	inflight := func() uint64 {
		st := exp.Stats()
		res.PeakQueue = max(res.PeakQueue, st.Traces.Bytes+st.Logs.Bytes)
		return max(st.LogsEmitted-st.LogsExported-st.LogsFailed, st.SpansEmitted-st.SpansExported-st.SpansFailed)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
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
	ps0 := path.Stats()
	rcpu := startCPU(rcv.pid())
	others := startOthers()
	cpu0 := processCPU()
	start := time.Now()
	var nsamples uint64
	for time.Since(start) < d {
		for i, b := range samples {
			if i%64 == 0 && inflight() > flowWindow {
				t := time.Now()
				for inflight() > flowWindow {
					time.Sleep(50 * time.Microsecond)
				}
				res.Throttled += time.Since(t)
			}
			if err := path.Handle(b); err != nil {
				exp.Shutdown(ctx)
				return res, fmt.Errorf("event path: %w", err)
			}
		}
		nsamples += uint64(len(samples))
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := exp.Shutdown(sctx); err != nil {
		return res, fmt.Errorf("flushing the OTLP export: %w", err)
	}
	el := time.Since(start)
	cpu := processCPU() - cpu0
	res.Receiver = rcpu.cores()
	res.Others = others.stop()
	runtime.ReadMemStats(&m1)
	res.PathStats = path.Stats()
	events := res.PathStats.Events - ps0.Events
	res.E2E = stageResult{Name: "end to end (OTLP export, flushed)", Samples: nsamples, Events: events, Elapsed: el,
		Mallocs: m1.Mallocs - m0.Mallocs, Bytes: m1.TotalAlloc - m0.TotalAlloc, CPU: cpu}
	res.Stats = exp.Stats()
	res.EnrichStats = enr.Stats()
	conn := nsamples / 2
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
