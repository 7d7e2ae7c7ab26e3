package config

import (
	"bytes"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/otel"
)

func TestDefaultRoundTrip(t *testing.T) {
	out := Default().YAML()
	c, err := Parse("default.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Default().YAML()): %v\n%s", err, out)
	}
	if !sameSettings(c, Default()) {
		t.Errorf("round trip changed the defaults:\n got %+v\nwant %+v", c, Default())
	}
}

func TestDefaultYAML(t *testing.T) {
	const want = `probe:
  attach: auto
  transport: auto
  include_agent: false
  max_connections: 65536
monitor: all
visibility:
  host: [network]
  default: [network]
  rules: []
filters:
  exclude:
    peers: []
    ports: []
    comms: []
    failures: false
  include:
    peers: []
    ports: []
    comms: []
export:
  otlp:
    endpoint: ""
    traces_endpoint: ""
    logs_endpoint: ""
    metrics_endpoint: ""
    insecure: false
    headers: {}
    compression: ""
    timeout: 10s
    certificate: ""
    client_certificate: ""
    client_key: ""
  traces: true
  logs: true
  metrics: true
  sampling:
    ratio: 1.0
  flush_timeout: 5s
  queue:
    memory_mib: 64
    directory: ""
    disk_mib: 1024
  trace_key: ""
metrics:
  peer: address
  max_series: 2000
  expiry: 5m0s
  interval: 1m0s
telemetry:
  listen: 127.0.0.1:9464
enrich:
  proc_root: /proc
  passwd: /etc/passwd
  docker_root: /var/lib/docker
  containerd_state: /run/containerd
  docker_socket: /var/run/docker.sock
  cri_socket: auto
`
	if got := string(Default().YAML()); got != want {
		t.Errorf("Default().YAML():\n%s\nwant:\n%s", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	c := Default()
	c.Probe.Attach = bpf.ModeKprobe
	c.Monitor = bpf.MonitorContainers
	c.Visibility = Visibility{
		Host:    []string{},
		Default: []string{ScopeNameNetwork, ScopeNameCapabilities},
		Rules: []Rule{
			{Match: Match{ContainerID: "3f2a*"}, Scopes: []string{}},
			{Match: Match{Cgroup: "/kubepods.slice/*/[ab]?"}, Scopes: []string{"network", "file"}},
			{Match: Match{PidNS: 4026532281, MntNS: 4294967295}, Scopes: []string{"process"}},
			{Match: Match{ContainerID: "123"}, Scopes: []string{"network"}},
		},
	}
	c.Export = Export{
		OTLP: OTLP{
			Endpoint:          "http://[::1]:4317",
			TracesEndpoint:    "t:1",
			LogsEndpoint:      "https://logs/v1/logs",
			Insecure:          true,
			Headers:           map[string]string{"b": "true", "a": "", "c": "#x: y", "d": "123", "e": "~", "f": "é\t"},
			Compression:       otel.CompressionGzip,
			Timeout:           1500 * time.Millisecond,
			Certificate:       "null",
			ClientCertificate: "- x",
			ClientKey:         "'k'",
		},
		Traces:       false,
		Logs:         true,
		FlushTimeout: time.Hour + time.Nanosecond,
		Queue:        Queue{MemoryMiB: 1, Directory: "/tmp/q: x", DiskMiB: 1048576},
		TraceKey:     "#not a comment: 16+ bytes",
	}
	c.Probe.IncludeAgent = true
	c.Telemetry.Listen = "[::]:0"
	c.Enrich = Enrich{ProcRoot: "yes", Passwd: "", DockerRoot: "", ContainerdState: "/s", DockerSocket: "/d.sock", CRISocket: ""}

	out := c.YAML()
	got, err := Parse("rt.yaml", out)
	if err != nil {
		t.Fatalf("Parse(YAML()): %v\n%s", err, out)
	}
	if !sameSettings(got, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v\nYAML:\n%s", got, c, out)
	}
}

func TestYAMLInvalidUTF8(t *testing.T) {
	c := Default()
	c.Enrich.Passwd = "/etc/pass\xffwd"
	got, err := Parse("u.yaml", c.YAML())
	if err != nil {
		t.Fatal(err)
	}
	if got.Enrich.Passwd != "/etc/pass\uFFFDwd" {
		t.Errorf("passwd = %q", got.Enrich.Passwd)
	}
}

func TestExampleEqualsDefault(t *testing.T) {
	onDisk, err := os.ReadFile("connwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, Example()) {
		t.Fatal("Example() differs from connwatch.yaml")
	}
	c, err := Load("connwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !sameSettings(c, Default()) {
		t.Errorf("connwatch.yaml = %+v\nwant Default() = %+v", c, Default())
	}
}

// keyPaths returns the dotted paths of all mapping keys under n, with
// "[]" standing for list items.
func keyPaths(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keyPaths(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if prefix != "" {
				p = prefix + "." + p
			}
			out[p] = true
			keyPaths(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			keyPaths(c, prefix+"[]", out)
		}
	}
}

func paths(t *testing.T, data []byte) map[string]bool {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	keyPaths(&n, "", out)
	return out
}

func TestExampleHasEveryKey(t *testing.T) {
	example := paths(t, Example())
	// Every key the printer emits, plus the rule keys, which the example
	// shows in a comment.
	want := paths(t, Default().YAML())
	for k := range want {
		if !example[k] {
			t.Errorf("connwatch.yaml lacks key %s", k)
		}
	}
	if len(example) != len(want) {
		t.Errorf("connwatch.yaml has %d keys, the printer %d", len(example), len(want))
	}

	// The commented rules example is valid and mentions every match key.
	var block []string
	in := false
	for line := range strings.SplitSeq(string(Example()), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "# rules:":
			in = true
			block = append(block, "  rules:")
		case in && strings.HasPrefix(trimmed, "#"):
			block = append(block, "  "+strings.TrimPrefix(trimmed, "# "))
		case in:
			in = false
		}
	}
	if len(block) < 2 {
		t.Fatal("connwatch.yaml has no commented rules example")
	}
	doc := "visibility:\n" + strings.Join(block, "\n") + "\n"
	c, err := Parse("rules-example", []byte(doc))
	if err != nil {
		t.Fatalf("commented rules example: %v\n%s", err, doc)
	}
	if len(c.Visibility.Rules) != 3 {
		t.Errorf("commented rules example has %d rules, want 3", len(c.Visibility.Rules))
	}
	got := paths(t, []byte(doc))
	var missing []string
	for _, k := range append(ruleSchema.keys, matchSchema.keys...) {
		found := false
		for p := range got {
			if strings.HasSuffix(p, "."+k) {
				found = true
			}
		}
		if !found {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("commented rules example lacks %v", missing)
	}
}
