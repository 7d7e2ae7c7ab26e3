package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem found in a configuration file. Line and Column
// are 1-based; they are 0 when unknown.
type Error struct {
	File   string
	Line   int
	Column int
	Msg    string
}

// Error formats the problem as "file:line:column: message", leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteByte(':')
		}
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxListed is the number of problems ErrorList.Error prints in full.
const maxListed = 20

// maxErrors is the number of problems Parse collects before it gives up
// with a final "too many errors".
const maxErrors = 100

// ErrorList holds every problem found in a configuration file, in the
// order they occur. Parse returns a non-empty ErrorList as its error.
type ErrorList []*Error

// Error prints one problem per line (at most 20, then a count of the
// rest).
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i == maxListed {
			fmt.Fprintf(&b, "\n(and %d more)", len(l)-maxListed)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the problems as a slice of errors, for errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Load reads and parses the configuration file at path. Problems in the
// file are reported as an [ErrorList] naming path. Load does not apply
// environment overrides; see [Config.ApplyEnv].
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// One byte more than allowed tells a file at the limit from a larger one.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Bounds of a configuration: a file larger than MaxFileBytes or with more
// than MaxRules visibility rules is refused (a 10 MB file of 134 000 rules
// took the agent to 459 MB before the bounds).
const (
	MaxFileBytes = 1 << 20
	MaxRules     = 4096
)

// Parse parses a configuration document. name is used as the file name
// in error messages. Keys that are absent keep their default values; an
// empty document yields [Default]. The problems found (up to 100, then
// a final "too many errors") are returned together as an [ErrorList].
func Parse(name string, data []byte) (*Config, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than the %d KiB a configuration may be", name, MaxFileBytes>>10)
	}
	root, err := decodeNode(name, data)
	if err != nil {
		return nil, err
	}
	c := Default()
	p := &parser{file: name}
	if root != nil {
		p.config(root, c)
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return c, nil
}

// yamlLineErr matches the syntax errors of the YAML decoder that carry a
// line number.
var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decodeNode decodes data and returns the top-level node of its one
// non-empty YAML document, or nil when there is none. Empty documents
// (such as a trailing "---") are ignored.
func decodeNode(name string, data []byte) (root *yaml.Node, err error) {
	defer func() {
		// The YAML decoder is not expected to panic, but a configuration
		// loader must not bring the agent down on any input.
		if r := recover(); r != nil {
			root, err = nil, ErrorList{{File: name, Msg: fmt.Sprintf("invalid YAML: %v", r)}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return root, nil
			}
			return nil, ErrorList{yamlError(name, err)}
		}
		n := &doc
		if doc.Kind == yaml.DocumentNode {
			if len(doc.Content) == 0 {
				continue
			}
			n = doc.Content[0]
		}
		if isNull(n) {
			continue
		}
		if root != nil {
			return nil, ErrorList{{File: name, Line: n.Line, Column: n.Column,
				Msg: "only one YAML document is allowed"}}
		}
		root = n
	}
}

// yamlError converts a syntax error of the YAML decoder.
func yamlError(name string, err error) *Error {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: name, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// Key lists, in the order they are printed.
var (
	topKeys        = []string{"probe", "monitor", "visibility", "export", "telemetry", "enrich"}
	probeKeys      = []string{"attach", "transport", "include_agent", "max_connections"}
	visibilityKeys = []string{"host", "default", "rules"}
	ruleKeys       = []string{"match", "scopes"}
	matchKeys      = []string{"container_id", "cgroup", "pid_ns", "mnt_ns"}
	exportKeys     = []string{"otlp", "traces", "logs", "flush_timeout", "queue", "trace_key"}
	queueKeys      = []string{"memory_mib", "directory", "disk_mib"}
	otlpKeys       = []string{"endpoint", "traces_endpoint", "logs_endpoint", "insecure", "headers",
		"compression", "timeout", "certificate", "client_certificate", "client_key"}
	telemetryKeys = []string{"listen"}
	enrichKeys    = []string{"proc_root", "passwd", "docker_root", "containerd_state", "docker_socket", "cri_socket"}
)

// Allowed values of the enumerated keys.
var (
	attachValues      = []string{AttachAuto, AttachFentry, AttachKprobe, AttachTracepoint}
	transportValues   = []string{TransportAuto, TransportPerf, TransportRingbuf}
	monitorValues     = []string{MonitorAll, MonitorHost, MonitorContainers}
	compressionValues = []string{"", CompressionGzip, CompressionNone}
)

// parser walks a decoded YAML tree and collects problems.
type parser struct {
	file string
	errs ErrorList
}

// errorf records a problem at the position of n.
func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	switch {
	case len(p.errs) > maxErrors:
		return
	case len(p.errs) == maxErrors:
		p.errs = append(p.errs, &Error{File: p.file, Msg: "too many errors"})
		return
	}
	e := &Error{File: p.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

// stopped reports whether so many problems were found that the walk
// should end. Besides keeping the output readable this bounds the work
// on documents that reuse a large erroneous node through many aliases.
func (p *parser) stopped() bool {
	return len(p.errs) > maxErrors
}

// deref follows aliases to the node they refer to.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an explicit or implicit null.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the type (and for scalars the value) of n for messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		default:
			return fmt.Sprintf("%s %q", tag, n.Value)
		}
	}
	return "an unsupported node"
}

