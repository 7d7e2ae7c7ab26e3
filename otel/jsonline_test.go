package otel

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

func TestJSONLineMatchesEncodingJSON(t *testing.T) {
	enc := new(jsonEncoder) // one encoder throughout: scratch reuse must not leak between lines
	var buf []byte
	for _, c := range jlCases() {
		for _, extra := range []bool{false, true} {
			kvs, res := jlResource(t, jlResourceAttrs(c.ev, extra))
			resJSON := appendResourceJSON(nil, kvs)
			if want := jlEncode(t, res); !bytes.Equal(append(resJSON, '\n'), want) {
				t.Errorf("%s: resource:\n got %s\nwant %s", c.name, resJSON, want)
			}
			name := fmt.Sprintf("%s/extra=%v", c.name, extra)
			for _, observed := range []time.Time{jlObserved, {}} {
				for _, withSpan := range []bool{false, true} {
					buf = enc.appendLogLine(buf[:0], c.ev, resJSON, observed, withSpan, jlTraceID, jlSpanID)
					want := jlOracleLog(t, c.ev, res, observed, withSpan, jlTraceID, jlSpanID)
					jlCompare(t, fmt.Sprintf("%s: log observed=%v span=%v", name, !observed.IsZero(), withSpan), buf, want)
				}
			}
			s, ok := spanOf(c.ev)
			if !ok {
				continue
			}
			buf = enc.appendSpanLine(buf[:0], c.ev, &s, resJSON, jlTraceID, jlSpanID)
			jlCompare(t, name+": span", buf, jlOracleSpan(t, c.ev, &s, res, jlTraceID, jlSpanID))
		}
	}
}

// TestJSONLineEdges covers what the mapping does not produce today: no
// resource, spans of other kinds and statuses, zero times and IDs, and a
// dst that already holds a line.
func TestJSONLineEdges(t *testing.T) {
	enc := new(jsonEncoder)
	ev := jlResult(-int64(unix.ECONNREFUSED))
	for _, res := range [][]byte{nil, {}, []byte("{}"), appendResourceJSON(nil, nil)} {
		got := enc.appendLogLine(nil, ev, res, jlObserved, true, jlTraceID, jlSpanID)
		jlCompare(t, fmt.Sprintf("log resource %q", res), got, jlOracleLog(t, ev, nil, jlObserved, true, jlTraceID, jlSpanID))
	}
	if got := appendResourceJSON(nil, nil); string(got) != "{}" {
		t.Errorf("empty resource: %s", got)
	}
	zero := jlConnect()
	zero.Time = time.Time{}
	jlCompare(t, "log without times", enc.appendLogLine(nil, zero, nil, time.Time{}, true, [16]byte{}, [8]byte{}),
		jlOracleLog(t, zero, nil, time.Time{}, true, [16]byte{}, [8]byte{}))

	kvs, resMap := jlResource(t, jlResourceAttrs(ev, true))
	resJSON := appendResourceJSON(nil, kvs)
	spans := []spanSpec{
		{name: jlNasty, kind: trace.SpanKindInternal, code: codes.Error},
		{name: "x", kind: trace.SpanKindProducer, start: jlOutcome, end: jlAttempt, code: codes.Ok, description: "ignored"},
		{name: "y", kind: trace.SpanKind(42), start: jlAttempt, end: jlOutcome, code: codes.Error, description: jlNasty},
		{name: "", kind: trace.SpanKindConsumer, end: jlOutcome},
	}
	for i, s := range spans {
		jlCompare(t, fmt.Sprintf("span %d", i), enc.appendSpanLine(nil, ev, &s, resJSON, jlTraceID, jlSpanID),
			jlOracleSpan(t, ev, &s, resMap, jlTraceID, jlSpanID))
	}

	// Appending keeps what dst holds.
	s, _ := spanOf(ev)
	first := enc.appendLogLine([]byte("prefix\n"), ev, resJSON, jlObserved, true, jlTraceID, jlSpanID)
	both := enc.appendSpanLine(first, ev, &s, resJSON, jlTraceID, jlSpanID)
	want := append([]byte("prefix\n"), jlOracleLog(t, ev, resMap, jlObserved, true, jlTraceID, jlSpanID)...)
	want = append(want, jlOracleSpan(t, ev, &s, resMap, jlTraceID, jlSpanID)...)
	if !bytes.Equal(both, want) {
		t.Errorf("appended lines:\n got %s\nwant %s", both, want)
	}
}

