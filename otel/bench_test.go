package otel

import (
	"context"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/metrics"
)

// newBenchExporter returns an Exporter whose transports discard.
func newBenchExporter(b *testing.B, o Options) *Exporter {
	b.Helper()
	e, err := newExporter(o, discardTransport{}, discardTransport{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

// connection returns the three events of one connection of the i-th
// workload: the attempt, its result and the accept at the other end.
func connection(i int) [3]*event.Event {
	res := workloadEvent(i)
	att := workloadEvent(i)
	att.EventID, att.Retval, att.Start, att.StartKernelTime = event.TCPConnect, 0, tAttempt, 0
	att.Time = tAttempt
	acc := acceptEvent()
	acc.HostPID += uint32(i)
	return [3]*event.Event{att, res, acc}
}

// BenchmarkEmit measures the event path: resource lookup, attribute
// mapping, span and log record encoding and hand-off to the queue, whose
// transports discard. One op is one connection's three events (attempt,
// result, accept): three log records and two spans.
func BenchmarkEmit(b *testing.B) {
	b.Run("connection", func(b *testing.B) {
		// 64 connections of 64 workloads (and their 64 peers) cycling,
		// all resources cached.
		conns := make([][3]*event.Event, 64)
		for i := range conns {
			conns[i] = connection(i)
		}
		e := newBenchExporter(b, testOptions())
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			for _, ev := range conns[i&63] {
				e.Emit(ev)
			}
			i++
		}
	})

	// The same with the connection metrics, and with them and sampling
	// at 1 % (what export.sampling.ratio: 0.01 costs and saves).
	for _, c := range []struct {
		name  string
		ratio float64
	}{{"connection-metrics", 1}, {"connection-metrics-sampled-0.01", 0.01}} {
		b.Run(c.name, func(b *testing.B) {
			conns := make([][3]*event.Event, 64)
			for i := range conns {
				conns[i] = connection(i)
			}
			o := testOptions()
			o.Metrics = metrics.New(metrics.Options{})
			o.Sampled, o.SampleRatio = c.ratio < 1, c.ratio
			e := newBenchExporter(b, o)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				for _, ev := range conns[i&63] {
					e.Emit(ev)
				}
				i++
			}
		})
	}

	cases := []struct {
		name string
		ev   func(i int) *event.Event
	}{
		{"connect", func(i int) *event.Event { return connection(i)[0] }},
		{"result", func(i int) *event.Event { return connection(i)[1] }},
		{"refused", func(i int) *event.Event {
			ev := workloadEvent(i)
			ev.Retval = -int64(unix.ECONNREFUSED)
			return ev
		}},
		{"accept", func(i int) *event.Event { return connection(i)[2] }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			events := make([]*event.Event, 64)
			for i := range events {
				events[i] = c.ev(i)
			}
			e := newBenchExporter(b, testOptions())
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.Emit(events[i&63])
				i++
			}
		})
	}

	// Every event a new workload beyond the cache: resource encoding.
	b.Run("new-workload", func(b *testing.B) {
		o := testOptions()
		o.MaxProviders = 64
		e := newBenchExporter(b, o)
		events := make([]*event.Event, 1024)
		for i := range events {
			events[i] = workloadEvent(i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e.Emit(events[i&1023])
			i++
		}
	})
}

var benchSink []byte

// BenchmarkEncodeSpan measures the encoding of one span into a reused
// buffer.
func BenchmarkEncodeSpan(b *testing.B) {
	for _, ev := range []*event.Event{resultEvent(-int64(unix.ECONNREFUSED)), acceptEvent()} {
		b.Run(event.Name(ev.EventID), func(b *testing.B) {
			var enc encoder
			spec, _ := spanOf(ev)
			var tid [traceIDLen]byte
			var sid [spanIDLen]byte
			tid[0], sid[0] = 1, 1
			buf := enc.appendSpan(nil, ev, &spec, tid, sid)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = enc.appendSpan(buf[:0], ev, &spec, tid, sid)
			}
			benchSink = buf
		})
	}
}

// BenchmarkEncodeLog measures the encoding of one log record into a
// reused buffer.
func BenchmarkEncodeLog(b *testing.B) {
	for _, ev := range []*event.Event{connectEvent(), resultEvent(-int64(unix.ECONNREFUSED)), acceptEvent()} {
		b.Run(event.Name(ev.EventID), func(b *testing.B) {
			var enc encoder
			var tid [traceIDLen]byte
			var sid [spanIDLen]byte
			_, withSpan := spanOf(ev)
			buf := enc.appendLog(nil, ev, uint64(tObserved.UnixNano()), withSpan, tid, sid)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = enc.appendLog(buf[:0], ev, uint64(tObserved.UnixNano()), withSpan, tid, sid)
			}
			benchSink = buf
		})
	}
}

// TestEncodeAllocs: a warm encoder writes a connection's records without
// allocating.
func TestEncodeAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	var enc encoder
	ev := resultEvent(-int64(unix.ECONNREFUSED))
	spec, _ := spanOf(ev)
	var tid [traceIDLen]byte
	var sid [spanIDLen]byte
	buf := make([]byte, 0, 4096)
	buf = enc.appendSpan(buf, ev, &spec, tid, sid)
	buf = enc.appendLog(buf, ev, 1, true, tid, sid)
	if n := testing.AllocsPerRun(100, func() {
		buf = enc.appendSpan(buf[:0], ev, &spec, tid, sid)
		buf = enc.appendLog(buf, ev, 1, true, tid, sid)
	}); n != 0 {
		t.Errorf("encoding a span and a log record allocates %v times", n)
	}
}