// inWhere phrases a mapping path for messages.
func inWhere(where string) string {
	if where == "" {
		return "at top level"
	}
	return "in " + where
}

// walkMap checks that n is a mapping (or null, which counts as empty)
// with unique keys drawn from keys, and calls fn for each pair. When
// keys is nil any key is allowed and keys are compared case-insensitively
// for duplicates. It returns the key nodes seen, by name.
func (p *parser) walkMap(n *yaml.Node, where string, keys []string, fn func(key string, k, v *yaml.Node)) map[string]*yaml.Node {
	seen := map[string]*yaml.Node{}
	m := deref(n)
	if isNull(m) {
		return seen
	}
	if m.Kind != yaml.MappingNode {
		if where == "" {
			p.errorf(n, "expected a mapping at top level, got %s", describe(m))
		} else {
			p.errorf(n, "%s: expected a mapping, got %s", where, describe(m))
		}
		return seen
	}
	folded := map[string]*yaml.Node{}
	for i := 0; i+1 < len(m.Content) && !p.stopped(); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		kd := deref(k)
		if kd.Kind != yaml.ScalarNode {
			p.errorf(k, "keys %s must be strings, got %s", inWhere(where), describe(kd))
			continue
		}
		key := kd.Value
		dupKey := key
		if keys == nil {
			dupKey = strings.ToLower(key)
		}
		if first, dup := folded[dupKey]; dup {
			p.errorf(k, "duplicate key %q %s (first at line %d, column %d)", key, inWhere(where), first.Line, first.Column)
			continue
		}
		folded[dupKey] = k
		if keys != nil && !contains(keys, key) {
			hint := ""
			if kd.ShortTag() == "!!merge" {
				hint = "; merge keys are not supported"
			}
			p.errorf(k, "unknown key %q %s (expected one of: %s%s)", key, inWhere(where), strings.Join(keys, ", "), hint)
			continue
		}
		seen[key] = k
		fn(key, k, v)
	}
	return seen
}

// contains reports whether list holds s.
func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// str returns the string value of n.
func (p *parser) str(n *yaml.Node, where string) (string, bool) {
	v := deref(n)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" {
		return v.Value, true
	}
	switch {
	case isNull(v):
		p.errorf(n, "%s: expected a string, got null (write \"\" for an empty string)", where)
	case v.Kind == yaml.ScalarNode:
		p.errorf(n, "%s: expected a string, got %s (quote it to use it as a string)", where, describe(v))
	default:
		p.errorf(n, "%s: expected a string, got %s", where, describe(v))
	}
	return "", false
}

// setStr stores the string value of n in dst.
func (p *parser) setStr(n *yaml.Node, where string, dst *string) {
	if s, ok := p.str(n, where); ok {
		*dst = s
	}
}

// setEnum stores the string value of n in dst if it is one of allowed.
func (p *parser) setEnum(n *yaml.Node, where string, allowed []string, dst *string) {
	s, ok := p.str(n, where)
	if !ok {
		return
	}
	if !contains(allowed, s) {
		p.errorf(n, "%s: %q is not one of %s", where, s, listValues(allowed))
		return
	}
	*dst = s
}

