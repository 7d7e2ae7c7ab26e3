//go:build linux

package bpf

import (
	"net/netip"
	"strings"
	"testing"
)

func peerKey(t *testing.T, s string) connwatchFilterPeerKey {
	t.Helper()
	p := netip.MustParsePrefix(s)
	return connwatchFilterPeerKey{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}

// The kernel finds the longest prefix only, so each entry carries the
// flags of every prefix that contains it; IPv4 is stored v4-mapped, where
// an IPv6 prefix such as ::ffff:0:0/96 contains it too.
func TestPeerEntries(t *testing.T) {
	got, err := peerEntries(
		[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		[]netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("::ffff:0:0/96"), netip.MustParsePrefix("fd00::/8")})
	if err != nil {
		t.Fatal(err)
	}
	want := map[connwatchFilterPeerKey]uint8{
		peerKey(t, "::ffff:10.0.0.0/104"): filterExclude | filterInclude, // inside ::ffff:0:0/96
		peerKey(t, "::ffff:10.1.0.0/112"): filterExclude | filterInclude,
		peerKey(t, "::ffff:0:0/96"):       filterInclude,
		peerKey(t, "fd00::/8"):            filterExclude | filterInclude, // in both lists: one entry
	}
	if len(got) != len(want) {
		t.Errorf("%d entries, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v/%d: flags %d, want %d", netip.AddrFrom16(k.Addr), k.Prefixlen, got[k], v)
		}
	}
}

func TestFiltersEntriesAndLists(t *testing.T) {
	f := Filters{
		Exclude:         FilterSet{Ports: []uint16{9100, 8080}, Comms: []string{"kubelet"}},
		Include:         FilterSet{Ports: []uint16{8080}},
		ExcludeFailures: true,
	}
	e, err := f.entries()
	if err != nil {
		t.Fatal(err)
	}
	if e.ports[9100] != filterExclude || e.ports[8080] != filterExclude|filterInclude || len(e.ports) != 2 {
		t.Errorf("ports %v", e.ports)
	}
	if k := [16]byte{'k', 'u', 'b', 'e', 'l', 'e', 't'}; e.comms[k] != filterExclude || len(e.comms) != 1 {
		t.Errorf("comms %v", e.comms)
	}
	wantLists := connwatchFilterListsFILTER_EXCLUDE_PORTS | connwatchFilterListsFILTER_EXCLUDE_COMMS |
		connwatchFilterListsFILTER_INCLUDE_PORTS | connwatchFilterListsFILTER_EXCLUDE_FAILURES
	if got := f.lists(); got != wantLists {
		t.Errorf("lists %#x, want %#x", got, wantLists)
	}
	if f.Empty() {
		t.Errorf("%v is Empty", f)
	}
	if s := f.String(); s != "exclude ports=[9100 8080] comms=[kubelet] failures=true; include ports=[8080]" {
		t.Errorf("String() = %q", s)
	}
	// ExcludeFailures alone leaves nothing out: the kernel skips the
	// filters.
	if only := (Filters{ExcludeFailures: true}); !only.Empty() || only.lists() != 0 || only.String() != "none" {
		t.Errorf("ExcludeFailures alone: Empty %v lists %#x %q", only.Empty(), only.lists(), only.String())
	}
}

func TestFiltersRefused(t *testing.T) {
	many := make([]uint16, MaxFilterPorts+1)
	for i := range many {
		many[i] = uint16(i + 1)
	}
	for _, c := range []struct {
		f    Filters
		want string
	}{
		{Filters{Exclude: FilterSet{Ports: []uint16{0}}}, "port 0"},
		{Filters{Include: FilterSet{Comms: []string{"a-comm-of-16-chx"}}}, "1 to 15 bytes"},
		{Filters{Include: FilterSet{Comms: []string{""}}}, "1 to 15 bytes"},
		{Filters{Exclude: FilterSet{Ports: many}}, "257 filter ports"},
		{Filters{Exclude: FilterSet{Peers: []netip.Prefix{{}}}}, "not a valid prefix"},
	} {
		if _, err := c.f.entries(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.f, err, c.want)
		}
	}
}
