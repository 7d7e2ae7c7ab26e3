package otel

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/internal/lru"
	"github.com/connwatch/connwatch/metrics"
	"github.com/connwatch/connwatch/pipeline"
)

// Exporter turns events into OTLP spans and log records and exports them:
// the OpenTelemetry sink of the event path (pipeline.Sink).
//
// # Export path
//
// Records are encoded straight into OTLP protobuf (no SDK span or record
// per event): each workload's resource is encoded once and kept while the
// workload is; an event's span and log record are appended to the open
// batch of their signal, and grouped by workload when the batch closes:
// at MaxExportBatchSize records or BatchTimeout after it opened. A closed
// batch waits, encoded, in a queue bounded in bytes (QueueBytes, shared by
// both signals; optionally also on disk, QueueDir) for the signal's
// sender, which takes batches in order, up to MaxInFlight requests at
// once, and retries a failed request with exponential backoff for as long
// as it is retryable (see Retry).
// A batch that does not fit in the queue is dropped and its records
// counted (Stats.*QueueFull). A signal without an endpoint is written to
// Stdout as JSON lines instead, a log record before its span.
//
// # Concurrency
//
// Emit is meant to be called from the single goroutine that runs the
// event path; it is nevertheless safe for concurrent use (calls are
// serialised by a mutex). Emit never waits for the network. Stats, Flush
// and Shutdown may be called from any goroutine at any time. Events
// passed to Emit after Shutdown has begun are counted in Stats.Dropped
// and otherwise ignored.
//
// # Resources
//
// Every record carries the resource of the workload behind its event
// (see ServiceName and the package documentation). The MaxProviders most
// recently seen resources are kept encoded; an evicted one is encoded
// again if its workload shows up again.
type Exporter struct {
	traces, logs *signal // nil: signal disabled

	base            []attribute.KeyValue // host and OTEL_RESOURCE_ATTRIBUTES
	omitArgs        bool
	shutdownTimeout time.Duration
	batchTimeout    time.Duration
	now             func() time.Time
	log             *slog.Logger
	budget          *budget
	queueDir        *queueDir // nil: the queue is in memory only

	mu        sync.Mutex
	workloads *workloads
	enc       encoder
	jenc      jsonEncoder
	stdout    *lineOut // shared by the signals written as JSON lines
	rng       *rand.ChaCha8
	ids       *connIDs
	resAttr   []attribute.KeyValue
	wantPB    bool // a signal goes over OTLP: keep resources encoded
	wantJS    bool // a signal goes to stdout: keep resources as JSON

	store   *metrics.Store // nil: no metrics
	metExp  *metricsExport // nil: metrics are not sent over OTLP
	sampler                // export.sampling

	closed       atomic.Bool
	stopFlusher  chan struct{}
	flusherDone  chan struct{}
	shutdownOnce sync.Once
	shutdownErr  error

	events, ignored, dropped           atomic.Uint64
	resourcesLive                      atomic.Int64
	resourcesCreated, resourcesEvicted atomic.Uint64
	lastExportOK, failingSince         atomic.Int64 // Unix ns; 0: none
	exportErrorsLogged                 atomic.Int64 // Unix ns of the last failure line
}

