package otel

import (
	"context"
	"errors"
	"fmt"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// grpcClient is the gRPC connection of one signal and what each of its
// export calls carries. Both signals are sent the same way, with the
// settings of Options alone: nothing here reads the environment. Retries
// are the sender's; gRPC's own are off (no service config enables them).
type grpcClient struct {
	conn     *grpc.ClientConn
	md       metadata.MD // the headers; nil without any
	callOpts []grpc.CallOption
	timeout  time.Duration // of one call; 0 leaves it to the caller's context
}

// newGRPCClient makes the connection of a signal that goes over OTLP
// (t.otlp()). gRPC connects lazily and reconnects on its own.
func newGRPCClient(o *Options, t signalTarget, extra ...grpc.DialOption) (*grpcClient, error) {
	s, err := o.exporterSettings(t)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if !s.endpoint.Insecure {
		creds = credentials.NewTLS(s.tls)
	}
	opts := append(dialOptions(), grpc.WithTransportCredentials(creds))
	conn, err := grpc.NewClient(s.endpoint.HostPort, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP client: %w", err)
	}
	c := &grpcClient{conn: conn, timeout: s.timeout}
	if len(s.headers) > 0 {
		c.md = metadata.New(s.headers)
	}
	if s.gzip {
		c.callOpts = append(c.callOpts, grpc.UseCompressor(gzip.Name))
	}
	return c, nil
}

// dialOptions are the gRPC settings of both signals' connections: the
// marshal buffers of bufpool.go, and reconnects no further apart than the
// sender's retries (gRPC's own default backs off to 2 minutes, so after a
// long outage the collector would wait that long for the agent).
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		experimental.WithBufferPool(grpcBuffers),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(protoCodec{})),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: DefaultRetryMax},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
}

// call returns the context of one export call: ctx bounded by the
// client's timeout, carrying its headers.
func (c *grpcClient) call(ctx context.Context) (context.Context, context.CancelFunc) {
	cancel := context.CancelFunc(func() {})
	if c.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	if c.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, c.md)
	}
	return ctx, cancel
}

func (c *grpcClient) shutdown(context.Context) error { return c.conn.Close() }

// tracesTransport sends traces over the OTLP trace service. A body is
// the encoding of an ExportTraceServiceRequest (one ResourceSpans entry
// per resource), so it rides as the unknown fields of an empty request
// and is sent as it is.
type tracesTransport struct {
	*grpcClient
	client coltracepb.TraceServiceClient
}

func newTracesTransport(_ context.Context, o *Options, t signalTarget) (*tracesTransport, error) {
	c, err := newGRPCClient(o, t)
	if err != nil {
		return nil, err
	}
	return &tracesTransport{grpcClient: c, client: coltracepb.NewTraceServiceClient(c.conn)}, nil
}

func (t *tracesTransport) send(ctx context.Context, body []byte) (int64, error) {
	if !splitEntries(body, func([]byte) {}) {
		return 0, errPermanent{errors.New("malformed encoded batch")}
	}
	resp, err := export(ctx, t.grpcClient, t.client.Export, &coltracepb.ExportTraceServiceRequest{}, body)
	return resp.GetPartialSuccess().GetRejectedSpans(), err
}

// logsTransport sends logs over the OTLP logs service, the body riding
// as the unknown fields of an ExportLogsServiceRequest, which is exactly
// its encoding.
type logsTransport struct {
	*grpcClient
	client collogpb.LogsServiceClient
}

func newLogsTransport(o *Options, t signalTarget) (*logsTransport, error) {
	c, err := newGRPCClient(o, t)
	if err != nil {
		return nil, err
	}
	return &logsTransport{grpcClient: c, client: collogpb.NewLogsServiceClient(c.conn)}, nil
}

func (t *logsTransport) send(ctx context.Context, body []byte) (int64, error) {
	resp, err := export(ctx, t.grpcClient, t.client.Export, &collogpb.ExportLogsServiceRequest{}, body)
	return resp.GetPartialSuccess().GetRejectedLogRecords(), err
}

// export makes one export call of c with the empty request req carrying
// body as its unknown fields. On an error the response is nil, whose
// getters return zero.
func export[Req interface{ ProtoReflect() protoreflect.Message }, Resp any](ctx context.Context, c *grpcClient,
	call func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, body []byte) (Resp, error) {
	ctx, cancel := c.call(ctx)
	defer cancel()
	req.ProtoReflect().SetUnknown(protoreflect.RawFields(body))
	return call(ctx, req, c.callOpts...)
}
