package otel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/connwatch/connwatch/event"
)

// Pipeline turns events into spans and log records and exports them.
//
// # Concurrency
//
// Emit is meant to be called from the single goroutine that reads events;
// it is nevertheless safe for concurrent use (calls are serialised by a
// mutex). Emit never waits for the network: it hands records to batch
// processors whose bounded queues drop records rather than block when the
// exporter falls behind. Stats, ForceFlush and Shutdown may be called from
// any goroutine at any time. Events passed to Emit after Shutdown has
// begun are counted in Stats.Dropped and otherwise ignored.
//
// # Resources
//
// Every span and log record carries the resource of the workload behind
// its event (see ServiceName and the package documentation). Each distinct
// resource gets its own TracerProvider and LoggerProvider, all sharing one
// batch span processor and one batch log processor, so that an export
// request holds the records of many workloads, grouped by resource. The
// providers of the MaxProviders most recently seen resources are kept;
// evicted ones are dropped without being shut down (that would shut down
// the shared processors) and are recreated if their workload shows up
// again.
type Pipeline struct {
	spanProc sdktrace.SpanProcessor // nil: traces disabled
	logProc  sdklog.Processor       // nil: logs disabled

	base            []attribute.KeyValue // host and OTEL_RESOURCE_ATTRIBUTES
	omitArgs        bool
	maxProviders    int
	shutdownTimeout time.Duration
	now             func() time.Time
	queueLimit      uint64 // records in flight per signal before Emit drops

	mu         sync.Mutex
	entries    map[resourceKey]*workload
	lru        workload // sentinel of the recency list: lru.next is the most recent
	scratch    []attribute.KeyValue
	resScratch []attribute.KeyValue

	closed       atomic.Bool
	shutdownOnce sync.Once
	shutdownErr  error

	c counters
}

// workload is the cached telemetry state of one resource.
type workload struct {
	key        resourceKey
	res        *resource.Resource
	tracer     trace.Tracer
	logger     log.Logger
	prev, next *workload
}

type counters struct {
	events, ignored, dropped      atomic.Uint64
	logsQueueFull, spansQueueFull atomic.Uint64
	// Unix nanoseconds of the last successful export of any signal and
	// of the first failure since then (0: none).
	lastExportOK, failingSince         atomic.Int64
	logsEmitted, spansEmitted          atomic.Uint64
	logsExported, spansExported        atomic.Uint64
	logExportErrors, spanExportErrors  atomic.Uint64
	logsFailed, spansFailed            atomic.Uint64
	providersLive                      atomic.Int64
	providersCreated, providersEvicted atomic.Uint64
}

// Stats are the Pipeline's counters since New. Records dropped by a full
// queue are those emitted but neither exported nor failed once the
// pipeline is shut down.
type Stats struct {
	Events  uint64 // events passed to Emit
	Ignored uint64 // events that map to nothing (nil, unknown event IDs)
	Dropped uint64 // events passed to Emit after Shutdown

	LogsEmitted  uint64 // log records handed to the batch processor
	SpansEmitted uint64 // spans handed to the batch processor

	LogsExported  uint64 // log records in successful export calls
	SpansExported uint64 // spans in successful export calls

	LogExportErrors  uint64 // failed log export calls
	SpanExportErrors uint64 // failed span export calls
	LogsFailed       uint64 // log records in failed export calls
	SpansFailed      uint64 // spans in failed export calls

	// LogsQueueFull and SpansQueueFull are records Emit refused because a
	// queue's worth were already in flight (backend down or slow). With
	// them, per signal: emitted + queue-full = records offered, and
	// emitted = exported + failed + in flight (0 after Shutdown).
	LogsQueueFull  uint64
	SpansQueueFull uint64
	// LastExportOK is when an export of either signal last succeeded;
	// FailingSince when exports began failing since then (zero: not
	// failing).
	LastExportOK time.Time
	FailingSince time.Time

	ProvidersLive    int    // resources with live providers
	ProvidersCreated uint64 // provider pairs created
	ProvidersEvicted uint64 // provider pairs dropped from the cache
}