// New returns an Exporter exporting as opts say: each enabled signal goes
// over OTLP/gRPC when an endpoint applies to it (see Options) and to
// opts.Stdout as JSON lines otherwise. No connection is made here; the
// gRPC clients connect lazily and reconnect on their own.
//
// New fails on invalid options (endpoint, compression, unreadable
// certificate files) and on an invalid OTEL_RESOURCE_ATTRIBUTES.
func New(ctx context.Context, opts Options) (*Exporter, error) {
	var tt, lt transport
	var err error
	if opts.Traces {
		if t := opts.tracesTarget(); t.otlp() {
			if tt, err = newTracesTransport(ctx, &opts, t); err != nil {
				return nil, fmt.Errorf("traces: %w", err)
			}
		}
	}
	if opts.Logs {
		if t := opts.logsTarget(); t.otlp() {
			if lt, err = newLogsTransport(&opts, t); err != nil {
				if tt != nil {
					_ = tt.shutdown(ctx)
				}
				return nil, fmt.Errorf("logs: %w", err)
			}
		}
	}
	closeAll := func() {
		for _, t := range []transport{tt, lt} {
			if t != nil {
				_ = t.shutdown(ctx)
			}
		}
	}
	var me *metricsExport
	if opts.Metrics != nil && opts.SendMetrics && opts.metricsTarget().otlp() {
		if me, err = newMetricsExport(ctx, &opts, cmp.Or(opts.Logger, discardLogger)); err != nil {
			closeAll()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	e, err := newExporter(opts, tt, lt)
	if err != nil {
		closeAll()
		if me != nil {
			_ = me.client.shutdown(ctx)
		}
		return nil, err
	}
	if me != nil {
		e.metExp = me
		go me.run()
	}
	return e, nil
}

// newExporter builds the Exporter around the given transports; an enabled
// signal without one is written to standard output.
func newExporter(opts Options, tt, lt transport) (*Exporter, error) {
	base, err := baseAttributes(&opts)
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	e := &Exporter{
		base:            base,
		omitArgs:        opts.OmitCommandArgs,
		shutdownTimeout: opts.shutdownTimeout(),
		now:             time.Now,
		log:             opts.Logger,
		budget:          &budget{limit: opts.queueBytes()},
		workloads:       lru.New[resourceKey, *workload](opts.maxProviders()),
		rng:             rand.NewChaCha8(seed),
		ids:             newConnIDs([]byte(cmp.Or(opts.TraceKey, DefaultTraceKey))),
		stopFlusher:     make(chan struct{}),
		flusherDone:     make(chan struct{}),
		store:           opts.Metrics,
	}
	if e.log == nil {
		e.log = discardLogger
	}
	if opts.Sampled && opts.SampleRatio < 1 {
		e.sampling, e.bound = true, ratioBound(opts.SampleRatio)
	}
	batch := orDefault(opts.MaxExportBatchSize, DefaultMaxExportBatchSize)
	stdout := func() *lineOut {
		if e.stdout == nil {
			w := opts.Stdout
			if w == nil {
				w = os.Stdout
			}
			e.stdout = newLineOut(w)
		}
		return e.stdout
	}
	e.batchTimeout = orDefault(opts.BatchTimeout, DefaultBatchTimeout)
	mk := func(name string, idx int, t transport) *signal {
		s := &signal{name: name, idx: idx, maxRecords: batch, exp: e}
		if t == nil {
			s.stdout = stdout()
			e.wantJS = true
			return s
		}
		e.wantPB = true
		s.q = newQueue(e.budget, nil)
		s.q.log = e.log
		s.q.corrupt = func(n int) { s.failed.Add(uint64(n)) }
		s.snd = newSender(s, t, &opts)
		return s
	}
	if opts.Traces {
		e.traces = mk("traces", sigTraces, tt)
	}
	if opts.Logs {
		e.logs = mk("logs", sigLogs, lt)
	}
	if opts.QueueDir != "" && e.wantPB {
		if err := e.openQueueDir(&opts); err != nil {
			return nil, err
		}
	}
	if !e.wantPB {
		e.batchTimeout = orDefault(opts.BatchTimeout, DefaultStdoutBatchTimeout)
	}
	for _, s := range e.signals() {
		if s.snd != nil {
			go s.snd.run()
		}
	}
	go e.flusher()
	return e, nil
}

// openQueueDir gives the OTLP signals their part of the queue directory
// and queues what an earlier run left there, ahead of anything new.
func (e *Exporter) openQueueDir(o *Options) error {
	qd, err := openQueueDir(o.QueueDir, o.queueDiskBytes(), e.log)
	if err != nil {
		return err
	}
	for _, s := range e.signals() {
		if s.q == nil {
			continue
		}
		st, left, err := qd.signalStore(s.name)
		if err != nil {
			qd.close()
			return err
		}
		s.q.store = st
		records := 0
		for _, b := range left {
			s.q.pushRecovered(b)
			records += b.records
		}
		s.emitted.Add(uint64(records))
		s.recovered.Add(uint64(records))
		if len(left) > 0 {
			e.log.Info("export queue: sending what an earlier run left", "signal", s.name,
				"batches", len(left), "records", records, "dir", st.dir)
		}
	}
	e.queueDir = qd
	return nil
}

func (e *Exporter) signals() []*signal {
	var ss []*signal
	for _, s := range []*signal{e.traces, e.logs} {
		if s != nil {
			ss = append(ss, s)
		}
	}
	return ss
}

// flusher closes the open batches every batchTimeout.
func (e *Exporter) flusher() {
	defer close(e.flusherDone)
	t := time.NewTicker(e.batchTimeout)
	defer t.Stop()
	for {
		select {
		case <-e.stopFlusher:
			return
		case <-t.C:
			e.mu.Lock()
			e.closeBatches()
			e.mu.Unlock()
		}
	}
}

// closeBatches hands every open batch to its queue and writes buffered
// JSON lines. e.mu is held.
func (e *Exporter) closeBatches() {
	for _, s := range e.signals() {
		if s.q != nil {
			s.closeBatch()
		}
	}
	if e.stdout != nil {
		e.stdout.flush(e)
	}
}

// Emit maps ev to telemetry: a log record for every connect attempt,
// accept and connect result, a CLIENT span for every connect result and a
// SERVER span for every accept (see the package documentation), each
// subject to sampling (see Options.Sampled); every result, accept and
// close is counted in Options.Metrics first. Other events are counted as
// ignored. ev is not retained.
func (e *Exporter) Emit(ev *event.Event) {
	e.events.Add(1)
	if ev == nil || !mapped(ev) {
		e.ignored.Add(1)
		return
	}
	if e.closed.Load() {
		e.dropped.Add(1)
		return
	}
	var (
		spec     spanSpec
		wantSpan bool
	)
	if e.traces != nil {
		spec, wantSpan = spanOf(ev)
	}
	if !wantSpan && e.logs == nil && e.store == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		// Shutdown closed the last batches meanwhile.
		e.dropped.Add(1)
		return
	}
	w := e.workload(ev)
	if e.store != nil {
		e.store.Record(w.metrics, ev)
	}
	if !wantSpan && e.logs == nil {
		return
	}
	var ids recordIDs
	// A span's IDs, and those its log record and its connection's close
	// record carry, are derived from the connection (connIDs); random
	// where the event does not name it.
	if wantSpan || ev.IsClose() {
		ids.with = e.ids.ofEvent(ev, &ids.tid, &ids.sid, &spec)
		if !ids.with && wantSpan {
			e.newIDs(&ids.tid, &ids.sid)
			ids.with = true
		}
	}
	if e.sampling && !e.sample(ev, wantSpan, &ids) {
		return
	}
	e.emitRecords(ev, w, &spec, wantSpan, &ids)
}

// recordIDs are the trace context of an event's records.
type recordIDs struct {
	tid  [traceIDLen]byte
	sid  [spanIDLen]byte
	with bool // the records carry tid and sid
}

// emitRecords appends ev's log record and, with wantSpan, its span to
// their batches or writes them as JSON lines. e.mu is held.
func (e *Exporter) emitRecords(ev *event.Event, w *workload, spec *spanSpec, wantSpan bool, ids *recordIDs) {
	if e.logs != nil {
		observed := e.now()
		if s := e.logs; s.stdout != nil {
			s.stdout.buf = e.jenc.appendLogLine(s.stdout.buf, ev, w.resJSON, observed, ids.with, ids.tid, ids.sid)
			s.wrote(e)
		} else {
			off := len(s.arena)
			s.arena = e.enc.appendLog(s.arena, ev, unixNano(observed), ids.with, ids.tid, ids.sid)
			s.added(w, off)
		}
	}
	if wantSpan {
		if s := e.traces; s.stdout != nil {
			s.stdout.buf = e.jenc.appendSpanLine(s.stdout.buf, ev, spec, w.resJSON, ids.tid, ids.sid)
			s.wrote(e)
		} else {
			off := len(s.arena)
			s.arena = e.enc.appendSpan(s.arena, ev, spec, ids.tid, ids.sid)
			s.added(w, off)
		}
	}
}

// newIDs draws a random trace and span ID, never all zero. e.mu is held.
func (e *Exporter) newIDs(tid *[traceIDLen]byte, sid *[spanIDLen]byte) {
	for {
		binary.LittleEndian.PutUint64(tid[:8], e.rng.Uint64())
		binary.LittleEndian.PutUint64(tid[8:], e.rng.Uint64())
		binary.LittleEndian.PutUint64(sid[:], e.rng.Uint64())
		if *tid != [traceIDLen]byte{} && *sid != [spanIDLen]byte{} {
			return
		}
	}
}

// Flush closes the open batches and waits until every queued batch is
// sent (or has failed) and the JSON lines are written, or ctx ends.
func (e *Exporter) Flush(ctx context.Context) error {
	e.mu.Lock()
	e.releaseHeld()
	e.closeBatches()
	var err error
	if e.stdout != nil {
		err = e.stdout.err
	}
	e.mu.Unlock()
	for _, s := range e.signals() {
		if s.q == nil {
			continue
		}
		if werr := s.q.waitEmpty(ctx); werr != nil {
			err = errors.Join(err, fmt.Errorf("%s: %w", s.name, werr))
		}
	}
	return err
}

// ForceFlush is Flush, under the OpenTelemetry SDK's name.
func (e *Exporter) ForceFlush(ctx context.Context) error { return e.Flush(ctx) }

// Shutdown stops accepting events, sends what is queued and closes the
// connections, both signals in parallel. It returns when done or when
// ctx ends; without a deadline on ctx it is bounded by
// Options.ShutdownTimeout. Records still queued then are counted as
// failed. Errors of both signals are joined. Later calls return the
// first call's result.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.shutdownOnce.Do(func() {
		e.closed.Store(true)
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, e.shutdownTimeout)
			defer cancel()
		}
		close(e.stopFlusher)
		<-e.flusherDone
		e.mu.Lock()
		e.releaseHeld()
		e.closeBatches()
		var errs []error
		if e.stdout != nil && e.stdout.err != nil {
			errs = append(errs, e.stdout.err)
		}
		e.mu.Unlock()

		var wg sync.WaitGroup
		// The last metrics go out alongside the last records.
		wg.Go(func() { e.stopMetrics(ctx) })
		sigErrs := make([]error, 2)
		for _, s := range e.signals() {
			if s.snd == nil {
				continue
			}
			wg.Go(func() {
				if err := s.snd.shutdown(ctx); err != nil {
					sigErrs[s.idx] = fmt.Errorf("%s: %w", s.name, err)
				}
			})
		}
		wg.Wait()
		if err := e.queueDir.close(); err != nil {
			errs = append(errs, fmt.Errorf("export queue directory: %w", err))
		}
		e.shutdownErr = errors.Join(append(errs, sigErrs...)...)

		e.mu.Lock()
		e.workloads.Clear()
		e.resourcesLive.Store(0)
		e.mu.Unlock()
	})
	return e.shutdownErr
}

// exportDone records when exports last succeeded and since when they fail.
func (e *Exporter) exportDone(err error) {
	now := time.Now().UnixNano()
	if err == nil {
		e.lastExportOK.Store(now)
		e.failingSince.Store(0)
		return
	}
	e.failingSince.CompareAndSwap(0, now)
}

var _ pipeline.Sink = (*Exporter)(nil)

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))
