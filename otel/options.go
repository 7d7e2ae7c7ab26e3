package otel

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/connwatch/connwatch/metrics"
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

// EnvResourceAttributes is the one environment variable New reads
// (through Options.Getenv).
const EnvResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"

// Options configures a Pipeline. The zero value exports nothing (both
// Traces and Logs are false); the other zero fields mean the defaults
// documented on each field.
//
// Options is the complete configuration of the export: New reads no
// OTEL_EXPORTER_OTLP_* variable, so a signal goes over OTLP exactly when
// an endpoint of Options applies to it. (The agent's configuration merges
// those variables in before it builds Options; see config.Config.ApplyEnv.)
type Options struct {
	// Endpoint is the OTLP/gRPC endpoint of all signals:
	// "host:port" (transport security decided by Insecure),
	// "http://host:port" (plaintext) or "https://host:port" (TLS).
	// A missing port means 4317; a URL path is ignored (gRPC has none).
	// ParseEndpoint says which strings are endpoints.
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
	// Compression is "", CompressionNone or CompressionGzip (see
	// CheckCompression); "" is CompressionNone.
	Compression string
	// Timeout bounds each export attempt (default DefaultTimeout).
	Timeout time.Duration
	// CACert is a PEM file of CA certificates to trust instead of the
	// system pool. ClientCert and ClientKey are PEM files for mutual TLS;
	// both or neither (see CheckClientPair).
	CACert     string
	ClientCert string
	ClientKey  string
	// Retry configures retries of failed OTLP exports.
	Retry Retry

	// Traces and Logs enable the two signals.
	Traces bool
	Logs   bool

	// Metrics, when set, counts every connect result, accept and close
	// (before sampling) under the event's workload. They are sent over
	// OTLP (otlpmetricgrpc) to MetricsEndpoint, else Endpoint, every
	// MetricsInterval (default metrics.DefaultInterval), with the other
	// settings of the signals, when SendMetrics is set; otherwise, or with
	// neither endpoint, they are only aggregated (for a Prometheus scrape
	// of the Store).
	Metrics         *metrics.Store
	SendMetrics     bool // send Metrics over OTLP when an endpoint applies
	MetricsEndpoint string
	MetricsInterval time.Duration

	// Sampled applies SampleRatio (0 to 1) to the log records and spans
	// of successful connections: a connection is kept when its trace ID
	// falls in the ratio, so both of its ends decide alike. Failed
	// connections are always kept. Without Sampled everything is kept.
	Sampled     bool
	SampleRatio float64

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

	// Getenv reads OTEL_RESOURCE_ATTRIBUTES; nil means os.Getenv.
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
	endpoint string // "" for standard output
}

func (t signalTarget) otlp() bool { return t.endpoint != "" }

func (o *Options) tracesTarget() signalTarget {
	return signalTarget{endpoint: cmp.Or(o.TracesEndpoint, o.Endpoint)}
}

func (o *Options) logsTarget() signalTarget {
	return signalTarget{endpoint: cmp.Or(o.LogsEndpoint, o.Endpoint)}
}

// Endpoint is a parsed OTLP/gRPC endpoint.
type Endpoint struct {
	HostPort string // what gRPC dials: host:port, with DefaultOTLPPort when none was given
	Insecure bool   // plaintext instead of TLS
}

