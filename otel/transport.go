package otel

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// tracesTransport sends traces through otlptracegrpc's public client, so
// that the exporter's endpoint, TLS, header, compression and timeout
// handling and its OTEL_EXPORTER_OTLP_* variables apply as they always
// did. The encoded body of each resource rides as the unknown fields of
// an otherwise empty tracepb.ResourceSpans: proto.Marshal copies them,
// and a receiver decodes ordinary resources, scopes and spans. Retries
// are the sender's, so the client's own are off.
type tracesTransport struct {
	client otlptrace.Client
}

func newTracesTransport(ctx context.Context, o *Options, t signalTarget) (*tracesTransport, error) {
	s, err := o.exporterSettings(t)
	if err != nil {
		return nil, err
	}
	opts := []otlptracegrpc.Option{
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}),
		otlptracegrpc.WithDialOption(dialOptions()...),
	}
	if s.endpoint != nil {
		opts = append(opts, otlptracegrpc.WithEndpoint(s.endpoint.hostport))
		if s.endpoint.insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(s.tls)))
		}
	}
	if s.headers != nil {
		opts = append(opts, otlptracegrpc.WithHeaders(s.headers))
	}
	if s.gzip {
		opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
	}
	if s.timeout > 0 {
		opts = append(opts, otlptracegrpc.WithTimeout(s.timeout))
	}
	c := otlptracegrpc.NewClient(opts...)
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("creating OTLP trace client: %w", err)
	}
	return &tracesTransport{client: c}, nil
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

func (t *tracesTransport) send(ctx context.Context, body []byte) (int64, error) {
	var rss []*tracepb.ResourceSpans
	if !splitEntries(body, func(entry []byte) {
		rs := &tracepb.ResourceSpans{}
		rs.ProtoReflect().SetUnknown(protoreflect.RawFields(entry))
		rss = append(rss, rs)
	}) {
		return 0, errPermanent{errors.New("malformed encoded batch")}
	}
	return partialSuccess(t.client.UploadTraces(ctx, rss))
}

func (t *tracesTransport) shutdown(ctx context.Context) error { return t.client.Stop(ctx) }

// partialSuccess separates the partial success otlptracegrpc reports as
// an error (its type is internal; its exported fields and Error text are
// not) from a failure. It returns the rejected count and nil for a
// partial success alone.
func partialSuccess(err error) (int64, error) {
	if err == nil {
		return 0, nil
	}
	var st interface{ GRPCStatus() *status.Status }
	if errors.As(err, &st) {
		return 0, err
	}
	if n, ok := findRejected(err); ok {
		return n, nil
	}
	return 0, err
}

// findRejected looks in err's tree for a value with an int64 field
// RejectedItems (otlptracegrpc's PartialSuccess) and returns that field,
// else parses its "(N spans rejected)" text.
func findRejected(err error) (int64, bool) {
	for _, e := range flatten(err) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct {
			if f := v.FieldByName("RejectedItems"); f.IsValid() && f.CanInt() {
				return f.Int(), true
			}
		}
		msg := e.Error()
		if strings.HasPrefix(msg, "OTLP partial success:") {
			if i := strings.LastIndex(msg, "("); i >= 0 {
				if n, perr := strconv.ParseInt(strings.Fields(msg[i+1:])[0], 10, 64); perr == nil {
					return n, true
				}
			}
			return 0, true
		}
	}
	return 0, false
}

func flatten(err error) []error {
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, flatten(e)...)
		}
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			out = append(out, flatten(e)...)
		}
	}
	return out
}

// logsTransport sends logs over the OTLP logs gRPC service
// (otlploggrpc has no public client), with the same settings as traces:
// the body rides as the unknown fields of an ExportLogsServiceRequest,
// which is exactly its encoding.
type logsTransport struct {
	conn     *grpc.ClientConn
	client   collogpb.LogsServiceClient
	md       metadata.MD
	callOpts []grpc.CallOption
	timeout  time.Duration
}

func newLogsTransport(o *Options, t signalTarget) (*logsTransport, error) {
	s, err := o.exporterSettings(t)
	if err != nil {
		return nil, err
	}
	if s.endpoint == nil {
		if s, err = o.logsEnvSettings(s); err != nil {
			return nil, err
		}
	}
	creds := insecure.NewCredentials()
	if !s.endpoint.insecure {
		creds = credentials.NewTLS(s.tls)
	}
	conn, err := grpc.NewClient(s.endpoint.hostport, append(dialOptions(), grpc.WithTransportCredentials(creds))...)
	if err != nil {
		return nil, fmt.Errorf("creating OTLP log client: %w", err)
	}
	lt := &logsTransport{conn: conn, client: collogpb.NewLogsServiceClient(conn), timeout: s.timeout}
	if len(s.headers) > 0 {
		lt.md = metadata.New(s.headers)
	}
	if s.gzip {
		lt.callOpts = append(lt.callOpts, grpc.UseCompressor(gzip.Name))
	}
	return lt, nil
}

