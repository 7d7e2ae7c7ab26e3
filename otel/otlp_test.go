package otel

import (
	"context"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

func newOTLPExporter(t *testing.T, o Options) *Exporter {
	t.Helper()
	p, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return tObserved }
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

// TestOTLPTwoWorkloadsOneRequest sends the records of two workloads
// through the real gRPC transports: each signal arrives in one request
// holding two resources, with everything the mapping says.
func TestOTLPTwoWorkloadsOneRequest(t *testing.T) {
	r := otlptest.Start(t)
	o := testOptions()
	o.Endpoint = r.Endpoint()
	o.BatchTimeout = time.Hour // one export, at Shutdown
	p := newOTLPExporter(t, o)

	p.Emit(connectEvent())
	p.Emit(resultEvent(-int64(unix.ECONNREFUSED)))
	p.Emit(acceptEvent())
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	treqs, lreqs := r.TraceRequests(), r.LogRequests()
	if len(treqs) != 1 || len(lreqs) != 1 {
		t.Fatalf("%d trace requests, %d log requests; want 1 of each", len(treqs), len(lreqs))
	}
	if n := len(treqs[0].ResourceSpans); n != 2 {
		t.Errorf("%d ResourceSpans, want 2", n)
	}
	if n := len(lreqs[0].ResourceLogs); n != 2 {
		t.Errorf("%d ResourceLogs, want 2", n)
	}
	services := map[string]int{}
	for _, rl := range lreqs[0].ResourceLogs {
		name := otlptest.Attrs(rl.Resource.Attributes)["service.name"].(string)
		for _, sl := range rl.ScopeLogs {
			services[name] += len(sl.LogRecords)
			if sl.Scope.GetName() != ScopeName {
				t.Errorf("scope %q", sl.Scope.GetName())
			}
		}
	}
	if services["curl"] != 2 || services["nginx"] != 1 {
		t.Errorf("log records per service: %v", services)
	}

	for _, s := range r.Spans() {
		res := s.ResourceAttrs()
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_CLIENT:
			if s.Name != "tcp connect" || s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR ||
				s.Status.GetMessage() != "ECONNREFUSED" {
				t.Errorf("client span %q status %v", s.Name, s.Status)
			}
			if s.StartTimeUnixNano != uint64(tAttempt.UnixNano()) || s.EndTimeUnixNano != uint64(tOutcome.UnixNano()) {
				t.Errorf("client span times %d..%d", s.StartTimeUnixNano, s.EndTimeUnixNano)
			}
			if got, want := res, hostResourceWant(); !equalOTLP(got, want) {
				t.Errorf("client resource:\n got %v\nwant %v", got, want)
			}
			if a := s.Attrs(); a["error.type"] != "ECONNREFUSED" || a["server.port"] != int64(443) {
				t.Errorf("client attributes %v", a)
			}
		case tracepb.Span_SPAN_KIND_SERVER:
			if got, want := res, containerResourceWant(); !equalOTLP(got, want) {
				t.Errorf("server resource:\n got %v\nwant %v", got, want)
			}
		default:
			t.Errorf("span kind %v", s.Kind)
		}
	}
	for _, l := range r.Logs() {
		if l.EventName == "connwatch.tcp.connect.result" {
			if l.SeverityText != "WARN" || len(l.TraceId) != 16 || len(l.SpanId) != 8 {
				t.Errorf("result record %v", l.LogRecord)
			}
		}
	}

	// Field by field, as over the memory transport.
	evs := map[string]*event.Event{}
	for _, ev := range []*event.Event{connectEvent(), resultEvent(-int64(unix.ECONNREFUSED)), acceptEvent()} {
		evs[bodyOf(ev)] = ev
	}
	spans := map[string]otlptest.Span{}
	for _, s := range r.Spans() {
		spans[string(s.SpanId)] = s
	}
	for _, l := range r.Logs() {
		ev := evs[l.Body.GetStringValue()]
		if ev == nil {
			t.Errorf("record of no event: %v", l.LogRecord)
			continue
		}
		var span *tracepb.Span
		if _, ok := spanOf(ev); ok {
			s, ok := spans[string(l.SpanId)]
			if !ok {
				t.Errorf("no span for %q", bodyOf(ev))
				continue
			}
			checkSpan(t, &o, ev, s)
			span = s.Span
		}
		checkLog(t, &o, ev, l, span, tObserved)
	}
	if st := p.Stats(); st.SpansExported != 2 || st.LogsExported != 3 || st.SpansFailed != 0 || st.LogsFailed != 0 {
		t.Errorf("stats %+v", st)
	}
}

// equalOTLP compares attributes received over OTLP (string arrays arrive
// as []any) with expected ones.
func equalOTLP(got, want map[string]any) bool {
	conv := make(map[string]any, len(got))
	for k, v := range got {
		if a, ok := v.([]any); ok {
			ss := make([]string, len(a))
			for i, e := range a {
				ss[i], _ = e.(string)
			}
			v = ss
		}
		conv[k] = v
	}
	return equalMaps(conv, want)
}

