package otel

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults applied to zero Options fields.
const (
	DefaultMaxProviders       = 1024
	DefaultQueueBytes         = 64 << 20
	DefaultQueueDiskBytes     = 1 << 30
	DefaultMaxExportBatchSize = 512
	DefaultBatchTimeout       = time.Second            // OTLP
	DefaultStdoutBatchTimeout = 200 * time.Millisecond // standard output
	DefaultShutdownTimeout    = 5 * time.Second
	DefaultMachineIDFile      = "/etc/machine-id"
	DefaultOTLPPort           = "4317"
)

// Environment variables consulted by New.
const (
	EnvEndpoint           = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint     = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvLogsEndpoint       = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
	EnvResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
)

// Options configures a Pipeline. The zero value exports nothing (both
// Traces and Logs are false); the other zero fields mean the defaults
// documented on each field.
//
// Options is meant to be the complete configuration, with the
// OTEL_EXPORTER_OTLP_* environment already merged in by the caller (see
// config.ApplyEnv). One exception keeps the environment useful on its
// own: when no endpoint applies to a signal but OTEL_EXPORTER_OTLP_ENDPOINT
// or the signal's OTEL_EXPORTER_OTLP_{TRACES,LOGS}_ENDPOINT is set, the
// signal is still exported over OTLP, and the exporter takes its
// endpoint and transport security from the environment itself.
type Options struct {
	// Endpoint is the OTLP/gRPC endpoint of all signals:
	// "host:port" (transport security decided by Insecure),
	// "http://host:port" (plaintext) or "https://host:port" (TLS).
	// A missing port means 4317; a URL path is ignored (gRPC has none).
	Endpoint string
	// TracesEndpoint and LogsEndpoint override Endpoint per signal.
	// A signal with no endpoint is written to Stdout as JSON lines.
	TracesEndpoint string
	LogsEndpoint   string
	// Insecure disables TLS for host:port endpoints. The scheme of a URL
	// endpoint wins over it.
	Insecure bool
	// Headers are sent with every export request.
	Headers map[string]string
	// Compression is "", "none" or "gzip".
	Compression string
	// Timeout bounds each export attempt (default DefaultTimeout).
	Timeout time.Duration
	// CACert is a PEM file of CA certificates to trust instead of the
	// system pool. ClientCert and ClientKey are PEM files for mutual TLS;
	// both or neither.
	CACert     string
	ClientCert string
	ClientKey  string
	// Retry configures retries of failed OTLP exports.
	Retry Retry

	// Traces and Logs enable the two signals.
	Traces bool
	Logs   bool

	// TraceKey keys the hash that derives each connection's trace and
	// span IDs (see connIDs); empty means DefaultTraceKey. Agents whose
	// spans are to join in one trace must share it.
	TraceKey string

	// Stdout receives the JSON lines of signals without an endpoint;
	// nil means os.Stdout. It is never closed.
	Stdout io.Writer

	// MaxProviders bounds the number of workloads whose encoded resource
	// is kept; default DefaultMaxProviders.
	MaxProviders int
	// BatchTimeout is the longest a record waits in an open batch before
	// the batch is queued for export (or, on standard output, before its
	// line is written); default DefaultBatchTimeout with an OTLP signal,
	// DefaultStdoutBatchTimeout otherwise.
	BatchTimeout time.Duration
	// QueueBytes bounds the encoded batches waiting to be sent, both
	// signals together; a batch beyond it is dropped (and counted)
	// rather than blocking Emit. Default DefaultQueueBytes.
	QueueBytes int64
	// MaxInFlight bounds the export requests of one signal under way at
	// once (default DefaultMaxInFlight); batches are sent in order, and
	// with more than one in flight they may arrive out of order.
	MaxInFlight int
	// QueueDir, when set, keeps every queued batch in a file there until
	// it is delivered, so that batches survive a restart (see
	// diskqueue.go); QueueDiskBytes bounds those files (default
	// DefaultQueueDiskBytes). One Exporter per directory: a second one is
	// refused.
	QueueDir       string
	QueueDiskBytes int64
	// Logger receives the export's own messages (failures, recoveries,
	// drops), each naming its signal; nil discards them.
	Logger *slog.Logger
	// MaxExportBatchSize bounds the records of one export request;
	// default DefaultMaxExportBatchSize.
	MaxExportBatchSize int
	// ShutdownTimeout bounds Shutdown when its context has no deadline;
	// default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// HostName is host.name; empty means os.Hostname().
	HostName string
	// HostID is host.id; empty means the content of MachineIDFile
	// (default /etc/machine-id; host.id is omitted if it cannot be read).
	HostID        string
	MachineIDFile string
	// OmitCommandArgs leaves process.command_args (the full argv, which
	// may hold secrets) out of resources; process.command is kept.
	OmitCommandArgs bool

	// Getenv reads the environment (OTEL_RESOURCE_ATTRIBUTES, the
	// endpoint variables above and, for logs without an endpoint in
	// Options, the other OTEL_EXPORTER_OTLP_LOGS_*/OTEL_EXPORTER_OTLP_*
	// settings); nil means os.Getenv. otlptracegrpc, which sends traces,
	// reads its OTEL_EXPORTER_OTLP_* settings from the process
	// environment itself where Options are silent.
	Getenv func(string) string
}

// Retry configures the retries of failed OTLP exports. Zero durations
// mean the defaults: DefaultRetryInitial, doubling up to DefaultRetryMax,
// and no limit on the total (MaxElapsedTime 0): a retryable failure is
// retried until it succeeds, while new batches wait in the queue.
type Retry struct {
	Disabled        bool
	InitialInterval time.Duration
	MaxInterval     time.Duration
	MaxElapsedTime  time.Duration
}

