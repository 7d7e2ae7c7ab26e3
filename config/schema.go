package config

import (
	"fmt"
	"math"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/connwatch/connwatch/bpf"
)

// The schema: the keys of each section of the file, in the order they
// are printed, and for each key the field it sets and how it prints. The
// walk (parse.go) and the printer (marshal.go) both go through it, so a
// key is named once.

// A field is one key of a section whose values are stored in a T.
type field[T any] struct {
	key string
	// set stores the value v of the key, whose path is where, in t; it
	// reports problems with p.errorf and leaves t alone on any.
	set func(p *parser, v *yaml.Node, where string, t *T)
	// print returns the value node of the key, or nil to leave the key
	// out.
	print func(t *T) *yaml.Node
}

// A section is the keys of one mapping of the file.
type section[T any] struct {
	fields []field[T]
	keys   []string
}

func newSection[T any](fields ...field[T]) *section[T] {
	s := &section[T]{fields: fields}
	for _, f := range fields {
		s.keys = append(s.keys, f.key)
	}
	return s
}

// walk stores the mapping n, the section at the path where ("" for the
// top level), in t, recording where each key stands. It returns the key
// nodes seen, by name.
func (s *section[T]) walk(p *parser, n *yaml.Node, where string, t *T) map[string]*yaml.Node {
	return p.walkMap(n, where, s.keys, func(key string, k, v *yaml.Node) {
		path := join(where, key)
		p.note(path, k, v)
		for _, f := range s.fields {
			if f.key == key {
				f.set(p, v, path, t)
			}
		}
	})
}

// node prints t as a block mapping.
func (s *section[T]) node(t *T) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, f := range s.fields {
		if v := f.print(t); v != nil {
			n.Content = append(n.Content, str(f.key), v)
		}
	}
	return n
}

// sub is a key whose value is the section s, stored in get(t).
func sub[T, U any](key string, s *section[U], get func(*T) *U) field[T] {
	return field[T]{key,
		func(p *parser, v *yaml.Node, where string, t *T) { s.walk(p, v, where, get(t)) },
		func(t *T) *yaml.Node { return s.node(get(t)) }}
}

// strField is a string key; check, if not nil, is its validator.
func strField[T any](key string, check func(string) string, get func(*T) *string) field[T] {
	return field[T]{key,
		func(p *parser, v *yaml.Node, where string, t *T) {
			if s, ok := p.checked(v, where, check); ok {
				*get(t) = s
			}
		},
		func(t *T) *yaml.Node { return str(*get(t)) }}
}

// nameField is a key whose value is one of the names parse accepts.
func nameField[T any, N ~string](key string, parse func(string) (N, error), get func(*T) *N) field[T] {
	return field[T]{key,
		func(p *parser, v *yaml.Node, where string, t *T) {
			s, ok := p.str(v, where)
			if !ok {
				return
			}
			name, err := parse(s)
			if err != nil {
				p.errorf(v, "%s: %s", where, err)
				return
			}
			*get(t) = name
		},
		func(t *T) *yaml.Node { return str(string(*get(t))) }}
}

func boolField[T any](key string, get func(*T) *bool) field[T] {
	return field[T]{key,
		func(p *parser, v *yaml.Node, where string, t *T) {
			if b, ok := p.boolean(v, where); ok {
				*get(t) = b
			}
		},
		func(t *T) *yaml.Node { return boolean(*get(t)) }}
}

func durationField[T any](key string, get func(*T) *time.Duration) field[T] {
	return field[T]{key,
		func(p *parser, v *yaml.Node, where string, t *T) {
			if d, ok := p.duration(v, where); ok {
				*get(t) = d
			}
		},
		func(t *T) *yaml.Node { return duration(*get(t)) }}
}

// intField is a whole number; what names it in the message about a value
// that is not a number, and check is its validator.
func intField[T any](key, what string, check func(string) string, get func(*T) *int) field[T] {
	return field[T]{key,
		func(p *parser, v *yaml.Node, where string, t *T) {
			if i, ok := p.integer(v, where, what, check); ok {
				*get(t) = i
			}
		},
		func(t *T) *yaml.Node { return integer(uint32(*get(t))) }}
}

// scopesField is a list of scope names.
func scopesField[T any](key string, get func(*T) *[]string) field[T] {
	return field[T]{key,
		func(p *parser, v *yaml.Node, where string, t *T) { p.scopes(v, where, get(t)) },
		func(t *T) *yaml.Node { return scopeList(*get(t)) }}
}

