// Package config loads, validates and prints the connwatch YAML
// configuration, applies the OpenTelemetry environment overrides, and
// computes the contents of the kernel visibility map from the
// configured rules.
//
// A configuration file is parsed strictly: unknown keys, duplicate keys,
// values of the wrong type and values out of range are reported with the
// file name, line and column of the offending key or value. Every key is
// optional; a missing key keeps its value from [Default], and an empty
// file yields the defaults. The annotated example returned by [Example]
// (the file connwatch.yaml in this directory) documents every key.
//
// The typical start-up sequence is:
//
//	cfg, err := config.Load(path) // or config.Default() without a file
//	if err != nil { ... }
//	if err := cfg.ApplyEnv(os.Getenv); err != nil { ... }
package config

import (
	"fmt"
	"time"
)

// Values of probe.attach.
const (
	AttachAuto       = "auto"       // pick the best mechanism the kernel supports
	AttachFentry     = "fentry"     // BPF trampoline (fentry) on tcp_connect
	AttachKprobe     = "kprobe"     // kprobe on tcp_connect
	AttachTracepoint = "tracepoint" // a kernel tracepoint
)

// Values of probe.transport.
const (
	TransportAuto    = "auto"    // the ring buffer where the kernel has one, else perf
	TransportPerf    = "perf"    // the perf event array, one buffer per CPU
	TransportRingbuf = "ringbuf" // one BPF ring buffer (Linux 5.8+)
)

// Values of monitor.
const (
	MonitorAll        = "all"        // host processes and containers
	MonitorHost       = "host"       // host processes only
	MonitorContainers = "containers" // containers only
)

// Values of export.otlp.compression. The empty string leaves the choice
// to the exporter (which does not compress).
const (
	CompressionGzip = "gzip"
	CompressionNone = "none"
)

// Config is the complete connwatch configuration. The zero value is not
// useful; start from [Default], [Load] or [Parse].
type Config struct {
	// Probe selects how the kernel probe is attached.
	Probe Probe
	// Monitor is one of MonitorAll, MonitorHost or MonitorContainers. It
	// is a load-time switch of the probe and does not influence
	// [Config.VisibilityEntries].
	Monitor string
	// Visibility says which scopes are traced for which namespaces.
	Visibility Visibility
	// Export configures where events go.
	Export Export
	// Telemetry configures the agent's own metrics and health endpoint.
	Telemetry Telemetry
	// Enrich configures where process metadata is read from.
	Enrich Enrich
}

// Probe is the probe section.
type Probe struct {
	// Attach is one of AttachAuto, AttachFentry, AttachKprobe or
	// AttachTracepoint.
	Attach string
	// Transport is one of TransportAuto, TransportPerf or
	// TransportRingbuf: how events leave the kernel.
	Transport string
	// IncludeAgent reports the agent's own connections (to its collector,
	// for example). Off by default: the kernel program drops them by the
	// agent's tgid, so that an outage does not make telemetry about the
	// agent's own reconnects.
	IncludeAgent bool
	// MaxConnections bounds the open connections the kernel tracks for
	// their close records (its LRU map); beyond it the least recently
	// reported is forgotten, counted in
	// connwatch_kernel_connections_forgotten_total.
	MaxConnections int
}

// Visibility is the visibility section. Scope lists hold scope names
// (see [ScopeNumber]); a listed scope is traced, an unlisted one ignored.
// Scope lists are never nil: an empty list traces nothing.
type Visibility struct {
	// Host lists the scopes traced for host processes.
	Host []string
	// Default lists the scopes traced for namespaces no rule matches.
	Default []string
	// Rules are tried in order; the first matching rule wins.
	Rules []Rule
}

// Rule assigns scopes to the namespaces its Match selects.
type Rule struct {
	// Match selects namespaces.
	Match Match
	// Scopes lists the scopes traced for matching namespaces; empty
	// means nothing is traced. Never nil.
	Scopes []string
}

// Match selects namespaces. Exactly one kind of selector is set in a
// parsed configuration: ContainerID, Cgroup, or PidNS together with
// MntNS. Combinations are rejected rather than ANDed, so that a rule
// always reads as a single condition.
type Match struct {
	// ContainerID is a path.Match glob matched against the full
	// 64-character lower-case hexadecimal container ID, e.g. "3f2a*".
	ContainerID string
	// Cgroup is a path.Match glob matched against the cgroup path, e.g.
	// "/kubepods.slice/*/*". As in path.Match, '*' does not match '/'.
	Cgroup string
	// PidNS and MntNS are the PID and mount namespace inode numbers;
	// both are set or both are zero.
	PidNS, MntNS uint32
}

// Export is the export section.
type Export struct {
	// OTLP configures the OTLP exporter.
	OTLP OTLP
	// Traces enables one span per connection.
	Traces bool
	// Logs enables one log record per connection.
	Logs bool
	// FlushTimeout bounds the flush of pending telemetry at shutdown.
	FlushTimeout time.Duration
	// Queue bounds what waits for the collector.
	Queue Queue
	// TraceKey keys the hash that derives a connection's trace and span
	// IDs from the client's address, port and initial sequence number; agents
	// whose spans are to join must share it. Empty uses the public
	// default key. When set it is MinTraceKeyBytes to MaxTraceKeyBytes
	// bytes. Environment: CONNWATCH_TRACE_KEY.
	TraceKey string
}

// Bounds of export.trace_key. A key shorter than 16 bytes could be
// guessed; HMAC hashes a key longer than its block (64 bytes) first, so
// more than a few hundred bytes buys nothing.
const (
	MinTraceKeyBytes = 16
	MaxTraceKeyBytes = 1024
)

