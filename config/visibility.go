package config

import (
	"path"

	"github.com/connwatch/connwatch/bpf"
)

// Scope names as written in the configuration. Only the network scope
// has probes; the others are accepted for compatibility and currently
// have no effect beyond their visibility map entries.
const (
	ScopeNameFile         = "file"
	ScopeNameProcess      = "process"
	ScopeNameNetwork      = "network"
	ScopeNameCapabilities = "capabilities"
)

// Values of the inner visibility map.
const (
	Trace  = 0 // the scope is traced
	Ignore = 1 // the scope is ignored
)

// scopeNames lists the scope names in the order used in messages.
var scopeNames = []string{ScopeNameNetwork, ScopeNameFile, ScopeNameProcess, ScopeNameCapabilities}

// ScopeNumber returns the kernel number of a scope name (bpf.ScopeFile
// and the others).
func ScopeNumber(name string) (uint32, bool) {
	switch name {
	case ScopeNameFile:
		return bpf.ScopeFile, true
	case ScopeNameProcess:
		return bpf.ScopeProcess, true
	case ScopeNameNetwork:
		return bpf.ScopeNetwork, true
	case ScopeNameCapabilities:
		return bpf.ScopeCaps, true
	}
	return 0, false
}

// Namespace is one known namespace pair, as supplied by the enrichment
// index, with the container ID and cgroup path of its processes when
// known (empty otherwise).
type Namespace struct {
	PidNS, MntNS uint32
	ContainerID  string
	Cgroup       string
}

// Key returns the visibility map key of the namespace.
func (ns Namespace) Key() bpf.OuterKey {
	return bpf.OuterKey{PidNS: ns.PidNS, MntNS: ns.MntNS}
}

// Matches reports whether the match selects ns. A container ID or cgroup
// glob never matches a namespace whose container ID or cgroup is
// unknown (empty). A Match built by hand with several selectors set uses
// only the first of ContainerID, Cgroup and the namespace pair; Parse
// never produces one.
func (m *Match) Matches(ns Namespace) bool {
	switch {
	case m.ContainerID != "":
		ok, _ := path.Match(m.ContainerID, ns.ContainerID)
		return ns.ContainerID != "" && ok
	case m.Cgroup != "":
		ok, _ := path.Match(m.Cgroup, ns.Cgroup)
		return ns.Cgroup != "" && ok
	case m.PidNS != 0 || m.MntNS != 0:
		return m.PidNS == ns.PidNS && m.MntNS == ns.MntNS
	}
	return false
}

// Match returns the scopes of the first rule that matches ns, and
// whether any rule matched. When none does, it returns the default
// scopes and false.
func (c *Config) Match(ns Namespace) (scopes []string, matched bool) {
	for i := range c.Visibility.Rules {
		r := &c.Visibility.Rules[i]
		if r.Match.Matches(ns) {
			return r.Scopes, true
		}
	}
	return c.Visibility.Default, false
}

// VisibilityEntries computes the contents of the kernel visibility map:
// outer key → inner map of scope number → Trace or Ignore, with all four
// scopes present in every inner map.
//
// bpf.HostKey gets the visibility.host scopes and bpf.DefaultKey the
// visibility.default scopes. Each namespace in known that a rule matches
// gets an entry with that rule's scopes; a namespace no rule matches gets
// no entry, as the kernel falls back to DefaultKey for it. Namespaces
// whose key is HostKey or DefaultKey are skipped so that they cannot
// overwrite the reserved entries, and when a key occurs more than once
// in known its first occurrence decides.
//
// The result does not depend on the monitor setting, which the kernel
// applies separately at load time.
func (c *Config) VisibilityEntries(known []Namespace) bpf.Visibility {
	out := bpf.Visibility{
		bpf.HostKey:    inner(c.Visibility.Host),
		bpf.DefaultKey: inner(c.Visibility.Default),
	}
	for _, ns := range known {
		k := ns.Key()
		if _, done := out[k]; done {
			continue
		}
		if scopes, ok := c.Match(ns); ok {
			out[k] = inner(scopes)
		}
	}
	return out
}

// inner returns the inner map for a scope list: listed scopes are
// traced, the others ignored. Unknown names are skipped.
func inner(scopes []string) map[uint32]uint32 {
	m := map[uint32]uint32{
		bpf.ScopeFile:    Ignore,
		bpf.ScopeProcess: Ignore,
		bpf.ScopeNetwork: Ignore,
		bpf.ScopeCaps:    Ignore,
	}
	for _, s := range scopes {
		if n, ok := ScopeNumber(s); ok {
			m[n] = Trace
		}
	}
	return m
}