// listValues formats allowed values for messages.
func listValues(allowed []string) string {
	out := make([]string, len(allowed))
	for i, a := range allowed {
		if a == "" {
			a = `""`
		}
		out[i] = a
	}
	return strings.Join(out, ", ")
}

// setBool stores the boolean value of n in dst.
func (p *parser) setBool(n *yaml.Node, where string, dst *bool) {
	v := deref(n)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
		if b, err := strconv.ParseBool(v.Value); err == nil {
			*dst = b
			return
		}
	}
	p.errorf(n, "%s: expected true or false, got %s", where, describe(v))
}

// setDuration stores the positive duration in n in dst.
func (p *parser) setDuration(n *yaml.Node, where string, dst *time.Duration) {
	v := deref(n)
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
		p.errorf(n, "%s: expected a duration such as 10s or 500ms, got %s", where, describe(v))
		return
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		p.errorf(n, "%s: %q is not a duration (expected e.g. 10s, 500ms, 1m30s)", where, v.Value)
		return
	}
	if d <= 0 {
		p.errorf(n, "%s: %q must be positive", where, v.Value)
		return
	}
	*dst = d
}

// config walks the top-level mapping.
func (p *parser) config(n *yaml.Node, c *Config) {
	p.walkMap(n, "", topKeys, func(key string, _, v *yaml.Node) {
		switch key {
		case "probe":
			p.walkMap(v, "probe", probeKeys, func(key string, _, v *yaml.Node) {
				switch key {
				case "attach":
					p.setEnum(v, "probe.attach", attachValues, &c.Probe.Attach)
				case "transport":
					p.setEnum(v, "probe.transport", transportValues, &c.Probe.Transport)
				case "include_agent":
					p.setBool(v, "probe.include_agent", &c.Probe.IncludeAgent)
				case "max_connections":
					p.setCount(v, "probe.max_connections", minMaxConnections, maxMaxConnections, &c.Probe.MaxConnections)
				}
			})
		case "monitor":
			p.setEnum(v, "monitor", monitorValues, &c.Monitor)
		case "visibility":
			p.visibility(v, &c.Visibility)
		case "export":
			p.export(v, &c.Export)
		case "telemetry":
			p.walkMap(v, "telemetry", telemetryKeys, func(_ string, _, v *yaml.Node) {
				where := "telemetry.listen"
				if s, ok := p.str(v, where); ok {
					if msg := checkListen(s); msg != "" {
						p.errorf(v, "%s: %s", where, msg)
					} else {
						c.Telemetry.Listen = s
					}
				}
			})
		case "enrich":
			p.walkMap(v, "enrich", enrichKeys, func(key string, _, v *yaml.Node) {
				where := "enrich." + key
				switch key {
				case "proc_root":
					if s, ok := p.str(v, where); ok {
						if s == "" {
							p.errorf(v, "%s: must not be empty", where)
						} else {
							c.Enrich.ProcRoot = s
						}
					}
				case "passwd":
					p.setStr(v, where, &c.Enrich.Passwd)
				case "docker_root":
					p.setStr(v, where, &c.Enrich.DockerRoot)
				case "containerd_state":
					p.setStr(v, where, &c.Enrich.ContainerdState)
				case "docker_socket":
					p.setStr(v, where, &c.Enrich.DockerSocket)
				case "cri_socket":
					p.setStr(v, where, &c.Enrich.CRISocket)
				}
			})
		}
	})
}

// visibility walks the visibility section.
func (p *parser) visibility(n *yaml.Node, vis *Visibility) {
	p.walkMap(n, "visibility", visibilityKeys, func(key string, _, v *yaml.Node) {
		where := "visibility." + key
		switch key {
		case "host":
			p.setScopes(v, where, &vis.Host)
		case "default":
			p.setScopes(v, where, &vis.Default)
		case "rules":
			l := deref(v)
			if isNull(l) {
				vis.Rules = []Rule{}
				return
			}
			if l.Kind != yaml.SequenceNode {
				p.errorf(v, "%s: expected a list of rules, got %s", where, describe(l))
				return
			}
			if n := len(l.Content); n > MaxRules {
				p.errorf(v, "%s: %d rules, more than the %d allowed (match many namespaces with one glob)", where, n, MaxRules)
				return
			}
			rules := make([]Rule, 0, len(l.Content))
			for i, item := range l.Content {
				if p.stopped() {
					return
				}
				if r, ok := p.rule(item, fmt.Sprintf("%s[%d]", where, i)); ok {
					rules = append(rules, r)
				}
			}
			vis.Rules = rules
		}
	})
}

