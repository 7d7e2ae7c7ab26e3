// Package otlptest provides an OTLP/gRPC receiver for tests: it accepts
// trace and log export requests on a loopback port, records them, and can
// be stopped, restarted on the same port, slowed down, made to fail or
// made to answer with a partial success, to exercise exporters against
// collector outages.
package otlptest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed requests
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Option configures a Receiver.
type Option func(*config)

type config struct {
	addr string
	tls  *tls.Config
}

// WithAddr sets the listen address; default "127.0.0.1:0" (a free port).
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithTLS serves TLS with cfg (see Certs.ServerTLS); set cfg.ClientCAs and
// cfg.ClientAuth for mutual TLS.
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// Receiver is an OTLP/gRPC trace, logs and metrics receiver. All methods are safe
// for concurrent use.
type Receiver struct {
	cfg  config
	addr string // host:port, fixed after the first listen

	mu        sync.Mutex
	srv       *grpc.Server
	running   bool
	delay     time.Duration
	failCode  codes.Code
	partial   *partial // non-nil: answer with a partial success
	traceReqs []*coltracepb.ExportTraceServiceRequest
	logReqs   []*collogspb.ExportLogsServiceRequest
	metReqs   []*colmetricspb.ExportMetricsServiceRequest
	headers   []metadata.MD
	encodings []string
	rejected  int
	changed   chan struct{} // closed and replaced on every recorded request
}

// Start starts a Receiver for a test, failing it on error, and stops the
// Receiver when the test ends.
func Start(tb testing.TB, opts ...Option) *Receiver {
	tb.Helper()
	r, err := Listen(opts...)
	if err != nil {
		tb.Fatalf("otlptest: %v", err)
	}
	tb.Cleanup(r.Stop)
	return r
}

// Listen starts a Receiver.
func Listen(opts ...Option) (*Receiver, error) {
	r := &Receiver{cfg: config{addr: "127.0.0.1:0"}, changed: make(chan struct{})}
	for _, o := range opts {
		o(&r.cfg)
	}
	if err := r.listen(r.cfg.addr); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Receiver) listen(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	var sopts []grpc.ServerOption
	if r.cfg.tls != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(r.cfg.tls)))
	}
	sopts = append(sopts, grpc.StatsHandler(encodingRecorder{}))
	srv := grpc.NewServer(sopts...)
	coltracepb.RegisterTraceServiceServer(srv, traceService{r: r})
	collogspb.RegisterLogsServiceServer(srv, logsService{r: r})
	colmetricspb.RegisterMetricsServiceServer(srv, metricsService{r: r})
	r.mu.Lock()
	r.srv, r.running = srv, true
	r.addr = lis.Addr().String()
	r.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
	return nil
}

// Addr returns the host:port the receiver listens on.
func (r *Receiver) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Endpoint returns the receiver's endpoint as a URL: "http://host:port",
// or "https://host:port" with TLS.
func (r *Receiver) Endpoint() string {
	if r.cfg.tls != nil {
		return "https://" + r.Addr()
	}
	return "http://" + r.Addr()
}

