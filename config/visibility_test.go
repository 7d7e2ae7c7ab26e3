package config

import (
	"reflect"
	"testing"

	"github.com/connwatch/connwatch/bpf"
)

const (
	id3f2a = "3f2a9c0d1e2f30415263748596a7b8c9d0e1f2031425364758697a8b9c0d1e2f"
	idab12 = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12"
)

// rulesConfig is the configuration the visibility tests use.
const rulesConfig = `
visibility:
  host: [network, process]
  default: [network]
  rules:
    - match: {container_id: "3f2a*"}
      scopes: []
    - match: {cgroup: "/kubepods.slice/*/*"}
      scopes: [network, file]
    - match: {pid_ns: 4026532281, mnt_ns: 4026532279}
      scopes: [capabilities]
    - match: {container_id: "*"}
      scopes: [network, process, file, capabilities]
`

func mustParse(t *testing.T, s string) *Config {
	t.Helper()
	c, err := Parse("test.yaml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestScopeNumber(t *testing.T) {
	for name, want := range map[string]uint32{"file": 0, "process": 1, "network": 2, "capabilities": 3} {
		if n, ok := ScopeNumber(name); !ok || n != want {
			t.Errorf("ScopeNumber(%q) = %d, %v; want %d", name, n, ok, want)
		}
	}
	if _, ok := ScopeNumber("caps"); ok {
		t.Error(`ScopeNumber("caps") succeeded`)
	}
}

func TestMatch(t *testing.T) {
	c := mustParse(t, rulesConfig)
	tests := []struct {
		name    string
		ns      Namespace
		scopes  []string
		matched bool
	}{
		{"container ID prefix", Namespace{PidNS: 1, MntNS: 2, ContainerID: id3f2a}, []string{}, true},
		{"first rule wins over later ones", Namespace{PidNS: 4026532281, MntNS: 4026532279, ContainerID: id3f2a, Cgroup: "/kubepods.slice/a/b"}, []string{}, true},
		{"cgroup glob", Namespace{PidNS: 1, MntNS: 2, Cgroup: "/kubepods.slice/burstable/pod1"}, []string{"network", "file"}, true},
		{"cgroup glob does not cross /", Namespace{PidNS: 1, MntNS: 2, Cgroup: "/kubepods.slice/a/b/c"}, []string{"network"}, false},
		{"namespace pair", Namespace{PidNS: 4026532281, MntNS: 4026532279}, []string{"capabilities"}, true},
		{"namespace pair needs both", Namespace{PidNS: 4026532281, MntNS: 1}, []string{"network"}, false},
		{"catch-all container rule", Namespace{PidNS: 1, MntNS: 2, ContainerID: idab12}, []string{"network", "process", "file", "capabilities"}, true},
		{"unknown container ID never matches a glob", Namespace{PidNS: 1, MntNS: 2}, []string{"network"}, false},
		{"prefix must be at the start", Namespace{PidNS: 1, MntNS: 2, ContainerID: "003f2a"}, []string{"network", "process", "file", "capabilities"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scopes, ok := c.Match(tt.ns)
			if ok != tt.matched || !reflect.DeepEqual(scopes, tt.scopes) {
				t.Errorf("Match(%+v) = %q, %v; want %q, %v", tt.ns, scopes, ok, tt.scopes, tt.matched)
			}
		})
	}
}

func TestMatchesEmptyFields(t *testing.T) {
	// A glob that matches everything still needs a known value.
	for _, m := range []Match{{ContainerID: "*"}, {Cgroup: "*"}, {}} {
		if m.Matches(Namespace{PidNS: 1, MntNS: 1}) {
			t.Errorf("%+v matched a namespace without container ID or cgroup", m)
		}
	}
	if !(&Match{Cgroup: "*"}).Matches(Namespace{Cgroup: "x"}) {
		t.Error(`cgroup "*" did not match "x"`)
	}
}

// scopes builds an inner map: listed scope numbers are traced, the rest
// ignored.
func scopes(traced ...uint32) map[uint32]uint32 {
	m := map[uint32]uint32{bpf.ScopeFile: 1, bpf.ScopeProcess: 1, bpf.ScopeNetwork: 1, bpf.ScopeCaps: 1}
	for _, s := range traced {
		m[s] = 0
	}
	return m
}

func TestVisibilityEntries(t *testing.T) {
	c := mustParse(t, rulesConfig)
	known := []Namespace{
		{PidNS: 10, MntNS: 11, ContainerID: id3f2a},                                     // rule 0
		{PidNS: 20, MntNS: 21, Cgroup: "/kubepods.slice/besteffort/pod9"},               // rule 1
		{PidNS: 4026532281, MntNS: 4026532279},                                          // rule 2
		{PidNS: 30, MntNS: 31, ContainerID: idab12},                                     // rule 3
		{PidNS: 40, MntNS: 41, Cgroup: "/system.slice/sshd.service"},                    // no rule
		{PidNS: 10, MntNS: 11, ContainerID: idab12},                                     // repeated key: first wins
		{PidNS: 0, MntNS: 0, ContainerID: idab12},                                       // host key: skipped
		{PidNS: bpf.DefaultKey.PidNS, MntNS: bpf.DefaultKey.MntNS, ContainerID: idab12}, // default key: skipped
		{PidNS: 50, MntNS: 51, ContainerID: "", Cgroup: ""},                             // nothing known: no rule
		{PidNS: 60, MntNS: 61, ContainerID: id3f2a, Cgroup: "/kubepods.slice/a/b/c/d"},  // rule 0
	}
	want := bpf.Visibility{
		bpf.HostKey:                            scopes(bpf.ScopeNetwork, bpf.ScopeProcess),
		bpf.DefaultKey:                         scopes(bpf.ScopeNetwork),
		{PidNS: 10, MntNS: 11}:                 scopes(),
		{PidNS: 20, MntNS: 21}:                 scopes(bpf.ScopeNetwork, bpf.ScopeFile),
		{PidNS: 4026532281, MntNS: 4026532279}: scopes(bpf.ScopeCaps),
		{PidNS: 30, MntNS: 31}:                 scopes(bpf.ScopeNetwork, bpf.ScopeProcess, bpf.ScopeFile, bpf.ScopeCaps),
		{PidNS: 60, MntNS: 61}:                 scopes(),
	}
	got := c.VisibilityEntries(known)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("VisibilityEntries:\n got %v\nwant %v", got, want)
	}
}

