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
// Settings come from three sources, applied in this order: the file
// ([Load], [Parse]), the OpenTelemetry environment variables
// ([Config.ApplyEnv]) and code (a command-line flag, say). Each checks
// the values it sets; the rules that relate settings to each other run
// last, in [Config.Validate], and blame the file position or the variable
// the offending setting came from. The typical start-up sequence is:
//
//	cfg, err := config.Load(path) // or config.Default() without a file
//	if err != nil { ... }
//	if err := cfg.ApplyEnv(os.Getenv); err != nil { ... }
//	// overrides from flags
//	if err := cfg.Validate(); err != nil { ... }
package config

import (
	"time"

	"github.com/connwatch/connwatch/bpf"
)

// Config is the complete connwatch configuration. The zero value is not
// useful; start from [Default], [Load] or [Parse].
//
// A Config remembers where the file and the environment set each setting
// (a file position, a variable's name), for [Config.Validate] to point at;
// copies share that record. Code that changes a setting checks the value
// it sets, as Validate would blame the setting's recorded source.
type Config struct {
	// Probe selects how the kernel probe is attached.
	Probe Probe
	// Monitor selects the processes the kernel reports (bpf.ParseMonitor
	// names them). It is a load-time switch of the probe and does not
	// influence [Config.VisibilityEntries].
	Monitor bpf.Monitor
	// Visibility says which scopes are traced for which namespaces.
	Visibility Visibility
	// Filters leave out connections in the kernel by peer, server port
	// and comm; none by default. A load-time setting of the probe.
	Filters Filters
	// Export configures where events go.
	Export Export
	// Metrics configures the per-workload connection metrics.
	Metrics Metrics
	// Telemetry configures the agent's own metrics and health endpoint.
	Telemetry Telemetry
	// Enrich configures where process metadata is read from.
	Enrich Enrich

	src origins // where the settings came from
}

// Probe is the probe section.
type Probe struct {
	// Attach is the attach mode (bpf.ParseMode names them).
	Attach bpf.Mode
	// Transport is how events leave the kernel (bpf.ParseTransport names
	// them).
	Transport bpf.Transport
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
	// Metrics sends the connection metrics (see [Metrics]) over OTLP when
	// an endpoint applies to them.
	Metrics bool
	// Sampling thins the spans and log records of successful connections.
	Sampling Sampling
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

// OTLP is the export.otlp section: the exporter's connection settings,
// which mean what the fields of the same names in otel.Options mean
// (Certificate is its CACert, ClientCertificate its ClientCert). Each has
// an OTEL_EXPORTER_OTLP_* environment variable (see [Config.ApplyEnv]).
// An endpoint is empty or a string otel.ParseEndpoint accepts; a signal
// no endpoint applies to is written to standard output as JSON lines.
type OTLP struct {
	Endpoint       string
	TracesEndpoint string // overrides Endpoint for traces
	LogsEndpoint   string // overrides Endpoint for logs
	// MetricsEndpoint overrides Endpoint for metrics.
	MetricsEndpoint string
	Insecure        bool
	Headers         map[string]string // never nil
	Compression     string            // "" or otel.CheckCompression's names
	Timeout         time.Duration
	Certificate     string
	// ClientCertificate and ClientKey are set both or neither
	// (otel.CheckClientPair), which Validate checks once the environment
	// may have supplied one of them.
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
		Probe:   Probe{Attach: bpf.ModeAuto, Transport: bpf.TransportAuto, MaxConnections: DefaultMaxConnections},
		Monitor: bpf.MonitorAll,
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
			Metrics:      true,
			Sampling:     Sampling{Ratio: 1},
			FlushTimeout: 5 * time.Second,
			Queue:        Queue{MemoryMiB: 64, DiskMiB: 1024},
		},
		Metrics:   defaultMetrics(),
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
	return c.Monitor == bpf.MonitorAll || c.Monitor == bpf.MonitorHost
}

// MonitorsContainers reports whether processes in containers are
// monitored.
func (c *Config) MonitorsContainers() bool {
	return c.Monitor == bpf.MonitorAll || c.Monitor == bpf.MonitorContainers
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