// setScopes stores the scope list in n in dst.
func (p *parser) setScopes(n *yaml.Node, where string, dst *[]string) {
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
		switch {
		case !good:
			ok = false
		case !contains(scopeNames, s):
			p.errorf(item, "%s: %q is not one of %s", iw, s, listValues(scopeNames))
			ok = false
		case contains(scopes, s):
			p.errorf(item, "%s: scope %q is listed twice", iw, s)
			ok = false
		default:
			scopes = append(scopes, s)
		}
	}
	if ok {
		*dst = scopes
	}
}

// rule parses one visibility rule.
func (p *parser) rule(n *yaml.Node, where string) (Rule, bool) {
	r := Rule{Scopes: []string{}}
	nerr := len(p.errs)
	m := deref(n)
	if m.Kind != yaml.MappingNode {
		p.errorf(n, "%s: expected a mapping with match and scopes, got %s", where, describe(m))
		return r, false
	}
	seen := p.walkMap(n, where, ruleKeys, func(key string, _, v *yaml.Node) {
		switch key {
		case "match":
			p.match(v, where+".match", &r.Match)
		case "scopes":
			p.setScopes(v, where+".scopes", &r.Scopes)
		}
	})
	for _, k := range ruleKeys {
		if seen[k] == nil {
			p.errorf(n, "%s: missing key %q", where, k)
		}
	}
	return r, len(p.errs) == nerr
}

// match parses the match mapping of a rule.
func (p *parser) match(n *yaml.Node, where string, m *Match) {
	m2 := deref(n)
	if m2.Kind != yaml.MappingNode {
		p.errorf(n, "%s: expected a mapping with one of container_id, cgroup, or pid_ns+mnt_ns, got %s", where, describe(m2))
		return
	}
	nerr := len(p.errs)
	seen := p.walkMap(n, where, matchKeys, func(key string, _, v *yaml.Node) {
		kw := where + "." + key
		switch key {
		case "container_id":
			p.setGlob(v, kw, &m.ContainerID)
		case "cgroup":
			p.setGlob(v, kw, &m.Cgroup)
		case "pid_ns":
			p.setNS(v, kw, &m.PidNS)
		case "mnt_ns":
			p.setNS(v, kw, &m.MntNS)
		}
	})
	if len(p.errs) != nerr {
		return
	}
	var kinds []string
	if seen["container_id"] != nil {
		kinds = append(kinds, "container_id")
	}
	if seen["cgroup"] != nil {
		kinds = append(kinds, "cgroup")
	}
	pid, mnt := seen["pid_ns"] != nil, seen["mnt_ns"] != nil
	switch {
	case pid && !mnt:
		p.errorf(seen["pid_ns"], "%s: pid_ns and mnt_ns must be given together (mnt_ns is missing)", where)
		return
	case mnt && !pid:
		p.errorf(seen["mnt_ns"], "%s: pid_ns and mnt_ns must be given together (pid_ns is missing)", where)
		return
	case pid && mnt:
		kinds = append(kinds, "pid_ns+mnt_ns")
	}
	switch len(kinds) {
	case 0:
		p.errorf(n, "%s: give one of container_id, cgroup, or pid_ns+mnt_ns", where)
	case 1:
		if m.PidNS == DefaultKey.PidNS && m.MntNS == DefaultKey.MntNS {
			p.errorf(n, "%s: pid_ns %d and mnt_ns %d are reserved for the default entry", where, m.PidNS, m.MntNS)
		}
	default:
		p.errorf(n, "%s: give only one of container_id, cgroup, or pid_ns+mnt_ns (got %s)",
			where, strings.Join(kinds, " and "))
	}
}

