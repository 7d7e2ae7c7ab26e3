package config

// The walker: it decodes a file and walks its YAML tree against the
// schema (schema.go), reporting unknown and duplicate keys and values of
// the wrong type at their file:line:column, and recording where each key
// stands for Validate. What a value may be is the validators' (check.go).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
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
// file are reported as an [ErrorList] naming path. Load neither applies
// the environment ([Config.ApplyEnv]) nor checks the rules between
// settings ([Config.Validate]).
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
// empty document yields [Default]. Each value is checked on its own; the
// rules between settings are [Config.Validate]'s, which reports their
// problems at the positions Parse records. The problems found (up to 100,
// then a final "too many errors") are returned together as an
// [ErrorList].
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
		configSchema.walk(p, root, "", c)
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	c.src = p.src
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

// parser walks a decoded YAML tree, collects problems and records where
// each key stands.
type parser struct {
	file string
	errs ErrorList
	src  origins
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

// note records that the setting at path is the key k with the value v.
func (p *parser) note(path string, k, v *yaml.Node) {
	if p.src == nil {
		p.src = origins{}
	}
	p.src[path] = origin{file: p.file, key: pos{k.Line, k.Column}, value: pos{v.Line, v.Column}}
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

// join appends key to the path where.
func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
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

// checked returns the string value of n if check (a validator of
// check.go) finds nothing wrong with it.
func (p *parser) checked(n *yaml.Node, where string, check func(string) string) (string, bool) {
	s, ok := p.str(n, where)
	if !ok {
		return "", false
	}
	if check != nil {
		if msg := check(s); msg != "" {
			p.errorf(n, "%s: %s", where, msg)
			return "", false
		}
	}
	return s, true
}

// boolean returns the boolean value of n.
func (p *parser) boolean(n *yaml.Node, where string) (bool, bool) {
	v := deref(n)
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
		if b, err := strconv.ParseBool(v.Value); err == nil {
			return b, true
		}
	}
	p.errorf(n, "%s: expected true or false, got %s", where, describe(v))
	return false, false
}

// duration returns the positive duration in n.
func (p *parser) duration(n *yaml.Node, where string) (time.Duration, bool) {
	v := deref(n)
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
		p.errorf(n, "%s: expected a duration such as 10s or 500ms, got %s", where, describe(v))
		return 0, false
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		p.errorf(n, "%s: %q is not a duration (expected e.g. 10s, 500ms, 1m30s)", where, v.Value)
		return 0, false
	}
	if msg := checkDuration(v.Value, d); msg != "" {
		p.errorf(n, "%s: %s", where, msg)
		return 0, false
	}
	return d, true
}

// integer returns the whole number in n if check, given the number as
// written, finds nothing wrong with it; what names the unit in the
// message about a value that is not a number.
func (p *parser) integer(n *yaml.Node, where, what string, check func(string) string) (int, bool) {
	v := deref(n)
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		p.errorf(n, "%s: expected %s, got %s", where, what, describe(v))
		return 0, false
	}
	if msg := check(v.Value); msg != "" {
		p.errorf(n, "%s: %s", where, msg)
		return 0, false
	}
	i, _ := strconv.Atoi(v.Value) // check accepted it
	return i, true
}
