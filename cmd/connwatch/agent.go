package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	gotel "go.opentelemetry.io/otel"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/check"
	"github.com/connwatch/connwatch/config"
	"github.com/connwatch/connwatch/enrich"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/pipeline"
)

const (
	// wakeupEvents is how many samples the kernel batches before waking
	// the perf reader (the probe collects a partial batch every 10 ms).
	wakeupEvents = 64
	// readerQueueSize bounds the samples between the perf reader and
	// processing (~256 bytes each).
	readerQueueSize = 16384
)

// agent loads the probes and prints one JSON line per event until SIGINT or
// SIGTERM.
func agent(o runOptions, stdout io.Writer, log *slog.Logger) error {
	cfg, err := loadConfig(o.configPath, o.attach, log)
	if err != nil {
		return err
	}
	limitMemory(cfg, log)
	if path := os.Getenv("CONNWATCH_CPUPROFILE"); path != "" {
		// For profiling the agent under a real load (make bench, perf
		// work); not a user-facing setting.
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("CONNWATCH_CPUPROFILE: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("CONNWATCH_CPUPROFILE: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	mode, err := bpf.ParseMode(string(cfg.Probe.Attach))
	if err != nil {
		return err
	}

	enr, err := enrich.New(enrichOptions(cfg, log))
	if err != nil {
		return err // "enrich: ..." says what
	}
	defer enr.Close()

	// Waking the reader for every sample costs the connecting task ~10 µs
	// of BPF time per event; batching wakeups (perf) or not waking at all
	// (ring buffer) costs less, and the probe collects what the kernel
	// did not wake it for every 10 ms.
	var self uint32
	if !cfg.Probe.IncludeAgent {
		self = uint32(os.Getpid())
	}
	probe, err := bpf.Open(bpf.Options{Mode: mode, Monitor: cfg.Monitor, Transport: cfg.Probe.Transport,
		WakeupEvents: wakeupEvents, AgentTGID: self, MaxConnections: uint32(cfg.Probe.MaxConnections),
		Filters: cfg.Filters.BPF()})
	if err != nil {
		return explainLoadError(err)
	}
	defer probe.Close()

	for _, s := range probe.Skipped() {
		log.Info("attach mode not supported here, trying the next", "mode", s.Mode, "reason", s.Reason())
		log.Debug("attach mode not supported: the whole error", "mode", s.Mode, "err", s.Err)
	}
	for _, w := range probe.Warnings() {
		log.Warn("optional probe not attached", "reason", w)
	}
	for _, f := range probe.Fallbacks() {
		log.Info("accepts come from the syscall tracepoints: the mode's accept program does not load here", "reason", f)
	}
	stateProg, whyNotBTF := probe.StateChanges()
	log.Info("probes attached", "mode", probe.Mode(), "transport", probe.Transport(), "state_changes", stateProg)
	if whyNotBTF != nil {
		log.Debug("BTF-typed tracepoint not usable; raw tracepoint attached", "err", whyNotBTF)
	}
	if f := cfg.Filters.BPF(); !f.Empty() {
		log.Info("kernel filters", "filters", f.String())
	}

	// The OpenTelemetry libraries report some errors through a global
	// handler that writes Go's default log format; the agent's log it is.
	gotel.SetErrorHandler(gotel.ErrorHandlerFunc(func(err error) {
		log.Warn("OpenTelemetry library error", "err", err)
	}))
	out, err := newOutput(o.format, string(probe.Mode()), cfg, stdout, log)
	if err != nil {
		return err
	}
	if out.view != nil {
		// Whatever ends the agent, the terminal is given back (Stop is
		// idempotent: out.close has usually done it).
		defer out.view.Stop()
	}
	queue := make(chan *[]byte, readerQueueSize)
	c := newCounters(string(probe.Mode()), runtime.NumCPU(), func() int { return len(queue) })
	path := newPath(c, enr, out)
	c.samplesDecoded = func() uint64 { return path.Stats().Decoded }

	vis := newVisibility(probe, enr, c, log)
	if err := vis.start(cfg); err != nil {
		return err
	}
	tel, err := startTelemetry(cfg.Telemetry.Listen, c, probe, enr, out, log)
	if err != nil {
		return err
	}

	stopControl := make(chan struct{})
	controlDone := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		defer close(controlDone)
		control(o, cfg, vis, probe, sigs, stopControl, log)
	}()
	if out.view != nil {
		// Quitting connwatch top stops the agent as SIGTERM does.
		go func() {
			<-out.view.Done()
			select {
			case sigs <- syscall.SIGTERM:
			default: // already stopping
			}
		}()
	}

	// The processing stage: decode, enrich, export. It runs apart from the
	// perf reader so that a slow /proc read or a full export queue never
	// stalls the reader into kernel-side loss.
	processed := make(chan struct{})
	go func() { defer close(processed); process(path, queue, c, log) }()

	readErr := readSamples(probe, queue, c, log)
	close(queue)
	<-processed
	close(stopControl)
	<-controlDone

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Export.FlushTimeout)
	defer cancel()
	if err := out.close(ctx); err != nil {
		log.Error("flushing exports at shutdown", "err", err)
	}
	tel.close(ctx)
	logExitCounters(c, probe, enr, out, log)
	var werr error
	if es, ok := out.sink.(*pipeline.LineSink); ok {
		werr = es.Err()
	}
	return errors.Join(readErr, werr)
}

