package otel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/log"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

// TestExporterRefused checks everything exported for a refused
// connection: the span, the log record and their common resource, as
// decoded from the export requests.
func TestExporterRefused(t *testing.T) {
	e, tt, lt := newTestExporter(t, testOptions())

	ev := resultEvent(-int64(unix.ECONNREFUSED))
	e.Emit(ev)
	flush(t, e)

	ss := tt.Spans()
	if len(ss) != 1 {
		t.Fatalf("%d spans", len(ss))
	}
	s := ss[0]
	if s.Name != "tcp connect" || s.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("span %q kind %v", s.Name, s.Kind)
	}
	if s.StartTimeUnixNano != uint64(tAttempt.UnixNano()) || s.EndTimeUnixNano != uint64(tOutcome.UnixNano()) {
		t.Errorf("span times %d .. %d", s.StartTimeUnixNano, s.EndTimeUnixNano)
	}
	if s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || s.Status.GetMessage() != "ECONNREFUSED" {
		t.Errorf("status %v", s.Status)
	}
	if len(s.ParentSpanId) != 0 || s.Flags&uint32(tracepb.SpanFlags_SPAN_FLAGS_TRACE_FLAGS_MASK) != 1 {
		t.Errorf("span is not a sampled root: parent %x flags %#x", s.ParentSpanId, s.Flags)
	}
	if len(s.TraceId) != 16 || len(s.SpanId) != 8 || bytes.Count(s.TraceId, []byte{0}) == 16 {
		t.Errorf("span IDs %x/%x", s.TraceId, s.SpanId)
	}
	wantAttrs := attrMapOf(appendAttributes(nil, ev))
	if got := s.Attrs(); !equalOTLP(got, wantAttrs) {
		t.Errorf("span attributes:\n got %v\nwant %v", got, wantAttrs)
	}
	if got, want := s.ResourceAttrs(), hostResourceWant(); !equalOTLP(got, want) {
		t.Errorf("span resource:\n got %v\nwant %v", got, want)
	}
	treq := tt.TraceRequests()[0]
	if url := treq.ResourceSpans[0].SchemaUrl; url != semconv.SchemaURL {
		t.Errorf("schema URL %q", url)
	}
	if s.Scope.GetName() != ScopeName {
		t.Errorf("scope %v", s.Scope)
	}

	rs := lt.Logs()
	if len(rs) != 1 {
		t.Fatalf("%d log records", len(rs))
	}
	r := rs[0]
	if r.EventName != "connwatch.tcp.connect.result" {
		t.Errorf("event name %q", r.EventName)
	}
	if r.TimeUnixNano != uint64(tOutcome.UnixNano()) || r.ObservedTimeUnixNano != uint64(tObserved.UnixNano()) {
		t.Errorf("timestamps %d %d", r.TimeUnixNano, r.ObservedTimeUnixNano)
	}
	if logspb.SeverityNumber(log.SeverityWarn) != logspb.SeverityNumber_SEVERITY_NUMBER_WARN {
		t.Fatalf("log.SeverityWarn %d is not OTLP's WARN", log.SeverityWarn)
	}
	if r.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_WARN || r.SeverityText != "WARN" {
		t.Errorf("severity %v %q", r.SeverityNumber, r.SeverityText)
	}
	if got, want := otlptest.Value(r.Body), "curl connect 10.0.0.1:51000 -> 93.184.216.34:443 refused (ECONNREFUSED) after 1.235ms"; got != want {
		t.Errorf("body %q", got)
	}
	if !bytes.Equal(r.TraceId, s.TraceId) || !bytes.Equal(r.SpanId, s.SpanId) || r.Flags&1 != 1 {
		t.Errorf("log record not linked to its span: %x/%x flags %#x", r.TraceId, r.SpanId, r.Flags)
	}
	if got := r.Attrs(); !equalOTLP(got, wantAttrs) {
		t.Errorf("log attributes:\n got %v\nwant %v", got, wantAttrs)
	}
	if !proto.Equal(r.Resource, s.Resource) {
		t.Errorf("log resource %v differs from span resource", r.Resource)
	}
	if url := lt.LogRequests()[0].ResourceLogs[0].SchemaUrl; url != semconv.SchemaURL {
		t.Errorf("log schema URL %q", url)
	}
	if r.Scope.GetName() != ScopeName {
		t.Errorf("log scope %v", r.Scope)
	}

	st := e.Stats()
	if st.Events != 1 || st.SpansEmitted != 1 || st.LogsEmitted != 1 || st.SpansExported != 1 ||
		st.LogsExported != 1 || st.SpansFailed != 0 || st.LogsFailed != 0 ||
		st.ResourcesLive != 1 || st.ResourcesCreated != 1 || st.ResourcesEvicted != 0 {
		t.Errorf("stats %+v", st)
	}
	if st.LastExportOK.IsZero() || !st.FailingSince.IsZero() {
		t.Errorf("export times: ok %v, failing since %v", st.LastExportOK, st.FailingSince)
	}
}

