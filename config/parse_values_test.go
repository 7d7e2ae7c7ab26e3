package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n", "~\n", "null\n", "{}\n", "---\n...\n---\n~\n"} {
		c, err := Parse("empty.yaml", []byte(in))
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if !sameSettings(c, Default()) {
			t.Errorf("Parse(%q) = %+v, want defaults", in, c)
		}
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	want := &Config{
		Probe:   Probe{Attach: "auto", Transport: "auto", MaxConnections: 65536},
		Monitor: "all",
		Visibility: Visibility{
			Host:    []string{"network"},
			Default: []string{"network"},
			Rules:   []Rule{},
		},
		Export: Export{
			OTLP:         OTLP{Headers: map[string]string{}, Timeout: 10 * time.Second},
			Traces:       true,
			Logs:         true,
			Metrics:      true,
			Sampling:     Sampling{Ratio: 1},
			FlushTimeout: 5 * time.Second,
			Queue:        Queue{MemoryMiB: 64, DiskMiB: 1024},
		},
		Metrics:   Metrics{Peer: "address", MaxSeries: 2000, Expiry: 5 * time.Minute, Interval: time.Minute},
		Telemetry: Telemetry{Listen: "127.0.0.1:9464"},
		Enrich: Enrich{ProcRoot: "/proc", Passwd: "/etc/passwd", DockerRoot: "/var/lib/docker",
			ContainerdState: "/run/containerd", DockerSocket: "/var/run/docker.sock", CRISocket: "auto"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() = %+v\nwant %+v", c, want)
	}
	if !c.MonitorsHost() || !c.MonitorsContainers() {
		t.Error("the default monitors neither host nor containers")
	}
	// Each call returns an independent value.
	c.Visibility.Host[0] = "file"
	c.Export.OTLP.Headers["x"] = "y"
	if d := Default(); d.Visibility.Host[0] != "network" || len(d.Export.OTLP.Headers) != 0 {
		t.Error("Default() shares state between calls")
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name string
		in   string
		edit func(c *Config) // applied to Default() to build the expectation
	}{
		{"partial sections keep defaults", "export:\n  otlp:\n    endpoint: collector:4317\n",
			func(c *Config) { c.Export.OTLP.Endpoint = "collector:4317" }},
		{"null sections keep defaults", "probe:\nvisibility:\nexport:\n  otlp:\n",
			func(c *Config) {}},
		{"empty documents around the configuration", "---\n---\nmonitor: host\n...\n---\n# end\n",
			func(c *Config) { c.Monitor = "host" }},
		{"probe and monitor", "probe: {attach: tracepoint}\nmonitor: containers\n",
			func(c *Config) { c.Probe.Attach = "tracepoint"; c.Monitor = "containers" }},
		{"empty scope lists", "visibility:\n  host: []\n  default: []\n  rules:\n",
			func(c *Config) { c.Visibility.Host = []string{}; c.Visibility.Default = []string{} }},
		{"all scopes", "visibility:\n  host: [file, process, network, capabilities]\n",
			func(c *Config) { c.Visibility.Host = []string{"file", "process", "network", "capabilities"} }},
		{"rules", `visibility:
  rules:
    - match: {container_id: "3f2a*"}
      scopes: []
    - match:
        cgroup: /system.slice/*
      scopes: [network, process]
    - match: {pid_ns: 4026532281, mnt_ns: 0xF0000001}
      scopes: [network]
`, func(c *Config) {
			c.Visibility.Rules = []Rule{
				{Match: Match{ContainerID: "3f2a*"}, Scopes: []string{}},
				{Match: Match{Cgroup: "/system.slice/*"}, Scopes: []string{"network", "process"}},
				{Match: Match{PidNS: 4026532281, MntNS: 0xF0000001}, Scopes: []string{"network"}},
			}
		}},
		{"anchors and aliases", "visibility:\n  host: &s [network, file]\n  default: *s\n",
			func(c *Config) {
				c.Visibility.Host = []string{"network", "file"}
				c.Visibility.Default = []string{"network", "file"}
			}},
		{"export", `export:
  otlp:
    endpoint: https://collector.example:4317
    traces_endpoint: http://traces:4317
    logs_endpoint: logs:4317
    metrics_endpoint: metrics:4317
    insecure: true
    headers:
      authorization: "Bearer abc"
      x-tenant: "7"
    compression: gzip
    timeout: 1m30s
    certificate: /etc/ssl/ca.pem
    client_certificate: /etc/ssl/client.pem
    client_key: /etc/ssl/client.key
  traces: false
  logs: FALSE
  metrics: false
  sampling: {ratio: 0.25}
  flush_timeout: 250ms
  queue: {memory_mib: 8, directory: /var/lib/connwatch/queue, disk_mib: 2048}
`, func(c *Config) {
			c.Export = Export{
				OTLP: OTLP{
					Endpoint:          "https://collector.example:4317",
					TracesEndpoint:    "http://traces:4317",
					LogsEndpoint:      "logs:4317",
					MetricsEndpoint:   "metrics:4317",
					Insecure:          true,
					Headers:           map[string]string{"authorization": "Bearer abc", "x-tenant": "7"},
					Compression:       "gzip",
					Timeout:           90 * time.Second,
					Certificate:       "/etc/ssl/ca.pem",
					ClientCertificate: "/etc/ssl/client.pem",
					ClientKey:         "/etc/ssl/client.key",
				},
				Sampling:     Sampling{Ratio: 0.25},
				FlushTimeout: 250 * time.Millisecond,
				Queue:        Queue{MemoryMiB: 8, Directory: "/var/lib/connwatch/queue", DiskMiB: 2048},
			}
		}},
		{"endpoint forms", "export: {otlp: {endpoint: collector, traces_endpoint: \"[::1]:4317\", logs_endpoint: \"http://127.0.0.2\"}}\n",
			func(c *Config) {
				c.Export.OTLP.Endpoint = "collector"
				c.Export.OTLP.TracesEndpoint = "[::1]:4317"
				c.Export.OTLP.LogsEndpoint = "http://127.0.0.2"
			}},
		{"compression none", "export: {otlp: {compression: none}}\n",
			func(c *Config) { c.Export.OTLP.Compression = "none" }},
		{"telemetry disabled", "telemetry:\n  listen: \"\"\n",
			func(c *Config) { c.Telemetry.Listen = "" }},
		{"telemetry IPv6 and port 0", "telemetry:\n  listen: \"[::1]:0\"\n",
			func(c *Config) { c.Telemetry.Listen = "[::1]:0" }},
		{"telemetry all interfaces", "telemetry:\n  listen: \":9464\"\n",
			func(c *Config) { c.Telemetry.Listen = ":9464" }},
		{"enrich", "enrich:\n  proc_root: /host/proc\n  passwd: \"\"\n",
			func(c *Config) { c.Enrich.ProcRoot, c.Enrich.Passwd = "/host/proc", "" }},
		{"runtime sources", "enrich:\n  docker_root: /host/var/lib/docker\n  containerd_state: \"\"\n  docker_socket: \"\"\n  cri_socket: /run/crio/crio.sock\n",
			func(c *Config) {
				c.Enrich.DockerRoot, c.Enrich.ContainerdState, c.Enrich.DockerSocket, c.Enrich.CRISocket = "/host/var/lib/docker", "", "", "/run/crio/crio.sock"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("c.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.edit(want)
			if !sameSettings(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("monitor: host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Monitor != "host" || !c.MonitorsHost() || c.MonitorsContainers() {
		t.Errorf("Load: monitor %q", c.Monitor)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("monitor: hosts\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if want := bad + `:1:10: monitor: unknown monitor "hosts" (expected all, host or containers)`; err == nil || err.Error() != want {
		t.Errorf("Load(bad) = %v, want %s", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
}

// The bounds: a file over MaxFileBytes, more than MaxRules rules.
func TestParseBounds(t *testing.T) {
	big := bytes.Repeat([]byte("# padding\n"), MaxFileBytes/10+1)
	if _, err := Parse("big.yaml", big); err == nil || err.Error() != "big.yaml: larger than the 1024 KiB a configuration may be" {
		t.Errorf("a %d-byte file: %v", len(big), err)
	}
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than the 1024 KiB") {
		t.Errorf("Load of a %d-byte file: %v", len(big), err)
	}
	var b strings.Builder
	b.WriteString("visibility:\n  rules:\n")
	for i := range MaxRules + 1 {
		fmt.Fprintf(&b, "    - {match: {cgroup: \"/c%d\"}, scopes: []}\n", i)
	}
	if _, err := Parse("c.yaml", []byte(b.String())); err == nil ||
		err.Error() != "c.yaml:3:5: visibility.rules: 4097 rules, more than the 4096 allowed (match many namespaces with one glob)" {
		t.Errorf("%d rules: %v", MaxRules+1, err)
	}
	// At the bound, accepted.
	s := b.String()
	s = s[:strings.LastIndex(strings.TrimSuffix(s, "\n"), "\n")+1]
	if c, err := Parse("c.yaml", []byte(s)); err != nil || len(c.Visibility.Rules) != MaxRules {
		t.Errorf("%d rules: %v", MaxRules, err)
	}
}