// setGlob stores the non-empty, well-formed path.Match pattern in n in
// dst.
func (p *parser) setGlob(n *yaml.Node, where string, dst *string) {
	s, ok := p.str(n, where)
	if !ok {
		return
	}
	if s == "" {
		p.errorf(n, "%s: must not be empty", where)
		return
	}
	if _, err := path.Match(s, ""); err != nil {
		p.errorf(n, "%s: %q is not a valid glob pattern", where, s)
		return
	}
	*dst = s
}

// setNS stores the namespace inode number in n in dst.
func (p *parser) setNS(n *yaml.Node, where string, dst *uint32) {
	v := deref(n)
	var i int64
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&i) != nil || i <= 0 || i > math.MaxUint32 {
		p.errorf(n, "%s: expected a positive integer up to %d, got %s", where, uint32(math.MaxUint32), describe(v))
		return
	}
	*dst = uint32(i)
}

// export walks the export section.
func (p *parser) export(n *yaml.Node, e *Export) {
	p.walkMap(n, "export", exportKeys, func(key string, _, v *yaml.Node) {
		where := "export." + key
		switch key {
		case "otlp":
			p.otlp(v, &e.OTLP)
		case "traces":
			p.setBool(v, where, &e.Traces)
		case "logs":
			p.setBool(v, where, &e.Logs)
		case "flush_timeout":
			p.setDuration(v, where, &e.FlushTimeout)
		case "trace_key":
			if k, ok := p.str(v, where); ok {
				if msg := checkTraceKey(k); msg != "" {
					p.errorf(v, "%s: %s", where, msg)
				} else {
					e.TraceKey = k
				}
			}
		case "queue":
			p.walkMap(v, where, queueKeys, func(key string, _, v *yaml.Node) {
				where := "export.queue." + key
				switch key {
				case "memory_mib":
					p.setSize(v, where, &e.Queue.MemoryMiB)
				case "directory":
					p.setStr(v, where, &e.Queue.Directory)
				case "disk_mib":
					p.setSize(v, where, &e.Queue.DiskMiB)
				}
			})
		}
	})
}

// Bounds of probe.max_connections: an entry costs the kernel about 150
// bytes, so the largest is about 2.4 GiB of kernel memory.
const (
	DefaultMaxConnections = 65536
	minMaxConnections     = 64
	maxMaxConnections     = 1 << 24
)

// setCount stores the whole number in n, from lo to hi, in dst.
func (p *parser) setCount(n *yaml.Node, where string, lo, hi int, dst *int) {
	v := deref(n)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
		if i, err := strconv.Atoi(v.Value); err == nil && i >= lo && i <= hi {
			*dst = i
			return
		}
		p.errorf(n, "%s: %s is not a number from %d to %d", where, v.Value, lo, hi)
		return
	}
	p.errorf(n, "%s: expected a whole number, got %s", where, describe(v))
}

// maxQueueMiB bounds the queue sizes (1 TiB).
const maxQueueMiB = 1 << 20

// setSize stores the positive number of MiB in n in dst.
func (p *parser) setSize(n *yaml.Node, where string, dst *int) {
	v := deref(n)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
		if i, err := strconv.Atoi(v.Value); err == nil && i >= 1 && i <= maxQueueMiB {
			*dst = i
			return
		}
		p.errorf(n, "%s: %s is not a size in MiB from 1 to %d", where, v.Value, maxQueueMiB)
		return
	}
	p.errorf(n, "%s: expected a whole number of MiB, got %s", where, describe(v))
}

