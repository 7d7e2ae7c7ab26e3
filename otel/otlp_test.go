package otel

import (
	"context"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/connwatch/connwatch/otel/otlptest"
)

func newOTLPPipeline(t *testing.T, o Options) *Pipeline {
	t.Helper()
	p, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

// TestOTLPTwoWorkloadsOneRequest sends the records of two workloads
// through the real gRPC exporters: each signal arrives in one request
// holding two resources.
func TestOTLPTwoWorkloadsOneRequest(t *testing.T) {
	r := otlptest.Start(t)
	o := testOptions()
	o.Endpoint = r.Endpoint()
	o.BatchTimeout = time.Hour // one export, at Shutdown
	p := newOTLPPipeline(t, o)

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
	p := newOTLPPipeline(t, o)
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
	p := newOTLPPipeline(t, o)
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
	p2 := newOTLPPipeline(t, o)
	p2.Emit(acceptEvent())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p2.ForceFlush(ctx); err == nil {
		t.Error("export without a client certificate succeeded")
	}
	if st := p2.Stats(); st.SpanExportErrors == 0 || st.LogExportErrors == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestOTLPFromEnvironment: no endpoint in the options, one in the
// environment: the signals go to it, not to standard output.
func TestOTLPFromEnvironment(t *testing.T) {
	r := otlptest.Start(t)
	t.Setenv(EnvEndpoint, r.Endpoint())
	out := &syncBuffer{}
	o := testOptions()
	o.Getenv = nil // the real environment
	o.Stdout = out
	o.BatchTimeout = 10 * time.Millisecond
	p := newOTLPPipeline(t, o)
	p.Emit(resultEvent(0))
	if _, err := r.WaitSpans(5*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitLogs(5*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != "" {
		t.Errorf("stdout written: %s", out.String())
	}
}

// TestOTLPCollectorOutage: a collector that fails, then is down, then
// comes back on the same port; the exporters' retries deliver.
func TestOTLPCollectorOutage(t *testing.T) {
	r := otlptest.Start(t)
	o := testOptions()
	o.Endpoint = r.Endpoint()
	o.BatchTimeout = 10 * time.Millisecond
	o.Retry = Retry{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, MaxElapsedTime: 20 * time.Second}
	p := newOTLPPipeline(t, o)

	r.SetFailure(codes.Unavailable)
	p.Emit(resultEvent(0))
	deadline := time.Now().Add(5 * time.Second)
	for r.Rejected() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no rejected request")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.SetFailure(codes.OK)
	if _, err := r.WaitSpans(10*time.Second, 1, nil); err != nil {
		t.Fatal(err)
	}

	r.Stop()
	p.Emit(acceptEvent())
	time.Sleep(200 * time.Millisecond)
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	match := func(s otlptest.Span) bool { return s.Name == "tcp accept" }
	if _, err := r.WaitSpans(15*time.Second, 1, match); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitLogs(15*time.Second, 2, nil); err != nil {
		t.Fatal(err)
	}
	// The exporter counts a batch once the receiver's answer is back.
	deadline = time.Now().Add(5 * time.Second)
	for st := p.Stats(); st.SpansExported != 2 || st.SpansFailed != 0; st = p.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
