package otel

import (
	"fmt"
	"testing"

	"github.com/connwatch/connwatch/event"
)

// A cached workload is found without allocating, whether the event
// carries the very Workload the resource was built from or an equal copy
// (the enricher hands out a new one after a re-read).
func TestWorkloadCacheHitAllocatesNothing(t *testing.T) {
	e, _, _ := newTestExporter(t, testOptions())
	ev := workloadEvent(1)
	copied := *ev
	wl := *ev.Workload
	copied.Workload = &wl
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.workload(ev)
	if allocs := testing.AllocsPerRun(100, func() {
		if e.workload(ev) != w || e.workload(&copied) != w {
			t.Fatal("cached workload not found")
		}
	}); allocs != 0 {
		t.Errorf("a cache hit allocates %.1f times", allocs)
	}
	if created, live := e.resourcesCreated.Load(), e.resourcesLive.Load(); created != 1 || live != 1 {
		t.Errorf("%d resources created, %d live; want 1 and 1", created, live)
	}
}

// A workload whose details changed under the same key (an exec with new
// arguments) gets its resource built again, replacing the cached one.
func TestWorkloadRebuiltWhenDetailsChange(t *testing.T) {
	e, tt, _ := newTestExporter(t, testOptions())
	ev := workloadEvent(1)
	e.Emit(ev)
	changed := *ev
	wl := *ev.Workload
	wl.Args = []string{"curl", "--other"}
	changed.Workload = &wl
	e.Emit(&changed)
	flush(t, e)
	if st := e.Stats(); st.ResourcesCreated != 2 || st.ResourcesLive != 1 || st.ResourcesEvicted != 0 {
		t.Errorf("stats %+v, want 2 resources created, 1 live, none evicted", st)
	}
	spans := tt.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	if got := fmt.Sprint(spans[1].ResourceAttrs()["process.command_args"]); got != "[curl --other]" {
		t.Errorf("second span's process.command_args %s, want [curl --other]", got)
	}
}

// BenchmarkWorkloadCache measures the resource lookup of the event path
// among 64 cached workloads.
func BenchmarkWorkloadCache(b *testing.B) {
	e := newBenchExporter(b, testOptions())
	events := make([]*event.Event, 64)
	for i := range events {
		events[i] = workloadEvent(i)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range events {
		e.workload(ev)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.workload(events[i&63])
		i++
	}
}