// otlp walks the export.otlp section.
func (p *parser) otlp(n *yaml.Node, o *OTLP) {
	const sect = "export.otlp"
	seen := p.walkMap(n, sect, otlpKeys, func(key string, _, v *yaml.Node) {
		where := sect + "." + key
		switch key {
		case "endpoint", "traces_endpoint", "logs_endpoint":
			s, ok := p.str(v, where)
			if !ok {
				return
			}
			if msg := checkEndpoint(s); msg != "" {
				p.errorf(v, "%s: %s", where, msg)
				return
			}
			switch key {
			case "endpoint":
				o.Endpoint = s
			case "traces_endpoint":
				o.TracesEndpoint = s
			default:
				o.LogsEndpoint = s
			}
		case "insecure":
			p.setBool(v, where, &o.Insecure)
		case "headers":
			h := map[string]string{}
			nerr := len(p.errs)
			p.walkMap(v, where, nil, func(name string, k, v *yaml.Node) {
				hw := fmt.Sprintf("%s[%q]", where, name)
				if msg := checkHeaderName(name); msg != "" {
					p.errorf(k, "%s: %s", where, msg)
					return
				}
				val, ok := p.str(v, hw)
				if !ok {
					return
				}
				if msg := checkHeaderValue(val); msg != "" {
					p.errorf(v, "%s: %s", hw, msg)
					return
				}
				h[name] = val
			})
			if len(p.errs) == nerr {
				o.Headers = h
			}
		case "compression":
			p.setEnum(v, where, compressionValues, &o.Compression)
		case "timeout":
			p.setDuration(v, where, &o.Timeout)
		case "certificate":
			p.setStr(v, where, &o.Certificate)
		case "client_certificate":
			p.setStr(v, where, &o.ClientCertificate)
		case "client_key":
			p.setStr(v, where, &o.ClientKey)
		}
	})
	switch {
	case o.ClientCertificate != "" && o.ClientKey == "":
		p.errorf(seen["client_certificate"], "%s: client_certificate and client_key must be given together (client_key is missing)", sect)
	case o.ClientKey != "" && o.ClientCertificate == "":
		p.errorf(seen["client_key"], "%s: client_certificate and client_key must be given together (client_certificate is missing)", sect)
	}
}

// checkEndpoint validates an OTLP endpoint and returns a message
// describing the problem, or "". Valid endpoints are "", host, host:port
// and http:// or https:// URLs (whose port, like a missing port, is left
// to the exporter to default).
func checkEndpoint(s string) string {
	if s == "" {
		return ""
	}
	bad := fmt.Sprintf("%q is not a valid endpoint (expected host, host:port or an http:// or https:// URL)", s)
	var u *url.URL
	var err error
	if strings.Contains(s, "://") {
		u, err = url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
			return bad
		}
	} else {
		if _, port, err := net.SplitHostPort(s); err == nil && isAlnum(port) && !validPort(port) {
			return fmt.Sprintf("%q has an invalid port %q (expected 1 to 65535)", s, port)
		}
		u, err = url.Parse("//" + s)
		if err != nil || u.Host != s {
			return bad
		}
	}
	if u.User != nil || u.Hostname() == "" ||
		(strings.Contains(u.Hostname(), ":") && !strings.HasPrefix(u.Host, "[")) {
		return bad
	}
	if port := u.Port(); port != "" && !validPort(port) {
		return fmt.Sprintf("%q has an invalid port %q (expected 1 to 65535)", s, port)
	}
	if strings.HasSuffix(u.Host, ":") {
		return fmt.Sprintf("%q has an empty port", s)
	}
	return ""
}

// isAlnum reports whether s is a non-empty run of ASCII letters and
// digits.
func isAlnum(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// checkListen validates a listen address and returns a message
// describing the problem, or "".
func checkListen(s string) string {
	if s == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return fmt.Sprintf("%q is not host:port (%s)", s, ae.Err)
		}
		return fmt.Sprintf("%q is not host:port", s)
	}
	if !validPort(port) && port != "0" {
		return fmt.Sprintf("%q has an invalid port %q (expected 0 to 65535)", s, port)
	}
	return ""
}

// validPort reports whether port is a decimal number from 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}

// checkHeaderName validates a header name (an HTTP token) and returns a
// message describing the problem, or "".
func checkHeaderName(name string) string {
	if name == "" {
		return "header name must not be empty"
	}
	for _, r := range name {
		if r > 0x7e || !isTokenChar(byte(r)) {
			return fmt.Sprintf("header name %q contains %q, which is not allowed in header names", name, r)
		}
	}
	return ""
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// checkHeaderValue rejects header values with control characters and
// returns a message describing the problem, or "".
func checkHeaderValue(v string) string {
	for _, r := range v {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return fmt.Sprintf("header value contains the control character %q", r)
		}
	}
	return ""
}
