package config

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// env returns a getenv function over a fixed set of variables.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestApplyEnv(t *testing.T) {
	tests := []struct {
		name string
		file string // configuration file contents
		vars map[string]string
		edit func(o *OTLP) // applied to the file's OTLP settings
	}{
		{"nothing set", "", nil, func(o *OTLP) {}},
		{"empty values are unset", "export: {otlp: {endpoint: a:1, insecure: true}}\n",
			map[string]string{EnvEndpoint: "", EnvInsecure: "  "}, func(o *OTLP) {}},
		{"endpoint enables export", "",
			map[string]string{EnvEndpoint: "http://collector:4317"},
			func(o *OTLP) { o.Endpoint = "http://collector:4317" }},
		{"env wins over the file", "export: {otlp: {endpoint: file:4317, timeout: 3s, compression: gzip}}\n",
			map[string]string{EnvEndpoint: "env:4317", EnvTimeout: "250", EnvCompression: "none"},
			func(o *OTLP) { o.Endpoint = "env:4317"; o.Timeout = 250 * time.Millisecond; o.Compression = "none" }},
		{"signal endpoints are separate fields", "export: {otlp: {endpoint: file:4317}}\n",
			map[string]string{EnvTracesEndpoint: "https://traces:4317", EnvLogsEndpoint: " logs:4317 ", EnvMetricsEndpoint: "metrics:4317"},
			func(o *OTLP) {
				o.TracesEndpoint, o.LogsEndpoint, o.MetricsEndpoint = "https://traces:4317", "logs:4317", "metrics:4317"
			}},
		{"insecure true", "", map[string]string{EnvInsecure: "TRUE"},
			func(o *OTLP) { o.Insecure = true }},
		{"insecure false", "export: {otlp: {insecure: true}}\n", map[string]string{EnvInsecure: "false"},
			func(o *OTLP) { o.Insecure = false }},
		{"headers merge, env wins by name", "export: {otlp: {headers: {Authorization: file, x-tenant: a}}}\n",
			map[string]string{EnvHeaders: "authorization=Bearer%20x%2Cy , x-b = c=d,,api-key=a+b%3D"},
			func(o *OTLP) {
				o.Headers = map[string]string{"authorization": "Bearer x,y", "x-tenant": "a", "x-b": "c=d", "api-key": "a+b="}
			}},
		{"certificates", "",
			map[string]string{EnvCertificate: "/ca.pem", EnvClientCertificate: "/c.pem", EnvClientKey: "/k.pem"},
			func(o *OTLP) { o.Certificate = "/ca.pem"; o.ClientCertificate = "/c.pem"; o.ClientKey = "/k.pem" }},
		{"client key completes the file's certificate", "export: {otlp: {client_certificate: /c.pem, client_key: /old.pem}}\n",
			map[string]string{EnvClientKey: "/k.pem"},
			func(o *OTLP) { o.ClientKey = "/k.pem" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.yaml", []byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Parse("c.yaml", []byte(tt.file))
			tt.edit(&want.Export.OTLP)
			if err := c.ApplyEnv(env(tt.vars)); err != nil {
				t.Fatal(err)
			}
			if !sameSettings(c, want) {
				t.Errorf("got  %+v\nwant %+v", c.Export.OTLP, want.Export.OTLP)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			// The result prints and parses back unchanged.
			back, err := Parse("env.yaml", c.YAML())
			if err != nil || !sameSettings(back, c) {
				t.Errorf("round trip after ApplyEnv: %v", err)
			}
		})
	}
}

func TestApplyEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		vars map[string]string
		want string
	}{
		{"endpoint", "", map[string]string{EnvEndpoint: "collector:4317/v1"},
			`OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4317/v1" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`},
		{"traces endpoint", "", map[string]string{EnvTracesEndpoint: "grpc://c:4317"},
			`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "grpc://c:4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`},
		{"logs endpoint", "", map[string]string{EnvLogsEndpoint: "c:99999"},
			`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: "c:99999" has an invalid port "99999" (expected 1 to 65535)`},
		{"insecure", "", map[string]string{EnvInsecure: "yes"},
			`OTEL_EXPORTER_OTLP_INSECURE: "yes" is not true or false`},
		{"headers without =", "", map[string]string{EnvHeaders: "a=b,c"},
			`OTEL_EXPORTER_OTLP_HEADERS: entry "c" is not name=value`},
		{"headers bad name", "", map[string]string{EnvHeaders: "a b=c"},
			`OTEL_EXPORTER_OTLP_HEADERS: header name "a b" contains ' ', which is not allowed in header names`},
		{"headers empty name", "", map[string]string{EnvHeaders: "=c"},
			`OTEL_EXPORTER_OTLP_HEADERS: header name must not be empty`},
		{"headers bad escape", "", map[string]string{EnvHeaders: "a=%zz"},
			`OTEL_EXPORTER_OTLP_HEADERS: value of header "a" is not valid percent-encoding`},
		{"headers control character", "", map[string]string{EnvHeaders: "a=x%0Ay"},
			`OTEL_EXPORTER_OTLP_HEADERS: value of header "a": header value contains the control character '\n'`},
		{"headers invalid UTF-8", "", map[string]string{EnvHeaders: "a=%FF"},
			`OTEL_EXPORTER_OTLP_HEADERS: value of header "a" is not valid UTF-8 after decoding`},
		{"headers twice", "", map[string]string{EnvHeaders: "a=1,A=2"},
			`OTEL_EXPORTER_OTLP_HEADERS: header "A" is given twice`},
		{"compression", "", map[string]string{EnvCompression: "zstd"},
			`OTEL_EXPORTER_OTLP_COMPRESSION: "zstd" is not one of gzip, none`},
		{"metric interval with unit", "", map[string]string{EnvMetricInterval: "60s"},
			`OTEL_METRIC_EXPORT_INTERVAL: "60s" is not a whole number of milliseconds`},
		{"metric interval zero", "", map[string]string{EnvMetricInterval: "0"},
			`OTEL_METRIC_EXPORT_INTERVAL: "0" must be a positive number of milliseconds`},
		{"timeout with unit", "", map[string]string{EnvTimeout: "10s"},
			`OTEL_EXPORTER_OTLP_TIMEOUT: "10s" is not a whole number of milliseconds`},
		{"timeout zero", "", map[string]string{EnvTimeout: "0"},
			`OTEL_EXPORTER_OTLP_TIMEOUT: "0" must be a positive number of milliseconds`},
		{"timeout negative", "", map[string]string{EnvTimeout: "-5"},
			`OTEL_EXPORTER_OTLP_TIMEOUT: "-5" must be a positive number of milliseconds`},
		{"timeout huge negative", "", map[string]string{EnvTimeout: "-99999999999999999999"},
			`OTEL_EXPORTER_OTLP_TIMEOUT: "-99999999999999999999" must be a positive number of milliseconds`},
		{"timeout too large", "", map[string]string{EnvTimeout: "9223372036854775"},
			`OTEL_EXPORTER_OTLP_TIMEOUT: "9223372036854775" milliseconds is too large`},
		{"timeout out of range", "", map[string]string{EnvTimeout: "99999999999999999999"},
			`OTEL_EXPORTER_OTLP_TIMEOUT: "99999999999999999999" milliseconds is too large`},
		{"invalid UTF-8", "", map[string]string{EnvCertificate: "/a\xff"},
			`OTEL_EXPORTER_OTLP_CERTIFICATE: value is not valid UTF-8`},
		{"trace key too short", "", map[string]string{EnvTraceKey: "k"},
			"CONNWATCH_TRACE_KEY: 1 bytes is too short for a key (at least 16; e.g. the output of `head -c 32 /dev/urandom | base64`)"},
		{"several", "", map[string]string{EnvInsecure: "1", EnvTimeout: "x"},
			"OTEL_EXPORTER_OTLP_INSECURE: \"1\" is not true or false\n" +
				`OTEL_EXPORTER_OTLP_TIMEOUT: "x" is not a whole number of milliseconds`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.yaml", []byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			before, _ := Parse("c.yaml", []byte(tt.file))
			// A valid variable alongside the bad one must not be applied.
			vars := map[string]string{EnvEndpoint: "ok:4317"}
			if _, ok := tt.vars[EnvEndpoint]; ok {
				vars = map[string]string{}
			}
			for k, v := range tt.vars {
				vars[k] = v
			}
			err = c.ApplyEnv(env(vars))
			if err == nil {
				t.Fatalf("ApplyEnv accepted %q", tt.vars)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
			var ee *EnvError
			if !errors.As(err, &ee) {
				t.Errorf("error is %T, want *EnvError", err)
			}
			if !reflect.DeepEqual(c, before) {
				t.Errorf("ApplyEnv changed the config despite an error: %+v", c.Export.OTLP)
			}
		})
	}
}