func TestExporterKinds(t *testing.T) {
	e, tt, lt := newTestExporter(t, testOptions())
	e.Emit(connectEvent())
	e.Emit(resultEvent(0))
	e.Emit(acceptEvent())
	e.Emit(&event.Event{EventID: 999, Comm: "x"})
	e.Emit(nil)
	flush(t, e)

	spans := tt.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (result and accept)", len(spans))
	}
	est, acc := spans[0], spans[1]
	if est.Name != "tcp connect" || est.Kind != tracepb.Span_SPAN_KIND_CLIENT || est.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET ||
		est.Status.GetMessage() != "" {
		t.Errorf("established: %q %v %v", est.Name, est.Kind, est.Status)
	}
	if acc.Name != "tcp accept" || acc.Kind != tracepb.Span_SPAN_KIND_SERVER || acc.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET ||
		acc.StartTimeUnixNano != uint64(tOutcome.UnixNano()) || acc.EndTimeUnixNano != uint64(tOutcome.UnixNano()) {
		t.Errorf("accept: %q %v %v %d..%d", acc.Name, acc.Kind, acc.Status, acc.StartTimeUnixNano, acc.EndTimeUnixNano)
	}
	if got, want := acc.ResourceAttrs(), containerResourceWant(); !equalOTLP(got, want) {
		t.Errorf("accept resource:\n got %v\nwant %v", got, want)
	}
	if bytes.Equal(est.TraceId, acc.TraceId) {
		t.Error("two spans share a trace")
	}

	recs := lt.Logs()
	if len(recs) != 3 {
		t.Fatalf("%d log records, want 3", len(recs))
	}
	wantNames := []string{"connwatch.tcp.connect", "connwatch.tcp.connect.result", "connwatch.tcp.accept"}
	for i, r := range recs {
		if r.EventName != wantNames[i] || r.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_INFO || r.SeverityText != "INFO" {
			t.Errorf("record %d: %q %v %q", i, r.EventName, r.SeverityNumber, r.SeverityText)
		}
	}
	if len(recs[0].TraceId) != 0 || len(recs[0].SpanId) != 0 || recs[0].Flags != 0 {
		t.Errorf("an attempt's record has a trace ID: %x/%x", recs[0].TraceId, recs[0].SpanId)
	}
	if !bytes.Equal(recs[1].SpanId, est.SpanId) || !bytes.Equal(recs[1].TraceId, est.TraceId) ||
		!bytes.Equal(recs[2].SpanId, acc.SpanId) || !bytes.Equal(recs[2].TraceId, acc.TraceId) {
		t.Error("records not linked to their spans")
	}
	if !proto.Equal(recs[0].Resource, recs[1].Resource) {
		t.Error("attempt and result of one process have different resources")
	}

	st := e.Stats()
	if st.Events != 5 || st.Ignored != 2 || st.SpansEmitted != 2 || st.LogsEmitted != 3 || st.ResourcesLive != 2 ||
		st.ResourcesCreated != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestExporterSignalsDisabled(t *testing.T) {
	o := testOptions()
	o.Traces = false
	e, tt, lt := newTestExporter(t, o)
	e.Emit(resultEvent(0))
	shutdown(t, e)
	logs := lt.Logs()
	if len(logs) != 1 {
		t.Fatalf("%d records", len(logs))
	}
	if len(logs[0].TraceId) != 0 || len(logs[0].SpanId) != 0 {
		t.Errorf("record linked to a span that was not made: %x/%x", logs[0].TraceId, logs[0].SpanId)
	}
	if st := e.Stats(); st.SpansEmitted != 0 || st.LogsEmitted != 1 || st.LogsExported != 1 {
		t.Errorf("stats %+v", st)
	}
	if tt.Calls() != 0 {
		t.Errorf("disabled traces: %d transport calls", tt.Calls())
	}
	if !lt.IsShutdown() {
		t.Error("Shutdown did not close the logs transport")
	}

	o = testOptions()
	o.Logs = false
	e, tt, lt = newTestExporter(t, o)
	e.Emit(connectEvent()) // nothing to do
	e.Emit(resultEvent(0))
	shutdown(t, e)
	if n := len(tt.Spans()); n != 1 {
		t.Errorf("%d spans", n)
	}
	if st := e.Stats(); st.ResourcesCreated != 1 || st.SpansExported != 1 || st.LogsEmitted != 0 {
		t.Errorf("stats %+v", st)
	}
	if lt.Calls() != 0 {
		t.Errorf("disabled logs: %d transport calls", lt.Calls())
	}
}

