// Package metrics aggregates connwatch's events into per-workload
// connection metrics: connections by direction, outcome and peer, connect
// and connection duration histograms, and bytes. The aggregate is
// collected as OpenTelemetry metric data (one ResourceMetrics per
// workload, exported with otlpmetricgrpc) and as Prometheus metrics (the
// same values, the workload's identity as labels).
//
// # Cost and cardinality
//
// An event costs one map lookup and a few additions: no allocation once
// its series exists. A workload holds at most Options.MaxSeries series;
// an event that would create one more is folded into the workload's
// overflow series of its direction and outcome (connwatch.overflow=true,
// no peer attributes) and counted (Stats.Overflowed). A series not updated
// for Options.Expiry is removed, and so is a workload with none left; if
// it comes back it starts again from zero with a new start time, as
// cumulative metrics do after a reset.
//
// Why not the SDK's instruments: one MeterProvider has one resource (the
// workloads each need their own, the same as their spans'), its
// cardinality limit is per instrument (not per workload), and a
// cumulative series it has seen is never forgotten. So connwatch keeps
// the aggregate, and the SDK's data model and OTLP exporter carry it.
package metrics

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/connwatch/connwatch/event"
)

// Defaults of Options.
const (
	DefaultMaxSeries = 2000
	DefaultExpiry    = 5 * time.Minute
	DefaultInterval  = time.Minute
)

// PeerMode says which peer attributes a series carries.
type PeerMode string

// The peer modes.
const (
	// PeerAddress: the peer's address and the server port.
	PeerAddress PeerMode = "address"
	// PeerPort: the server port only.
	PeerPort PeerMode = "port"
	// PeerNone: no peer attributes (a series per direction and outcome).
	PeerNone PeerMode = "none"
)

// ParsePeerMode returns the peer mode named s.
func ParsePeerMode(s string) (PeerMode, error) {
	switch m := PeerMode(s); m {
	case PeerAddress, PeerPort, PeerNone:
		return m, nil
	}
	return "", fmt.Errorf("%q is not a peer mode (address, port or none)", s)
}

// Options configure a Store.
type Options struct {
	Peer      PeerMode      // default PeerAddress
	MaxSeries int           // series per workload; default DefaultMaxSeries
	Expiry    time.Duration // default DefaultExpiry
	// Now is the clock expiry is judged by; default time.Now.
	Now func() time.Time
}

// Stats are a Store's counters.
type Stats struct {
	Workloads  int    // workloads with series now
	Series     int    // series now, overflow series included
	Overflowed uint64 // events folded into an overflow series
	Expired    uint64 // series removed for not being updated within Expiry
}

// Store is the aggregate. It is safe for concurrent use: Record is meant
// for the event path's goroutine, Collect for exporters and scrapes.
type Store struct {
	peer      PeerMode
	maxSeries int
	expiry    time.Duration
	now       func() time.Time

	mu         sync.Mutex
	workloads  map[any]*Workload
	records    uint64
	lastSweep  time.Time
	overflowed uint64
	expired    uint64
}

