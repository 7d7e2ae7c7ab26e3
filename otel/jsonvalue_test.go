package otel

// The parts of a JSON line against encoding/json: the attributes object
// (jsonattrs.go) and string escaping (jsonvalue.go).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
)

// TestJSONAttrsObject feeds the visitor directly: more attributes than
// its array holds, repeated keys (the last wins, as in the old map) and
// keys to escape, in several orders so that the shapes differ.
func TestJSONAttrsObject(t *testing.T) {
	var a jsonAttrs
	for round := range 12 {
		a.reset()
		m := map[string]any{}
		for i := range 2*jsonAttrCap + round {
			k := fmt.Sprintf("k%02d", (i*7+round)%(jsonAttrCap+3))
			if i%5 == 0 {
				k += jlNasty[:i%len(jlNasty)]
			}
			switch i % 3 {
			case 0:
				a.str(&attrKey{name: k}, jlNasty[i%len(jlNasty):])
				m[k] = jlNasty[i%len(jlNasty):]
			case 1:
				a.int(&attrKey{name: k}, int64(i-30))
				m[k] = int64(i - 30)
			case 2:
				addr := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
				a.addr(&attrKey{name: k}, addr)
				m[k] = addr.String()
			}
		}
		got := append(a.appendObject(nil), '\n')
		if want := jlEncode(t, m); !bytes.Equal(got, want) {
			t.Errorf("round %d:\n got %s\nwant %s", round, got, want)
		}
	}
}

// TestJSONStringEscaping checks appendJSONString against encoding/json
// for every single byte, every rune around the special ones and
// truncated sequences, for both string and []byte input.
func TestJSONStringEscaping(t *testing.T) {
	var inputs []string
	for b := range 256 {
		inputs = append(inputs, string([]byte{byte(b)}), "x"+string([]byte{byte(b)})+"y")
	}
	for _, r := range []rune{0x7f, 0x80, 0x7ff, 0x800, 0x2027, 0x2028, 0x2029, 0x202a, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff} {
		s := string(r)
		inputs = append(inputs, s, "a"+s+"b")
		for i := 1; i < len(s); i++ {
			inputs = append(inputs, s[:i], s[:i]+"z", "z"+s[i:])
		}
	}
	inputs = append(inputs, "", jlNasty, "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf")
	for _, s := range inputs {
		want, err := json.Marshal(s) // differs only in escaping <, > and &
		if err != nil {
			t.Fatal(err)
		}
		want = bytes.ReplaceAll(want, []byte(`\u003c`), []byte("<"))
		want = bytes.ReplaceAll(want, []byte(`\u003e`), []byte(">"))
		want = bytes.ReplaceAll(want, []byte(`\u0026`), []byte("&"))
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("string %q: got %s, want %s", s, got, want)
		}
		if got := appendJSONString([]byte("p"), []byte(s)); !bytes.Equal(got[1:], want) {
			t.Errorf("[]byte %q: got %s, want %s", s, got[1:], want)
		}
	}
}