// workloadEvent returns a result event of the i-th distinct process
// (host pid 10000+i, executable app<i>).
func workloadEvent(i int) *event.Event {
	ev := resultEvent(0)
	ev.HostPID = uint32(10000 + i)
	w := *ev.Workload
	w.ExeName = fmt.Sprintf("app%d", i)
	ev.Workload = &w
	return ev
}

// checkWorkloadResource checks that a record of workloadEvent carries its
// own workload's resource.
func checkWorkloadResource(t *testing.T, what string, res map[string]any) {
	t.Helper()
	pid, _ := res["process.pid"].(int64)
	if want := fmt.Sprintf("app%d", pid-10000); res["service.name"] != want || res["process.executable.name"] != want {
		t.Errorf("%s of pid %d: service.name %v, want %s", what, pid, res["service.name"], want)
	}
	if res["host.name"] != "node-1" || res["process.executable.path"] != "/usr/bin/curl" {
		t.Errorf("%s: resource %v", what, res)
	}
}

// TestResourceEviction: beyond MaxProviders workloads, the least recently
// used resources are dropped from the cache and counted; the records of
// evicted workloads (even those waiting in an open batch) still arrive
// with their own resource, and an evicted workload seen again gets its
// resource encoded again.
func TestResourceEviction(t *testing.T) {
	o := testOptions()
	o.MaxProviders = 3
	o.BatchTimeout = time.Hour // one batch per Flush: evicted workloads wait in it
	e, tt, lt := newTestExporter(t, o)

	const workloads, rounds = 10, 3
	for range rounds {
		for i := range workloads {
			e.Emit(workloadEvent(i))
		}
	}
	// Recently used entries stay: repeating the last ones creates nothing.
	before := e.Stats().ResourcesCreated
	e.Emit(workloadEvent(workloads - 1))
	e.Emit(workloadEvent(workloads - 2))
	if got := e.Stats().ResourcesCreated; got != before {
		t.Errorf("a cached workload was recreated: %d -> %d", before, got)
	}
	flush(t, e)

	st := e.Stats()
	if st.ResourcesLive != 3 || st.ResourcesCreated != workloads*rounds || st.ResourcesEvicted != workloads*rounds-3 {
		t.Errorf("stats %+v", st)
	}
	n := workloads*rounds + 2
	spans, recs := tt.Spans(), lt.Logs()
	if len(spans) != n || len(recs) != n {
		t.Fatalf("%d spans, %d records, want %d of each", len(spans), len(recs), n)
	}
	perService := map[any]int{}
	for i, s := range spans {
		checkWorkloadResource(t, fmt.Sprintf("span %d", i), s.ResourceAttrs())
		perService[s.ResourceAttrs()["service.name"]]++
	}
	for i, r := range recs {
		checkWorkloadResource(t, fmt.Sprintf("record %d", i), r.ResourceAttrs())
	}
	for i := range workloads {
		want := rounds
		if i >= workloads-2 {
			want++
		}
		if got := perService[fmt.Sprintf("app%d", i)]; got != want {
			t.Errorf("app%d: %d spans, want %d", i, got, want)
		}
	}
	if st.SpansExported != uint64(n) || st.LogsExported != uint64(n) {
		t.Errorf("exported %d spans, %d records, want %d", st.SpansExported, st.LogsExported, n)
	}

	// Still working after all that, and an evicted workload comes back
	// with its resource.
	e.Emit(workloadEvent(100))
	e.Emit(workloadEvent(0))
	shutdown(t, e)
	spans = tt.Spans()
	if len(spans) != n+2 || len(lt.Logs()) != n+2 {
		t.Fatalf("after eviction: %d spans, %d records", len(spans), len(lt.Logs()))
	}
	for _, s := range spans[n:] {
		checkWorkloadResource(t, "late span", s.ResourceAttrs())
	}
	if !tt.IsShutdown() || !lt.IsShutdown() {
		t.Error("Shutdown did not close the transports")
	}
	if st := e.Stats(); st.ResourcesLive != 0 {
		t.Errorf("after Shutdown: %d resources live", st.ResourcesLive)
	}
}

