package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/connwatch/connwatch/bpf"
)

// Filters is the filters section: connections left out in the kernel,
// before an event is written (see bpf.Filters for what matches what). A
// connection that matches any entry of Exclude is left out; when a list of
// Include is non-empty, only connections that match it are kept. Failed
// connections are kept unless Exclude.Failures is set and they match
// Exclude. The kernel program is built with them at start: a change takes
// effect at the next start.
type Filters struct {
	Exclude FilterExclude
	Include FilterSet
}

// FilterSet is one list of each kind. An empty list is nil, in a parsed
// configuration as in the default one.
type FilterSet struct {
	// Peers are CIDRs of the remote address, in masked form
	// (10.0.0.0/8); an IPv4 one also matches v4-mapped IPv6 addresses.
	Peers []netip.Prefix
	// Ports are server ports: the remote port of an outgoing connection,
	// the local port of an accepted one.
	Ports []uint16
	// Comms are task names, matched exactly (at most bpf.MaxCommLen
	// bytes, as the kernel keeps them).
	Comms []string
}

// FilterExclude is filters.exclude.
type FilterExclude struct {
	FilterSet
	// Failures leaves out failed connections that match too.
	Failures bool
}

// BPF returns the probe's filters.
func (f Filters) BPF() bpf.Filters {
	return bpf.Filters{Exclude: f.Exclude.bpf(), Include: f.Include.bpf(), ExcludeFailures: f.Exclude.Failures}
}

func (s FilterSet) bpf() bpf.FilterSet {
	return bpf.FilterSet{Peers: append([]netip.Prefix(nil), s.Peers...), Ports: append([]uint16(nil), s.Ports...),
		Comms: append([]string(nil), s.Comms...)}
}

var filtersSchema = newSection(
	sub("exclude", filterExcludeSchema, func(f *Filters) *FilterExclude { return &f.Exclude }),
	sub("include", filterIncludeSchema, func(f *Filters) *FilterSet { return &f.Include }),
)

var filterExcludeSchema = newSection(
	peersField(func(e *FilterExclude) *[]netip.Prefix { return &e.Peers }),
	portsField(func(e *FilterExclude) *[]uint16 { return &e.Ports }),
	commsField(func(e *FilterExclude) *[]string { return &e.Comms }),
	boolField("failures", func(e *FilterExclude) *bool { return &e.Failures }),
)

var filterIncludeSchema = newSection(
	peersField(func(s *FilterSet) *[]netip.Prefix { return &s.Peers }),
	portsField(func(s *FilterSet) *[]uint16 { return &s.Ports }),
	commsField(func(s *FilterSet) *[]string { return &s.Comms }),
)

func peersField[T any](get func(*T) *[]netip.Prefix) field[T] {
	return field[T]{"peers",
		func(p *parser, v *yaml.Node, where string, t *T) {
			var out []netip.Prefix
			if p.filterList(v, where, "CIDRs", bpf.MaxFilterPeers, func(item *yaml.Node, iw string) bool {
				s, ok := p.str(item, iw)
				if !ok {
					return false
				}
				pfx, msg := parsePeer(s)
				if msg == "" {
					msg = checkListedOnce(pfx, out)
				}
				if msg != "" {
					p.errorf(item, "%s: %s", iw, msg)
					return false
				}
				out = append(out, pfx)
				return true
			}) {
				*get(t) = out
			}
		},
		func(t *T) *yaml.Node {
			return flowList(*get(t), func(p netip.Prefix) *yaml.Node { return str(p.String()) })
		}}
}

func portsField[T any](get func(*T) *[]uint16) field[T] {
	return field[T]{"ports",
		func(p *parser, v *yaml.Node, where string, t *T) {
			var out []uint16
			if p.filterList(v, where, "ports", bpf.MaxFilterPorts, func(item *yaml.Node, iw string) bool {
				n, ok := p.integer(item, iw, "a port number", checkPortText)
				if !ok {
					return false
				}
				if msg := checkListedOnce(uint16(n), out); msg != "" {
					p.errorf(item, "%s: %s", iw, msg)
					return false
				}
				out = append(out, uint16(n))
				return true
			}) {
				*get(t) = out
			}
		},
		func(t *T) *yaml.Node {
			return flowList(*get(t), func(port uint16) *yaml.Node { return integer(uint32(port)) })
		}}
}

func commsField[T any](get func(*T) *[]string) field[T] {
	return field[T]{"comms",
		func(p *parser, v *yaml.Node, where string, t *T) {
			var out []string
			if p.filterList(v, where, "process names (comms)", bpf.MaxFilterComms, func(item *yaml.Node, iw string) bool {
				s, ok := p.checked(item, iw, checkComm)
				if !ok {
					return false
				}
				if msg := checkListedOnce(s, out); msg != "" {
					p.errorf(item, "%s: %s", iw, msg)
					return false
				}
				out = append(out, s)
				return true
			}) {
				*get(t) = out
			}
		},
		func(t *T) *yaml.Node { return flowList(*get(t), str) }}
}

