//go:build linux

package test

// The outage tests' account of what arrived (outage_test.go): each record a
// receiver got, matched to the connection it belongs to.

import (
	"fmt"
	"sort"
	"strings"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// The five records of a connection.
const (
	ogClientSpan = iota
	ogServerSpan
	ogLogConnect
	ogLogResult
	ogLogAccept
	ogKinds
)

var ogKindNames = [ogKinds]string{"CLIENT spans", "SERVER spans", "connect logs", "connect.result logs", "accept logs"}

// ogTally matches what a receiver got to the connections a test made to
// the listener on lport: a record belongs to the connection of its local
// (client) port whose dial was nearest its time (see match). It reads the
// receiver's new requests on each update.
type ogTally struct {
	r        *otlptest.Receiver
	lport    int64
	conns    []ogConn
	byPort   map[int][]int // port -> indices into conns, oldest first
	got      []uint8       // per connection, a bit per kind
	count    [ogKinds]int  // connections with that kind of record
	dups     [ogKinds]int  // records of a kind a connection already had
	strays   int           // records to lport of no connection made here
	dupNotes []string      // the first duplicates

	nTraceReqs, nLogReqs int
	onSpan               func(otlptest.Span)
	onLog                func(otlptest.Log)
}

func newOgTally(r *otlptest.Receiver, lport int) *ogTally {
	return &ogTally{r: r, lport: int64(lport), byPort: map[int][]int{}}
}

// add registers connections; call before update sees their records.
func (t *ogTally) add(conns []ogConn) {
	for _, c := range conns {
		t.byPort[c.port] = append(t.byPort[c.port], len(t.conns))
		t.conns = append(t.conns, c)
		t.got = append(t.got, 0)
	}
	for _, idx := range t.byPort {
		sort.Slice(idx, func(i, j int) bool { return t.conns[idx[i]].t0.Before(t.conns[idx[j]].t0) })
	}
}

// match returns the connection of port whose record has time ns, or -1:
// the one whose dial, from just before it began to just after it
// returned, lies nearest that time. A port can be used again within
// 100 ms (the client side of a connection the server closed first keeps
// no TIME_WAIT), so "the last one before" is not enough; an accept, or the
// kernel's time converted to wall-clock time, may be a few milliseconds
// off the dial.
func (t *ogTally) match(port int64, ns uint64) int {
	idx := t.byPort[int(port)]
	if len(idx) == 0 {
		return -1
	}
	ts := time.Unix(0, int64(ns))
	k := sort.Search(len(idx), func(i int) bool { return t.conns[idx[i]].t0.After(ts) })
	best, bestDist := -1, time.Duration(-1)
	for c := max(k-2, 0); c < min(k+2, len(idx)); c++ {
		conn := t.conns[idx[c]]
		var dist time.Duration
		switch {
		case ts.Before(conn.t0):
			dist = conn.t0.Sub(ts)
		case ts.After(conn.t1):
			dist = ts.Sub(conn.t1)
		}
		if bestDist < 0 || dist < bestDist {
			best, bestDist = idx[c], dist
		}
	}
	if bestDist > 2*time.Second {
		return -1
	}
	return best
}

func (t *ogTally) note(kind int, port any, ns uint64) {
	p, ok := port.(int64)
	if !ok {
		t.strays++
		return
	}
	i := t.match(p, ns)
	if i < 0 {
		t.strays++
		return
	}
	if t.got[i]&(1<<kind) != 0 {
		t.dups[kind]++
		if len(t.dupNotes) < 10 {
			t.dupNotes = append(t.dupNotes, fmt.Sprintf("%s of port %d at %s (connection made %s)", ogKindNames[kind], p,
				time.Unix(0, int64(ns)).Format("15:04:05.000"), t.conns[i].t0.Format("15:04:05.000")))
		}
		return
	}
	t.got[i] |= 1 << kind
	t.count[kind]++
}

// update reads the requests received since the last update.
func (t *ogTally) update() {
	treqs := t.r.TraceRequests()
	for _, req := range treqs[t.nTraceReqs:] {
		for _, s := range otlptest.SpansOf(req) {
			if t.onSpan != nil {
				t.onSpan(s)
			}
			a := s.Attrs()
			if a["server.port"] != t.lport {
				continue
			}
			switch {
			case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Name == "tcp connect":
				t.note(ogClientSpan, a["network.local.port"], s.StartTimeUnixNano)
			case s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Name == "tcp accept":
				t.note(ogServerSpan, a["client.port"], s.StartTimeUnixNano)
			}
		}
	}
	t.nTraceReqs = len(treqs)
	lreqs := t.r.LogRequests()
	for _, req := range lreqs[t.nLogReqs:] {
		for _, l := range otlptest.LogsOf(req) {
			if t.onLog != nil {
				t.onLog(l)
			}
			a := l.Attrs()
			if a["server.port"] != t.lport {
				continue
			}
			switch l.EventName {
			case "connwatch.tcp.connect":
				t.note(ogLogConnect, a["network.local.port"], l.TimeUnixNano)
			case "connwatch.tcp.connect.result":
				t.note(ogLogResult, a["network.local.port"], l.TimeUnixNano)
			case "connwatch.tcp.accept":
				t.note(ogLogAccept, a["client.port"], l.TimeUnixNano)
			}
		}
	}
	t.nLogReqs = len(lreqs)
}

// complete reports whether every connection has the records of kinds
// (every kind when none are given).
func (t *ogTally) complete(kinds ...int) bool {
	if len(kinds) == 0 {
		kinds = []int{ogClientSpan, ogServerSpan, ogLogConnect, ogLogResult, ogLogAccept}
	}
	for _, k := range kinds {
		if t.count[k] < len(t.conns) {
			return false
		}
	}
	return true
}

// wait updates until complete(kinds...) or timeout; it reports whether
// the tally is complete.
func (t *ogTally) wait(timeout time.Duration, kinds ...int) bool {
	deadline := time.Now().Add(timeout)
	for {
		t.update()
		if t.complete(kinds...) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Second)
	}
}

// summary says how many of each kind arrived and which are missing.
func (t *ogTally) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d connections:", len(t.conns))
	for k := range ogKinds {
		fmt.Fprintf(&b, " %s %d (missing %d, duplicates %d);", ogKindNames[k], t.count[k], len(t.conns)-t.count[k], t.dups[k])
	}
	fmt.Fprintf(&b, " records of no connection made here %d", t.strays)
	var ex []string
	for i, c := range t.conns {
		if t.got[i] != 1<<ogKinds-1 && len(ex) < 10 {
			has := make([]byte, ogKinds)
			for k := range ogKinds {
				has[k] = '0' + (t.got[i]>>k)&1
			}
			ex = append(ex, fmt.Sprintf("port %d at %s has %s", c.port, c.t0.Format("15:04:05.000"), has))
		}
	}
	if len(ex) > 0 {
		fmt.Fprintf(&b, "; first incomplete (bits: %s): %s", strings.Join(ogKindNames[:], ","), strings.Join(ex, ", "))
	}
	if len(t.dupNotes) > 0 {
		fmt.Fprintf(&b, "; first duplicates: %s", strings.Join(t.dupNotes, ", "))
	}
	return b.String()
}