// memoryHeadroom is what the agent needs beside its export queue.
const memoryHeadroom = 40 << 20

// limitMemory sets the Go runtime's soft memory limit to the export
// queue's bound plus headroom, unless GOMEMLIMIT says otherwise: with the
// default GOGC the heap may grow to twice what is live, and a full queue
// is most of what is live, so without a limit an outage would double the
// queue's cost in RSS.
func limitMemory(cfg *config.Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := int64(cfg.Export.Queue.MemoryMiB)<<20 + memoryHeadroom
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "bytes", limit)
}

// logExitCounters logs what the agent read, delivered and dropped, since
// /metrics goes away with it.
func logExitCounters(c *counters, probe *bpf.Probe, enr *enrich.Enricher, out *output, log *slog.Logger) {
	args := []any{"samples_read", c.samplesRead.Load(), "samples_decoded", c.samplesDecoded(), "events_processed", c.processed.Load(),
		"dropped_reader_queue_full", c.readerDrops.Load(), "dropped_malformed", c.decodeDrops.Load()}
	var lost uint64
	for i := range c.lostSamples {
		lost += c.lostSamples[i].Load()
	}
	args = append(args, "lost_samples", lost)
	if out.pipeline != nil {
		st := out.pipeline.Stats()
		args = append(args, "spans_exported", st.SpansExported, "spans_failed", st.SpansFailed, "spans_dropped_queue_full", st.SpansQueueFull,
			"logs_exported", st.LogsExported, "logs_failed", st.LogsFailed, "logs_dropped_queue_full", st.LogsQueueFull)
	}
	if ks, err := probe.KernelStats(); err == nil {
		args = append(args, "attempts_tracked", ks.AttemptsTracked, "results", ks.Results, "results_untracked", ks.ResultsUntracked,
			"accepts", ks.Accepts, "dropped_by_visibility", ks.DroppedVisibility, "dropped_by_monitor", ks.DroppedMonitor, "dropped_by_filter", ks.DroppedFilter, "dropped_agent_own", ks.DroppedAgent, "event_write_errors", ks.PerfErrors,
			"connections_tracked", ks.ConnsTracked, "connections_closed", ks.ConnsClosed, "connections_forgotten", ks.ConnsForgotten)
	}
	es := enr.Stats()
	args = append(args, "enrich_hits", es.Hits, "enrich_misses", es.Misses, "enrich_process_gone", es.ProcGone,
		"enrich_ns_fallbacks", es.NSFallbacks, "enrich_nothing_learnt", es.NothingLearnt)
	log.Info("counters at exit", args...)
}

