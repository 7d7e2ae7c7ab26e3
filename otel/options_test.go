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
		want     Endpoint
	}{
		{"collector:4317", false, Endpoint{"collector:4317", false}},
		{"collector:4317", true, Endpoint{"collector:4317", true}},
		{"collector", true, Endpoint{"collector:4317", true}},
		{"10.1.2.3:14317", false, Endpoint{"10.1.2.3:14317", false}},
		{"[::1]:4317", true, Endpoint{"[::1]:4317", true}},
		{"[::1]", false, Endpoint{"[::1]:4317", false}},
		{"http://collector:4317", false, Endpoint{"collector:4317", true}},
		{"HTTP://collector:4317", false, Endpoint{"collector:4317", true}},
		{"https://collector:4317", true, Endpoint{"collector:4317", false}},
		{"https://collector", false, Endpoint{"collector:4317", false}},
		{"http://collector:4317/v1/traces", false, Endpoint{"collector:4317", true}},
		{"http://[2001:db8::1]:4317", false, Endpoint{"[2001:db8::1]:4317", true}},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in, tt.insecure)
		if err != nil || got != tt.want {
			t.Errorf("ParseEndpoint(%q, %v) = %+v, %v; want %+v", tt.in, tt.insecure, got, err, tt.want)
		}
	}
	for bad, want := range map[string]string{
		"":                               `"" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		"grpc://collector:4317":          `"grpc://collector:4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		"http://":                        `"http://" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		"http://:4317":                   `"http://:4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		"https://user:pw@collector:4317": `"https://user:pw@collector:4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		"collector:0":                    `"collector:0" has an invalid port "0" (expected 1 to 65535)`,
		"collector:65536":                `"collector:65536" has an invalid port "65536" (expected 1 to 65535)`,
		"collector:http":                 `"collector:http" has an invalid port "http" (expected 1 to 65535)`,
		":4317":                          `":4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		"http://collector:99999":         `"http://collector:99999" has an invalid port "99999" (expected 1 to 65535)`,
		"collector:":                     `"collector:" has an empty port`,
		"http://collector:":              `"http://collector:" has an empty port`,
		"a:b:c":                          `"a:b:c" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		"::1":                            `"::1" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		"host/path:4317":                 `"host/path:4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		" collector:4317 ":               `" collector:4317 " is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
	} {
		if got, err := ParseEndpoint(bad, false); err == nil || err.Error() != want {
			t.Errorf("ParseEndpoint(%q) = %+v, %v; want the error %s", bad, got, err, want)
		}
	}
}

func TestSignalTargets(t *testing.T) {
	// The environment is not consulted: an endpoint there changes nothing.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://all:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317")
	var o Options
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
	o.Endpoint = "c:4317"
	check("one for both", signalTarget{endpoint: "c:4317"}, signalTarget{endpoint: "c:4317"})
	o.LogsEndpoint = "l:4317"
	check("per signal", signalTarget{endpoint: "c:4317"}, signalTarget{endpoint: "l:4317"})
	o.Endpoint = ""
	check("logs only", signalTarget{}, signalTarget{endpoint: "l:4317"})
}

func TestCheckClientPair(t *testing.T) {
	for _, tt := range []struct{ cert, key, want string }{
		{"", "", ""},
		{"/c.pem", "/k.pem", ""},
		{"/c.pem", "", "client_certificate and client_key must be given together (client_key is missing)"},
		{"", "/k.pem", "client_certificate and client_key must be given together (client_certificate is missing)"},
	} {
		got := ""
		if err := CheckClientPair(tt.cert, tt.key); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("CheckClientPair(%q, %q) = %q, want %q", tt.cert, tt.key, got, tt.want)
		}
	}
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
	if s.endpoint != (Endpoint{"collector:4317", false}) || s.tls == nil || s.tls.RootCAs == nil ||
		len(s.tls.Certificates) != 1 || s.tls.MinVersion != tls.VersionTLS12 ||
		!s.gzip || s.headers["authorization"] != "Bearer x" || s.retry != nil {
		t.Errorf("settings %+v", s)
	}

	// Plaintext needs no certificate, even a broken one.
	o.CACert = filepath.Join(t.TempDir(), "missing.pem")
	if s, err := o.exporterSettings(signalTarget{endpoint: "http://collector:4317"}); err != nil || s.tls != nil {
		t.Errorf("http: %+v, %v", s, err)
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