// Stop stops the receiver at once, closing every connection, as a
// collector crash would. Recorded requests are kept. Stopping a stopped
// receiver does nothing.
func (r *Receiver) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv, r.running = nil, false
	r.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Restart listens again on the same port after Stop (retrying for up to
// two seconds while the port is still busy). Restarting a running
// receiver does nothing.
func (r *Receiver) Restart() error {
	r.mu.Lock()
	running, addr := r.running, r.addr
	r.mu.Unlock()
	if running {
		return nil
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := r.listen(addr)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SetDelay makes every request wait d before it is answered (or until
// the client gives up). Zero removes the delay.
func (r *Receiver) SetDelay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
}

// SetFailure makes every request fail with code (codes.Unavailable
// simulates an overloaded or restarting collector; the exporters retry
// it). Failed requests are counted by Rejected but not recorded.
// codes.OK restores normal operation.
func (r *Receiver) SetFailure(code codes.Code) {
	r.mu.Lock()
	r.failCode = code
	r.mu.Unlock()
}

// partial is the partial success the receiver answers with.
type partial struct {
	rejected int64
	msg      string
}

// SetPartialSuccess makes every accepted request of both services answer
// with a partial success: ExportTracePartialSuccess{RejectedSpans:
// rejected} or ExportLogsPartialSuccess{RejectedLogRecords: rejected},
// with msg as its error_message. The request is still recorded (its
// records are all kept: the receiver does not decide which ones it
// "rejected"). rejected 0 and msg "" restore full success.
func (r *Receiver) SetPartialSuccess(rejected int64, msg string) {
	r.mu.Lock()
	if rejected == 0 && msg == "" {
		r.partial = nil
	} else {
		r.partial = &partial{rejected: rejected, msg: msg}
	}
	r.mu.Unlock()
}

func (r *Receiver) partialSuccess() *partial {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.partial
}

// Reset forgets every recorded request.
func (r *Receiver) Reset() {
	r.mu.Lock()
	r.traceReqs, r.logReqs, r.metReqs, r.headers, r.encodings, r.rejected = nil, nil, nil, nil, nil, 0
	r.mu.Unlock()
}

// admit applies the delay and the failure mode to one request.
func (r *Receiver) admit(ctx context.Context) error {
	r.mu.Lock()
	delay, code := r.delay, r.failCode
	r.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if code != codes.OK {
		r.mu.Lock()
		r.rejected++
		r.mu.Unlock()
		return status.Error(code, "otlptest: failure injected")
	}
	return nil
}

func (r *Receiver) record(ctx context.Context, add func()) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	add()
	r.headers = append(r.headers, md.Copy())
	enc := ""
	if info, ok := ctx.Value(rpcInfoKey{}).(*rpcInfo); ok {
		enc = info.encoding
	}
	r.encodings = append(r.encodings, enc)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (s traceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if err := s.r.admit(ctx); err != nil {
		return nil, err
	}
	s.r.record(ctx, func() { s.r.traceReqs = append(s.r.traceReqs, req) })
	resp := &coltracepb.ExportTraceServiceResponse{}
	if p := s.r.partialSuccess(); p != nil {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: p.rejected, ErrorMessage: p.msg}
	}
	return resp, nil
}

type logsService struct {
	collogspb.UnimplementedLogsServiceServer
	r *Receiver
}

func (s logsService) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	if err := s.r.admit(ctx); err != nil {
		return nil, err
	}
	s.r.record(ctx, func() { s.r.logReqs = append(s.r.logReqs, req) })
	resp := &collogspb.ExportLogsServiceResponse{}
	if p := s.r.partialSuccess(); p != nil {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: p.rejected, ErrorMessage: p.msg}
	}
	return resp, nil
}

// TraceRequests returns the recorded trace export requests in arrival
// order. The requests must not be modified.
func (r *Receiver) TraceRequests() []*coltracepb.ExportTraceServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.traceReqs)
}

// LogRequests returns the recorded log export requests in arrival order.
// The requests must not be modified.
func (r *Receiver) LogRequests() []*collogspb.ExportLogsServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.logReqs)
}

// Headers returns the gRPC metadata of every recorded request, in arrival
// order (trace and log requests interleaved).
func (r *Receiver) Headers() []metadata.MD {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.headers)
}

// Encodings returns the compression of every recorded request ("gzip",
// or "" when uncompressed), in the order of Headers.
func (r *Receiver) Encodings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.encodings)
}

// rpcInfo carries what the stats handler learns about one RPC to its
// handler.
type rpcInfo struct{ encoding string }

type rpcInfoKey struct{}

// encodingRecorder is a stats.Handler noting the compression of requests.
type encodingRecorder struct{}

func (encodingRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcInfoKey{}, &rpcInfo{})
}

func (encodingRecorder) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		if info, ok := ctx.Value(rpcInfoKey{}).(*rpcInfo); ok {
			info.encoding = h.Compression
		}
	}
}

func (encodingRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (encodingRecorder) HandleConn(context.Context, stats.ConnStats) {}

// Rejected returns the number of requests failed by SetFailure.
func (r *Receiver) Rejected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejected
}
