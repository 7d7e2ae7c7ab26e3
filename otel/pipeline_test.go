package otel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

func flush(t testing.TB, p *Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPipelineRefused checks everything exported for a refused
// connection: the span (with tracetest.InMemoryExporter), the log record
// and their common resource.
func TestPipelineRefused(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	logs := &memLogExporter{}
	p, err := NewWithExporters(spans, logs, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return tObserved }
	defer p.Shutdown(context.Background())

	ev := resultEvent(-int64(unix.ECONNREFUSED))
	p.Emit(ev)
	flush(t, p)

	ss := spans.GetSpans()
	if len(ss) != 1 {
		t.Fatalf("%d spans", len(ss))
	}
	s := ss[0]
	if s.Name != "tcp connect" || s.SpanKind != trace.SpanKindClient {
		t.Errorf("span %q kind %v", s.Name, s.SpanKind)
	}
	if !s.StartTime.Equal(tAttempt) || !s.EndTime.Equal(tOutcome) {
		t.Errorf("span times %v .. %v", s.StartTime, s.EndTime)
	}
	if s.Status.Code != codes.Error || s.Status.Description != "ECONNREFUSED" {
		t.Errorf("status %+v", s.Status)
	}
	if s.Parent.IsValid() || !s.SpanContext.IsSampled() {
		t.Errorf("span is not a sampled root: parent %v", s.Parent)
	}
	wantAttrs := attrMapOf(appendAttributes(nil, ev))
	if got := attrMapOf(s.Attributes); !equalMaps(got, wantAttrs) {
		t.Errorf("span attributes:\n got %v\nwant %v", got, wantAttrs)
	}
	if got, want := resourceMapOf(s.Resource), hostResourceWant(); !equalMaps(got, want) {
		t.Errorf("span resource:\n got %v\nwant %v", got, want)
	}
	if s.Resource.SchemaURL() != semconv.SchemaURL {
		t.Errorf("schema URL %q", s.Resource.SchemaURL())
	}
	if s.InstrumentationScope.Name != ScopeName {
		t.Errorf("scope %+v", s.InstrumentationScope)
	}

	rs := logs.Records()
	if len(rs) != 1 {
		t.Fatalf("%d log records", len(rs))
	}
	r := rs[0]
	if r.EventName() != "connwatch.tcp.connect.result" {
		t.Errorf("event name %q", r.EventName())
	}
	if !r.Timestamp().Equal(tOutcome) || !r.ObservedTimestamp().Equal(tObserved) {
		t.Errorf("timestamps %v %v", r.Timestamp(), r.ObservedTimestamp())
	}
	if r.Severity() != log.SeverityWarn || r.SeverityText() != "WARN" {
		t.Errorf("severity %v %q", r.Severity(), r.SeverityText())
	}
	if got, want := r.Body().AsString(), "curl connect 10.0.0.1:51000 -> 93.184.216.34:443 refused (ECONNREFUSED) after 1.235ms"; got != want {
		t.Errorf("body %q", got)
	}
	if r.TraceID() != s.SpanContext.TraceID() || r.SpanID() != s.SpanContext.SpanID() {
		t.Errorf("log record not linked to its span: %v/%v", r.TraceID(), r.SpanID())
	}
	if got := logAttrs(&r); !equalMaps(got, wantAttrs) {
		t.Errorf("log attributes:\n got %v\nwant %v", got, wantAttrs)
	}
	if r.Resource() == nil || !r.Resource().Equal(s.Resource) {
		t.Errorf("log resource %v differs from span resource", r.Resource())
	}
	if r.InstrumentationScope().Name != ScopeName {
		t.Errorf("log scope %+v", r.InstrumentationScope())
	}

	st := p.Stats()
	if st.Events != 1 || st.SpansEmitted != 1 || st.LogsEmitted != 1 || st.SpansExported != 1 ||
		st.LogsExported != 1 || st.ProvidersLive != 1 || st.ProvidersCreated != 1 {
		t.Errorf("stats %+v", st)
	}
}

func logAttrs(r *sdklog.Record) map[string]any {
	m := map[string]any{}
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		m[string(kv.Key)] = kv.Value.AsInterface()
		return true
	})
	return m
}