func (t *logsTransport) send(ctx context.Context, body []byte) (int64, error) {
	if t.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.timeout)
		defer cancel()
	}
	if t.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, t.md)
	}
	req := &collogpb.ExportLogsServiceRequest{}
	req.ProtoReflect().SetUnknown(protoreflect.RawFields(body))
	resp, err := t.client.Export(ctx, req, t.callOpts...)
	if err != nil {
		return 0, err
	}
	if ps := resp.GetPartialSuccess(); ps != nil {
		return ps.GetRejectedLogRecords(), nil
	}
	return 0, nil
}

func (t *logsTransport) shutdown(context.Context) error { return t.conn.Close() }

// Environment variables of the logs signal that otlploggrpc used to read
// itself, consulted when Options name no endpoint for logs.
const (
	envLogsInsecure    = "OTEL_EXPORTER_OTLP_LOGS_INSECURE"
	envInsecure        = "OTEL_EXPORTER_OTLP_INSECURE"
	envLogsHeaders     = "OTEL_EXPORTER_OTLP_LOGS_HEADERS"
	envHeaders         = "OTEL_EXPORTER_OTLP_HEADERS"
	envLogsCompression = "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"
	envCompression     = "OTEL_EXPORTER_OTLP_COMPRESSION"
	envLogsTimeout     = "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"
	envTimeout         = "OTEL_EXPORTER_OTLP_TIMEOUT"
	envLogsCert        = "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"
	envCert            = "OTEL_EXPORTER_OTLP_CERTIFICATE"
	envLogsClientCert  = "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE"
	envClientCert      = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
	envLogsClientKey   = "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY"
	envClientKey       = "OTEL_EXPORTER_OTLP_CLIENT_KEY"
)

// logsEnvSettings completes s from the environment, the signal's variable
// before the general one, where Options are silent.
func (o *Options) logsEnvSettings(s exporterSettings) (exporterSettings, error) {
	get := func(signal, general string) string {
		if v := o.getenv(signal); v != "" {
			return v
		}
		return o.getenv(general)
	}
	ep := get(EnvLogsEndpoint, EnvEndpoint)
	insec := false
	if v := get(envLogsInsecure, envInsecure); v != "" {
		b, err := strconv.ParseBool(strings.ToLower(v))
		if err != nil {
			return s, fmt.Errorf("OTEL_EXPORTER_OTLP_INSECURE: %q is not true or false", v)
		}
		insec = b
	}
	parsed, err := parseEndpoint(ep, insec || o.Insecure)
	if err != nil {
		return s, err
	}
	s.endpoint = &parsed
	if s.headers == nil {
		if v := get(envLogsHeaders, envHeaders); v != "" {
			kvs, err := ParseResourceAttributes(v)
			if err != nil {
				return s, fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %w", err)
			}
			s.headers = make(map[string]string, len(kvs))
			for _, kv := range kvs {
				s.headers[string(kv.Key)] = kv.Value.AsString()
			}
		}
	}
	if o.Compression == "" {
		switch v := get(envLogsCompression, envCompression); v {
		case "gzip":
			s.gzip = true
		case "", "none":
		default:
			return s, fmt.Errorf("OTEL_EXPORTER_OTLP_COMPRESSION: %q is not gzip or none", v)
		}
	}
	if s.timeout == 0 {
		if v := get(envLogsTimeout, envTimeout); v != "" {
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 {
				return s, fmt.Errorf("OTEL_EXPORTER_OTLP_TIMEOUT: %q is not a positive number of milliseconds", v)
			}
			s.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if !parsed.insecure {
		eo := *o
		if eo.CACert == "" {
			eo.CACert = get(envLogsCert, envCert)
		}
		if eo.ClientCert == "" && eo.ClientKey == "" {
			eo.ClientCert, eo.ClientKey = get(envLogsClientCert, envClientCert), get(envLogsClientKey, envClientKey)
		}
		if s.tls, err = eo.tlsConfig(); err != nil {
			return s, err
		}
	}
	return s, nil
}
