//go:build linux

package bpf

import (
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/cilium/ebpf/btf"

	"github.com/connwatch/connwatch/event"
)

// committedObjects parses every committed object (one per architecture),
// whatever this test runs on.
func committedObjects(t *testing.T) map[string]*ebpf.CollectionSpec {
	t.Helper()
	paths, err := filepath.Glob("connwatch_*_bpfel.o")
	if err != nil || len(paths) < 2 {
		t.Fatalf("committed objects: %v %v, want one per architecture", paths, err)
	}
	specs := map[string]*ebpf.CollectionSpec{}
	for _, p := range paths {
		spec, err := ebpf.LoadCollectionSpec(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		specs[p] = spec
	}
	return specs
}

// TestContextLayoutMatchesBTF compares sys_context_t in each committed
// object's BTF, member by member, with what the decoder reads: a layout
// change on one side cannot pass.
func TestContextLayoutMatchesBTF(t *testing.T) {
	for name, spec := range committedObjects(t) {
		t.Run(name, func(t *testing.T) { contextLayoutMatches(t, spec) })
	}
}

func contextLayoutMatches(t *testing.T, spec *ebpf.CollectionSpec) {
	var td *btf.Typedef
	if err := spec.Types.TypeByName("sys_context_t", &td); err != nil {
		t.Fatalf("sys_context_t in the object's BTF: %v", err)
	}
	st, ok := btf.UnderlyingType(td).(*btf.Struct)
	if !ok {
		t.Fatalf("sys_context_t is a %T, not a struct", btf.UnderlyingType(td))
	}
	if int(st.Size) != event.ContextSize {
		t.Errorf("sys_context_t is %d bytes in BTF, the decoder reads %d", st.Size, event.ContextSize)
	}
	if len(st.Members) != len(event.ContextLayout) {
		t.Fatalf("sys_context_t has %d members in BTF, the decoder reads %d", len(st.Members), len(event.ContextLayout))
	}
	for i, m := range st.Members {
		want := event.ContextLayout[i]
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatalf("size of %s: %v", m.Name, err)
		}
		got := event.ContextField{Name: m.Name, Offset: int(m.Offset.Bytes()), Size: size}
		if got != want {
			t.Errorf("member %d: BTF has %+v, the decoder reads %+v", i, got, want)
		}
	}
}

// TestEventIDsMatchBTF checks every enumerator of the C enum event_ids
// against the decoder's constant of the same event.
func TestEventIDsMatchBTF(t *testing.T) {
	decoder := map[string]uint32{
		"_TCP_CONNECT":               event.TCPConnect,
		"_TCP_ACCEPT":                event.TCPAccept,
		"_TCP_CONNECT_v6":            event.TCPConnectV6,
		"_TCP_ACCEPT_v6":             event.TCPAcceptV6,
		"_TCP_CONNECT_RESULT":        event.TCPConnectResult,
		"_TCP_CONNECT_AND_RESULT":    event.TCPConnectAndResult,
		"_TCP_CONNECT_RESULT_v6":     event.TCPConnectResultV6,
		"_TCP_CONNECT_AND_RESULT_v6": event.TCPConnectAndResultV6,
		"_TCP_CLOSE":                 event.TCPClose,
		"_TCP_CLOSE_v6":              event.TCPCloseV6,
	}
	for name, spec := range committedObjects(t) {
		t.Run(name, func(t *testing.T) { eventIDsMatch(t, spec, decoder) })
	}
}

func eventIDsMatch(t *testing.T, spec *ebpf.CollectionSpec, decoder map[string]uint32) {
	var enum *btf.Enum
	if err := spec.Types.TypeByName("event_ids", &enum); err != nil {
		t.Fatalf("enum event_ids in the object's BTF: %v", err)
	}
	if len(enum.Values) != len(decoder) {
		t.Errorf("enum event_ids has %d values, the decoder knows %d", len(enum.Values), len(decoder))
	}
	for _, v := range enum.Values {
		id, ok := decoder[v.Name]
		switch {
		case !ok:
			t.Errorf("%s = %d has no decoder constant", v.Name, v.Value)
		case uint64(id) != v.Value:
			t.Errorf("%s is %d in C, %d in the decoder", v.Name, v.Value, id)
		case event.Name(id) == "":
			t.Errorf("%s (%d) has no event name", v.Name, id)
		}
	}
}

// TestKernelStatsCoverEveryCounter fails when the C enum stat_ids gains a
// counter KernelStats does not read.
func TestKernelStatsCoverEveryCounter(t *testing.T) {
	var ks KernelStats
	seen := map[*uint64]connwatchStatIds{}
	for id := connwatchStatIds(0); id < connwatchStatIdsSTAT_MAX; id++ {
		f := ks.counter(id)
		if f == nil {
			t.Errorf("stat %d has no KernelStats field", id)
			continue
		}
		if prev, dup := seen[f]; dup {
			t.Errorf("stats %d and %d add to the same field", prev, id)
		}
		seen[f] = id
	}
}
