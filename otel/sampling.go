package otel

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/connwatch/connwatch/event"
)

// sampler is the Exporter's sampling state (Options.Sampled): the records
// of a successful connection are kept when its trace ID is below the
// bound, those of a failed one always.
//
// The decision is the OpenTelemetry TraceIDRatioBased one: the last 8
// bytes of the trace ID, shifted right once, below ratio × 2^63. Both ends
// of a connection derive the same trace ID (connIDs), so an agent on the
// client and one on the server keep or drop the connection alike.
type sampler struct {
	sampling bool
	bound    uint64
	// held is a connect attempt waiting for its result: in tracepoint
	// mode the kernel sends both in one sample, the attempt first, and
	// the attempt alone does not say whether its connection fails.
	held       event.Event
	hasHeld    bool
	sampledOut atomic.Uint64 // records (log records and spans) left out
}

// ratioBound is the bound of a ratio: 0 keeps no successful connection,
// 1 (or more) every one.
func ratioBound(ratio float64) uint64 {
	switch {
	case ratio >= 1:
		return 1 << 63
	case ratio <= 0:
		return 0
	}
	return uint64(ratio * (1 << 63))
}

// keepTrace reports whether the trace tid is in the sample.
func keepTrace(tid *[traceIDLen]byte, bound uint64) bool {
	return binary.BigEndian.Uint64(tid[8:])>>1 < bound
}

// sample reports whether ev's records are to be sent now, counting those
// it leaves out. An attempt without its connection's initial sequence
// number is held until the next event: its result, whose decision then
// applies to both (an unpaired attempt is sent). e.mu is held.
func (e *Exporter) sample(ev *event.Event, wantSpan bool, ids *recordIDs) bool {
	if e.hasHeld {
		e.hasHeld = false
		h := &e.held
		if ev.IsResult() && h.Local == ev.Local && h.Remote == ev.Remote && h.HostPID == ev.HostPID {
			keep := e.keep(ev, ids)
			if keep {
				e.emitHeld()
			} else {
				e.leftOut(false)
				e.leftOut(wantSpan)
			}
			return keep
		}
		e.emitHeld()
	}
	if ev.IsConnect() && !ev.HasISN && !failed(ev) {
		e.held, e.hasHeld = *ev, true
		return false
	}
	if !e.keep(ev, ids) {
		e.leftOut(wantSpan)
		return false
	}
	return true
}

// keep is the decision for ev, whose records carry ids.
func (e *Exporter) keep(ev *event.Event, ids *recordIDs) bool {
	if failed(ev) {
		return true
	}
	if ids.with {
		return keepTrace(&ids.tid, e.bound)
	}
	var tid [traceIDLen]byte
	var sid [spanIDLen]byte
	if e.ids.ofEvent(ev, &tid, &sid, nil) {
		return keepTrace(&tid, e.bound)
	}
	// Nothing names the connection: a random decision at the same ratio.
	return e.rng.Uint64()>>1 < e.bound
}

// emitHeld sends the held attempt's log record. e.mu is held.
func (e *Exporter) emitHeld() {
	e.hasHeld = false
	h := &e.held
	e.emitRecords(h, e.workload(h), &spanSpec{}, false, &recordIDs{})
}

// releaseHeld sends a held attempt (before batches close). e.mu is held.
func (e *Exporter) releaseHeld() {
	if e.hasHeld {
		e.emitHeld()
	}
}

// leftOut counts the records of an event (its log record, and its span
// when wantSpan) that sampling left out.
func (e *Exporter) leftOut(wantSpan bool) {
	n := uint64(0)
	if e.logs != nil {
		n++
	}
	if wantSpan {
		n++
	}
	e.sampledOut.Add(n)
}
