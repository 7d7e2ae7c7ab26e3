//go:build linux

package bpf

import (
	"fmt"
	"net/netip"
	"strings"
)

// Filters leave out, in the kernel, the connections a user knows are noise
// (health checks, a local sidecar, a metrics port), before an event is
// written. They are set at load (Options.Filters) and cannot change while
// the probe runs.
//
// A connection that matches any entry of Exclude is left out. When a list
// of Include is non-empty, only connections that match it are kept (every
// non-empty list must match); Exclude wins over Include. Failed attempts
// are kept whatever Include says, and whatever Exclude says unless
// ExcludeFailures is set. A close follows its connection: a connection
// left out is not tracked, so it sends no close either. Each event left
// out counts in KernelStats.DroppedFilter. With no lists set the kernel
// program skips the filters entirely (the verifier removes the code).
type Filters struct {
	Exclude, Include FilterSet
	// ExcludeFailures leaves out failed connections that match Exclude
	// too.
	ExcludeFailures bool
}

// FilterSet is one side of Filters.
type FilterSet struct {
	// Peers match the connection's remote address. An IPv4 prefix also
	// matches the v4-mapped IPv6 form of its addresses; where prefixes
	// overlap, an address matches every prefix that contains it.
	Peers []netip.Prefix
	// Ports match the connection's server port: the remote port of an
	// outgoing connection, the local port of an accepted one. Port 0
	// matches nothing.
	Ports []uint16
	// Comms match the task's comm exactly (at most MaxCommLen bytes).
	Comms []string
}

// Sizes of the kernel's filter maps: Exclude and Include together hold
// at most this many distinct entries of each kind.
const (
	MaxFilterPeers = 1024
	MaxFilterPorts = 256
	MaxFilterComms = 256
	// MaxCommLen is the longest comm (TASK_COMM_LEN less its NUL).
	MaxCommLen = 15
)

// Empty reports whether f leaves nothing out.
func (f Filters) Empty() bool {
	return f.lists() == 0
}

// String summarises f for a log line, e.g.
// "exclude peers=[127.0.0.53/32] ports=[9100]; include ports=[443]".
func (f Filters) String() string {
	if f.Empty() {
		return "none"
	}
	var parts []string
	if s := f.Exclude.String(); s != "" {
		if f.ExcludeFailures {
			s += " failures=true"
		}
		parts = append(parts, "exclude "+s)
	}
	if s := f.Include.String(); s != "" {
		parts = append(parts, "include "+s)
	}
	return strings.Join(parts, "; ")
}

// String lists the non-empty lists of s; "" when all are empty.
func (s FilterSet) String() string {
	var parts []string
	if len(s.Peers) > 0 {
		parts = append(parts, fmt.Sprintf("peers=%v", s.Peers))
	}
	if len(s.Ports) > 0 {
		parts = append(parts, fmt.Sprintf("ports=%v", s.Ports))
	}
	if len(s.Comms) > 0 {
		parts = append(parts, fmt.Sprintf("comms=%v", s.Comms))
	}
	return strings.Join(parts, " ")
}

// lists is the kernel's filter_lists constant for f: 0 when no list is
// set, whatever ExcludeFailures says, so that the verifier drops the
// filters' code.
func (f Filters) lists() connwatchFilterLists {
	var l connwatchFilterLists
	set := func(bit connwatchFilterLists, on bool) {
		if on {
			l |= bit
		}
	}
	set(connwatchFilterListsFILTER_EXCLUDE_PEERS, len(f.Exclude.Peers) > 0)
	set(connwatchFilterListsFILTER_EXCLUDE_PORTS, len(f.Exclude.Ports) > 0)
	set(connwatchFilterListsFILTER_EXCLUDE_COMMS, len(f.Exclude.Comms) > 0)
	set(connwatchFilterListsFILTER_INCLUDE_PEERS, len(f.Include.Peers) > 0)
	set(connwatchFilterListsFILTER_INCLUDE_PORTS, len(f.Include.Ports) > 0)
	set(connwatchFilterListsFILTER_INCLUDE_COMMS, len(f.Include.Comms) > 0)
	if l != 0 {
		set(connwatchFilterListsFILTER_EXCLUDE_FAILURES, f.ExcludeFailures)
	}
	return l
}

