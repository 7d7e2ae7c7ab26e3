// Package pipeline is connwatch's event path, written once: a sample the
// kernel sent is decoded, its kernel timestamps turned into wall-clock
// time, the workload behind it looked up, and each event it carries
// handed to a Sink. The agent, the bench and the tests all run this code.
package pipeline

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/connwatch/connwatch/event"
)

// Sink receives events at the end of the path.
//
// Emit is called from the one goroutine that runs the path; it must not
// wait for the network and must not retain ev (Workload, which is
// immutable, may be kept). Flush hands on whatever the sink buffers and
// waits until it is written or ctx ends. Shutdown flushes, releases the
// sink's resources and returns when done or when ctx ends; Emit is not
// called after it. Flush and Shutdown may be called from any goroutine.
type Sink interface {
	Emit(ev *event.Event)
	Flush(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// Enricher adds the workload behind an event (enrich.Enricher).
type Enricher interface {
	Enrich(ev *event.Event)
}

// ClockResync is how often the kernel-to-wall-clock offset is re-sampled.
const ClockResync = time.Minute

// Path runs samples through decode → clock → enrich → sink. It is not
// safe for concurrent use (one goroutine runs it, as one goroutine reads
// the kernel's buffer); Stats may be called from any goroutine.
type Path struct {
	dec      event.Decoder
	evs      [2]event.Event
	clock    *event.Clock
	lastSync time.Time
	enr      Enricher
	sink     Sink
	observe  func(*event.Event)

	decoded, malformed, events atomic.Uint64
}

// Options configure a Path. Sink is required.
type Options struct {
	Sink Sink
	// Enricher, when set, fills each event's Workload before the sink
	// sees it.
	Enricher Enricher
	// Clock converts kernel timestamps; nil means a new synchronised
	// clock, re-synced every ClockResync.
	Clock *event.Clock
	// Observe, when set, sees every event just before the sink does
	// (the agent counts events by ID with it).
	Observe func(*event.Event)
}

// New returns a Path.
func New(o Options) *Path {
	c := o.Clock
	if c == nil {
		c = event.NewClock()
	}
	return &Path{clock: c, lastSync: time.Now(), enr: o.Enricher, sink: o.Sink, observe: o.Observe}
}

// Stats are a Path's counters.
type Stats struct {
	Decoded   uint64 // samples decoded
	Malformed uint64 // samples that did not decode (dropped)
	Events    uint64 // events handed to the sink (a combined sample counts two)
}

// Stats returns the counters.
func (p *Path) Stats() Stats {
	return Stats{Decoded: p.decoded.Load(), Malformed: p.malformed.Load(), Events: p.events.Load()}
}

// Handle runs one sample through the path. sample is not retained. A
// sample that does not decode is counted and its error returned; nothing
// reaches the sink then.
func (p *Path) Handle(sample []byte) error {
	n, err := p.dec.DecodeSample(sample, &p.evs)
	if err != nil {
		p.malformed.Add(1)
		return err
	}
	if p.decoded.Add(1)%1024 == 0 && time.Since(p.lastSync) > ClockResync {
		p.clock.Sync()
		p.lastSync = time.Now()
	}
	for i := range n {
		ev := &p.evs[i]
		p.clock.Stamp(ev)
		if i == 0 && p.enr != nil {
			p.enr.Enrich(ev)
		} else if i > 0 {
			// One sample, one task: the attempt's workload is the result's.
			ev.Workload = p.evs[0].Workload
		}
		if p.observe != nil {
			p.observe(ev)
		}
		p.events.Add(1)
		p.sink.Emit(ev)
	}
	return nil
}

// Run handles the samples of queue until it is closed, giving each buffer
// back with release (which may be nil) once handled. onError, which may
// be nil, sees each sample that did not decode.
func (p *Path) Run(queue <-chan *[]byte, release func(*[]byte), onError func(size int, err error)) {
	for bp := range queue {
		err := p.Handle(*bp)
		n := len(*bp)
		if release != nil {
			release(bp)
		}
		if err != nil && onError != nil {
			onError(n, err)
		}
	}
}