var configSchema = newSection(
	sub("probe", probeSchema, func(c *Config) *Probe { return &c.Probe }),
	nameField("monitor", bpf.ParseMonitor, func(c *Config) *bpf.Monitor { return &c.Monitor }),
	sub("visibility", visibilitySchema, func(c *Config) *Visibility { return &c.Visibility }),
	sub("filters", filtersSchema, func(c *Config) *Filters { return &c.Filters }),
	sub("export", exportSchema, func(c *Config) *Export { return &c.Export }),
	sub("metrics", metricsSchema, func(c *Config) *Metrics { return &c.Metrics }),
	sub("telemetry", telemetrySchema, func(c *Config) *Telemetry { return &c.Telemetry }),
	sub("enrich", enrichSchema, func(c *Config) *Enrich { return &c.Enrich }),
)

var probeSchema = newSection(
	nameField("attach", bpf.ParseMode, func(p *Probe) *bpf.Mode { return &p.Attach }),
	nameField("transport", bpf.ParseTransport, func(p *Probe) *bpf.Transport { return &p.Transport }),
	boolField("include_agent", func(p *Probe) *bool { return &p.IncludeAgent }),
	intField("max_connections", "a whole number", checkMaxConnections, func(p *Probe) *int { return &p.MaxConnections }),
)

func checkMaxConnections(text string) string {
	return checkCount(text, minMaxConnections, maxMaxConnections)
}

var visibilitySchema = newSection(
	scopesField("host", func(v *Visibility) *[]string { return &v.Host }),
	scopesField("default", func(v *Visibility) *[]string { return &v.Default }),
	field[Visibility]{"rules", (*parser).rules, func(v *Visibility) *yaml.Node { return rulesNode(v.Rules) }},
)

var ruleSchema = newSection(
	field[Rule]{"match", (*parser).match, func(r *Rule) *yaml.Node {
		n := matchSchema.node(&r.Match)
		n.Style = yaml.FlowStyle
		return n
	}},
	scopesField("scopes", func(r *Rule) *[]string { return &r.Scopes }),
)

// matchSchema prints only the selectors that are set.
var matchSchema = newSection(
	field[Match]{"container_id", globSetter(func(m *Match) *string { return &m.ContainerID }),
		func(m *Match) *yaml.Node { return strIf(m.ContainerID) }},
	field[Match]{"cgroup", globSetter(func(m *Match) *string { return &m.Cgroup }),
		func(m *Match) *yaml.Node { return strIf(m.Cgroup) }},
	field[Match]{"pid_ns", nsSetter(func(m *Match) *uint32 { return &m.PidNS }), func(m *Match) *yaml.Node { return nsNode(m.PidNS) }},
	field[Match]{"mnt_ns", nsSetter(func(m *Match) *uint32 { return &m.MntNS }), func(m *Match) *yaml.Node { return nsNode(m.MntNS) }},
)

var exportSchema = newSection(
	sub("otlp", otlpSchema, func(e *Export) *OTLP { return &e.OTLP }),
	boolField("traces", func(e *Export) *bool { return &e.Traces }),
	boolField("logs", func(e *Export) *bool { return &e.Logs }),
	boolField("metrics", func(e *Export) *bool { return &e.Metrics }),
	sub("sampling", samplingSchema, func(e *Export) *Sampling { return &e.Sampling }),
	durationField("flush_timeout", func(e *Export) *time.Duration { return &e.FlushTimeout }),
	sub("queue", queueSchema, func(e *Export) *Queue { return &e.Queue }),
	strField("trace_key", checkTraceKey, func(e *Export) *string { return &e.TraceKey }),
)

var queueSchema = newSection(
	intField("memory_mib", "a whole number of MiB", checkSize, func(q *Queue) *int { return &q.MemoryMiB }),
	strField("directory", nil, func(q *Queue) *string { return &q.Directory }),
	intField("disk_mib", "a whole number of MiB", checkSize, func(q *Queue) *int { return &q.DiskMiB }),
)

var otlpSchema = newSection(
	strField("endpoint", checkEndpoint, func(o *OTLP) *string { return &o.Endpoint }),
	strField("traces_endpoint", checkEndpoint, func(o *OTLP) *string { return &o.TracesEndpoint }),
	strField("logs_endpoint", checkEndpoint, func(o *OTLP) *string { return &o.LogsEndpoint }),
	strField("metrics_endpoint", checkEndpoint, func(o *OTLP) *string { return &o.MetricsEndpoint }),
	boolField("insecure", func(o *OTLP) *bool { return &o.Insecure }),
	field[OTLP]{"headers", (*parser).headers, func(o *OTLP) *yaml.Node { return headersNode(o.Headers) }},
	strField("compression", checkCompression, func(o *OTLP) *string { return &o.Compression }),
	durationField("timeout", func(o *OTLP) *time.Duration { return &o.Timeout }),
	strField("certificate", nil, func(o *OTLP) *string { return &o.Certificate }),
	strField("client_certificate", nil, func(o *OTLP) *string { return &o.ClientCertificate }),
	strField("client_key", nil, func(o *OTLP) *string { return &o.ClientKey }),
)

var telemetrySchema = newSection(
	strField("listen", checkListen, func(t *Telemetry) *string { return &t.Listen }),
)

