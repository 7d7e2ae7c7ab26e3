package event

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts kernel timestamps (bpf_ktime_get_ns: CLOCK_MONOTONIC
// nanoseconds since boot, excluding suspend) to wall-clock time.
//
// The offset between CLOCK_REALTIME and CLOCK_MONOTONIC moves when the
// system clock is stepped or slewed, so call Sync periodically. Wall and
// Sync are safe for concurrent use.
type Clock struct {
	offset atomic.Int64 // realtime - monotonic, ns
}

// NewClock returns a synchronised clock.
func NewClock() *Clock {
	c := &Clock{}
	c.Sync()
	return c
}

// Sync samples the offset. Of a few readings it keeps the one whose two
// realtime reads lie closest together, which bounds its error.
func (c *Clock) Sync() {
	best := int64(-1)
	var off int64
	for range 5 {
		t0 := time.Now().UnixNano()
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return
		}
		t1 := time.Now().UnixNano()
		if d := t1 - t0; best < 0 || d < best {
			best = d
			off = t0 + d/2 - ts.Nano()
		}
	}
	c.offset.Store(off)
}

// SetOffset fixes the offset (realtime - monotonic, ns), for tests.
func (c *Clock) SetOffset(ns int64) { c.offset.Store(ns) }

// Wall converts a kernel timestamp to wall-clock time.
func (c *Clock) Wall(ktime uint64) time.Time {
	return time.Unix(0, int64(ktime)+c.offset.Load())
}

// Stamp sets ev.Time, and ev.Start for a connect result or a close, from the event's
// kernel timestamps.
func (c *Clock) Stamp(ev *Event) {
	ev.Time = c.Wall(ev.KernelTime)
	if ev.StartKernelTime != 0 {
		ev.Start = c.Wall(ev.StartKernelTime)
	}
}