// New returns an empty Store.
func New(o Options) *Store {
	s := &Store{peer: o.Peer, maxSeries: o.MaxSeries, expiry: o.Expiry, now: o.Now, workloads: map[any]*Workload{}}
	if s.peer == "" {
		s.peer = PeerAddress
	}
	if s.maxSeries <= 0 {
		s.maxSeries = DefaultMaxSeries
	}
	if s.expiry <= 0 {
		s.expiry = DefaultExpiry
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.lastSweep = s.now()
	return s
}

// Workload is one workload's series. Callers keep the pointer (with the
// workload's other cached state) and pass it to Record.
type Workload struct {
	key    any
	res    *resource.Resource
	series map[seriesKey]*series
	live   bool // in Store.workloads
}

// direction of a series.
const (
	outbound uint8 = iota
	inbound
)

// seriesKey names a series within its workload. A zero peer or port is
// left out of the attributes.
type seriesKey struct {
	dir      uint8
	outcome  event.Outcome
	overflow bool
	peer     netip.Addr
	port     uint16
}

// series holds one series' cumulative values.
type series struct {
	start, last time.Time
	conns       uint64
	connect     histogram // attempt to outcome (outbound only)
	sent, recvd uint64    // bytes of closed connections
	lifetime    histogram // established or accepted to closed
	sets        *sets     // attribute sets, from the first collection on
}

// Workload returns the series of the workload key names, whose resource
// is res (it replaces the one known, if any). key must be comparable.
func (s *Store) Workload(key any, res *resource.Resource) *Workload {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.workloads[key]; ok {
		w.res = res
		return w
	}
	w := &Workload{key: key, res: res, series: map[seriesKey]*series{}, live: true}
	s.workloads[key] = w
	return w
}

// SetResource replaces w's resource.
func (s *Store) SetResource(w *Workload, res *resource.Resource) {
	s.mu.Lock()
	w.res = res
	s.mu.Unlock()
}

// Record counts ev for w: a connect result, an accept or a close; other
// events are ignored. ev.Time (wall clock) says when the series was last
// updated.
func (s *Store) Record(w *Workload, ev *event.Event) {
	if w == nil {
		return
	}
	var k seriesKey
	switch {
	case ev.IsResult():
		k = seriesKey{dir: outbound, outcome: ev.Outcome()}
	case ev.IsAccept():
		k = seriesKey{dir: inbound, outcome: event.OutcomeEstablished}
	case ev.IsClose():
		// A close adds to the series of its established connection.
		k = seriesKey{dir: outbound, outcome: event.OutcomeEstablished}
		if ev.Inbound() {
			k.dir = inbound
		}
	default:
		return
	}
	switch s.peer {
	case PeerAddress:
		k.peer = ev.Remote.Addr().Unmap()
		fallthrough
	case PeerPort:
		k.port = ev.Remote.Port()
		if k.dir == inbound {
			k.port = ev.Local.Port()
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if !w.live {
		// Expired and back: its series start again.
		w.live = true
		s.workloads[w.key] = w
	}
	sr := w.series[k]
	if sr == nil {
		sr = s.newSeries(w, &k, ev.Time)
	}
	sr.last = ev.Time
	switch {
	case ev.IsResult():
		sr.conns++
		sr.connect.add(connectBounds[:], ev.Duration().Seconds())
	case ev.IsAccept():
		sr.conns++
	default:
		sr.sent += ev.Close.BytesSent
		sr.recvd += ev.Close.BytesReceived
		sr.lifetime.add(lifetimeBounds[:], ev.Lifetime().Seconds())
	}
	s.records++
	if s.records%4096 == 0 {
		s.maybeSweep()
	}
}

// newSeries adds the series k to w, or returns w's overflow series of k's
// direction and outcome when w has MaxSeries already (k then becomes that
// key). s.mu is held.
func (s *Store) newSeries(w *Workload, k *seriesKey, t time.Time) *series {
	if len(w.series) >= s.maxSeries {
		*k = seriesKey{dir: k.dir, outcome: k.outcome, overflow: true}
		s.overflowed++
		if sr := w.series[*k]; sr != nil {
			return sr
		}
	}
	sr := &series{start: t}
	w.series[*k] = sr
	return sr
}

// maybeSweep expires series when a quarter of Expiry has passed since the
// last sweep. s.mu is held.
func (s *Store) maybeSweep() {
	now := s.now()
	if now.Sub(s.lastSweep) < s.expiry/4 {
		return
	}
	s.lastSweep = now
	cutoff := now.Add(-s.expiry)
	for key, w := range s.workloads {
		for k, sr := range w.series {
			if sr.last.Before(cutoff) {
				delete(w.series, k)
				s.expired++
			}
		}
		if len(w.series) == 0 {
			delete(s.workloads, key)
			w.live = false
		}
	}
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Workloads: len(s.workloads), Overflowed: s.overflowed, Expired: s.expired}
	for _, w := range s.workloads {
		st.Series += len(w.series)
	}
	return st
}

// Histogram bucket bounds, in seconds. Connect durations are a loopback
// handshake (tens of µs) to SYN retries (over a minute); lifetimes go up
// to hours.
var (
	connectBounds  = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	lifetimeBounds = [...]float64{0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600}
)

const maxBuckets = len(connectBounds) + 1

// histogram is an explicit-bucket histogram; its bounds are those it is
// observed with (one set per use).
type histogram struct {
	counts   [maxBuckets]uint64
	count    uint64
	sum      float64
	min, max float64
}

func (h *histogram) add(bounds []float64, v float64) {
	i := 0
	for i < len(bounds) && v > bounds[i] {
		i++
	}
	h.counts[i]++
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if h.count == 0 || v > h.max {
		h.max = v
	}
	h.count++
	h.sum += v
}
