package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The OpenTelemetry environment variables ApplyEnv applies. connwatch
// reads them here only: the exporter is given the merged configuration.
const (
	EnvEndpoint          = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint    = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvLogsEndpoint      = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
	EnvMetricsEndpoint   = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	EnvMetricInterval    = "OTEL_METRIC_EXPORT_INTERVAL"
	EnvInsecure          = "OTEL_EXPORTER_OTLP_INSECURE"
	EnvHeaders           = "OTEL_EXPORTER_OTLP_HEADERS"
	EnvCompression       = "OTEL_EXPORTER_OTLP_COMPRESSION"
	EnvTimeout           = "OTEL_EXPORTER_OTLP_TIMEOUT"
	EnvCertificate       = "OTEL_EXPORTER_OTLP_CERTIFICATE"
	EnvClientCertificate = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
	EnvClientKey         = "OTEL_EXPORTER_OTLP_CLIENT_KEY"

	// EnvTraceKey overrides export.trace_key, so that a Kubernetes
	// Secret can supply it (secretKeyRef) instead of the ConfigMap.
	EnvTraceKey = "CONNWATCH_TRACE_KEY"
)

// EnvError is an invalid environment variable value.
type EnvError struct {
	Var string // the variable's name
	Msg string // what is wrong with its value
}

// Error formats the problem as "VAR: message".
func (e *EnvError) Error() string {
	return e.Var + ": " + e.Msg
}

// ApplyEnv overrides export.otlp settings with the OpenTelemetry
// environment variables, and export.trace_key with CONNWATCH_TRACE_KEY,
// read through getenv (normally os.Getenv). A variable that is unset or
// empty (after trimming spaces) leaves the setting alone; a set variable
// wins over the file:
//
//   - OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
//     OTEL_EXPORTER_OTLP_LOGS_ENDPOINT and OTEL_EXPORTER_OTLP_METRICS_ENDPOINT
//     set Endpoint, TracesEndpoint, LogsEndpoint and MetricsEndpoint (host,
//     host:port or an http/https URL).
//   - OTEL_EXPORTER_OTLP_INSECURE sets Insecure (true or false, any case).
//   - OTEL_EXPORTER_OTLP_HEADERS is a list "k=v,k2=v2" whose values are
//     percent-decoded; each header replaces a file header of the same
//     name (compared case-insensitively) and other file headers are kept.
//   - OTEL_EXPORTER_OTLP_COMPRESSION is gzip or none.
//   - OTEL_EXPORTER_OTLP_TIMEOUT is a positive number of milliseconds.
//   - OTEL_METRIC_EXPORT_INTERVAL (milliseconds) sets metrics.interval.
//   - OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
//     and OTEL_EXPORTER_OTLP_CLIENT_KEY set the file paths.
//   - CONNWATCH_TRACE_KEY sets export.trace_key (16 to 1024 bytes, taken
//     as it is, surrounding spaces trimmed).
//
// The per-signal variants of the settings other than the endpoint are not
// applied (see [IgnoredEnv]). Each value is checked on its own; the rules
// between settings, such as a client certificate needing its key from
// the file or the environment, are [Config.Validate]'s, which names the
// variable that set a setting it blames. Invalid values are reported as
// [EnvError] values naming the variable, joined with errors.Join; the
// configuration is then left unchanged.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	next := *c
	o := &next.Export.OTLP
	o.Headers = maps.Clone(o.Headers)
	if o.Headers == nil {
		o.Headers = map[string]string{}
	}
	next.src = maps.Clone(c.src)
	if next.src == nil {
		next.src = origins{}
	}
	var errs []error
	fail := func(name, format string, args ...any) {
		errs = append(errs, &EnvError{Var: name, Msg: fmt.Sprintf(format, args...)})
	}
	// get returns the value of the variable name, which sets the
	// setting at path.
	get := func(name, path string) (string, bool) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return "", false
		}
		if !utf8.ValidString(v) {
			fail(name, "value is not valid UTF-8")
			return "", false
		}
		next.src[path] = origin{env: name}
		return v, true
	}

	for _, e := range []struct {
		name, path string
		dst        *string
		check      func(string) string // nil: any value
	}{
		{EnvEndpoint, "export.otlp.endpoint", &o.Endpoint, checkEndpoint},
		{EnvTracesEndpoint, "export.otlp.traces_endpoint", &o.TracesEndpoint, checkEndpoint},
		{EnvLogsEndpoint, "export.otlp.logs_endpoint", &o.LogsEndpoint, checkEndpoint},
		{EnvMetricsEndpoint, "export.otlp.metrics_endpoint", &o.MetricsEndpoint, checkEndpoint},
		{EnvCompression, "export.otlp.compression", &o.Compression, checkCompression},
		{EnvCertificate, "export.otlp.certificate", &o.Certificate, nil},
		{EnvClientCertificate, "export.otlp.client_certificate", &o.ClientCertificate, nil},
		{EnvClientKey, "export.otlp.client_key", &o.ClientKey, nil},
		{EnvTraceKey, "export.trace_key", &next.Export.TraceKey, checkTraceKey},
	} {
		v, ok := get(e.name, e.path)
		if !ok {
			continue
		}
		if e.check != nil {
			if msg := e.check(v); msg != "" {
				fail(e.name, "%s", msg)
				continue
			}
		}
		*e.dst = v
	}
	if v, ok := get(EnvInsecure, "export.otlp.insecure"); ok {
		switch strings.ToLower(v) {
		case "true":
			o.Insecure = true
		case "false":
			o.Insecure = false
		default:
			fail(EnvInsecure, "%q is not true or false", v)
		}
	}
	if v, ok := get(EnvHeaders, "export.otlp.headers"); ok {
		h, err := parseEnvHeaders(v)
		if err != nil {
			fail(EnvHeaders, "%s", err)
		} else {
			for name, val := range h {
				for old := range o.Headers {
					if strings.EqualFold(old, name) {
						delete(o.Headers, old)
					}
				}
				o.Headers[name] = val
			}
		}
	}
	for _, e := range []struct {
		name, path string
		dst        *time.Duration
	}{
		{EnvTimeout, "export.otlp.timeout", &o.Timeout},
		{EnvMetricInterval, "metrics.interval", &next.Metrics.Interval},
	} {
		v, ok := get(e.name, e.path)
		if !ok {
			continue
		}
		ms, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil && !errors.Is(err, strconv.ErrRange):
			fail(e.name, "%q is not a whole number of milliseconds", v)
		case err == nil && ms <= 0, err != nil && v[0] == '-':
			fail(e.name, "%q must be a positive number of milliseconds", v)
		case err != nil, ms > int64(math.MaxInt64/time.Millisecond):
			fail(e.name, "%q milliseconds is too large", v)
		default:
			*e.dst = time.Duration(ms) * time.Millisecond
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(next.src) == 0 {
		next.src = nil
	}
	*c = next
	return nil
}