const (
	filterExclude = uint8(connwatchFilterFlagsFILTER_EXCLUDE)
	filterInclude = uint8(connwatchFilterFlagsFILTER_INCLUDE)
)

// filterEntries are the contents of the three filter maps.
type filterEntries struct {
	peers map[connwatchFilterPeerKey]uint8
	ports map[uint16]uint8
	comms map[[16]byte]uint8
}

// entries computes the filter maps' contents, or says why f does not fit
// them.
func (f Filters) entries() (filterEntries, error) {
	e := filterEntries{ports: map[uint16]uint8{}, comms: map[[16]byte]uint8{}}
	var err error
	if e.peers, err = peerEntries(f.Exclude.Peers, f.Include.Peers); err != nil {
		return e, err
	}
	for _, side := range []struct {
		set  FilterSet
		flag uint8
	}{{f.Exclude, filterExclude}, {f.Include, filterInclude}} {
		for _, p := range side.set.Ports {
			if p == 0 {
				return e, fmt.Errorf("filter port 0: ports are 1 to 65535")
			}
			e.ports[p] |= side.flag
		}
		for _, c := range side.set.Comms {
			if c == "" || len(c) > MaxCommLen || strings.IndexByte(c, 0) >= 0 {
				return e, fmt.Errorf("filter comm %q: a comm is 1 to %d bytes without NUL", c, MaxCommLen)
			}
			var k [16]byte
			copy(k[:], c)
			e.comms[k] |= side.flag
		}
	}
	if n := len(e.ports); n > MaxFilterPorts {
		return e, fmt.Errorf("%d filter ports, more than the %d the kernel map holds", n, MaxFilterPorts)
	}
	if n := len(e.comms); n > MaxFilterComms {
		return e, fmt.Errorf("%d filter comms, more than the %d the kernel map holds", n, MaxFilterComms)
	}
	return e, nil
}

// peerEntries computes filter_peers: every prefix in the 16-byte form the
// kernel looks addresses up in (IPv4 v4-mapped, its length + 96), with
// the flags of every listed prefix that contains it, since a lookup finds
// the longest matching prefix only: with 10.0.0.0/8 excluded and
// 10.1.0.0/16 included, 10.1.2.3 matches both.
func peerEntries(exclude, include []netip.Prefix) (map[connwatchFilterPeerKey]uint8, error) {
	own := map[netip.Prefix]uint8{}
	for _, side := range []struct {
		peers []netip.Prefix
		flag  uint8
	}{{exclude, filterExclude}, {include, filterInclude}} {
		for _, p := range side.peers {
			if !p.IsValid() {
				return nil, fmt.Errorf("filter peer %v is not a valid prefix", p)
			}
			own[mapped(p)] |= side.flag
		}
	}
	if n := len(own); n > MaxFilterPeers {
		return nil, fmt.Errorf("%d filter peers, more than the %d the kernel map holds", n, MaxFilterPeers)
	}
	out := make(map[connwatchFilterPeerKey]uint8, len(own))
	for p := range own {
		var flags uint8
		for q, qf := range own {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				flags |= qf
			}
		}
		out[connwatchFilterPeerKey{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}] = flags
	}
	return out, nil
}

// mapped is p in 16-byte form, masked.
func mapped(p netip.Prefix) netip.Prefix {
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), bits).Masked()
}

// fill puts e into the kernel's filter maps.
func (e filterEntries) fill(m *connwatchMaps) error {
	for k, v := range e.peers {
		if err := m.FilterPeers.Put(k, v); err != nil {
			return fmt.Errorf("filling filter_peers: %w", err)
		}
	}
	for k, v := range e.ports {
		if err := m.FilterPorts.Put(k, v); err != nil {
			return fmt.Errorf("filling filter_ports: %w", err)
		}
	}
	for k, v := range e.comms {
		if err := m.FilterComms.Put(k, v); err != nil {
			return fmt.Errorf("filling filter_comms: %w", err)
		}
	}
	return nil
}