func TestVisibilityEntriesDefaults(t *testing.T) {
	got := Default().VisibilityEntries([]Namespace{{PidNS: 1, MntNS: 2, ContainerID: id3f2a}})
	want := bpf.Visibility{
		bpf.HostKey:    scopes(bpf.ScopeNetwork),
		bpf.DefaultKey: scopes(bpf.ScopeNetwork),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if got := Default().VisibilityEntries(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("nil namespaces: got %v", got)
	}
}

func TestVisibilityEntriesIgnoreMonitor(t *testing.T) {
	for _, monitor := range []string{"all", "host", "containers"} {
		c := mustParse(t, rulesConfig+"monitor: "+monitor+"\n")
		ref := mustParse(t, rulesConfig)
		known := []Namespace{{PidNS: 10, MntNS: 11, ContainerID: id3f2a}}
		if !reflect.DeepEqual(c.VisibilityEntries(known), ref.VisibilityEntries(known)) {
			t.Errorf("monitor %s changed the visibility entries", monitor)
		}
	}
}

func TestVisibilityEmptyScopes(t *testing.T) {
	c := mustParse(t, "visibility:\n  host: []\n  default: []\n")
	want := bpf.Visibility{bpf.HostKey: scopes(), bpf.DefaultKey: scopes()}
	if got := c.VisibilityEntries(nil); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}