func TestJSONLineAllocs(t *testing.T) {
	enc := new(jsonEncoder)
	buf := make([]byte, 0, 8192)
	for _, c := range jlCases() {
		if c.name == "unknown-errno" {
			continue // event.ErrnoName formats an errno it does not know
		}
		kvs, _ := jlResource(t, jlResourceAttrs(c.ev, false))
		resJSON := appendResourceJSON(nil, kvs)
		s, hasSpan := spanOf(c.ev)
		line := func() {
			buf = enc.appendLogLine(buf[:0], c.ev, resJSON, jlObserved, hasSpan, jlTraceID, jlSpanID)
			if hasSpan {
				buf = enc.appendSpanLine(buf, c.ev, &s, resJSON, jlTraceID, jlSpanID)
			}
		}
		line() // warm the encoder's scratch
		if n := testing.AllocsPerRun(100, line); n != 0 {
			t.Errorf("%s: %v allocations per line, want 0", c.name, n)
		}
	}
}

// TestJSONLineAllocsManyShapes checks that more attribute key sequences
// than a jsonEncoder remembers, taking turns, cost no allocation either.
func TestJSONLineAllocsManyShapes(t *testing.T) {
	type line struct {
		ev      *event.Event
		res     []byte
		s       spanSpec
		hasSpan bool
	}
	var lines []line
	shapes := map[string]bool{}
	for _, c := range jlCases() {
		if c.name == "unknown-errno" {
			continue
		}
		kvs, _ := jlResource(t, jlResourceAttrs(c.ev, false))
		s, ok := spanOf(c.ev)
		lines = append(lines, line{c.ev, appendResourceJSON(nil, kvs), s, ok})
		var keys []string
		for _, kv := range appendAttributes(nil, c.ev) {
			keys = append(keys, string(kv.Key))
		}
		shapes[fmt.Sprint(keys)] = true
	}
	if len(shapes) <= jsonShapes {
		t.Fatalf("only %d shapes, want more than %d", len(shapes), jsonShapes)
	}
	t.Logf("%d shapes", len(shapes))
	enc := new(jsonEncoder)
	buf := make([]byte, 0, 8192)
	all := func() {
		for _, l := range lines {
			buf = enc.appendLogLine(buf[:0], l.ev, l.res, jlObserved, l.hasSpan, jlTraceID, jlSpanID)
			if l.hasSpan {
				buf = enc.appendSpanLine(buf, l.ev, &l.s, l.res, jlTraceID, jlSpanID)
			}
		}
	}
	all()
	if n := testing.AllocsPerRun(20, all); n != 0 {
		t.Errorf("%v allocations per round of %d events, want 0", n, len(lines))
	}
}

// BenchmarkJSONLine measures one log line and one span line of a failed
// connect result with a host process's resource.
func BenchmarkJSONLine(b *testing.B) {
	ev := jlResult(-int64(unix.ECONNREFUSED))
	kvs, _ := jlResource(b, jlResourceAttrs(ev, false))
	resJSON := appendResourceJSON(nil, kvs)
	s, _ := spanOf(ev)
	enc := new(jsonEncoder)
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.appendLogLine(buf[:0], ev, resJSON, jlObserved, true, jlTraceID, jlSpanID)
		buf = enc.appendSpanLine(buf, ev, &s, resJSON, jlTraceID, jlSpanID)
	}
	b.SetBytes(int64(len(buf)))
}