// filterList walks the list in n (null is an empty one) of at most max
// items, handing each to add, which reports its problems. It reports
// whether every item was good.
func (p *parser) filterList(n *yaml.Node, where, what string, max int, add func(item *yaml.Node, iw string) bool) bool {
	l := deref(n)
	if isNull(l) {
		return true
	}
	if l.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: expected a list of %s, got %s", where, what, describe(l))
		return false
	}
	if len(l.Content) > max {
		p.errorf(n, "%s: %d %s, more than the %d allowed", where, len(l.Content), what, max)
		return false
	}
	ok := true
	for i, item := range l.Content {
		if p.stopped() {
			return false
		}
		if !add(item, fmt.Sprintf("%s[%d]", where, i)) {
			ok = false
		}
	}
	return ok
}

// flowList prints a list on one line, [] when empty.
func flowList[E any](items []E, node func(E) *yaml.Node) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for _, it := range items {
		n.Content = append(n.Content, node(it))
	}
	return n
}

// parsePeer parses a CIDR in masked form, saying what to write instead of
// an address alone or a prefix with host bits set.
func parsePeer(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return p, fmt.Sprintf("%q is an address, not a CIDR (write %s for it alone)", s, netip.PrefixFrom(a, a.BitLen()))
		}
		return p, fmt.Sprintf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8", s)
	}
	return p, checkPeer(p)
}

// checkPeer checks a CIDR: valid and masked.
func checkPeer(p netip.Prefix) string {
	if !p.IsValid() {
		return "not a valid CIDR"
	}
	if m := p.Masked(); m != p {
		return fmt.Sprintf("%s has bits set past its /%d: write %s (or %s for the one address)",
			p, p.Bits(), m, netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	return ""
}

// checkPortText checks a port number as written.
func checkPortText(text string) string {
	if n, err := strconv.Atoi(text); err == nil && n >= 1 && n <= 65535 {
		return ""
	}
	return fmt.Sprintf("%s is not a port from 1 to 65535", text)
}

// checkComm checks a process name as the kernel keeps it.
func checkComm(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Sprintf("%q contains a NUL byte", s)
	case len(s) > bpf.MaxCommLen:
		return fmt.Sprintf("%q is %d bytes, more than the %d of a comm (the kernel keeps the first %d: write %q)",
			s, len(s), bpf.MaxCommLen, bpf.MaxCommLen, s[:bpf.MaxCommLen])
	}
	return ""
}

// checkListedOnce refuses x when before holds it already.
func checkListedOnce[E comparable](x E, before []E) string {
	for _, b := range before {
		if b == x {
			return fmt.Sprintf("%v is listed twice", x)
		}
	}
	return ""
}

// validate checks f whatever set it: each entry, and that exclude and
// include together fit the kernel's maps.
func (f *Filters) validate(ps *problems) {
	for _, side := range []struct {
		path string
		set  FilterSet
	}{{"filters.exclude", f.Exclude.FilterSet}, {"filters.include", f.Include}} {
		for i, p := range side.set.Peers {
			msg := checkPeer(p)
			if msg == "" {
				msg = checkListedOnce(p, side.set.Peers[:i])
			}
			if msg != "" {
				ps.add(side.path+".peers", fmt.Sprintf("%s.peers[%d]", side.path, i), true, msg)
			}
		}
		for i, port := range side.set.Ports {
			msg := checkPortText(strconv.Itoa(int(port)))
			if msg == "" {
				msg = checkListedOnce(port, side.set.Ports[:i])
			}
			if msg != "" {
				ps.add(side.path+".ports", fmt.Sprintf("%s.ports[%d]", side.path, i), true, msg)
			}
		}
		for i, c := range side.set.Comms {
			msg := checkComm(c)
			if msg == "" {
				msg = checkListedOnce(c, side.set.Comms[:i])
			}
			if msg != "" {
				ps.add(side.path+".comms", fmt.Sprintf("%s.comms[%d]", side.path, i), true, msg)
			}
		}
	}
	// Blamed on the include list when there is one: it is what tipped
	// the total over.
	total := func(what string, n, included, max int) {
		if n <= max {
			return
		}
		path := "filters.exclude." + what
		if included > 0 {
			path = "filters.include." + what
		}
		ps.add(path, path, false, fmt.Sprintf("%d %s in exclude and include together, more than the %d the kernel holds", n, what, max))
	}
	total("peers", len(union(f.Exclude.Peers, f.Include.Peers)), len(f.Include.Peers), bpf.MaxFilterPeers)
	total("ports", len(union(f.Exclude.Ports, f.Include.Ports)), len(f.Include.Ports), bpf.MaxFilterPorts)
	total("comms", len(union(f.Exclude.Comms, f.Include.Comms)), len(f.Include.Comms), bpf.MaxFilterComms)
}

// union is the set of the items of a and b.
func union[E comparable](a, b []E) map[E]bool {
	m := make(map[E]bool, len(a)+len(b))
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		m[x] = true
	}
	return m
}