func TestEffectiveEndpoints(t *testing.T) {
	o := OTLP{Endpoint: "all:4317"}
	if o.EffectiveTracesEndpoint() != "all:4317" || o.EffectiveLogsEndpoint() != "all:4317" {
		t.Error("signal endpoints do not fall back to Endpoint")
	}
	o.TracesEndpoint, o.LogsEndpoint = "t:1", "l:1"
	if o.EffectiveTracesEndpoint() != "t:1" || o.EffectiveLogsEndpoint() != "l:1" {
		t.Error("signal endpoints do not override Endpoint")
	}
	if (&OTLP{}).EffectiveTracesEndpoint() != "" {
		t.Error("no endpoint should mean standard output")
	}
}

func TestApplyEnvTraceKey(t *testing.T) {
	c, err := Parse("c.yaml", []byte("export: {trace_key: \"from the file, 16+ bytes\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Export.TraceKey != "from the file, 16+ bytes" {
		t.Fatalf("file key %q", c.Export.TraceKey)
	}
	if err := c.ApplyEnv(env(map[string]string{EnvTraceKey: "  from a Secret, 16+ bytes \n"})); err != nil {
		t.Fatal(err)
	}
	if c.Export.TraceKey != "from a Secret, 16+ bytes" {
		t.Errorf("CONNWATCH_TRACE_KEY gave %q, want it trimmed and winning over the file", c.Export.TraceKey)
	}
	if err := c.ApplyEnv(env(nil)); err != nil || c.Export.TraceKey != "from a Secret, 16+ bytes" {
		t.Errorf("unset CONNWATCH_TRACE_KEY changed the key to %q (%v)", c.Export.TraceKey, err)
	}
}

func TestIgnoredEnv(t *testing.T) {
	got := IgnoredEnv(env(map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS":      "a=b",
		"OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY":     "/k.pem",
		"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT":        " ",
		"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "gzip",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":     "t:4317", // applied
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT":    "m:4317", // applied
		EnvHeaders:                               "a=b",    // applied
	}))
	want := []string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("IgnoredEnv = %q, want %q", got, want)
	}
	if got := IgnoredEnv(env(nil)); got != nil {
		t.Errorf("nothing set: %q", got)
	}
}

// OTEL_METRIC_EXPORT_INTERVAL, in milliseconds, sets metrics.interval over
// the file.
func TestApplyEnvMetricInterval(t *testing.T) {
	c, err := Parse("connwatch.yaml", []byte("metrics: {interval: 1m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyEnv(func(k string) string {
		if k == EnvMetricInterval {
			return "15000"
		}
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Interval != 15*time.Second {
		t.Errorf("metrics.interval = %v, want 15s from the environment", c.Metrics.Interval)
	}
}