var enrichSchema = newSection(
	strField("proc_root", checkNonEmpty, func(e *Enrich) *string { return &e.ProcRoot }),
	strField("passwd", nil, func(e *Enrich) *string { return &e.Passwd }),
	strField("docker_root", nil, func(e *Enrich) *string { return &e.DockerRoot }),
	strField("containerd_state", nil, func(e *Enrich) *string { return &e.ContainerdState }),
	strField("docker_socket", nil, func(e *Enrich) *string { return &e.DockerSocket }),
	strField("cri_socket", nil, func(e *Enrich) *string { return &e.CRISocket }),
)

// rules stores the list of rules in n.
func (p *parser) rules(n *yaml.Node, where string, vis *Visibility) {
	l := deref(n)
	if isNull(l) {
		vis.Rules = []Rule{}
		return
	}
	if l.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: expected a list of rules, got %s", where, describe(l))
		return
	}
	if count := len(l.Content); count > MaxRules {
		p.errorf(n, "%s: %d rules, more than the %d allowed (match many namespaces with one glob)", where, count, MaxRules)
		return
	}
	rules := make([]Rule, 0, len(l.Content))
	for i, item := range l.Content {
		if p.stopped() {
			return
		}
		iw := fmt.Sprintf("%s[%d]", where, i)
		m := deref(item)
		if m.Kind != yaml.MappingNode {
			p.errorf(item, "%s: expected a mapping with match and scopes, got %s", iw, describe(m))
			continue
		}
		nerr := len(p.errs)
		r := Rule{Scopes: []string{}}
		seen := ruleSchema.walk(p, item, iw, &r)
		for _, k := range ruleSchema.keys {
			if seen[k] == nil {
				p.errorf(item, "%s: missing key %q", iw, k)
			}
		}
		if len(p.errs) == nerr {
			rules = append(rules, r)
		}
	}
	vis.Rules = rules
}

// match stores the match mapping of a rule. Which selectors may be
// combined is Validate's rule.
func (p *parser) match(n *yaml.Node, where string, r *Rule) {
	if m := deref(n); m.Kind != yaml.MappingNode {
		p.errorf(n, "%s: expected a mapping with one of container_id, cgroup, or pid_ns+mnt_ns, got %s", where, describe(m))
		return
	}
	matchSchema.walk(p, n, where, &r.Match)
}

// globSetter is the setter of a glob selector stored in get(m).
func globSetter(get func(*Match) *string) func(*parser, *yaml.Node, string, *Match) {
	return func(p *parser, v *yaml.Node, where string, m *Match) {
		if s, ok := p.checked(v, where, checkGlob); ok {
			*get(m) = s
		}
	}
}

// nsSetter is the setter of a namespace inode number stored in get(m).
func nsSetter(get func(*Match) *uint32) func(*parser, *yaml.Node, string, *Match) {
	return func(p *parser, n *yaml.Node, where string, m *Match) {
		v := deref(n)
		var i int64
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&i) != nil || i <= 0 || i > math.MaxUint32 {
			p.errorf(n, "%s: expected a positive integer up to %d, got %s", where, uint32(math.MaxUint32), describe(v))
			return
		}
		*get(m) = uint32(i)
	}
}

// scopes stores the scope list in n in dst.
func (p *parser) scopes(n *yaml.Node, where string, dst *[]string) {
	l := deref(n)
	if l.Kind != yaml.SequenceNode {
		hint := ""
		if isNull(l) {
			hint = " (write [] to trace nothing)"
		}
		p.errorf(n, "%s: expected a list of scopes, got %s%s", where, describe(l), hint)
		return
	}
	scopes := make([]string, 0, len(l.Content))
	ok := true
	for i, item := range l.Content {
		if p.stopped() {
			return
		}
		iw := fmt.Sprintf("%s[%d]", where, i)
		s, good := p.str(item, iw)
		if good {
			if msg := checkScope(s, scopes); msg != "" {
				p.errorf(item, "%s: %s", iw, msg)
				good = false
			}
		}
		if !good {
			ok = false
			continue
		}
		scopes = append(scopes, s)
	}
	if ok {
		*dst = scopes
	}
}

// headers stores the export.otlp.headers mapping in n.
func (p *parser) headers(n *yaml.Node, where string, o *OTLP) {
	h := map[string]string{}
	nerr := len(p.errs)
	p.walkMap(n, where, nil, func(name string, k, v *yaml.Node) {
		hw := fmt.Sprintf("%s[%q]", where, name)
		if msg := checkHeaderName(name); msg != "" {
			p.errorf(k, "%s: %s", where, msg)
			return
		}
		if val, ok := p.checked(v, hw, checkHeaderValue); ok {
			h[name] = val
		}
	})
	if len(p.errs) == nerr {
		o.Headers = h
	}
}