// samplePool recycles the copies of perf samples handed to processing.
var samplePool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// readSamples drains the perf or ring buffer into queue until the probe is closed.
// It never blocks on a full queue: the sample is dropped and counted.
func readSamples(probe *bpf.Probe, queue chan<- *[]byte, c *counters, log *slog.Logger) error {
	var (
		rec      bpf.Record
		lastWarn time.Time
		unwarned uint64 // lost samples not logged yet
	)
	for {
		err := probe.Read(&rec)
		if errors.Is(err, bpf.ErrClosed) {
			if unwarned > 0 {
				log.Warn("kernel lost samples: perf buffer full", "lost", unwarned)
			}
			return nil
		}
		if errors.Is(err, bpf.ErrFlushed) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading events: %w", err)
		}
		if rec.LostSamples > 0 {
			c.lost(rec.CPU, rec.LostSamples)
			// At most one line a second; /metrics has the per-CPU counts.
			unwarned += rec.LostSamples
			if time.Since(lastWarn) >= time.Second {
				log.Warn("kernel lost samples: perf buffer full", "lost", unwarned)
				unwarned, lastWarn = 0, time.Now()
			}
			continue
		}
		c.samplesRead.Add(1)
		bp := samplePool.Get().(*[]byte)
		*bp = append((*bp)[:0], rec.RawSample...)
		select {
		case queue <- bp:
		default:
			c.readerDrops.Add(1)
			samplePool.Put(bp)
		}
	}
}

// newPath returns the event path of the agent: decode, clock, enrich,
// then the output, counting as it goes.
func newPath(c *counters, enr *enrich.Enricher, out *output) *pipeline.Path {
	return pipeline.New(pipeline.Options{
		Sink:     out.sink,
		Enricher: enr,
		Observe: func(ev *event.Event) {
			c.countEvent(ev.EventID)
			c.processed.Add(1)
		},
	})
}

// process runs queued samples through path until queue is closed and
// drained.
func process(path *pipeline.Path, queue <-chan *[]byte, c *counters, log *slog.Logger) {
	path.Run(queue, func(bp *[]byte) { samplePool.Put(bp) }, func(n int, err error) {
		c.decodeDrops.Add(1)
		log.Warn("bad sample", "bytes", n, "err", err)
	})
}

// explainLoadError turns the common reasons a load fails into what the user
// should do about them. A permission error names the capabilities this
// process lacks (check.NeedsToLoad): without CAP_BPF the first thing to
// fail is often raising RLIMIT_MEMLOCK, which is why the error itself is no
// guide.
func explainLoadError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, os.ErrPermission):
		var uts unix.Utsname
		var release string
		if unix.Uname(&uts) == nil {
			release = unix.ByteSliceToString(uts.Release[:])
		}
		eff, capErr := check.EffectiveCaps()
		if capErr != nil {
			return fmt.Errorf("loading the BPF probes needs root (or CAP_BPF and CAP_PERFMON): %w", err)
		}
		n := check.NeedsToLoad(eff, release)
		if len(n.Missing) == 0 {
			return fmt.Errorf("loading the BPF probes was refused although this process has %s (lockdown or an LSM may forbid it): %w",
				strings.Join(n.Need, " and "), err)
		}
		return fmt.Errorf("loading the BPF probes needs root (or %s); this process lacks %s: %w",
			strings.Join(n.Need, " and "), strings.Join(n.Missing, " and "), err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("this kernel supports none of connwatch's attach modes (it needs BPF and the sock/inet_sock_set_state tracepoint, Linux 5.8+): %w", err)
	}
	return err
}

// criSockets are the usual paths of a CRI runtime's socket, tried in order
// for enrich.cri_socket: auto.
var criSockets = []string{"/run/containerd/containerd.sock", "/run/crio/crio.sock", "/var/run/containerd/containerd.sock", "/var/run/crio/crio.sock"}

func enrichOptions(cfg *config.Config, log *slog.Logger) enrich.Options {
	e := cfg.Enrich
	o := enrich.Options{
		ProcRoot: e.ProcRoot, PasswdPath: e.Passwd, NoOwners: e.Passwd == "",
		DockerRoot: e.DockerRoot, ContainerdState: e.ContainerdState, DockerSocket: e.DockerSocket, CRISocket: e.CRISocket,
		Logger: log.With("stage", "enrich"),
	}
	if o.CRISocket == config.CRISocketAuto {
		o.CRISocket = ""
		for _, p := range criSockets {
			if fi, err := os.Stat(p); err == nil && fi.Mode().Type() == os.ModeSocket {
				o.CRISocket = p
				break
			}
		}
	}
	log.Debug("container metadata sources", "docker_root", o.DockerRoot, "containerd_state", o.ContainerdState,
		"docker_socket", o.DockerSocket, "cri_socket", o.CRISocket)
	return o
}