func TestShutdownFlushes(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour // only Shutdown can export
	o.MaxExportBatchSize = 2048
	e, tt, lt := newTestExporter(t, o)
	const n = 1000
	for i := range n {
		e.Emit(workloadEvent(i % 50))
	}
	if tt.Calls() != 0 || lt.Calls() != 0 {
		t.Fatal("exported before Shutdown")
	}
	shutdown(t, e)
	if len(tt.Spans()) != n || len(lt.Logs()) != n {
		t.Errorf("%d spans, %d records exported, want %d", len(tt.Spans()), len(lt.Logs()), n)
	}
	if st := e.Stats(); st.SpansExported != n || st.LogsExported != n || st.Traces.Batches != 0 || st.Traces.Bytes != 0 {
		t.Errorf("stats %+v", st)
	}

	e.Emit(resultEvent(0))
	if st := e.Stats(); st.Dropped != 1 || st.SpansEmitted != n || st.Events != n+1 {
		t.Errorf("after Shutdown: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestShutdownBounded: with a transport that never answers, Shutdown
// returns when its context ends (or after Options.ShutdownTimeout) with
// the deadline error, and the records it gave up on count as failed.
func TestShutdownBounded(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = 10 * time.Millisecond
	e, tt, lt := newTestExporter(t, o)
	release := tt.holdCalls()
	defer release()
	lt.holdCalls()
	for i := range 100 {
		e.Emit(workloadEvent(i))
	}
	tt.waitStarted(t, 1) // an export is stuck
	lt.waitStarted(t, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := e.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
	st := e.Stats()
	if st.SpansEmitted != 100 || st.SpansFailed != 100 || st.SpansExported != 0 ||
		st.LogsEmitted != 100 || st.LogsFailed != 100 || st.LogsExported != 0 {
		t.Errorf("stats %+v", st)
	}
	if !tt.IsShutdown() || !lt.IsShutdown() {
		t.Error("transports not closed")
	}

	// Without a deadline, Options.ShutdownTimeout bounds it.
	o.ShutdownTimeout = 200 * time.Millisecond
	e, tt, _ = newTestExporter(t, o)
	tt.holdCalls()
	e.Emit(resultEvent(0))
	tt.waitStarted(t, 1)
	if err := e.Shutdown(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
	if st := e.Stats(); st.SpansFailed != 1 || st.LogsExported != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestExportFailuresCounted(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour // one batch per signal
	e, tt, lt := newTestExporter(t, o)
	tt.fail(errExport)
	lt.fail(errExport)
	for range 3 {
		e.Emit(resultEvent(0))
	}
	flush(t, e)
	st := e.Stats()
	// Not a gRPC status: not retryable, one attempt.
	if st.SpanExportErrors != 1 || st.SpansFailed != 3 || st.LogExportErrors != 1 || st.LogsFailed != 3 ||
		st.SpansExported != 0 || st.LogsExported != 0 || st.Traces.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
	if tt.Calls() != 1 || lt.Calls() != 1 {
		t.Errorf("%d, %d calls, want 1 each", tt.Calls(), lt.Calls())
	}
	if st.FailingSince.IsZero() {
		t.Error("FailingSince not set")
	}

	// Healthy again once the transport is.
	tt.fail(nil)
	lt.fail(nil)
	e.Emit(acceptEvent())
	flush(t, e)
	st = e.Stats()
	if st.SpansExported != 1 || st.LogsExported != 1 || !st.FailingSince.IsZero() || st.LastExportOK.IsZero() {
		t.Errorf("after recovery: %+v", st)
	}
	if s := tt.Spans(); len(s) != 1 || s[0].Name != "tcp accept" {
		t.Errorf("spans after recovery: %v", s)
	}
}

func TestEmitConcurrentWithShutdownAndStats(t *testing.T) {
	e, _, _ := newTestExporter(t, testOptions())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				e.Emit(workloadEvent(g*1000 + i%20))
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = e.Stats()
		}
	})
	waitFor(t, "the first events", func() bool { return e.Stats().Events > 0 })
	shutdown(t, e)
	wg.Wait()
	st := e.Stats()
	if st.Events != 800 || st.SpansEmitted+st.SpansQueueFull+st.Dropped != 800 ||
		st.LogsEmitted+st.LogsQueueFull+st.Dropped != 800 {
		t.Errorf("stats %+v", st)
	}
	// Nothing emitted is left unaccounted for after Shutdown.
	if st.SpansExported+st.SpansFailed != st.SpansEmitted || st.LogsExported+st.LogsFailed != st.LogsEmitted {
		t.Errorf("after Shutdown: spans %d exported + %d failed != %d emitted; logs %d + %d != %d",
			st.SpansExported, st.SpansFailed, st.SpansEmitted, st.LogsExported, st.LogsFailed, st.LogsEmitted)
	}
}

func TestRetryable(t *testing.T) {
	noInfo := time.Duration(-1)
	for _, tt := range []struct {
		code  codes.Code
		delay time.Duration // RetryInfo; -1: none
		want  bool
	}{
		{codes.Canceled, noInfo, true},
		{codes.DeadlineExceeded, noInfo, true},
		{codes.Aborted, noInfo, true},
		{codes.OutOfRange, noInfo, true},
		{codes.Unavailable, noInfo, true},
		{codes.DataLoss, noInfo, true},
		{codes.Unavailable, 3 * time.Second, true},
		{codes.ResourceExhausted, noInfo, false},
		{codes.ResourceExhausted, 2 * time.Second, true},
		{codes.Unknown, noInfo, false},
		{codes.InvalidArgument, noInfo, false},
		{codes.InvalidArgument, time.Second, false},
		{codes.NotFound, noInfo, false},
		{codes.AlreadyExists, noInfo, false},
		{codes.PermissionDenied, noInfo, false},
		{codes.FailedPrecondition, noInfo, false},
		{codes.Unimplemented, noInfo, false},
		{codes.Internal, noInfo, false},
		{codes.Unauthenticated, noInfo, false},
	} {
		got, delay := retryable(grpcError(t, tt.code, tt.delay))
		if got != tt.want {
			t.Errorf("%v (retry info %v): retryable %v, want %v", tt.code, tt.delay, got, tt.want)
		}
		if want := max(tt.delay, 0); got && delay != want {
			t.Errorf("%v: delay %v, want %v", tt.code, delay, want)
		}
	}
	// A status wrapped by the exporter client is still a status.
	if ok, d := retryable(fmt.Errorf("traces export: %w", grpcError(t, codes.ResourceExhausted, time.Second))); !ok || d != time.Second {
		t.Errorf("wrapped: %v %v", ok, d)
	}
	for _, err := range []error{context.DeadlineExceeded, context.Canceled, fmt.Errorf("x: %w", context.DeadlineExceeded)} {
		if ok, _ := retryable(err); !ok {
			t.Errorf("%v: not retryable", err)
		}
	}
	for _, err := range []error{errExport, errPermanent{grpcError(t, codes.Unavailable, noInfo)}} {
		if ok, _ := retryable(err); ok {
			t.Errorf("%v: retryable", err)
		}
	}
}

// fastRetry makes retries quick enough for tests.
func fastRetry(o *Options) {
	o.Retry = Retry{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}
	o.BatchTimeout = time.Hour // batches close at Flush
}

func TestRetryUntilAccepted(t *testing.T) {
	o := testOptions()
	fastRetry(&o)
	e, tt, lt := newTestExporter(t, o)
	tt.failNext(3, grpcError(t, codes.Unavailable, -1))
	lt.failNext(2, grpcError(t, codes.Aborted, -1))
	e.Emit(resultEvent(0))
	flush(t, e)
	st := e.Stats()
	if tt.Calls() != 4 || lt.Calls() != 3 {
		t.Errorf("%d trace calls, %d log calls; want 4, 3", tt.Calls(), lt.Calls())
	}
	if st.SpansExported != 1 || st.SpansFailed != 0 || st.SpanExportErrors != 3 || st.Traces.Retries != 3 ||
		st.LogsExported != 1 || st.LogsFailed != 0 || st.LogExportErrors != 2 || st.Logs.Retries != 2 {
		t.Errorf("stats %+v", st)
	}
	if len(tt.Spans()) != 1 || len(lt.Logs()) != 1 {
		t.Errorf("%d spans, %d records delivered", len(tt.Spans()), len(lt.Logs()))
	}
	if !st.FailingSince.IsZero() || st.LastExportOK.IsZero() {
		t.Errorf("after recovery: failing since %v, last ok %v", st.FailingSince, st.LastExportOK)
	}
}

func TestResourceExhausted(t *testing.T) {
	o := testOptions()
	fastRetry(&o)
	e, tt, _ := newTestExporter(t, o)

	// Without RetryInfo: not retried.
	tt.failNext(1, grpcError(t, codes.ResourceExhausted, -1))
	e.Emit(resultEvent(0))
	flush(t, e)
	if st := e.Stats(); tt.Calls() != 1 || st.SpansFailed != 1 || st.SpansExported != 0 || st.SpanExportErrors != 1 ||
		st.Traces.Retries != 0 {
		t.Errorf("without RetryInfo: %d calls, stats %+v", tt.Calls(), st)
	}

	// With RetryInfo: retried, after the delay asked for at the least.
	const delay = 100 * time.Millisecond
	tt.failNext(2, grpcError(t, codes.ResourceExhausted, delay))
	e.Emit(resultEvent(0))
	flush(t, e)
	st := e.Stats()
	if tt.Calls() != 4 || st.SpansFailed != 1 || st.SpansExported != 1 || st.SpanExportErrors != 3 || st.Traces.Retries != 2 {
		t.Errorf("with RetryInfo: %d calls, stats %+v", tt.Calls(), st)
	}
	times := tt.CallTimes()
	for i := 2; i < len(times); i++ {
		// A lower bound only: the retry cannot come before the delay.
		if gap := times[i].Sub(times[i-1]); gap < delay {
			t.Errorf("retry %d came %v after the failure, RetryInfo asked for %v", i-1, gap, delay)
		}
	}
	if len(tt.Spans()) != 1 {
		t.Errorf("%d spans delivered", len(tt.Spans()))
	}
}

func TestPermanentErrorNotRetried(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Internal} {
		t.Run(code.String(), func(t *testing.T) {
			o := testOptions()
			fastRetry(&o)
			e, tt, lt := newTestExporter(t, o)
			tt.fail(grpcError(t, code, -1))
			lt.fail(grpcError(t, code, time.Millisecond)) // RetryInfo does not make it retryable
			e.Emit(resultEvent(0))
			e.Emit(acceptEvent())
			flush(t, e)
			st := e.Stats()
			if tt.Calls() != 1 || lt.Calls() != 1 || st.SpansFailed != 2 || st.LogsFailed != 2 ||
				st.SpanExportErrors != 1 || st.LogExportErrors != 1 || st.SpansExported != 0 {
				t.Errorf("%d, %d calls; stats %+v", tt.Calls(), lt.Calls(), st)
			}
		})
	}
}

func TestRetryDisabled(t *testing.T) {
	o := testOptions()
	fastRetry(&o)
	o.Retry.Disabled = true
	e, tt, _ := newTestExporter(t, o)
	tt.fail(grpcError(t, codes.Unavailable, -1))
	e.Emit(resultEvent(0))
	flush(t, e)
	if st := e.Stats(); tt.Calls() != 1 || st.SpansFailed != 1 || st.SpanExportErrors != 1 || st.Traces.Retries != 0 {
		t.Errorf("%d calls, stats %+v", tt.Calls(), st)
	}
}

func TestRetryMaxElapsedTime(t *testing.T) {
	o := testOptions()
	fastRetry(&o)
	o.Retry.MaxElapsedTime = 50 * time.Millisecond
	e, tt, _ := newTestExporter(t, o)
	tt.fail(grpcError(t, codes.Unavailable, -1))
	e.Emit(resultEvent(0))
	flush(t, e) // returns: the batch is given up on
	st := e.Stats()
	if st.SpansFailed != 1 || st.SpansExported != 0 || st.SpanExportErrors < 2 || uint64(tt.Calls()) != st.SpanExportErrors {
		t.Errorf("%d calls, stats %+v", tt.Calls(), st)
	}
	if st.Traces.Batches != 0 {
		t.Errorf("%d batches still queued", st.Traces.Batches)
	}
}

func TestPartialSuccessCounted(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour
	e, tt, lt := newTestExporter(t, o)
	tt.reject(2)
	lt.reject(3)
	for range 5 {
		e.Emit(resultEvent(-int64(unix.ETIMEDOUT)))
	}
	flush(t, e)
	st := e.Stats()
	if st.SpansExported != 3 || st.SpansFailed != 2 || st.LogsExported != 2 || st.LogsFailed != 3 ||
		st.SpanExportErrors != 0 || st.LogExportErrors != 0 || tt.Calls() != 1 || lt.Calls() != 1 {
		t.Errorf("%d, %d calls; stats %+v", tt.Calls(), lt.Calls(), st)
	}

	// A receiver rejecting more than it was sent: no more than the batch
	// is counted.
	tt.reject(100)
	lt.reject(-1)
	e.Emit(acceptEvent())
	flush(t, e)
	st = e.Stats()
	if st.SpansExported != 3 || st.SpansFailed != 3 || st.LogsExported != 3 || st.LogsFailed != 3 {
		t.Errorf("stats %+v", st)
	}
}
