package otel

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connwatch/connwatch/otel/otlptest"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in       string
		insecure bool // Options.Insecure
		want     grpcEndpoint
	}{
		{"collector:4317", false, grpcEndpoint{"collector:4317", false}},
		{"collector:4317", true, grpcEndpoint{"collector:4317", true}},
		{"collector", true, grpcEndpoint{"collector:4317", true}},
		{"10.1.2.3:14317", false, grpcEndpoint{"10.1.2.3:14317", false}},
		{"[::1]:4317", true, grpcEndpoint{"[::1]:4317", true}},
		{"[::1]", false, grpcEndpoint{"[::1]:4317", false}},
		{"http://collector:4317", false, grpcEndpoint{"collector:4317", true}},
		{"HTTP://collector:4317", false, grpcEndpoint{"collector:4317", true}},
		{"https://collector:4317", true, grpcEndpoint{"collector:4317", false}},
		{"https://collector", false, grpcEndpoint{"collector:4317", false}},
		{"http://collector:4317/v1/traces", false, grpcEndpoint{"collector:4317", true}},
		{"http://[2001:db8::1]:4317", false, grpcEndpoint{"[2001:db8::1]:4317", true}},
		{" collector:4317 ", false, grpcEndpoint{"collector:4317", false}},
	}
	for _, tt := range tests {
		got, err := parseEndpoint(tt.in, tt.insecure)
		if err != nil || got != tt.want {
			t.Errorf("parseEndpoint(%q, %v) = %+v, %v; want %+v", tt.in, tt.insecure, got, err, tt.want)
		}
	}
	for _, bad := range []string{
		"", "grpc://collector:4317", "http://", "http://:4317", "https://user:pw@collector:4317",
		"collector:0", "collector:65536", "collector:http", ":4317", "http://collector:99999",
		"a:b:c", "host/path:4317",
	} {
		if got, err := parseEndpoint(bad, false); err == nil {
			t.Errorf("parseEndpoint(%q) = %+v, want an error", bad, got)
		}
	}
}

func TestSignalTargets(t *testing.T) {
	env := map[string]string{}
	o := Options{Getenv: func(k string) string { return env[k] }}
	check := func(name string, traces, logs signalTarget) {
		t.Helper()
		if got := o.tracesTarget(); got != traces {
			t.Errorf("%s: traces %+v, want %+v", name, got, traces)
		}
		if got := o.logsTarget(); got != logs {
			t.Errorf("%s: logs %+v, want %+v", name, got, logs)
		}
	}
	check("nothing: stdout", signalTarget{}, signalTarget{})

	env[EnvTracesEndpoint] = "http://t:4317"
	check("env traces only", signalTarget{fromEnv: true}, signalTarget{})
	env[EnvEndpoint] = "http://all:4317"
	check("env all", signalTarget{fromEnv: true}, signalTarget{fromEnv: true})

	o.Endpoint = "c:4317"
	check("options win", signalTarget{endpoint: "c:4317"}, signalTarget{endpoint: "c:4317"})
	o.LogsEndpoint = "l:4317"
	check("per signal", signalTarget{endpoint: "c:4317"}, signalTarget{endpoint: "l:4317"})

	clear(env)
	o.Endpoint = ""
	check("logs only", signalTarget{}, signalTarget{endpoint: "l:4317"})
}

func TestExporterSettings(t *testing.T) {
	certs, err := otlptest.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Headers: map[string]string{"authorization": "Bearer x"}, Compression: "gzip",
		CACert: certs.CAFile, ClientCert: certs.ClientCertFile, ClientKey: certs.ClientKeyFile,
	}
	s, err := o.exporterSettings(signalTarget{endpoint: "collector:4317"})
	if err != nil {
		t.Fatal(err)
	}
	if s.endpoint == nil || s.endpoint.insecure || s.tls == nil || s.tls.RootCAs == nil ||
		len(s.tls.Certificates) != 1 || s.tls.MinVersion != tls.VersionTLS12 ||
		!s.gzip || s.headers["authorization"] != "Bearer x" || s.retry != nil {
		t.Errorf("settings %+v", s)
	}

	// Plaintext needs no certificate, even a broken one.
	o.CACert = filepath.Join(t.TempDir(), "missing.pem")
	if s, err := o.exporterSettings(signalTarget{endpoint: "http://collector:4317"}); err != nil || s.tls != nil {
		t.Errorf("http: %+v, %v", s, err)
	}
	// From the environment: endpoint and security are the exporter's.
	if s, err := o.exporterSettings(signalTarget{fromEnv: true}); err != nil || s.endpoint != nil || s.tls != nil {
		t.Errorf("from env: %+v, %v", s, err)
	}

	for name, bad := range map[string]Options{
		"missing CA":       {CACert: o.CACert},
		"CA not PEM":       {CACert: certs.ClientKeyFile},
		"cert without key": {ClientCert: certs.ClientCertFile},
		"key without cert": {ClientKey: certs.ClientKeyFile},
		"mismatched pair":  {ClientCert: certs.ClientCertFile, ClientKey: certs.ServerKeyFile},
		"compression":      {Compression: "zstd"},
		"endpoint":         {},
	} {
		ep := "collector:4317"
		if name == "endpoint" {
			ep = "ftp://collector"
		}
		if _, err := bad.exporterSettings(signalTarget{endpoint: ep}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	o = Options{Retry: Retry{InitialInterval: 10e6}}
	s, _ = o.exporterSettings(signalTarget{endpoint: "http://c:1"})
	if s.retry == nil || *s.retry != o.Retry {
		t.Errorf("retry %+v", s.retry)
	}
}

// TestSenderSettings: zero Retry and Timeout fields mean the defaults.
func TestSenderSettings(t *testing.T) {
	sig := &signal{}
	s := newSender(sig, discardTransport{}, &Options{Retry: Retry{InitialInterval: 10e6}})
	if !s.retry || s.initial != 10e6 || s.maxDelay != DefaultRetryMax || s.maxElapsed != 0 || s.timeout != DefaultTimeout {
		t.Errorf("sender %+v", s)
	}
	s = newSender(sig, discardTransport{}, &Options{
		Timeout: 3e9,
		Retry:   Retry{Disabled: true, InitialInterval: 1, MaxInterval: 2, MaxElapsedTime: 3},
	})
	if s.retry || s.initial != 1 || s.maxDelay != 2 || s.maxElapsed != 3 || s.timeout != 3e9 {
		t.Errorf("sender %+v", s)
	}
	s = newSender(sig, discardTransport{}, &Options{})
	if s.initial != DefaultRetryInitial || s.maxDelay != DefaultRetryMax {
		t.Errorf("defaults %+v", s)
	}
	for range 100 {
		if d := jitter(time.Second); d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("jitter(1s) = %v", d)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"traces endpoint": {Traces: true, TracesEndpoint: "ftp://x"},
		"logs endpoint":   {Logs: true, Traces: true, LogsEndpoint: "ftp://x", TracesEndpoint: "http://127.0.0.1:1"},
		"compression":     {Logs: true, Endpoint: "http://127.0.0.1:1", Compression: "br"},
		"client key":      {Traces: true, Endpoint: "https://127.0.0.1:1", ClientKey: "/nonexistent"},
	} {
		o.Getenv = func(string) string { return "" }
		if p, err := New(t.Context(), o); err == nil {
			_ = p.Shutdown(context.Background())
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "traces") && !strings.Contains(err.Error(), "logs") {
			t.Errorf("%s: error does not name the signal: %v", name, err)
		}
	}
}