func TestOTLPHeadersAndGzip(t *testing.T) {
	r := otlptest.Start(t)
	o := testOptions()
	o.Endpoint = r.Addr() // host:port form
	o.Insecure = true
	o.Headers = map[string]string{"x-tenant": "net"}
	o.Compression = "gzip"
	o.BatchTimeout = 10 * time.Millisecond
	p := newOTLPExporter(t, o)
	p.Emit(resultEvent(0))
	if _, err := r.WaitSpans(5*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitLogs(5*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}
	for _, md := range r.Headers() {
		if got := md.Get("x-tenant"); len(got) != 1 || got[0] != "net" {
			t.Errorf("x-tenant %v", got)
		}
	}
	for _, enc := range r.Encodings() {
		if enc != "gzip" {
			t.Errorf("request encoding %q", enc)
		}
	}
}

func TestOTLPMutualTLS(t *testing.T) {
	certs, err := otlptest.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := otlptest.Start(t, otlptest.WithTLS(certs.ServerTLS(true)))
	o := testOptions()
	o.Endpoint = r.Addr() // host:port, Insecure false: TLS
	o.CACert, o.ClientCert, o.ClientKey = certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile
	o.BatchTimeout = 10 * time.Millisecond
	p := newOTLPExporter(t, o)
	p.Emit(acceptEvent())
	if _, err := r.WaitSpans(5*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitLogs(5*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}

	// Without the client certificate the server refuses the exports.
	o.ClientCert, o.ClientKey = "", ""
	o.Endpoint = r.Endpoint() // https://
	o.Retry = Retry{Disabled: true}
	p2 := newOTLPExporter(t, o)
	p2.Emit(acceptEvent())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p2.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p2.Stats(); st.SpanExportErrors != 1 || st.LogExportErrors != 1 || st.SpansFailed != 1 || st.LogsFailed != 1 ||
		st.SpansExported != 0 || st.LogsExported != 0 {
		t.Errorf("export without a client certificate: stats %+v", st)
	}
	if n := len(r.Spans()); n != 1 {
		t.Errorf("%d spans received", n)
	}
}

// TestOTLPIgnoresEnvironment: the exporter reads no OTEL_EXPORTER_OTLP_*
// variable. Without an endpoint in Options the records go to standard
// output although the environment names a collector; with a plaintext
// endpoint they arrive in plaintext and without the environment's
// headers although the environment names a CA certificate and headers.
func TestOTLPIgnoresEnvironment(t *testing.T) {
	r := otlptest.Start(t)
	certs, err := otlptest.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":        r.Endpoint(),
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": r.Endpoint(),
		"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT":   r.Endpoint(),
		"OTEL_EXPORTER_OTLP_CERTIFICATE":     certs.CAFile,
		"OTEL_EXPORTER_OTLP_HEADERS":         "x-from-env=1",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS":  "x-from-env=1",
	} {
		t.Setenv(name, v)
	}

	out := &syncBuffer{}
	o := testOptions()
	o.Getenv = nil // the real environment
	o.Stdout = out
	p := newOTLPExporter(t, o)
	p.Emit(resultEvent(0))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, `{"type":"span"`) || !strings.Contains(s, `{"type":"log"`) {
		t.Errorf("stdout has no span and log lines: %q", s)
	}
	if n, m := len(r.TraceRequests()), len(r.LogRequests()); n != 0 || m != 0 {
		t.Errorf("%d trace and %d log requests reached the environment's collector", n, m)
	}

	o = testOptions()
	o.Getenv = nil
	o.Endpoint = r.Endpoint() // http://
	o.BatchTimeout = 10 * time.Millisecond
	p = newOTLPExporter(t, o)
	p.Emit(resultEvent(0))
	if _, err := r.WaitSpans(5*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitLogs(5*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}
	for _, md := range r.Headers() {
		if v := md.Get("x-from-env"); len(v) > 0 {
			t.Errorf("a request carried the environment's header: %v", md)
		}
	}
}

// otlpRetry makes retries quick enough for tests.
var otlpRetry = Retry{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond}

// TestOTLPCollectorOutage: a collector that fails with Unavailable for a
// while, then is down, then comes back on the same port: the records
// made meanwhile all arrive, none is counted failed.
func TestOTLPCollectorOutage(t *testing.T) {
	r := otlptest.Start(t)
	o := testOptions()
	o.Endpoint = r.Endpoint()
	o.BatchTimeout = 10 * time.Millisecond
	o.Retry = otlpRetry
	p := newOTLPExporter(t, o)

	r.SetFailure(codes.Unavailable)
	p.Emit(resultEvent(0))
	p.Emit(connectEvent())
	waitFor(t, "rejected requests", func() bool { return r.Rejected() >= 4 })
	p.Emit(resultEvent(-int64(unix.ECONNREFUSED))) // made during the outage
	waitFor(t, "retries", func() bool {
		st := p.Stats()
		return st.Traces.Retries >= 2 && st.Logs.Retries >= 2
	})
	if st := p.Stats(); st.FailingSince.IsZero() || st.SpansFailed != 0 || st.LogsFailed != 0 {
		t.Errorf("during the outage: %+v", st)
	}
	r.SetFailure(codes.OK)
	if _, err := r.WaitSpans(15*time.Second, 2, nil); err != nil {
		t.Fatal(err)
	}

	r.Stop()
	p.Emit(acceptEvent())
	before := p.Stats()
	waitFor(t, "a failed attempt against the stopped receiver", func() bool {
		st := p.Stats()
		return st.SpanExportErrors > before.SpanExportErrors && st.LogExportErrors > before.LogExportErrors
	})
	p.Emit(workloadEvent(1)) // made while the receiver is down
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	match := func(s otlptest.Span) bool { return s.Name == "tcp accept" }
	if _, err := r.WaitSpans(15*time.Second, 1, match); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.SpansExported != 4 || st.SpansFailed != 0 || st.LogsExported != 5 || st.LogsFailed != 0 ||
		!st.FailingSince.IsZero() || st.SpansQueueFull != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Every record arrived (some perhaps twice: an attempt that timed
	// out on the client may have been recorded).
	names := map[string]bool{}
	for _, l := range r.Logs() {
		names[l.Body.GetStringValue()] = true
	}
	for _, ev := range []*event.Event{resultEvent(0), connectEvent(), resultEvent(-int64(unix.ECONNREFUSED)), acceptEvent(), workloadEvent(1)} {
		if !names[bodyOf(ev)] {
			t.Errorf("record %q lost", bodyOf(ev))
		}
	}
}

// TestOTLPInvalidArgument: a collector refusing requests as invalid is
// not retried: each batch is tried once and its records count as failed,
// and the exporter goes on exporting once the collector accepts again.
func TestOTLPInvalidArgument(t *testing.T) {
	r := otlptest.Start(t)
	o := testOptions()
	o.Endpoint = r.Endpoint()
	o.BatchTimeout = time.Hour // batches close at Flush
	o.Retry = otlpRetry
	p := newOTLPExporter(t, o)

	r.SetFailure(codes.InvalidArgument)
	p.Emit(resultEvent(-int64(unix.ECONNREFUSED)))
	p.Emit(acceptEvent())
	p.Emit(connectEvent())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.SpansFailed != 2 || st.LogsFailed != 3 || st.SpanExportErrors != 1 || st.LogExportErrors != 1 ||
		st.SpansExported != 0 || st.LogsExported != 0 || st.Traces.Retries != 0 || st.Logs.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := r.Rejected(); n != 2 {
		t.Errorf("%d requests reached the receiver, want one per signal", n)
	}

	r.SetFailure(codes.OK)
	p.Emit(resultEvent(0))
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if spans, logs := r.Spans(), r.Logs(); len(spans) != 1 || len(logs) != 1 || spans[0].Name != "tcp connect" {
		t.Errorf("after the collector recovered: %d spans, %d records", len(spans), len(logs))
	}
	if st := p.Stats(); st.SpansExported != 1 || st.LogsExported != 1 || st.SpansFailed != 2 || st.LogsFailed != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestOTLPPartialSuccess: the records a collector rejects in a partial
// success count as failed, exactly, and the rest as exported.
func TestOTLPPartialSuccess(t *testing.T) {
	r := otlptest.Start(t)
	o := testOptions()
	o.Endpoint = r.Endpoint()
	o.BatchTimeout = time.Hour
	p := newOTLPExporter(t, o)

	r.SetPartialSuccess(2, "too old")
	for i := range 5 {
		p.Emit(workloadEvent(i))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := p.Stats()
	if st.SpansFailed != 2 || st.SpansExported != 3 || st.LogsFailed != 2 || st.LogsExported != 3 ||
		st.SpanExportErrors != 0 || st.LogExportErrors != 0 {
		t.Errorf("stats %+v", st)
	}

	// A partial success with a message only rejects nothing.
	r.SetPartialSuccess(0, "warning: deprecated")
	p.Emit(acceptEvent())
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st = p.Stats()
	if st.SpansFailed != 2 || st.SpansExported != 4 || st.LogsFailed != 2 || st.LogsExported != 4 {
		t.Errorf("stats %+v", st)
	}
	if len(r.TraceRequests()) != 2 || len(r.LogRequests()) != 2 {
		t.Errorf("%d trace, %d log requests; want 2 each (no retry)", len(r.TraceRequests()), len(r.LogRequests()))
	}
}