// ParseEndpoint parses an endpoint in one of the forms documented on
// Options.Endpoint: host or host:port, plaintext when insecure and TLS
// otherwise; http://host[:port] (plaintext) or https://host[:port] (TLS),
// whose path, query and fragment are ignored. The host is a name, an IPv4
// address or a bracketed IPv6 address; a port is 1 to 65535. The
// configuration checks its endpoints with ParseEndpoint, so a string it
// accepts is one the exporter can dial and the other way round.
func ParseEndpoint(s string, insecure bool) (Endpoint, error) {
	bad := fmt.Errorf("%q is not a valid endpoint (expected host, host:port or an http:// or https:// URL)", s)
	var u *url.URL
	var err error
	if strings.Contains(s, "://") {
		u, err = url.Parse(s) // lower-cases the scheme
		if err != nil || u.Opaque != "" {
			return Endpoint{}, bad
		}
		switch u.Scheme {
		case "http":
			insecure = true
		case "https":
			insecure = false
		default:
			return Endpoint{}, bad
		}
	} else {
		// url.Parse refuses a port that is not digits with a message
		// about the URL; say that it is the port.
		if _, port, err := net.SplitHostPort(s); err == nil && isAlnum(port) && !validPort(port) {
			return Endpoint{}, fmt.Errorf("%q has an invalid port %q (expected 1 to 65535)", s, port)
		}
		u, err = url.Parse("//" + s)
		if err != nil || u.Host != s {
			return Endpoint{}, bad
		}
	}
	host := u.Hostname()
	if u.User != nil || host == "" || (strings.Contains(host, ":") && !strings.HasPrefix(u.Host, "[")) {
		return Endpoint{}, bad
	}
	port := u.Port()
	switch {
	case port != "" && !validPort(port):
		return Endpoint{}, fmt.Errorf("%q has an invalid port %q (expected 1 to 65535)", s, port)
	case strings.HasSuffix(u.Host, ":"):
		return Endpoint{}, fmt.Errorf("%q has an empty port", s)
	case port == "":
		port = DefaultOTLPPort
	}
	return Endpoint{HostPort: net.JoinHostPort(host, port), Insecure: insecure}, nil
}

// isAlnum reports whether s is a non-empty run of ASCII letters and
// digits.
func isAlnum(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// validPort reports whether port is a decimal number from 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}

// CheckClientPair says what is wrong with a client certificate and key
// pair for mutual TLS, or nil: both are given or neither. The
// configuration checks its pair with it once every source of a setting
// has been applied.
func CheckClientPair(cert, key string) error {
	switch {
	case cert != "" && key == "":
		return errors.New("client_certificate and client_key must be given together (client_key is missing)")
	case key != "" && cert == "":
		return errors.New("client_certificate and client_key must be given together (client_certificate is missing)")
	}
	return nil
}

// Values of Options.Compression.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
)

// CheckCompression says what is wrong with a compression name, or nil:
// it is "", CompressionNone or CompressionGzip.
func CheckCompression(s string) error {
	switch s {
	case "", CompressionNone, CompressionGzip:
		return nil
	}
	return fmt.Errorf("%q is not one of %s, %s", s, CompressionGzip, CompressionNone)
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
	if err := CheckClientPair(o.ClientCert, o.ClientKey); err != nil {
		return nil, err
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

// exporterSettings is what the connection of one signal is configured
// with.
type exporterSettings struct {
	endpoint Endpoint
	tls      *tls.Config // with a TLS endpoint
	headers  map[string]string
	gzip     bool
	timeout  time.Duration
	retry    *Retry
}

// exporterSettings resolves the settings of a signal that goes over OTLP
// (t.otlp()).
func (o *Options) exporterSettings(t signalTarget) (exporterSettings, error) {
	var s exporterSettings
	if err := CheckCompression(o.Compression); err != nil {
		return s, fmt.Errorf("compression: %w", err)
	}
	ep, err := ParseEndpoint(t.endpoint, o.Insecure)
	if err != nil {
		return s, err
	}
	s.endpoint = ep
	if !ep.Insecure {
		if s.tls, err = o.tlsConfig(); err != nil {
			return s, err
		}
	}
	if len(o.Headers) > 0 {
		s.headers = o.Headers
	}
	s.gzip = o.Compression == CompressionGzip
	s.timeout = o.Timeout
	r := o.Retry
	if r != (Retry{}) {
		s.retry = &r
	}
	return s, nil
}
