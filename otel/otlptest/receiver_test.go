package otlptest

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func traceReq(service, span string) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", service)}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: span}}}},
	}}}
}

func logReq(body string) *collogspb.ExportLogsServiceRequest {
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{
			Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: body}},
		}}}},
	}}}
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestReceiverRecords(t *testing.T) {
	r := Start(t)
	cc := dial(t, r.Addr(), nil)
	ctx := context.Background()
	if _, err := coltracepb.NewTraceServiceClient(cc).Export(ctx, traceReq("a", "s1")); err != nil {
		t.Fatal(err)
	}
	if _, err := collogspb.NewLogsServiceClient(cc).Export(ctx, logReq("hello")); err != nil {
		t.Fatal(err)
	}
	spans, err := r.WaitSpans(time.Second, 1, func(s Span) bool { return s.Name == "s1" })
	if err != nil || spans[0].ResourceAttrs()["service.name"] != "a" {
		t.Fatalf("%v, %v", spans, err)
	}
	logs, err := r.WaitLogs(time.Second, 1, nil)
	if err != nil || Value(logs[0].Body) != "hello" {
		t.Fatalf("%v, %v", logs, err)
	}
	if len(r.TraceRequests()) != 1 || len(r.LogRequests()) != 1 || len(r.Headers()) != 2 {
		t.Error("requests not recorded")
	}

	_, err = r.WaitSpans(50*time.Millisecond, 2, nil)
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("err = %v, want ErrTimeout", err)
	}
	r.Reset()
	if len(r.Spans()) != 0 || len(r.Logs()) != 0 {
		t.Error("Reset kept requests")
	}
}

func TestReceiverFailureDelayRestart(t *testing.T) {
	r := Start(t)
	cc := dial(t, r.Addr(), nil)
	client := coltracepb.NewTraceServiceClient(cc)
	ctx := context.Background()

	r.SetFailure(codes.Unavailable)
	_, err := client.Export(ctx, traceReq("a", "x"))
	if status.Code(err) != codes.Unavailable || r.Rejected() != 1 || len(r.Spans()) != 0 {
		t.Errorf("failure mode: %v, rejected %d", err, r.Rejected())
	}
	r.SetFailure(codes.OK)

	r.SetDelay(300 * time.Millisecond)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = client.Export(short, traceReq("a", "late"))
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("delayed request: %v", err)
	}
	start := time.Now()
	if _, err := client.Export(ctx, traceReq("a", "slow")); err != nil || time.Since(start) < 300*time.Millisecond {
		t.Errorf("delay: %v after %v", err, time.Since(start))
	}
	r.SetDelay(0)

	addr := r.Addr()
	r.Stop()
	r.Stop() // idempotent
	short, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = client.Export(short, traceReq("a", "down"))
	cancel()
	if err == nil {
		t.Error("export to a stopped receiver succeeded")
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	if r.Addr() != addr {
		t.Errorf("restarted on %s, was %s", r.Addr(), addr)
	}
	if _, err := client.Export(ctx, traceReq("a", "back"), grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitSpans(time.Second, 1, func(s Span) bool { return s.Name == "back" }); err != nil {
		t.Fatal(err)
	}
	if err := r.Restart(); err != nil { // running: nothing to do
		t.Error(err)
	}
}

func TestReceiverPartialSuccess(t *testing.T) {
	r := Start(t)
	cc := dial(t, r.Addr(), nil)
	ctx := context.Background()
	r.SetPartialSuccess(3, "too old")
	tresp, err := coltracepb.NewTraceServiceClient(cc).Export(ctx, traceReq("a", "s"))
	if err != nil {
		t.Fatal(err)
	}
	if ps := tresp.GetPartialSuccess(); ps.GetRejectedSpans() != 3 || ps.GetErrorMessage() != "too old" {
		t.Errorf("trace partial success %v", ps)
	}
	lresp, err := collogspb.NewLogsServiceClient(cc).Export(ctx, logReq("x"))
	if err != nil {
		t.Fatal(err)
	}
	if ps := lresp.GetPartialSuccess(); ps.GetRejectedLogRecords() != 3 || ps.GetErrorMessage() != "too old" {
		t.Errorf("logs partial success %v", ps)
	}
	if len(r.Spans()) != 1 || len(r.Logs()) != 1 || r.Rejected() != 0 {
		t.Errorf("partially successful requests not recorded: %d spans, %d logs, %d rejected", len(r.Spans()), len(r.Logs()), r.Rejected())
	}

	r.SetPartialSuccess(0, "")
	tresp, err = coltracepb.NewTraceServiceClient(cc).Export(ctx, traceReq("a", "s"))
	if err != nil || tresp.GetPartialSuccess() != nil {
		t.Errorf("after reset: %v, %v", tresp, err)
	}
}

func TestReceiverTLS(t *testing.T) {
	certs, err := NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := Start(t, WithTLS(certs.ServerTLS(true)))
	if got := r.Endpoint(); got != "https://"+r.Addr() {
		t.Errorf("endpoint %q", got)
	}
	ctx := context.Background()

	good := credentials.NewTLS(&tls.Config{RootCAs: certs.CA, Certificates: []tls.Certificate{certs.Client}})
	if _, err := coltracepb.NewTraceServiceClient(dial(t, r.Addr(), good)).Export(ctx, traceReq("a", "tls")); err != nil {
		t.Fatal(err)
	}
	noCert := credentials.NewTLS(&tls.Config{RootCAs: certs.CA})
	if _, err := coltracepb.NewTraceServiceClient(dial(t, r.Addr(), noCert)).Export(ctx, traceReq("a", "x")); err == nil {
		t.Error("mTLS receiver accepted a client without a certificate")
	}
	if _, err := coltracepb.NewTraceServiceClient(dial(t, r.Addr(), nil)).Export(ctx, traceReq("a", "x")); err == nil {
		t.Error("TLS receiver accepted plaintext")
	}
	if n := len(r.Spans()); n != 1 {
		t.Errorf("%d spans", n)
	}
}

func TestValue(t *testing.T) {
	v := &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
		{Value: &commonpb.AnyValue_IntValue{IntValue: 1}},
		{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}},
		{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1.5}},
		{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{str("k", "v")}}}},
		{},
	}}}}
	got := Value(v).([]any)
	if got[0] != int64(1) || got[1] != true || got[2] != 1.5 || got[3].(map[string]any)["k"] != "v" || got[4] != nil {
		t.Errorf("got %v", got)
	}
}