// New returns a Pipeline exporting as opts say: each enabled signal goes
// over OTLP/gRPC when an endpoint applies to it (see Options) and to
// opts.Stdout as JSON lines otherwise. No connection is made here; the
// gRPC client connects lazily and reconnects on its own.
//
// New fails on invalid options (endpoint, compression, unreadable
// certificate files) and on an invalid OTEL_RESOURCE_ATTRIBUTES.
func New(ctx context.Context, opts Options) (*Pipeline, error) {
	var (
		lw        *lineWriter
		spanExp   sdktrace.SpanExporter
		logExp    sdklog.Exporter
		spanBatch = orDefault(opts.BatchTimeout, DefaultBatchTimeout)
		logBatch  = spanBatch
	)
	stdout := func() *lineWriter {
		if lw == nil {
			w := opts.Stdout
			if w == nil {
				w = os.Stdout
			}
			lw = newLineWriter(w)
		}
		return lw
	}
	stdoutBatch := orDefault(opts.BatchTimeout, DefaultStdoutBatchTimeout)

	if opts.Traces {
		t := opts.tracesTarget()
		if t.otlp() {
			s, err := opts.exporterSettings(t)
			if err != nil {
				return nil, fmt.Errorf("traces: %w", err)
			}
			if spanExp, err = newOTLPSpanExporter(ctx, s); err != nil {
				return nil, err
			}
		} else {
			spanExp, spanBatch = &stdoutSpanExporter{w: stdout()}, stdoutBatch
		}
	}
	if opts.Logs {
		t := opts.logsTarget()
		var err error
		if t.otlp() {
			var s exporterSettings
			if s, err = opts.exporterSettings(t); err != nil {
				err = fmt.Errorf("logs: %w", err)
			} else {
				logExp, err = newOTLPLogExporter(ctx, s)
			}
		} else {
			logExp, logBatch = &stdoutLogExporter{w: stdout()}, stdoutBatch
		}
		if err != nil {
			if spanExp != nil {
				_ = spanExp.Shutdown(ctx)
			}
			return nil, err
		}
	}
	p, err := newPipeline(spanExp, spanBatch, logExp, logBatch, opts)
	if err != nil {
		if spanExp != nil {
			_ = spanExp.Shutdown(ctx)
		}
		if logExp != nil {
			_ = logExp.Shutdown(ctx)
		}
		return nil, err
	}
	return p, nil
}

// NewWithExporters returns a Pipeline exporting through the given
// exporters instead of those opts describe; a nil exporter disables its
// signal (opts.Traces and opts.Logs are ignored). The exporters are shut
// down by Shutdown. Meant for tests and embedding.
func NewWithExporters(spanExp sdktrace.SpanExporter, logExp sdklog.Exporter, opts Options) (*Pipeline, error) {
	bt := orDefault(opts.BatchTimeout, DefaultBatchTimeout)
	return newPipeline(spanExp, bt, logExp, bt, opts)
}

func newPipeline(spanExp sdktrace.SpanExporter, spanBatch time.Duration, logExp sdklog.Exporter, logBatch time.Duration, opts Options) (*Pipeline, error) {
	base, err := baseAttributes(&opts)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{
		base:            base,
		omitArgs:        opts.OmitCommandArgs,
		maxProviders:    opts.maxProviders(),
		shutdownTimeout: opts.shutdownTimeout(),
		now:             time.Now,
		entries:         make(map[resourceKey]*workload),
		scratch:         make([]attribute.KeyValue, 0, 32),
	}
	p.lru.next, p.lru.prev = &p.lru, &p.lru
	queue := orDefault(opts.MaxQueueSize, DefaultMaxQueueSize)
	p.queueLimit = uint64(queue)
	batch := min(orDefault(opts.MaxExportBatchSize, DefaultMaxExportBatchSize), queue)
	if spanExp != nil {
		p.spanProc = sdktrace.NewBatchSpanProcessor(&countingSpanExporter{spanExp, &p.c},
			sdktrace.WithBatchTimeout(spanBatch),
			sdktrace.WithMaxQueueSize(queue),
			sdktrace.WithMaxExportBatchSize(batch))
	}
	if logExp != nil {
		p.logProc = sdklog.NewBatchProcessor(&countingLogExporter{logExp, &p.c},
			sdklog.WithExportInterval(logBatch),
			sdklog.WithMaxQueueSize(queue),
			sdklog.WithExportMaxBatchSize(batch))
	}
	return p, nil
}

