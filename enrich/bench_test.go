package enrich

import (
	"testing"

	"github.com/connwatch/connwatch/event"
)

// BenchmarkEnrichWarm measures the event path on a cache hit.
func BenchmarkEnrichWarm(b *testing.B) {
	e := newTestEnricher(b, "testdata/proc")
	evs := []event.Event{
		{HostPID: 812, Comm: "curl", UID: 1000},
		{HostPID: 4242, Comm: "python3", PidNS: 4026532601, MntNS: 4026532600},
		{HostPID: 5150, Comm: "server", UID: 65532, PidNS: 4026532711, MntNS: 4026532710},
		{HostPID: 6060, Comm: "envoy) (main", UID: 101, PidNS: 4026532811, MntNS: 4026532810},
	}
	for i := range evs {
		e.Enrich(&evs[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Enrich(&evs[i&3])
	}
	if st := e.Stats(); st.Misses != uint64(len(evs)) {
		b.Fatalf("misses during the warm loop: %+v", st)
	}
}

// BenchmarkEnrichMiss measures a cache miss: reading /proc/<pid> of the
// static tree (a real procfs is faster to read than a disk-backed tree but
// of the same order).
func BenchmarkEnrichMiss(b *testing.B) {
	e := newTestEnricher(b, "testdata/proc", func(o *Options) { o.CacheSize = 1 })
	evs := []event.Event{
		{HostPID: 4242, Comm: "python3", PidNS: 4026532601, MntNS: 4026532600},
		{HostPID: 5150, Comm: "server", UID: 65532, PidNS: 4026532711, MntNS: 4026532710},
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.Enrich(&evs[i&1])
	}
}