func TestPipelineKinds(t *testing.T) {
	p, se, le := newTestPipeline(t, testOptions())
	p.Emit(connectEvent())
	p.Emit(resultEvent(0))
	p.Emit(acceptEvent())
	p.Emit(&event.Event{EventID: 999, Comm: "x"})
	p.Emit(nil)
	flush(t, p)

	spans := se.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (result and accept)", len(spans))
	}
	est, acc := spans[0], spans[1]
	if est.Name() != "tcp connect" || est.SpanKind() != trace.SpanKindClient || est.Status().Code != codes.Unset {
		t.Errorf("established: %q %v %+v", est.Name(), est.SpanKind(), est.Status())
	}
	if acc.Name() != "tcp accept" || acc.SpanKind() != trace.SpanKindServer || acc.Status().Code != codes.Unset ||
		!acc.StartTime().Equal(tOutcome) || !acc.EndTime().Equal(tOutcome) {
		t.Errorf("accept: %q %v %+v %v..%v", acc.Name(), acc.SpanKind(), acc.Status(), acc.StartTime(), acc.EndTime())
	}
	if got, want := resourceMapOf(acc.Resource()), containerResourceWant(); !equalMaps(got, want) {
		t.Errorf("accept resource:\n got %v\nwant %v", got, want)
	}
	if est.SpanContext().TraceID() == acc.SpanContext().TraceID() {
		t.Error("two spans share a trace")
	}

	recs := le.Records()
	if len(recs) != 3 {
		t.Fatalf("%d log records, want 3", len(recs))
	}
	wantNames := []string{"connwatch.tcp.connect", "connwatch.tcp.connect.result", "connwatch.tcp.accept"}
	for i, r := range recs {
		if r.EventName() != wantNames[i] || r.Severity() != log.SeverityInfo {
			t.Errorf("record %d: %q %v", i, r.EventName(), r.Severity())
		}
	}
	if recs[0].TraceID().IsValid() {
		t.Error("an attempt's record has a trace ID")
	}
	if recs[1].SpanID() != est.SpanContext().SpanID() || recs[2].SpanID() != acc.SpanContext().SpanID() {
		t.Error("records not linked to their spans")
	}
	if recs[0].Resource() != recs[1].Resource() {
		t.Error("attempt and result of one process have different resources")
	}

	st := p.Stats()
	if st.Events != 5 || st.Ignored != 2 || st.SpansEmitted != 2 || st.LogsEmitted != 3 || st.ProvidersLive != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestPipelineSignalsDisabled(t *testing.T) {
	logs := &memLogExporter{}
	p, err := NewWithExporters(nil, logs, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(resultEvent(0))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.Records()); n != 1 {
		t.Errorf("%d records", n)
	}
	if st := p.Stats(); st.SpansEmitted != 0 || st.LogsEmitted != 1 {
		t.Errorf("stats %+v", st)
	}

	spans := &memSpanExporter{}
	p, err = NewWithExporters(spans, nil, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(connectEvent()) // nothing to do
	p.Emit(resultEvent(0))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(spans.Spans()); n != 1 {
		t.Errorf("%d spans", n)
	}
	if st := p.Stats(); st.ProvidersCreated != 1 {
		t.Errorf("stats %+v", st)
	}
}

// workloadEvent returns a result event of the i-th distinct process.
func workloadEvent(i int) *event.Event {
	ev := resultEvent(0)
	ev.HostPID = uint32(10000 + i)
	w := *ev.Workload
	w.ExeName = fmt.Sprintf("app%d", i)
	ev.Workload = &w
	return ev
}

func TestProviderEviction(t *testing.T) {
	o := testOptions()
	o.MaxProviders = 3
	p, se, le := newTestPipeline(t, o)

	const workloads, rounds = 10, 3
	for range rounds {
		for i := range workloads {
			p.Emit(workloadEvent(i))
		}
	}
	// Recently used entries stay: repeating the last one creates nothing.
	before := p.Stats().ProvidersCreated
	p.Emit(workloadEvent(workloads - 1))
	p.Emit(workloadEvent(workloads - 2))
	if got := p.Stats().ProvidersCreated; got != before {
		t.Errorf("a cached workload was recreated: %d -> %d", before, got)
	}
	flush(t, p)

	st := p.Stats()
	if st.ProvidersLive != 3 || st.ProvidersCreated != workloads*rounds || st.ProvidersEvicted != workloads*rounds-3 {
		t.Errorf("stats %+v", st)
	}
	n := workloads*rounds + 2
	spans, recs := se.Spans(), le.Records()
	if len(spans) != n || len(recs) != n {
		t.Fatalf("%d spans, %d records, want %d of each: eviction broke the shared processors", len(spans), len(recs), n)
	}
	for i, s := range spans[:workloads] {
		want := fmt.Sprintf("app%d", i)
		if got := resourceMapOf(s.Resource())["service.name"]; got != want {
			t.Errorf("span %d: service.name %v, want %s", i, got, want)
		}
	}
	if se.shutdown || le.shutdown {
		t.Error("eviction shut an exporter down")
	}

	// The processors still work after all that.
	p.Emit(workloadEvent(100))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(se.Spans()) != n+1 || len(le.Records()) != n+1 {
		t.Errorf("after eviction: %d spans, %d records", len(se.Spans()), len(le.Records()))
	}
	if !se.shutdown || !le.shutdown {
		t.Error("Shutdown did not shut the exporters down")
	}
}

func TestShutdownFlushes(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour // only Shutdown can export
	o.MaxExportBatchSize = 2048
	p, se, le := newTestPipeline(t, o)
	const n = 1000
	for i := range n {
		p.Emit(workloadEvent(i % 50))
	}
	if len(se.Spans()) != 0 {
		t.Fatal("exported before Shutdown")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if len(se.Spans()) != n || len(le.Records()) != n {
		t.Errorf("%d spans, %d records exported, want %d", len(se.Spans()), len(le.Records()), n)
	}

	p.Emit(resultEvent(0))
	if st := p.Stats(); st.Dropped != 1 || st.SpansEmitted != n {
		t.Errorf("after Shutdown: %+v", st)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// stuckExporter never finishes an export before release is closed.
type stuckExporter struct {
	release chan struct{}
}

func (e *stuckExporter) ExportSpans(ctx context.Context, _ []sdktrace.ReadOnlySpan) error {
	select {
	case <-e.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *stuckExporter) Export(ctx context.Context, _ []sdklog.Record) error {
	return e.ExportSpans(ctx, nil)
}

func (e *stuckExporter) Shutdown(ctx context.Context) error   { return e.ExportSpans(ctx, nil) }
func (e *stuckExporter) ForceFlush(ctx context.Context) error { return nil }

func TestShutdownBounded(t *testing.T) {
	stuck := &stuckExporter{release: make(chan struct{})}
	defer close(stuck.release)
	o := testOptions()
	o.BatchTimeout = 10 * time.Millisecond
	p, err := NewWithExporters(stuck, stuck, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		p.Emit(workloadEvent(i))
	}
	time.Sleep(50 * time.Millisecond) // let an export get stuck

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Shutdown(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a 300ms deadline", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}

	// Without a deadline, Options.ShutdownTimeout bounds it.
	o.ShutdownTimeout = 200 * time.Millisecond
	p, err = NewWithExporters(stuck, stuck, o)
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(resultEvent(0))
	time.Sleep(50 * time.Millisecond)
	start = time.Now()
	if err := p.Shutdown(context.Background()); err == nil {
		t.Error("no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with ShutdownTimeout 200ms", d)
	}
}

// failingExporter fails every export.
type failingExporter struct{}

var errExport = errors.New("collector gone")

func (failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return errExport }
func (failingExporter) Export(context.Context, []sdklog.Record) error              { return errExport }
func (failingExporter) Shutdown(context.Context) error                             { return nil }
func (failingExporter) ForceFlush(context.Context) error                           { return nil }

func TestExportFailuresCounted(t *testing.T) {
	p, err := NewWithExporters(failingExporter{}, failingExporter{}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p.Emit(resultEvent(0))
	}
	_ = p.ForceFlush(context.Background())
	_ = p.Shutdown(context.Background())
	st := p.Stats()
	if st.SpanExportErrors == 0 || st.SpansFailed != 3 || st.LogExportErrors == 0 || st.LogsFailed != 3 ||
		st.SpansExported != 0 || st.LogsExported != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestEmitConcurrentWithShutdownAndStats(t *testing.T) {
	p, _, _ := newTestPipeline(t, testOptions())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				p.Emit(workloadEvent(g*1000 + i%20))
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = p.Stats()
		}
	})
	time.Sleep(time.Millisecond)
	_ = p.Shutdown(context.Background())
	wg.Wait()
	st := p.Stats()
	if st.Events != 800 || st.SpansEmitted+st.Dropped != 800 {
		t.Errorf("stats %+v", st)
	}
}