// Emit maps ev to telemetry: a log record for every connect attempt,
// accept and connect result, a CLIENT span for every connect result and a
// SERVER span for every accept (see the package documentation). Other
// events are counted as ignored. ev is not retained.
func (p *Pipeline) Emit(ev *event.Event) {
	p.c.events.Add(1)
	if ev == nil || !mapped(ev) {
		p.c.ignored.Add(1)
		return
	}
	if p.closed.Load() {
		p.c.dropped.Add(1)
		return
	}
	var (
		spec     spanSpec
		wantSpan bool
		wantLog  = p.logProc != nil
	)
	if p.spanProc != nil {
		spec, wantSpan = spanOf(ev)
	}
	if !wantSpan && !wantLog {
		return
	}

	// Admission: a record is handed to a batch processor only while fewer
	// than a queue's worth are emitted and not yet exported or failed, so
	// the SDK never drops one silently; a record refused here is counted.
	// Such drops happen when the backend is down or slow: the exporters
	// retry with backoff while the queue fills.
	if wantSpan && p.c.spansEmitted.Load()-p.c.spansExported.Load()-p.c.spansFailed.Load() >= p.queueLimit {
		wantSpan = false
		p.c.spansQueueFull.Add(1)
	}
	if wantLog && p.c.logsEmitted.Load()-p.c.logsExported.Load()-p.c.logsFailed.Load() >= p.queueLimit {
		wantLog = false
		p.c.logsQueueFull.Add(1)
	}
	if !wantSpan && !wantLog {
		return
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.workload(ev)
	// The SDK copies attributes into its spans and records, so the
	// scratch slice is reused from one event to the next.
	attrs := appendAttributes(p.scratch[:0], ev)
	p.scratch = attrs[:0]

	ctx := context.Background()
	var span trace.Span
	if wantSpan {
		ctx, span = w.tracer.Start(ctx, spec.name,
			trace.WithSpanKind(spec.kind),
			trace.WithTimestamp(spec.start),
			trace.WithAttributes(attrs...))
		if spec.code != 0 {
			span.SetStatus(spec.code, spec.description)
		}
	}
	if wantLog {
		// Emitted within the span's context, the record carries its
		// trace and span IDs.
		w.logger.Emit(ctx, logRecordOf(ev, attrs, p.now()))
		p.c.logsEmitted.Add(1)
	}
	if wantSpan {
		span.End(trace.WithTimestamp(spec.end))
		p.c.spansEmitted.Add(1)
	}
}

// workload returns the cached state of ev's resource, creating it (and
// evicting the least recently used one beyond maxProviders) as needed.
// p.mu is held.
func (p *Pipeline) workload(ev *event.Event) *workload {
	k := keyOf(ev)
	if w, ok := p.entries[k]; ok {
		if p.lru.next != w {
			w.unlink()
			p.pushFront(w)
		}
		return w
	}
	w := p.newWorkload(ev, k)
	p.entries[k] = w
	p.pushFront(w)
	p.c.providersCreated.Add(1)
	p.c.providersLive.Add(1)
	for len(p.entries) > p.maxProviders {
		old := p.lru.prev
		old.unlink()
		delete(p.entries, old.key)
		p.c.providersEvicted.Add(1)
		p.c.providersLive.Add(-1)
	}
	return w
}

func (p *Pipeline) pushFront(w *workload) {
	w.prev, w.next = &p.lru, p.lru.next
	p.lru.next.prev = w
	p.lru.next = w
}

func (w *workload) unlink() {
	w.prev.next, w.next.prev = w.next, w.prev
	w.prev, w.next = nil, nil
}

func (p *Pipeline) newWorkload(ev *event.Event, k resourceKey) *workload {
	attrs := append(p.resScratch[:0], p.base...)
	attrs = appendWorkloadAttributes(attrs, ev, p.omitArgs)
	p.resScratch = attrs[:0]
	// Duplicate keys keep the last value: workload over
	// OTEL_RESOURCE_ATTRIBUTES over host.
	res := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	w := &workload{key: k, res: res}
	if p.spanProc != nil {
		tp := sdktrace.NewTracerProvider(
			sdktrace.WithSpanProcessor(p.spanProc),
			sdktrace.WithResource(res),
			sdktrace.WithSampler(sdktrace.AlwaysSample()))
		w.tracer = tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))
	}
	if p.logProc != nil {
		lp := sdklog.NewLoggerProvider(
			sdklog.WithProcessor(p.logProc),
			sdklog.WithResource(res),
			// appendAttributes never repeats a key: skip the SDK's
			// per-record deduplication map.
			sdklog.WithAllowKeyDuplication())
		w.logger = lp.Logger(ScopeName, log.WithSchemaURL(semconv.SchemaURL))
	}
	return w
}