func (o *Options) getenv(name string) string {
	if o.Getenv != nil {
		return strings.TrimSpace(o.Getenv(name))
	}
	return strings.TrimSpace(os.Getenv(name))
}

func (o *Options) maxProviders() int {
	if o.MaxProviders > 0 {
		return o.MaxProviders
	}
	return DefaultMaxProviders
}

func (o *Options) shutdownTimeout() time.Duration {
	if o.ShutdownTimeout > 0 {
		return o.ShutdownTimeout
	}
	return DefaultShutdownTimeout
}

func (o *Options) queueBytes() int64 {
	if o.QueueBytes > 0 {
		return o.QueueBytes
	}
	return DefaultQueueBytes
}

func (o *Options) queueDiskBytes() int64 {
	if o.QueueDiskBytes > 0 {
		return o.QueueDiskBytes
	}
	return DefaultQueueDiskBytes
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// signalTarget says where one signal goes.
type signalTarget struct {
	endpoint string // from Options; "" with fromEnv or for stdout
	fromEnv  bool   // Options are silent, the environment names an endpoint
}

func (t signalTarget) otlp() bool { return t.endpoint != "" || t.fromEnv }

func (o *Options) tracesTarget() signalTarget {
	return o.target(o.TracesEndpoint, EnvTracesEndpoint)
}

func (o *Options) logsTarget() signalTarget {
	return o.target(o.LogsEndpoint, EnvLogsEndpoint)
}

func (o *Options) target(signalEndpoint, signalEnv string) signalTarget {
	if signalEndpoint != "" {
		return signalTarget{endpoint: signalEndpoint}
	}
	if o.Endpoint != "" {
		return signalTarget{endpoint: o.Endpoint}
	}
	if o.getenv(signalEnv) != "" || o.getenv(EnvEndpoint) != "" {
		return signalTarget{fromEnv: true}
	}
	return signalTarget{}
}

// grpcEndpoint is a parsed endpoint.
type grpcEndpoint struct {
	hostport string // host:port for grpc
	insecure bool
}

// parseEndpoint parses an endpoint in one of the forms documented on
// Options.Endpoint. insecure applies to the host:port form.
func parseEndpoint(s string, insecure bool) (grpcEndpoint, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return grpcEndpoint{}, errors.New("empty endpoint")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return grpcEndpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
		}
		switch strings.ToLower(u.Scheme) {
		case "http":
			insecure = true
		case "https":
			insecure = false
		default:
			return grpcEndpoint{}, fmt.Errorf("endpoint %q: scheme %q is not http or https", s, u.Scheme)
		}
		if u.Host == "" || u.Hostname() == "" {
			return grpcEndpoint{}, fmt.Errorf("endpoint %q: no host", s)
		}
		if u.User != nil {
			return grpcEndpoint{}, fmt.Errorf("endpoint %q: user information is not supported", s)
		}
		port := u.Port()
		if port == "" {
			port = DefaultOTLPPort
		}
		if err := checkPort(port); err != nil {
			return grpcEndpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
		}
		return grpcEndpoint{hostport: net.JoinHostPort(u.Hostname(), port), insecure: insecure}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host (or a bare IPv6 address) gets the default port.
		var ae *net.AddrError
		if !errors.As(err, &ae) || !strings.Contains(ae.Err, "missing port") {
			return grpcEndpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
		}
		host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), DefaultOTLPPort
	}
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return grpcEndpoint{}, fmt.Errorf("endpoint %q: invalid host", s)
	}
	if err := checkPort(port); err != nil {
		return grpcEndpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
	}
	return grpcEndpoint{hostport: net.JoinHostPort(host, port), insecure: insecure}, nil
}

func checkPort(p string) error {
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' || n > 65535 {
			return fmt.Errorf("invalid port %q", p)
		}
		n = n*10 + int(c-'0')
	}
	if p == "" || n < 1 || n > 65535 {
		return fmt.Errorf("invalid port %q", p)
	}
	return nil
}

// tlsConfig builds the client TLS configuration from the certificate
// files of o.
func (o *Options) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("reading CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA certificate %s: no PEM certificate found", o.CACert)
		}
		cfg.RootCAs = pool
	}
	if (o.ClientCert == "") != (o.ClientKey == "") {
		return nil, errors.New("client certificate and client key must be set together")
	}
	if o.ClientCert != "" {
		pair, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func (o *Options) checkCompression() error {
	switch o.Compression {
	case "", "none", "gzip":
		return nil
	}
	return fmt.Errorf("compression %q is not gzip or none", o.Compression)
}

// exporterSettings is what both OTLP exporters are configured with,
// independent of the exporter package's option types.
type exporterSettings struct {
	endpoint *grpcEndpoint // nil: taken from the environment by the exporter
	tls      *tls.Config   // with a TLS endpoint
	headers  map[string]string
	gzip     bool
	timeout  time.Duration
	retry    *Retry
}

func (o *Options) exporterSettings(t signalTarget) (exporterSettings, error) {
	var s exporterSettings
	if err := o.checkCompression(); err != nil {
		return s, err
	}
	if t.endpoint != "" {
		ep, err := parseEndpoint(t.endpoint, o.Insecure)
		if err != nil {
			return s, err
		}
		s.endpoint = &ep
		if !ep.insecure {
			if s.tls, err = o.tlsConfig(); err != nil {
				return s, err
			}
		}
	}
	if len(o.Headers) > 0 {
		s.headers = o.Headers
	}
	s.gzip = o.Compression == "gzip"
	s.timeout = o.Timeout
	r := o.Retry
	if r != (Retry{}) {
		s.retry = &r
	}
	return s, nil
}
