package console

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/connwatch/connwatch/event"
)

// TopIdle is how long a workload stays in connwatch top's view after its
// last connection.
const TopIdle = 10 * time.Second

// maxLatencySamples bounds the handshake latencies a workload keeps per
// refresh; past it, new samples replace random old ones (reservoir
// sampling), so the percentiles stay unbiased.
const maxLatencySamples = 2048

// Top counts connections per workload for connwatch top. It is a
// pipeline.Sink: Emit may be called from the event path while Snapshot
// is called from the view.
type Top struct {
	mu    sync.Mutex
	now   func() time.Time
	rng   uint64
	works map[workloadKey]*workloadCounts
	last  time.Time
}

// workloadKey is what top calls a workload: the executable (else the
// comm) and, for a container, its ID.
type workloadKey struct {
	name      string
	container string
}

type workloadCounts struct {
	pid                        uint32
	seen                       time.Time
	connects, failures, accept uint64 // this refresh
	total                      uint64 // since start
	latencies                  []time.Duration
	seenLatencies              int
	peers                      map[netip.AddrPort]uint32
}

// TopRow is one workload over the last refresh.
type TopRow struct {
	Workload  string // executable (or comm) and, for a container, "@" and its short ID
	PID       uint32 // the host pid of its latest connection
	Connects  float64
	Failures  float64
	Accepts   float64
	P50, P99  time.Duration  // handshake latency of its connects; 0 when none
	TopPeer   netip.AddrPort // the remote it connected to most, or (port 0) the client address it accepted most from
	PeerCount uint32
	Total     uint64 // connections and accepts since start
}

// NewTop returns an empty Top; now may be nil (time.Now).
func NewTop(now func() time.Time) *Top {
	if now == nil {
		now = time.Now
	}
	return &Top{now: now, works: map[workloadKey]*workloadCounts{}, last: now(), rng: 0x9e3779b97f4a7c15}
}

// Emit counts ev: connect results as connects (failures when not
// established, with their latency) and accepts.
func (t *Top) Emit(ev *event.Event) {
	if !ev.IsResult() && !ev.IsAccept() {
		return
	}
	k := workloadKey{name: ev.Comm}
	if w := ev.Workload; w != nil {
		if w.ExeName != "" {
			k.name = w.ExeName
		}
		if len(w.ContainerID) >= 12 {
			k.container = w.ContainerID[:12]
		} else {
			k.container = w.ContainerID
		}
	}
	k.name, k.container = printable(k.name), printable(k.container)
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.works[k]
	if c == nil {
		c = &workloadCounts{peers: map[netip.AddrPort]uint32{}}
		t.works[k] = c
	}
	c.pid, c.seen = ev.HostPID, t.now()
	c.total++
	if ev.IsAccept() {
		c.accept++
	} else {
		c.connects++
		if ev.Outcome() != event.OutcomeEstablished {
			c.failures++
		}
		if d := ev.Duration(); d > 0 {
			c.addLatency(d, t.rand)
		}
	}
	peer := ev.Remote
	if ev.IsAccept() {
		// A client's port is ephemeral: the peer of an accept is its
		// address (port 0).
		peer = netip.AddrPortFrom(peer.Addr(), 0)
	}
	if peer.IsValid() && (len(c.peers) < 1024 || c.peers[peer] > 0) {
		c.peers[peer]++
	}
}

func (c *workloadCounts) addLatency(d time.Duration, rand func(uint64) uint64) {
	c.seenLatencies++
	if len(c.latencies) < maxLatencySamples {
		c.latencies = append(c.latencies, d)
		return
	}
	if i := rand(uint64(c.seenLatencies)); i < maxLatencySamples {
		c.latencies[i] = d
	}
}

// rand is a xorshift draw in [0, n).
func (t *Top) rand(n uint64) uint64 {
	t.rng ^= t.rng << 13
	t.rng ^= t.rng >> 7
	t.rng ^= t.rng << 17
	return t.rng % n
}

// Snapshot returns every workload seen within TopIdle with its rates
// since the previous Snapshot, and starts the next refresh.
func (t *Top) Snapshot() []TopRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	secs := now.Sub(t.last).Seconds()
	t.last = now
	if secs <= 0 {
		secs = 1
	}
	rows := make([]TopRow, 0, len(t.works))
	for k, c := range t.works {
		if now.Sub(c.seen) > TopIdle {
			delete(t.works, k)
			continue
		}
		r := TopRow{Workload: k.name, PID: c.pid, Total: c.total,
			Connects: float64(c.connects) / secs, Failures: float64(c.failures) / secs, Accepts: float64(c.accept) / secs}
		if k.container != "" {
			r.Workload += "@" + k.container
		}
		if len(c.latencies) > 0 {
			slices.Sort(c.latencies)
			r.P50, r.P99 = rank(c.latencies, 50), rank(c.latencies, 99)
		}
		for p, n := range c.peers {
			if n > r.PeerCount || n == r.PeerCount && peerBefore(p, r.TopPeer) {
				r.TopPeer, r.PeerCount = p, n
			}
		}
		rows = append(rows, r)
		c.connects, c.failures, c.accept = 0, 0, 0
		c.latencies, c.seenLatencies = c.latencies[:0], 0
		clear(c.peers)
	}
	SortRows(rows, SortConnects)
	return rows
}

// rank is the p-th percentile of sorted by the nearest-rank method.
func rank(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100 // ceil(n*p/100)
	return sorted[max(i-1, 0)]
}

// peerBefore breaks a tie between two peers: a server connected to
// before a client accepted from, then by address.
func peerBefore(a, b netip.AddrPort) bool {
	if (a.Port() == 0) != (b.Port() == 0) {
		return a.Port() != 0
	}
	return a.Compare(b) < 0
}

// SortKey orders connwatch top's rows.
type SortKey uint8

const (
	SortConnects SortKey = iota
	SortFailures
	SortAccepts
	SortLatency
	SortName
)

// SortRows sorts rows by key, busiest (or slowest) first, then by name.
func SortRows(rows []TopRow, key SortKey) {
	slices.SortStableFunc(rows, func(a, b TopRow) int {
		var c int
		switch key {
		case SortConnects:
			c = cmp.Compare(b.Connects, a.Connects)
		case SortFailures:
			c = cmp.Compare(b.Failures, a.Failures)
		case SortAccepts:
			c = cmp.Compare(b.Accepts, a.Accepts)
		case SortLatency:
			c = cmp.Compare(b.P99, a.P99)
		}
		if c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Workload, b.Workload), cmp.Compare(a.PID, b.PID))
	})
}

// Flush does nothing: Snapshot reads what Emit counted.
func (t *Top) Flush(context.Context) error { return nil }

// Shutdown does nothing.
func (t *Top) Shutdown(context.Context) error { return nil }
