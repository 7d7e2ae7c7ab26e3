package otel

import (
	"slices"

	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/internal/lru"
	"github.com/connwatch/connwatch/metrics"
)

// workloads is the Exporter's cache of encoded resources: the
// Options.MaxProviders most recently seen workloads, by resourceKey.
type workloads = lru.Cache[resourceKey, *workload]

// workload is the cached state of one resource.
type workload struct {
	src     *event.Workload // what the resource was built from
	res     *resource.Resource
	resPB   []byte            // encoded Resource message
	resJSON []byte            // resource as a JSON object
	metrics *metrics.Workload // its series; nil without Options.Metrics
	pend    [2]pending
}

// sameWorkload reports whether a and b describe the workload alike.
func sameWorkload(a, b *event.Workload) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ExePath == b.ExePath && a.ExeName == b.ExeName && slices.Equal(a.Args, b.Args) &&
		a.Owner == b.Owner && a.StartTime.Equal(b.StartTime) && a.ContainerID == b.ContainerID &&
		a.Runtime == b.Runtime && a.PodUID == b.PodUID && a.Cgroup == b.Cgroup
}

// workload returns the cached state of ev's resource, creating it (and
// evicting the least recently used one beyond MaxProviders) as needed. A
// cached resource costs one map lookup and no allocation. e.mu is held.
func (e *Exporter) workload(ev *event.Event) *workload {
	k := keyOf(ev)
	if w, ok := e.workloads.Get(k); ok {
		if ev.Workload == w.src || sameWorkload(ev.Workload, w.src) {
			w.src = ev.Workload
			return w
		}
		// Same key, other details (an exec with new arguments, a new
		// owner name): the resource is built again and replaces it.
		e.resourcesLive.Add(-1)
	}
	w := e.newWorkload(k, ev)
	if _, _, evicted := e.workloads.Put(k, w); evicted {
		// An evicted workload with records in an open batch stays
		// referenced by the batch until it closes.
		e.resourcesEvicted.Add(1)
		e.resourcesLive.Add(-1)
	}
	e.resourcesCreated.Add(1)
	e.resourcesLive.Add(1)
	return w
}

func (e *Exporter) newWorkload(k resourceKey, ev *event.Event) *workload {
	attrs := append(e.resAttr[:0], e.base...)
	attrs = appendWorkloadAttributes(attrs, ev, e.omitArgs)
	e.resAttr = attrs[:0]
	// Duplicate keys keep the last value: workload over
	// OTEL_RESOURCE_ATTRIBUTES over host. The resource sorts them.
	res := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	w := &workload{res: res, src: ev.Workload}
	if e.store != nil {
		// The series outlive the cached resource: an evicted workload
		// that comes back finds them.
		w.metrics = e.store.Workload(k, res)
	}
	if e.wantPB {
		w.resPB = encodeResource(res.Attributes())
	}
	if e.wantJS {
		w.resJSON = appendResourceJSON(nil, res.Attributes())
	}
	return w
}
