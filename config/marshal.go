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
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(configSchema.node(c)); err != nil {
		// Every scalar is valid UTF-8, so encoding cannot fail.
		panic(fmt.Sprintf("config: encoding YAML: %v", err))
	}
	if err := enc.Close(); err != nil {
		panic(fmt.Sprintf("config: encoding YAML: %v", err))
	}
	return b.Bytes()
}

// str builds a string scalar; the encoder quotes it when needed.
func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.ToValidUTF8(s, "\uFFFD")}
}

// strIf builds a string scalar for a non-empty s, and nil (no key) for "".
func strIf(s string) *yaml.Node {
	if s == "" {
		return nil
	}
	return str(s)
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

// nsNode builds a namespace inode number, and nil (no key) for 0.
func nsNode(ns uint32) *yaml.Node {
	if ns == 0 {
		return nil
	}
	return integer(ns)
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
	for i := range rules {
		n.Content = append(n.Content, ruleSchema.node(&rules[i]))
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
