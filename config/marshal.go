package config

import (
	"bytes"
	_ "embed"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed connwatch.yaml
var example []byte

// Example returns the annotated example configuration (connwatch.yaml in
// this package's directory). It documents every key and parses to a
// configuration equal to [Default].
func Example() []byte {
	return bytes.Clone(example)
}

// YAML prints the configuration as YAML, with every key, in the layout
// of the configuration file. Parsing the output yields an equal
// configuration, except that nil slices and maps of a configuration
// built by hand come back empty but non-nil. Strings that are not valid
// UTF-8, which YAML cannot represent and neither Parse nor ApplyEnv
// accept, are printed with the invalid bytes replaced by U+FFFD.
func (c *Config) YAML() []byte {
	o := &c.Export.OTLP
	root := mapping(
		"probe", mapping("attach", str(c.Probe.Attach), "transport", str(c.Probe.Transport),
			"include_agent", boolean(c.Probe.IncludeAgent), "max_connections", integer(uint32(c.Probe.MaxConnections))),
		"monitor", str(c.Monitor),
		"visibility", mapping(
			"host", scopeList(c.Visibility.Host),
			"default", scopeList(c.Visibility.Default),
			"rules", rulesNode(c.Visibility.Rules),
		),
		"export", mapping(
			"otlp", mapping(
				"endpoint", str(o.Endpoint),
				"traces_endpoint", str(o.TracesEndpoint),
				"logs_endpoint", str(o.LogsEndpoint),
				"insecure", boolean(o.Insecure),
				"headers", headersNode(o.Headers),
				"compression", str(o.Compression),
				"timeout", duration(o.Timeout),
				"certificate", str(o.Certificate),
				"client_certificate", str(o.ClientCertificate),
				"client_key", str(o.ClientKey),
			),
			"traces", boolean(c.Export.Traces),
			"logs", boolean(c.Export.Logs),
			"flush_timeout", duration(c.Export.FlushTimeout),
			"queue", mapping(
				"memory_mib", integer(uint32(c.Export.Queue.MemoryMiB)),
				"directory", str(c.Export.Queue.Directory),
				"disk_mib", integer(uint32(c.Export.Queue.DiskMiB)),
			),
			"trace_key", str(c.Export.TraceKey),
		),
		"telemetry", mapping("listen", str(c.Telemetry.Listen)),
		"enrich", mapping(
			"proc_root", str(c.Enrich.ProcRoot),
			"passwd", str(c.Enrich.Passwd),
			"docker_root", str(c.Enrich.DockerRoot),
			"containerd_state", str(c.Enrich.ContainerdState),
			"docker_socket", str(c.Enrich.DockerSocket),
			"cri_socket", str(c.Enrich.CRISocket),
		),
	)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		// Every scalar is valid UTF-8, so encoding cannot fail.
		panic(fmt.Sprintf("config: encoding YAML: %v", err))
	}
	if err := enc.Close(); err != nil {
		panic(fmt.Sprintf("config: encoding YAML: %v", err))
	}
	return b.Bytes()
}

// mapping builds a block mapping from alternating keys and value nodes.
func mapping(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i < len(kv); i += 2 {
		n.Content = append(n.Content, str(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return n
}

// str builds a string scalar; the encoder quotes it when needed.
func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.ToValidUTF8(s, "\uFFFD")}
}

// boolean builds a boolean scalar.
func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

// duration builds a duration scalar such as 10s.
func duration(d time.Duration) *yaml.Node {
	return str(d.String())
}

// integer builds an integer scalar.
func integer(n uint32) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(uint64(n), 10)}
}

// scopeList builds a flow list of scope names, e.g. [network].
func scopeList(scopes []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for _, s := range scopes {
		n.Content = append(n.Content, str(s))
	}
	return n
}

// rulesNode builds the list of rules; an empty list prints as [].
func rulesNode(rules []Rule) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	if len(rules) == 0 {
		n.Style = yaml.FlowStyle
	}
	for _, r := range rules {
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle}
		if r.Match.ContainerID != "" {
			m.Content = append(m.Content, str("container_id"), str(r.Match.ContainerID))
		}
		if r.Match.Cgroup != "" {
			m.Content = append(m.Content, str("cgroup"), str(r.Match.Cgroup))
		}
		if r.Match.PidNS != 0 || r.Match.MntNS != 0 {
			m.Content = append(m.Content, str("pid_ns"), integer(r.Match.PidNS), str("mnt_ns"), integer(r.Match.MntNS))
		}
		n.Content = append(n.Content, mapping("match", m, "scopes", scopeList(r.Scopes)))
	}
	return n
}

// headersNode builds the headers mapping with sorted keys; an empty
// mapping prints as {}.
func headersNode(h map[string]string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if len(h) == 0 {
		n.Style = yaml.FlowStyle
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n.Content = append(n.Content, str(k), str(h[k]))
	}
	return n
}
