package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the whole error text
	}{
		// The examples of the configuration contract.
		{"unknown key", "probe:\n  atach: auto\n",
			`connwatch.yaml:2:3: unknown key "atach" in probe (expected one of: attach, transport, include_agent, max_connections)`},
		{"bad monitor", "probe: {}\nmonitor: \"hosts\"\n",
			`connwatch.yaml:2:10: monitor: unknown monitor "hosts" (expected all, host or containers)`},

		// YAML syntax and document structure.
		{"syntax error with line", "probe: {}\nmonitor: a: b\n",
			`connwatch.yaml:2: invalid YAML: mapping values are not allowed in this context`},
		{"syntax error with tab", "probe:\n\tattach: auto\n",
			`connwatch.yaml:2: invalid YAML: found character that cannot start any token`},
		{"unknown anchor", "monitor: *m\n",
			`connwatch.yaml: invalid YAML: unknown anchor 'm' referenced`},
		{"two documents", "monitor: all\n---\nmonitor: host\n",
			`connwatch.yaml:3:1: only one YAML document is allowed`},
		{"two documents after an empty one", "---\n---\nmonitor: all\n---\nprobe: {}\n",
			`connwatch.yaml:5:1: only one YAML document is allowed`},
		{"top level list", "- probe\n",
			`connwatch.yaml:1:1: expected a mapping at top level, got a list`},
		{"top level string", "probe\n",
			`connwatch.yaml:1:1: expected a mapping at top level, got the string "probe"`},
		{"sampling ratio above 1", "export:\n  sampling: {ratio: 1.5}\n",
			`connwatch.yaml:2:21: export.sampling.ratio: 1.5 is not a ratio from 0 to 1`},
		{"sampling ratio a string", "export:\n  sampling: {ratio: \"10%\"}\n",
			`connwatch.yaml:2:21: export.sampling.ratio: expected a number from 0 to 1, got the string "10%"`},
		{"sampling ratio negative", "export:\n  sampling: {ratio: -0.1}\n",
			`connwatch.yaml:2:21: export.sampling.ratio: -0.1 is not a ratio from 0 to 1`},
		{"metrics peer", "metrics:\n  peer: ip\n",
			`connwatch.yaml:2:9: metrics.peer: "ip" is not a peer mode (address, port or none)`},
		{"metrics max_series zero", "metrics:\n  max_series: 0\n",
			`connwatch.yaml:2:15: metrics.max_series: 0 is not a number from 1 to 1048576`},
		{"metrics expiry", "metrics:\n  expiry: 5\n",
			`connwatch.yaml:2:11: metrics.expiry: expected a duration such as 10s or 500ms, got the integer 5`},
		{"unknown top-level key", "prob: {}\n",
			`connwatch.yaml:1:1: unknown key "prob" at top level (expected one of: probe, monitor, visibility, filters, export, metrics, telemetry, enrich)`},
		{"merge key", "base: &b {monitor: all}\n<<: *b\n",
			"connwatch.yaml:1:1: unknown key \"base\" at top level (expected one of: probe, monitor, visibility, filters, export, metrics, telemetry, enrich)\n" +
				`connwatch.yaml:2:1: unknown key "<<" at top level (expected one of: probe, monitor, visibility, filters, export, metrics, telemetry, enrich; merge keys are not supported)`},
		{"non-scalar key", "[a]: 1\n",
			`connwatch.yaml:1:1: keys at top level must be strings, got a list`},
		{"duplicate top-level key", "monitor: all\nmonitor: host\n",
			`connwatch.yaml:2:1: duplicate key "monitor" at top level (first at line 1, column 1)`},
		{"duplicate nested key", "probe:\n  attach: auto\n  attach: kprobe\n",
			`connwatch.yaml:3:3: duplicate key "attach" in probe (first at line 2, column 3)`},
		{"section not a mapping", "probe: 5\n",
			`connwatch.yaml:1:8: probe: expected a mapping, got the integer 5`},
		{"section is a list", "telemetry: [listen]\n",
			`connwatch.yaml:1:12: telemetry: expected a mapping, got a list`},

		// probe and monitor.
		{"bad attach", "probe:\n  attach: fentri\n",
			`connwatch.yaml:2:11: probe.attach: unknown attach mode "fentri" (expected auto, fentry, kprobe or tracepoint)`},
		{"bad transport", "probe:\n  transport: ring\n",
			`connwatch.yaml:2:14: probe.transport: unknown transport "ring" (expected auto, perf or ringbuf)`},
		{"attach not a string", "probe:\n  attach: [auto]\n",
			`connwatch.yaml:2:11: probe.attach: expected a string, got a list`},
		{"attach is a date", "probe:\n  attach: 2001-12-14\n",
			`connwatch.yaml:2:11: probe.attach: expected a string, got !!timestamp "2001-12-14" (quote it to use it as a string)`},
		{"monitor integer", "monitor: 7\n",
			`connwatch.yaml:1:10: monitor: expected a string, got the integer 7 (quote it to use it as a string)`},
		{"monitor null", "monitor:\n",
			`connwatch.yaml:1:9: monitor: expected a string, got null (write "" for an empty string)`},
		{"monitor alias to mapping", "probe: &p {attach: *p}\n",
			`connwatch.yaml:1:20: probe.attach: expected a string, got a mapping`},

		// visibility scopes.
		{"scopes not a list", "visibility:\n  host: network\n",
			`connwatch.yaml:2:9: visibility.host: expected a list of scopes, got the string "network"`},
		{"scopes null", "visibility:\n  default:\n",
			`connwatch.yaml:2:11: visibility.default: expected a list of scopes, got null (write [] to trace nothing)`},
		{"scope not a string", "visibility:\n  default: [network, 2]\n",
			`connwatch.yaml:2:22: visibility.default[1]: expected a string, got the integer 2 (quote it to use it as a string)`},
		{"unknown scope", "visibility:\n  host: [network, net]\n",
			`connwatch.yaml:2:19: visibility.host[1]: "net" is not one of network, file, process, capabilities`},
		{"duplicate scope", "visibility:\n  host: [network, file, network]\n",
			`connwatch.yaml:2:25: visibility.host[2]: scope "network" is listed twice`},
		{"unknown visibility key", "visibility:\n  hosts: []\n",
			`connwatch.yaml:2:3: unknown key "hosts" in visibility (expected one of: host, default, rules)`},

		// visibility rules.
		{"rules not a list", "visibility:\n  rules: {}\n",
			`connwatch.yaml:2:10: visibility.rules: expected a list of rules, got a mapping`},
		{"rule not a mapping", "visibility:\n  rules:\n    - network\n",
			`connwatch.yaml:3:7: visibility.rules[0]: expected a mapping with match and scopes, got the string "network"`},
		{"rule unknown key", "visibility:\n  rules:\n    - match: {container_id: \"3f2a*\"}\n      scopes: []\n      action: ignore\n",
			`connwatch.yaml:5:7: unknown key "action" in visibility.rules[0] (expected one of: match, scopes)`},
		{"rule without scopes", "visibility:\n  rules:\n    - match: {container_id: \"3f2a*\"}\n",
			`connwatch.yaml:3:7: visibility.rules[0]: missing key "scopes"`},
		{"rule without match", "visibility:\n  rules:\n    - scopes: []\n",
			`connwatch.yaml:3:7: visibility.rules[0]: missing key "match"`},
		{"empty rule", "visibility:\n  rules:\n    - {}\n",
			"connwatch.yaml:3:7: visibility.rules[0]: missing key \"match\"\n" +
				`connwatch.yaml:3:7: visibility.rules[0]: missing key "scopes"`},
		{"rule scopes null", "visibility:\n  rules:\n    - match: {container_id: \"3f2a*\"}\n      scopes:\n",
			`connwatch.yaml:4:14: visibility.rules[0].scopes: expected a list of scopes, got null (write [] to trace nothing)`},
		{"second rule is reported by index", "visibility:\n  rules:\n    - match: {cgroup: /a}\n      scopes: []\n    - match: {cgroup: /b}\n      scopes: [nope]\n",
			`connwatch.yaml:6:16: visibility.rules[1].scopes[0]: "nope" is not one of network, file, process, capabilities`},
		{"match not a mapping", "visibility:\n  rules:\n    - match: [3f2a]\n      scopes: []\n",
			`connwatch.yaml:3:14: visibility.rules[0].match: expected a mapping with one of container_id, cgroup, or pid_ns+mnt_ns, got a list`},
		{"match unknown key", "visibility:\n  rules:\n    - match: {container: \"3f2a*\"}\n      scopes: []\n",
			`connwatch.yaml:3:15: unknown key "container" in visibility.rules[0].match (expected one of: container_id, cgroup, pid_ns, mnt_ns)`},
		{"match empty", "visibility:\n  rules:\n    - match: {}\n      scopes: []\n",
			`connwatch.yaml:3:14: visibility.rules[0].match: give one of container_id, cgroup, or pid_ns+mnt_ns`},
		{"container_id empty", "visibility:\n  rules:\n    - match: {container_id: \"\"}\n      scopes: []\n",
			`connwatch.yaml:3:29: visibility.rules[0].match.container_id: must not be empty`},
		{"container_id integer", "visibility:\n  rules:\n    - match: {container_id: 1234}\n      scopes: []\n",
			`connwatch.yaml:3:29: visibility.rules[0].match.container_id: expected a string, got the integer 1234 (quote it to use it as a string)`},
		{"container_id bad glob", "visibility:\n  rules:\n    - match: {container_id: \"3f[a\"}\n      scopes: []\n",
			`connwatch.yaml:3:29: visibility.rules[0].match.container_id: "3f[a" is not a valid glob pattern`},
		{"cgroup bad glob", "visibility:\n  rules:\n    - match: {cgroup: \"/kubepods/[\"}\n      scopes: []\n",
			`connwatch.yaml:3:23: visibility.rules[0].match.cgroup: "/kubepods/[" is not a valid glob pattern`},
		{"pid_ns zero", "visibility:\n  rules:\n    - match: {pid_ns: 0, mnt_ns: 1}\n      scopes: []\n",
			`connwatch.yaml:3:23: visibility.rules[0].match.pid_ns: expected a positive integer up to 4294967295, got the integer 0`},
		{"pid_ns negative", "visibility:\n  rules:\n    - match: {pid_ns: -3, mnt_ns: 1}\n      scopes: []\n",
			`connwatch.yaml:3:23: visibility.rules[0].match.pid_ns: expected a positive integer up to 4294967295, got the integer -3`},
		{"mnt_ns too large", "visibility:\n  rules:\n    - match: {pid_ns: 1, mnt_ns: 4294967296}\n      scopes: []\n",
			`connwatch.yaml:3:34: visibility.rules[0].match.mnt_ns: expected a positive integer up to 4294967295, got the integer 4294967296`},
		{"pid_ns string", "visibility:\n  rules:\n    - match: {pid_ns: \"1\", mnt_ns: 1}\n      scopes: []\n",
			`connwatch.yaml:3:23: visibility.rules[0].match.pid_ns: expected a positive integer up to 4294967295, got the string "1"`},
		{"pid_ns float", "visibility:\n  rules:\n    - match: {pid_ns: 1.5, mnt_ns: 1}\n      scopes: []\n",
			`connwatch.yaml:3:23: visibility.rules[0].match.pid_ns: expected a positive integer up to 4294967295, got the number 1.5`},
		{"pid_ns alone", "visibility:\n  rules:\n    - match: {pid_ns: 1}\n      scopes: []\n",
			`connwatch.yaml:3:15: visibility.rules[0].match: pid_ns and mnt_ns must be given together (mnt_ns is missing)`},
		{"mnt_ns alone", "visibility:\n  rules:\n    - match: {mnt_ns: 1}\n      scopes: []\n",
			`connwatch.yaml:3:15: visibility.rules[0].match: pid_ns and mnt_ns must be given together (pid_ns is missing)`},
		{"container_id and cgroup", "visibility:\n  rules:\n    - match: {container_id: \"3f2a*\", cgroup: /a}\n      scopes: []\n",
			`connwatch.yaml:3:14: visibility.rules[0].match: give only one of container_id, cgroup, or pid_ns+mnt_ns (got container_id and cgroup)`},
		{"cgroup and namespaces", "visibility:\n  rules:\n    - match: {cgroup: /a, pid_ns: 1, mnt_ns: 2}\n      scopes: []\n",
			`connwatch.yaml:3:14: visibility.rules[0].match: give only one of container_id, cgroup, or pid_ns+mnt_ns (got cgroup and pid_ns+mnt_ns)`},
		{"reserved namespaces", "visibility:\n  rules:\n    - match: {pid_ns: 12648430, mnt_ns: 0xc0ffee}\n      scopes: []\n",
			`connwatch.yaml:3:14: visibility.rules[0].match: pid_ns 12648430 and mnt_ns 12648430 are reserved for the default entry`},

		// export.
		{"unknown export key", "export:\n  trace: true\n",
			`connwatch.yaml:2:3: unknown key "trace" in export (expected one of: otlp, traces, logs, metrics, sampling, flush_timeout, queue, trace_key)`},
		{"trace key too short", "export: {trace_key: secret}\n",
			"connwatch.yaml:1:21: export.trace_key: 6 bytes is too short for a key (at least 16; e.g. the output of `head -c 32 /dev/urandom | base64`)"},
		{"trace key not a string", "export: {trace_key: 12345678901234567890}\n",
			`connwatch.yaml:1:21: export.trace_key: expected a string, got the integer 12345678901234567890 (quote it to use it as a string)`},
		{"max connections too small", "probe: {max_connections: 10}\n",
			`connwatch.yaml:1:26: probe.max_connections: 10 is not a number from 64 to 16777216`},
		{"max connections not a number", "probe: {max_connections: lots}\n",
			`connwatch.yaml:1:26: probe.max_connections: expected a whole number, got the string "lots"`},
		{"queue size zero", "export: {queue: {memory_mib: 0}}\n",
			`connwatch.yaml:1:30: export.queue.memory_mib: 0 is not a size in MiB from 1 to 1048576`},
		{"queue size not a number", "export: {queue: {disk_mib: lots}}\n",
			`connwatch.yaml:1:28: export.queue.disk_mib: expected a whole number of MiB, got the string "lots"`},
		{"queue unknown key", "export: {queue: {memory: 1}}\n",
			`connwatch.yaml:1:18: unknown key "memory" in export.queue (expected one of: memory_mib, directory, disk_mib)`},
		{"bool integer", "export:\n  logs: 1\n",
			`connwatch.yaml:2:9: export.logs: expected true or false, got the integer 1`},
		{"bool yes", "export:\n  traces: yes\n",
			`connwatch.yaml:2:11: export.traces: expected true or false, got the string "yes"`},
		{"bool null", "export:\n  logs:\n",
			`connwatch.yaml:2:8: export.logs: expected true or false, got null`},
		{"bool quoted", "export:\n  otlp:\n    insecure: \"true\"\n",
			`connwatch.yaml:3:15: export.otlp.insecure: expected true or false, got the string "true"`},
		{"duration unparsable", "export:\n  flush_timeout: soon\n",
			`connwatch.yaml:2:18: export.flush_timeout: "soon" is not a duration (expected e.g. 10s, 500ms, 1m30s)`},
		{"duration without unit", "export:\n  otlp:\n    timeout: 10\n",
			`connwatch.yaml:3:14: export.otlp.timeout: expected a duration such as 10s or 500ms, got the integer 10`},
		{"duration zero", "export:\n  flush_timeout: 0s\n",
			`connwatch.yaml:2:18: export.flush_timeout: "0s" must be positive`},
		{"duration negative", "export:\n  otlp:\n    timeout: -1s\n",
			`connwatch.yaml:3:14: export.otlp.timeout: "-1s" must be positive`},
		{"unknown otlp key", "export:\n  otlp:\n    endpoints: x\n",
			`connwatch.yaml:3:5: unknown key "endpoints" in export.otlp (expected one of: endpoint, traces_endpoint, logs_endpoint, metrics_endpoint, insecure, headers, compression, timeout, certificate, client_certificate, client_key)`},
		{"bad compression", "export:\n  otlp:\n    compression: zstd\n",
			`connwatch.yaml:3:18: export.otlp.compression: "zstd" is not one of gzip, none`},
		{"endpoint with path", "export:\n  otlp:\n    endpoint: collector/v1\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: "collector/v1" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`},
		{"endpoint empty port", "export:\n  otlp:\n    endpoint: \"collector:\"\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: "collector:" has an empty port`},
		{"endpoint unbracketed IPv6", "export:\n  otlp:\n    endpoint: \"::1\"\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: "::1" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`},
		{"endpoint user", "export:\n  otlp:\n    endpoint: https://u:p@c:4317\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: "https://u:p@c:4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`},
		{"endpoint scheme", "export:\n  otlp:\n    endpoint: ftp://collector:4317\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: "ftp://collector:4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`},
		{"endpoint URL port", "export:\n  otlp:\n    endpoint: http://collector:0\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: "http://collector:0" has an invalid port "0" (expected 1 to 65535)`},
		{"endpoint port", "export:\n  otlp:\n    endpoint: collector:abc\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: "collector:abc" has an invalid port "abc" (expected 1 to 65535)`},
		{"traces endpoint without host", "export:\n  otlp:\n    traces_endpoint: http://\n",
			`connwatch.yaml:3:22: export.otlp.traces_endpoint: "http://" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`},
		{"logs endpoint without host", "export:\n  otlp:\n    logs_endpoint: :4317\n",
			`connwatch.yaml:3:20: export.otlp.logs_endpoint: ":4317" is not a valid endpoint (expected host, host:port or an http:// or https:// URL)`},
		{"endpoint number", "export:\n  otlp:\n    endpoint: 1.5\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: expected a string, got the number 1.5 (quote it to use it as a string)`},
		{"endpoint custom tag", "export:\n  otlp:\n    endpoint: !custom x\n",
			`connwatch.yaml:3:15: export.otlp.endpoint: expected a string, got !custom "x" (quote it to use it as a string)`},
		{"headers not a mapping", "export:\n  otlp:\n    headers: [a=b]\n",
			`connwatch.yaml:3:14: export.otlp.headers: expected a mapping, got a list`},
		{"header name empty", "export:\n  otlp:\n    headers:\n      \"\": x\n",
			`connwatch.yaml:4:7: export.otlp.headers: header name must not be empty`},
		{"header name space", "export:\n  otlp:\n    headers:\n      \"x y\": z\n",
			`connwatch.yaml:4:7: export.otlp.headers: header name "x y" contains ' ', which is not allowed in header names`},
		{"header value integer", "export:\n  otlp:\n    headers:\n      x-count: 5\n",
			`connwatch.yaml:4:16: export.otlp.headers["x-count"]: expected a string, got the integer 5 (quote it to use it as a string)`},
		{"header value newline", "export:\n  otlp:\n    headers:\n      x-a: \"a\\nb\"\n",
			`connwatch.yaml:4:12: export.otlp.headers["x-a"]: header value contains the control character '\n'`},
		{"header names differ in case only", "export:\n  otlp:\n    headers:\n      Authorization: a\n      authorization: b\n",
			`connwatch.yaml:5:7: duplicate key "authorization" in export.otlp.headers (first at line 4, column 7)`},
		{"client certificate alone", "export:\n  otlp:\n    client_certificate: /c.pem\n",
			`connwatch.yaml:3:5: export.otlp: client_certificate and client_key must be given together (client_key is missing)`},
		{"client key alone", "export:\n  otlp:\n    client_key: /k.pem\n",
			`connwatch.yaml:3:5: export.otlp: client_certificate and client_key must be given together (client_certificate is missing)`},
		{"certificate null", "export:\n  otlp:\n    certificate: ~\n",
			`connwatch.yaml:3:18: export.otlp.certificate: expected a string, got null (write "" for an empty string)`},

		// telemetry and enrich.
		{"listen without port", "telemetry:\n  listen: localhost\n",
			`connwatch.yaml:2:11: telemetry.listen: "localhost" is not host:port (missing port in address)`},
		{"listen too many colons", "telemetry:\n  listen: 127.0.0.1:9464:1\n",
			`connwatch.yaml:2:11: telemetry.listen: "127.0.0.1:9464:1" is not host:port (too many colons in address)`},
		{"listen port range", "telemetry:\n  listen: \":99999\"\n",
			`connwatch.yaml:2:11: telemetry.listen: ":99999" has an invalid port "99999" (expected 0 to 65535)`},
		{"listen named port", "telemetry:\n  listen: \"[::1]:http\"\n",
			`connwatch.yaml:2:11: telemetry.listen: "[::1]:http" has an invalid port "http" (expected 0 to 65535)`},
		{"listen integer", "telemetry:\n  listen: 9464\n",
			`connwatch.yaml:2:11: telemetry.listen: expected a string, got the integer 9464 (quote it to use it as a string)`},
		{"proc_root empty", "enrich:\n  proc_root: \"\"\n",
			`connwatch.yaml:2:14: enrich.proc_root: must not be empty`},
		{"passwd mapping", "enrich:\n  passwd: {}\n",
			`connwatch.yaml:2:11: enrich.passwd: expected a string, got a mapping`},
		{"unknown enrich key", "enrich:\n  procroot: /proc\n",
			`connwatch.yaml:2:3: unknown key "procroot" in enrich (expected one of: proc_root, passwd, docker_root, containerd_state, docker_socket, cri_socket)`},

		// Several problems are all reported, in order.
		{"several problems", "probe:\n  atach: auto\nmonitor: \"hosts\"\nexport:\n  traces: maybe\n",
			"connwatch.yaml:2:3: unknown key \"atach\" in probe (expected one of: attach, transport, include_agent, max_connections)\n" +
				"connwatch.yaml:3:10: monitor: unknown monitor \"hosts\" (expected all, host or containers)\n" +
				`connwatch.yaml:5:11: export.traces: expected true or false, got the string "maybe"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What the agent and "connwatch config validate" run: the
			// walk of the file, then the rules between settings.
			c, err := Parse("connwatch.yaml", []byte(tt.in))
			if err == nil {
				if err = c.Validate(); err == nil {
					t.Fatalf("Parse and Validate accepted %q: %+v", tt.in, c)
				}
			} else {
				if c != nil {
					t.Errorf("Parse returned a config along with an error")
				}
				var list ErrorList
				if !errors.As(err, &list) || len(list) == 0 {
					t.Fatalf("error is %T, want a non-empty ErrorList", err)
				}
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse(%q) error:\n got: %s\nwant: %s", tt.in, got, tt.want)
			}
			var one *Error
			if !errors.As(err, &one) || one.File != "connwatch.yaml" {
				t.Errorf("errors.As(*Error) = %v", one)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Column: 7, Msg: "bad"}, "a.yaml:3:7: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
		{Error{Line: 3, Column: 7, Msg: "bad"}, "3:7: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.e, got, tt.want)
		}
	}

	var list ErrorList
	for i := range 25 {
		list = append(list, &Error{File: "f", Line: i + 1, Msg: "m"})
	}
	lines := strings.Split(list.Error(), "\n")
	if len(lines) != 21 || lines[0] != "f:1: m" || lines[19] != "f:20: m" || lines[20] != "(and 5 more)" {
		t.Errorf("long list printed as %q", lines)
	}
}

func TestParseTooManyErrors(t *testing.T) {
	// A large erroneous list reused through many aliases must not make
	// Parse do work proportional to the product of the two sizes.
	var b strings.Builder
	b.WriteString("bad: &s [")
	for i := range 20000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("x")
	}
	b.WriteString("]\nvisibility:\n  rules:\n")
	for range MaxRules {
		b.WriteString("    - {match: {cgroup: /a}, scopes: *s}\n")
	}
	start := time.Now()
	_, err := Parse("big.yaml", []byte(b.String()))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Parse took %v", d)
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v", err)
	}
	if len(list) != maxErrors+1 || list[maxErrors].Error() != "big.yaml: too many errors" {
		t.Errorf("got %d errors, last %v", len(list), list[len(list)-1])
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != maxListed+1 || lines[maxListed] != "(and 81 more)" {
		t.Errorf("printed %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}
