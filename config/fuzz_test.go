package config

import (
	"errors"
	"testing"

	"github.com/connwatch/connwatch/bpf"
)

// FuzzParse checks that Parse never panics, that every rejection is an
// ErrorList of positioned errors, that Validate blames a file position
// for every problem it finds in an accepted configuration, and that every
// accepted configuration prints as YAML that parses back to an equal
// configuration.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"probe:\n  atach: auto\n",
		"monitor: \"hosts\"\n",
		rulesConfig,
		"visibility:\n  host: &s [network, file]\n  default: *s\n",
		"visibility:\n  rules:\n    - match: {pid_ns: 4026532281, mnt_ns: 0xF0000001}\n      scopes: [network]\n",
		"visibility:\n  rules:\n    - match: {cgroup: \"/a/[b-c]*\"}\n      scopes: []\n",
		"export:\n  otlp:\n    endpoint: http://[::1]:4317\n    headers: {a: \"x\\ty\", \"B\": \"null\", c: '#'}\n    timeout: 1h2m3.5s\n",
		"export:\n  otlp:\n    client_certificate: c\n    client_key: k\n  flush_timeout: 1ns\n",
		"export:\n  otlp:\n    client_key: k\n",
		"visibility:\n  rules:\n    - match: {pid_ns: 1, cgroup: /a}\n      scopes: []\n    - match: {mnt_ns: 2}\n      scopes: []\n",
		"telemetry: {listen: \"[::]:0\"}\nenrich: {proc_root: \"yes\", passwd: \"\"}\n",
		"a: b: c\n",
		"monitor: all\n---\nmonitor: host\n",
		"probe: &p {attach: *p}\n",
		"<<: {monitor: all}\n",
		"? [a]\n: b\n",
		"monitor: !!str all\nprobe: {attach: !!str auto}\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Add(Example())
	f.Add(Default().YAML())

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty ErrorList", err, err)
			}
			for _, e := range list {
				if e.File != "fuzz.yaml" || e.Msg == "" {
					t.Fatalf("malformed error %+v", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			for _, e := range unjoin(err) {
				var fe *Error
				if !errors.As(e, &fe) || fe.File != "fuzz.yaml" || fe.Line == 0 || fe.Column == 0 {
					t.Fatalf("Validate: %v (%T) does not point into the file", e, e)
				}
			}
		}
		out := c.YAML()
		back, err := Parse("roundtrip.yaml", out)
		if err != nil {
			t.Fatalf("printed config does not parse: %v\ninput:\n%s\nprinted:\n%s", err, data, out)
		}
		if !sameSettings(c, back) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v\nprinted:\n%s", back, c, out)
		}
		// The map computation accepts whatever Parse accepts.
		entries := c.VisibilityEntries([]Namespace{{PidNS: 1, MntNS: 2, ContainerID: "3f2a", Cgroup: "/a/b"}})
		if len(entries[bpf.HostKey]) != 4 || len(entries[bpf.DefaultKey]) != 4 {
			t.Fatalf("incomplete reserved entries: %v", entries)
		}
	})
}