// checkTraceKey says what is wrong with a trace key, or "" when nothing is.
func checkTraceKey(k string) string {
	switch {
	case k == "":
		return ""
	case len(k) < MinTraceKeyBytes:
		return fmt.Sprintf("%d bytes is too short for a key (at least %d; e.g. the output of `head -c 32 /dev/urandom | base64`)", len(k), MinTraceKeyBytes)
	case len(k) > MaxTraceKeyBytes:
		return fmt.Sprintf("%d bytes is too long (at most %d)", len(k), MaxTraceKeyBytes)
	}
	return ""
}

// Queue is the export.queue section: the encoded batches that wait for
// the collector (while it is down or slow) are kept in memory up to
// MemoryMiB and, with a Directory, also on disk up to DiskMiB, where they
// survive a restart of the agent.
type Queue struct {
	// MemoryMiB bounds the batches held in memory, both signals together.
	MemoryMiB int
	// Directory, when set, keeps every batch in a file there until the
	// collector has accepted it; empty keeps batches in memory only.
	Directory string
	// DiskMiB bounds the batches kept in Directory.
	DiskMiB int
}

// OTLP is the export.otlp section. Its fields mirror the
// OTEL_EXPORTER_OTLP_* environment variables (see [Config.ApplyEnv]).
//
// Endpoints are empty, host, host:port, or a URL with the scheme http or
// https; a missing port is left to the exporter to default (4317). When
// no endpoint applies to a signal, that signal is written to standard
// output as JSON lines.
type OTLP struct {
	// Endpoint is the endpoint for all signals.
	Endpoint string
	// TracesEndpoint, when set, overrides Endpoint for traces.
	TracesEndpoint string
	// LogsEndpoint, when set, overrides Endpoint for logs.
	LogsEndpoint string
	// Insecure disables transport security.
	Insecure bool
	// Headers are sent with every export request. Never nil.
	Headers map[string]string
	// Compression is "", CompressionGzip or CompressionNone.
	Compression string
	// Timeout bounds each export request.
	Timeout time.Duration
	// Certificate is the path of a PEM file of trusted CA certificates.
	Certificate string
	// ClientCertificate and ClientKey are the paths of the PEM client
	// certificate and key for mutual TLS; both are set or neither.
	ClientCertificate string
	ClientKey         string
}

// Telemetry is the telemetry section.
type Telemetry struct {
	// Listen is the host:port serving /metrics and /healthz; empty
	// disables the listener.
	Listen string
}

// Enrich is the enrich section.
type Enrich struct {
	// ProcRoot is the procfs mount to read process metadata from
	// (/host/proc when running in a container).
	ProcRoot string
	// Passwd is the passwd file used to resolve user names; empty
	// disables user name resolution.
	Passwd string
	// Where container names, images and pods are read. Each empty value
	// leaves its source out; the on-disk ones are asked first.
	//
	// DockerRoot is Docker's data root (containers/<id>/config.v2.json).
	DockerRoot string
	// ContainerdState is containerd's state directory (the OCI bundles of
	// its tasks, whose CRI annotations name pod, namespace, container and
	// image).
	ContainerdState string
	// DockerSocket is the Docker Engine API's socket.
	DockerSocket string
	// CRISocket is a CRI runtime's socket; CRISocketAuto picks the first
	// of the usual paths that exists.
	CRISocket string
}

// CRISocketAuto is enrich.cri_socket's value that detects the socket.
const CRISocketAuto = "auto"

// Default returns the default configuration. Each call returns a new
// value that the caller may modify.
func Default() *Config {
	return &Config{
		Probe:   Probe{Attach: AttachAuto, Transport: TransportAuto, MaxConnections: DefaultMaxConnections},
		Monitor: MonitorAll,
		Visibility: Visibility{
			Host:    []string{ScopeNameNetwork},
			Default: []string{ScopeNameNetwork},
			Rules:   []Rule{},
		},
		Export: Export{
			OTLP: OTLP{
				Headers: map[string]string{},
				Timeout: 10 * time.Second,
			},
			Traces:       true,
			Logs:         true,
			FlushTimeout: 5 * time.Second,
			Queue:        Queue{MemoryMiB: 64, DiskMiB: 1024},
		},
		Telemetry: Telemetry{Listen: "127.0.0.1:9464"},
		Enrich: Enrich{
			ProcRoot:        "/proc",
			Passwd:          "/etc/passwd",
			DockerRoot:      "/var/lib/docker",
			ContainerdState: "/run/containerd",
			DockerSocket:    "/var/run/docker.sock",
			CRISocket:       CRISocketAuto,
		},
	}
}

// MonitorsHost reports whether host processes are monitored.
func (c *Config) MonitorsHost() bool {
	return c.Monitor == MonitorAll || c.Monitor == MonitorHost
}

// MonitorsContainers reports whether processes in containers are
// monitored.
func (c *Config) MonitorsContainers() bool {
	return c.Monitor == MonitorAll || c.Monitor == MonitorContainers
}

// EffectiveTracesEndpoint returns the endpoint traces are exported to:
// TracesEndpoint if set, else Endpoint. Empty means standard output.
func (o *OTLP) EffectiveTracesEndpoint() string {
	if o.TracesEndpoint != "" {
		return o.TracesEndpoint
	}
	return o.Endpoint
}

// EffectiveLogsEndpoint returns the endpoint logs are exported to:
// LogsEndpoint if set, else Endpoint. Empty means standard output.
func (o *OTLP) EffectiveLogsEndpoint() string {
	if o.LogsEndpoint != "" {
		return o.LogsEndpoint
	}
	return o.Endpoint
}
