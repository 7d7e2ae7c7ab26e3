package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/connwatch/connwatch/bpf"
)

const filtersDoc = `filters:
  exclude:
    peers: [127.0.0.53/32, "fd00::/8"]
    ports: [9100, 8080]
    comms: [kubelet]
    failures: true
  include:
    peers: [10.0.0.0/8]
    ports: []
    comms:
`

func TestParseFilters(t *testing.T) {
	c, err := Parse("connwatch.yaml", []byte(filtersDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := Filters{
		Exclude: FilterExclude{FilterSet: FilterSet{
			Peers: []netip.Prefix{netip.MustParsePrefix("127.0.0.53/32"), netip.MustParsePrefix("fd00::/8")},
			Ports: []uint16{9100, 8080},
			Comms: []string{"kubelet"},
		}, Failures: true},
		Include: FilterSet{Peers: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
	}
	if !reflect.DeepEqual(c.Filters, want) {
		t.Errorf("filters %+v\nwant %+v", c.Filters, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	b := c.Filters.BPF()
	wantBPF := bpf.Filters{Exclude: bpf.FilterSet{Peers: want.Exclude.Peers, Ports: want.Exclude.Ports, Comms: want.Exclude.Comms},
		Include: bpf.FilterSet{Peers: want.Include.Peers}, ExcludeFailures: true}
	if !reflect.DeepEqual(b, wantBPF) {
		t.Errorf("BPF() = %+v\nwant %+v", b, wantBPF)
	}
	if s := b.String(); s != "exclude peers=[127.0.0.53/32 fd00::/8] ports=[9100 8080] comms=[kubelet] failures=true; include peers=[10.0.0.0/8]" {
		t.Errorf("summary %q", s)
	}

	// Printed through the schema, the section parses back the same.
	out := c.YAML()
	if !strings.Contains(string(out), "filters:\n  exclude:\n    peers: [127.0.0.53/32, 'fd00::/8']\n    ports: [9100, 8080]\n") {
		t.Errorf("YAML() prints the filters as:\n%s", out)
	}
	back, err := Parse("rt.yaml", out)
	if err != nil {
		t.Fatalf("Parse(YAML()): %v\n%s", err, out)
	}
	if !sameSettings(back, c) {
		t.Errorf("round trip: %+v\nwant %+v", back.Filters, c.Filters)
	}
	if !Default().Filters.BPF().Empty() {
		t.Errorf("default filters %v are not empty", Default().Filters.BPF())
	}
}

func TestParseFiltersErrors(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
	}{
		{"malformed CIDR", "filters: {exclude: {peers: [10.0.0/8]}}\n",
			`connwatch.yaml:1:29: filters.exclude.peers[0]: "10.0.0/8" is not a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{"address alone", "filters:\n  include:\n    peers: [\"::1\"]\n",
			`connwatch.yaml:3:13: filters.include.peers[0]: "::1" is an address, not a CIDR (write ::1/128 for it alone)`},
		{"host bits set", "filters: {exclude: {peers: [10.1.2.3/8]}}\n",
			`connwatch.yaml:1:29: filters.exclude.peers[0]: 10.1.2.3/8 has bits set past its /8: write 10.0.0.0/8 (or 10.1.2.3/32 for the one address)`},
		{"peer twice", "filters: {exclude: {peers: [10.0.0.0/8, 10.0.0.0/8]}}\n",
			`connwatch.yaml:1:41: filters.exclude.peers[1]: 10.0.0.0/8 is listed twice`},
		{"port 0", "filters: {exclude: {ports: [0]}}\n",
			`connwatch.yaml:1:29: filters.exclude.ports[0]: 0 is not a port from 1 to 65535`},
		{"port 70000", "filters:\n  include:\n    ports: [443, 70000]\n",
			`connwatch.yaml:3:18: filters.include.ports[1]: 70000 is not a port from 1 to 65535`},
		{"port a string", "filters: {exclude: {ports: [\"80\"]}}\n",
			`connwatch.yaml:1:29: filters.exclude.ports[0]: expected a port number, got the string "80"`},
		{"ports not a list", "filters: {exclude: {ports: 80}}\n",
			`connwatch.yaml:1:28: filters.exclude.ports: expected a list of ports, got the integer 80`},
		{"comm too long", "filters: {exclude: {comms: [kube-controller-manager]}}\n",
			`connwatch.yaml:1:29: filters.exclude.comms[0]: "kube-controller-manager" is 23 bytes, more than the 15 of a comm (the kernel keeps the first 15: write "kube-controller")`},
		{"comm empty", "filters: {exclude: {comms: [\"\"]}}\n",
			`connwatch.yaml:1:29: filters.exclude.comms[0]: must not be empty`},
		{"unknown key", "filters:\n  exclude:\n    port: [80]\n",
			`connwatch.yaml:3:5: unknown key "port" in filters.exclude (expected one of: peers, ports, comms, failures)`},
		{"failures under include", "filters:\n  include:\n    failures: true\n",
			`connwatch.yaml:3:5: unknown key "failures" in filters.include (expected one of: peers, ports, comms)`},
		{"unknown side", "filters: {ignore: {}}\n",
			`connwatch.yaml:1:11: unknown key "ignore" in filters (expected one of: exclude, include)`},
		{"failures not a bool", "filters: {exclude: {failures: yes}}\n",
			`connwatch.yaml:1:31: filters.exclude.failures: expected true or false, got the string "yes"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("connwatch.yaml", []byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse(%q) error:\n got: %v\nwant: %s", tt.in, err, tt.want)
			}
		})
	}
}

// A list longer than its kernel map is refused where it stands; lists
// that fit alone but not together are Validate's, as are entries set in
// code.
func TestFiltersBounds(t *testing.T) {
	ports := func(from, n int) string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprint(from+i))
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	_, err := Parse("connwatch.yaml", []byte("filters:\n  exclude:\n    ports: "+ports(1, 257)+"\n"))
	if want := "connwatch.yaml:3:12: filters.exclude.ports: 257 ports, more than the 256 allowed"; err == nil || err.Error() != want {
		t.Errorf("257 ports: %v, want %s", err, want)
	}

	c, err := Parse("connwatch.yaml", []byte("filters:\n  exclude:\n    ports: "+ports(1, 200)+"\n  include:\n    ports: "+ports(1001, 100)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "connwatch.yaml:5:5: filters.include.ports: 300 ports in exclude and include together, more than the 256 the kernel holds"; c.Validate() == nil ||
		c.Validate().Error() != want {
		t.Errorf("Validate: %v, want %s", c.Validate(), want)
	}

	c = Default()
	c.Filters.Exclude.Ports = []uint16{0}
	c.Filters.Include.Peers = []netip.Prefix{netip.MustParsePrefix("192.168.1.1/16")}
	c.Filters.Include.Comms = []string{"a-name-too-long-for-a-comm"}
	errs := unjoin(c.Validate())
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		"filters.exclude.ports[0]: 0 is not a port from 1 to 65535",
		"filters.include.peers[0]: 192.168.1.1/16 has bits set past its /16: write 192.168.0.0/16 (or 192.168.1.1/32 for the one address)",
		`filters.include.comms[0]: "a-name-too-long-for-a-comm" is 26 bytes, more than the 15 of a comm (the kernel keeps the first 15: write "a-name-too-long")`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Validate of filters set in code:\n got %q\nwant %q", got, want)
	}
}
