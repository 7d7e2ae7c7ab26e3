package config

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/otel"
)

// sameSettings reports whether a and b hold the same settings, wherever
// those came from.
func sameSettings(a, b *Config) bool {
	x, y := *a, *b
	x.src, y.src = nil, nil
	return reflect.DeepEqual(x, y)
}

// unjoin returns the errors joined in err.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// The client certificate and key are one rule, checked once the file and
// the environment are both applied; its error points at the file key or
// names the variable that gave the lone half.
func TestValidateClientPairAfterEnv(t *testing.T) {
	tests := []struct {
		name string
		file string
		vars map[string]string
		want string // "" when accepted
	}{
		{"file certificate, env key", "export:\n  otlp:\n    client_certificate: /c.pem\n",
			map[string]string{EnvClientKey: "/k.pem"}, ""},
		{"env certificate, file key", "export:\n  otlp:\n    client_key: /k.pem\n",
			map[string]string{EnvClientCertificate: "/c.pem"}, ""},
		{"both from env", "", map[string]string{EnvClientCertificate: "/c.pem", EnvClientKey: "/k.pem"}, ""},
		{"env certificate alone", "", map[string]string{EnvClientCertificate: "/c.pem"},
			`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: client_certificate and client_key must be given together (client_key is missing)`},
		{"env key alone", "monitor: host\n", map[string]string{EnvClientKey: "/k.pem"},
			`OTEL_EXPORTER_OTLP_CLIENT_KEY: client_certificate and client_key must be given together (client_certificate is missing)`},
		{"file certificate alone", "export:\n  otlp:\n    client_certificate: /c.pem\n", nil,
			`c.yaml:3:5: export.otlp: client_certificate and client_key must be given together (client_key is missing)`},
		{"env overrides the file's lone certificate", "export:\n  otlp:\n    client_certificate: /c.pem\n",
			map[string]string{EnvClientCertificate: "/other.pem"},
			`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: client_certificate and client_key must be given together (client_key is missing)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.yaml", []byte(tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if err := c.ApplyEnv(env(tt.vars)); err != nil {
				t.Fatalf("ApplyEnv: %v", err)
			}
			err = c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want == "":
				if c.Export.OTLP.ClientCertificate == "" || c.Export.OTLP.ClientKey == "" {
					t.Errorf("pair %q, %q", c.Export.OTLP.ClientCertificate, c.Export.OTLP.ClientKey)
				}
			case err == nil:
				t.Fatalf("Validate accepted %+v", c.Export.OTLP)
			case err.Error() != tt.want:
				t.Errorf("error:\n got: %s\nwant: %s", err, tt.want)
			}
			if name, _, _ := strings.Cut(tt.want, ":"); strings.HasPrefix(name, "OTEL_") {
				var ee *EnvError
				if !errors.As(err, &ee) || ee.Var != name {
					t.Errorf("error %v (%T) is not an *EnvError of %s", err, err, name)
				}
			}
		})
	}
}

// A configuration made in code is checked as a whole; its problems have
// no source to point at.
func TestValidateInCode(t *testing.T) {
	c := Default()
	c.Probe.Attach = "uprobe"
	c.Monitor = "hosts"
	c.Probe.MaxConnections = 1
	c.Visibility.Host = []string{"network", "net"}
	c.Visibility.Rules = []Rule{
		{Match: Match{ContainerID: "3f*", Cgroup: "/a"}, Scopes: []string{}},
		{Match: Match{PidNS: 5}, Scopes: []string{}},
		{Match: Match{PidNS: bpf.DefaultKey.PidNS, MntNS: bpf.DefaultKey.MntNS}, Scopes: []string{}},
		{Match: Match{}, Scopes: []string{}},
	}
	c.Export.OTLP.Endpoint = "ftp://collector"
	c.Export.OTLP.ClientKey = "/k.pem"
	c.Export.FlushTimeout = 0
	c.Telemetry.Listen = "localhost"
	want := strings.Join([]string{
		`probe.attach: unknown attach mode "uprobe" (expected auto, fentry, kprobe or tracepoint)`,
		`probe.max_connections: 1 is not a number from 64 to 16777216`,
		`monitor: unknown monitor "hosts" (expected all, host or containers)`,
		`visibility.host[1]: "net" is not one of network, file, process, capabilities`,
		`visibility.rules[0].match: give only one of container_id, cgroup, or pid_ns+mnt_ns (got container_id and cgroup)`,
		`visibility.rules[1].match: pid_ns and mnt_ns must be given together (mnt_ns is missing)`,
		`visibility.rules[2].match: pid_ns 12648430 and mnt_ns 12648430 are reserved for the default entry`,
		`visibility.rules[3].match: give one of container_id, cgroup, or pid_ns+mnt_ns`,
		`export.otlp.endpoint: "ftp://collector" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`,
		`export.otlp: client_certificate and client_key must be given together (client_certificate is missing)`,
		`export.flush_timeout: "0s" must be positive`,
		`telemetry.listen: "localhost" is not host:port (missing port in address)`,
	}, "\n")
	err := c.Validate()
	if err == nil || err.Error() != want {
		t.Fatalf("Validate:\n got: %v\nwant: %s", err, want)
	}
	for _, e := range unjoin(err) {
		var fe *Error
		if !errors.As(e, &fe) || fe.File != "" || fe.Line != 0 {
			t.Errorf("%v (%T) has a position", e, e)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// The configuration accepts exactly the endpoints the exporter can use:
// the same string is refused, with the same words, when the file names
// it and when otel.New is given it.
func TestEndpointsAsTheExporterSeesThem(t *testing.T) {
	for _, tt := range []struct {
		endpoint string
		ok       bool
	}{
		{"collector", true},
		{"collector:4317", true},
		{"127.0.0.2:4317", true},
		{"[::1]:4317", true},
		{"[::1]", true},
		{"http://collector:4317", true},
		{"HTTPS://collector", true},
		{"http://collector:4317/v1/traces", true},
		{"http://collector:", false},
		{"collector:", false},
		{"collector:0", false},
		{"collector:65536", false},
		{"collector:otlp", false},
		{"collector/v1", false},
		{"::1", false},
		{":4317", false},
		{"ftp://collector:4317", false},
		{"https://user:pw@collector", false},
		{"http://", false},
		{" collector:4317", false},
	} {
		_, perr := Parse("c.yaml", []byte("export: {otlp: {endpoint: \""+tt.endpoint+"\"}}\n"))
		exp, nerr := otel.New(context.Background(), otel.Options{Endpoint: tt.endpoint, Traces: true,
			Stdout: io.Discard, Getenv: func(string) string { return "" }})
		if nerr == nil {
			exp.Shutdown(context.Background())
		}
		if (perr == nil) != tt.ok || (nerr == nil) != tt.ok {
			t.Errorf("%q: config %v, exporter %v; want accepted %v", tt.endpoint, perr, nerr, tt.ok)
			continue
		}
		if !tt.ok {
			msg := nerr.Error()[strings.Index(nerr.Error(), `"`):]
			if !strings.HasSuffix(perr.Error(), "export.otlp.endpoint: "+msg) {
				t.Errorf("%q: config says %q, exporter %q", tt.endpoint, perr, nerr)
			}
		}
	}
}