// ForceFlush exports every queued record and waits for the exports, or
// for ctx to end.
func (p *Pipeline) ForceFlush(ctx context.Context) error {
	var errs []error
	if p.spanProc != nil {
		if err := p.spanProc.ForceFlush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("traces: %w", err))
		}
	}
	if p.logProc != nil {
		if err := p.logProc.ForceFlush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("logs: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Shutdown stops accepting events, exports what is queued and shuts the
// exporters down, both signals in parallel. It returns when done or when
// ctx ends; without a deadline on ctx it is bounded by
// Options.ShutdownTimeout. Errors of both signals are joined. Later calls
// return the first call's result.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() {
		p.closed.Store(true)
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, p.shutdownTimeout)
			defer cancel()
		}
		var wg sync.WaitGroup
		var spanErr, logErr error
		if p.spanProc != nil {
			wg.Go(func() { spanErr = p.spanProc.Shutdown(ctx) })
		}
		if p.logProc != nil {
			wg.Go(func() { logErr = p.logProc.Shutdown(ctx) })
		}
		wg.Wait()
		var errs []error
		if spanErr != nil {
			errs = append(errs, fmt.Errorf("traces: %w", spanErr))
		}
		if logErr != nil {
			errs = append(errs, fmt.Errorf("logs: %w", logErr))
		}
		p.shutdownErr = errors.Join(errs...)

		p.mu.Lock()
		clear(p.entries)
		p.lru.next, p.lru.prev = &p.lru, &p.lru
		p.c.providersLive.Store(0)
		p.mu.Unlock()
	})
	return p.shutdownErr
}

// Stats returns the current counters.
func (p *Pipeline) Stats() Stats {
	c := &p.c
	return Stats{
		Events:           c.events.Load(),
		Ignored:          c.ignored.Load(),
		Dropped:          c.dropped.Load(),
		LogsEmitted:      c.logsEmitted.Load(),
		SpansEmitted:     c.spansEmitted.Load(),
		LogsExported:     c.logsExported.Load(),
		SpansExported:    c.spansExported.Load(),
		LogExportErrors:  c.logExportErrors.Load(),
		SpanExportErrors: c.spanExportErrors.Load(),
		LogsFailed:       c.logsFailed.Load(),
		SpansFailed:      c.spansFailed.Load(),
		ProvidersLive:    int(c.providersLive.Load()),
		ProvidersCreated: c.providersCreated.Load(),
		ProvidersEvicted: c.providersEvicted.Load(),
		LogsQueueFull:    c.logsQueueFull.Load(),
		SpansQueueFull:   c.spansQueueFull.Load(),
		LastExportOK:     unixTime(c.lastExportOK.Load()),
		FailingSince:     unixTime(c.failingSince.Load()),
	}
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// countingSpanExporter counts the outcome of every export call.
type countingSpanExporter struct {
	sdktrace.SpanExporter
	c *counters
}

func (e *countingSpanExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		e.c.spanExportErrors.Add(1)
		e.c.spansFailed.Add(uint64(len(spans)))
	} else {
		e.c.spansExported.Add(uint64(len(spans)))
	}
	e.c.exportDone(err)
	return err
}

// countingLogExporter counts the outcome of every export call.
type countingLogExporter struct {
	sdklog.Exporter
	c *counters
}

func (e *countingLogExporter) Export(ctx context.Context, records []sdklog.Record) error {
	if len(records) == 0 {
		return e.Exporter.Export(ctx, records)
	}
	err := e.Exporter.Export(ctx, records)
	if err != nil {
		e.c.logExportErrors.Add(1)
		e.c.logsFailed.Add(uint64(len(records)))
	} else {
		e.c.logsExported.Add(uint64(len(records)))
	}
	e.c.exportDone(err)
	return err
}

// exportDone records when exports last succeeded and since when they fail.
func (c *counters) exportDone(err error) {
	now := time.Now().UnixNano()
	if err == nil {
		c.lastExportOK.Store(now)
		c.failingSince.Store(0)
		return
	}
	c.failingSince.CompareAndSwap(0, now)
}