// envPrefix begins the names of the OTLP exporter's variables.
const envPrefix = "OTEL_EXPORTER_OTLP_"

// IgnoredEnv returns the per-signal variants of the settings other than
// the endpoint (OTEL_EXPORTER_OTLP_TRACES_HEADERS,
// OTEL_EXPORTER_OTLP_LOGS_TIMEOUT and the like) that are set in the
// environment. ApplyEnv does not apply them: every signal is sent with
// the one set of export.otlp settings (the variables without TRACES_,
// LOGS_ or METRICS_), and only the endpoint can differ per signal.
func IgnoredEnv(getenv func(string) string) []string {
	var ignored []string
	for _, general := range []string{EnvInsecure, EnvHeaders, EnvCompression, EnvTimeout,
		EnvCertificate, EnvClientCertificate, EnvClientKey} {
		for _, signal := range []string{"TRACES_", "LOGS_", "METRICS_"} {
			name := envPrefix + signal + strings.TrimPrefix(general, envPrefix)
			if strings.TrimSpace(getenv(name)) != "" {
				ignored = append(ignored, name)
			}
		}
	}
	return ignored
}

// parseEnvHeaders parses the "k=v,k2=v2" format of
// OTEL_EXPORTER_OTLP_HEADERS. Names and values are trimmed, values are
// percent-decoded, and empty entries are skipped.
func parseEnvHeaders(s string) (map[string]string, error) {
	h := map[string]string{}
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, raw, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("entry %q is not name=value", entry)
		}
		name = strings.TrimSpace(name)
		if msg := checkHeaderName(name); msg != "" {
			return nil, errors.New(msg)
		}
		val, err := url.PathUnescape(raw)
		if err != nil {
			return nil, fmt.Errorf("value of header %q is not valid percent-encoding", name)
		}
		val = strings.TrimSpace(val)
		if !utf8.ValidString(val) {
			return nil, fmt.Errorf("value of header %q is not valid UTF-8 after decoding", name)
		}
		if msg := checkHeaderValue(val); msg != "" {
			return nil, fmt.Errorf("value of header %q: %s", name, msg)
		}
		for old := range h {
			if strings.EqualFold(old, name) {
				return nil, fmt.Errorf("header %q is given twice", name)
			}
		}
		h[name] = val
	}
	return h, nil
}
