package otel

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/log"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
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
