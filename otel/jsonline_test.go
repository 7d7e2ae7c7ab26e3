package otel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

// The helpers of this file are prefixed jl so that they stay apart from
// the package's shared test helpers.

var (
	jlAttempt  = tAttempt
	jlOutcome  = tOutcome
	jlObserved = tObserved
	jlStart    = time.Date(2026, 11, 25, 17, 0, 0, 0, time.FixedZone("CET", 3600))

	jlTraceID = [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	jlSpanID  = [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
)

// jlConnect is connectEvent with a process start time outside UTC, which
// the JSON must write in UTC.
func jlConnect() *event.Event {
	ev := connectEvent()
	ev.Workload.StartTime = jlStart
	return ev
}

// jlResult is resultEvent with jlConnect's start time.
func jlResult(retval int64) *event.Event {
	ev := resultEvent(retval)
	ev.Workload.StartTime = jlStart
	return ev
}

// jlAccept is an nginx in a container accepting a connection from remote
// on local.
func jlAccept(id uint32, local, remote string) *event.Event {
	return &event.Event{
		KernelTime: 2_000_000_000,
		Time:       jlAttempt.Add(time.Millisecond),
		PidNS:      4026532300, MntNS: 4026532301,
		HostPPID: 2000, HostPID: 2001, PPID: 1, PID: 7,
		EventID:      id,
		ArgNum:       3,
		Comm:         "nginx",
		Protocol:     "TCPv6",
		Remote:       netip.MustParseAddrPort(remote),
		Local:        netip.MustParseAddrPort(local),
		RemoteFamily: unix.AF_INET6,
		Workload: &event.Workload{
			ExePath:     "/usr/sbin/nginx",
			ExeName:     "nginx",
			Args:        []string{"nginx", "-g", "daemon off;"},
			Owner:       "root",
			StartTime:   jlStart.Add(time.Minute),
			ContainerID: "3f2a9c1b7d6e5f40123456789abcdef0123456789abcdef0123456789abcdef0",
			Runtime:     "containerd",
			PodUID:      "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
			Cgroup:      "/kubepods.slice/kubepods-pod1b4e28ba.slice/cri-containerd-3f2a.scope",
		},
	}
}

// jlNasty is text with everything encoding/json escapes or keeps: quotes,
// backslashes, every control byte, DEL, HTML characters, invalid UTF-8
// (a lone continuation byte, a truncated sequence at the end), U+2028,
// U+2029, non-ASCII and an astral character.
var jlNasty = func() string {
	var b []byte
	for c := range 0x20 {
		b = append(b, 'a', byte(c))
	}
	b = append(b, "\"q\" \\b\\ <&> \x7f é 世界 😀 \u2028\u2029 \xff\x80 \xe2\x80 x \xc3"...)
	return string(b)
}()

type jlCase struct {
	name string
	ev   *event.Event
}

func jlCases() []jlCase {
	cases := []jlCase{
		{"connect", jlConnect()},
		{"established", jlResult(0)},
		{"refused", jlResult(-int64(unix.ECONNREFUSED))},
		{"timeout", jlResult(-int64(unix.ETIMEDOUT))},
		{"accept4", jlAccept(event.TCPAccept, "10.0.0.2:443", "10.0.0.1:51000")},
		{"accept6", jlAccept(event.TCPAcceptV6, "[2001:db8::2]:443", "[2001:db8::1]:51000")},
		{"accept-mapped", jlAccept(event.TCPAcceptV6, "[::ffff:10.0.0.2]:443", "[::ffff:10.0.0.1]:51000")},
	}
	add := func(name string, base *event.Event, f func(*event.Event)) {
		f(base)
		cases = append(cases, jlCase{name, base})
	}
	add("unknown-family", jlConnect(), func(ev *event.Event) {
		ev.Remote, ev.RemoteFamily = netip.AddrPort{}, 99
	})
	add("unknown-family-result", jlResult(-int64(unix.ECONNREFUSED)), func(ev *event.Event) {
		ev.Remote, ev.RemoteFamily = netip.AddrPort{}, 99
	})
	add("no-local", jlConnect(), func(ev *event.Event) { ev.Local = netip.AddrPort{} })
	add("no-addresses", jlResult(-int64(unix.ETIMEDOUT)), func(ev *event.Event) {
		ev.Remote, ev.Local, ev.RemoteFamily = netip.AddrPort{}, netip.AddrPort{}, 0
	})
	add("accept-no-local", jlAccept(event.TCPAccept, "10.0.0.2:443", "10.0.0.1:51000"), func(ev *event.Event) {
		ev.Local = netip.AddrPort{}
	})
	add("zone", jlAccept(event.TCPAcceptV6, "[fe80::2%eth0]:443", "[fe80::1%eth0]:51000"), func(ev *event.Event) {
		// netip.ParseAddr rejects no zone text; make it one to escape.
		ev.Remote = netip.AddrPortFrom(ev.Remote.Addr().WithZone("a\"b\\c\n\xff"), ev.Remote.Port())
	})
	add("nil-workload", jlResult(-int64(unix.ECONNREFUSED)), func(ev *event.Event) { ev.Workload = nil })
	add("nil-workload-no-comm", jlConnect(), func(ev *event.Event) { ev.Workload, ev.Comm = nil, "" })
	add("no-protocol", jlConnect(), func(ev *event.Event) { ev.Protocol = "" })
	add("nasty-comm", jlConnect(), func(ev *event.Event) { ev.Workload, ev.Comm = nil, jlNasty })
	add("nasty-workload", jlResult(-int64(unix.ECONNRESET)), func(ev *event.Event) {
		w := *ev.Workload
		w.ExeName, w.ExePath, w.Owner, w.Cgroup = jlNasty, "/bin/"+jlNasty, jlNasty, jlNasty
		w.Args = []string{jlNasty, `--x="\y"`, "", "\u2028", "naïve"}
		ev.Workload = &w
	})
	add("unknown-errno", jlResult(-4095), func(*event.Event) {})
	add("no-start", jlResult(-int64(unix.EHOSTUNREACH)), func(ev *event.Event) {
		ev.Start, ev.StartKernelTime = time.Time{}, 0
	})
	add("no-time", jlResult(0), func(ev *event.Event) { ev.Time, ev.Start = time.Time{}, time.Time{} })
	add("long-duration", jlResult(0), func(ev *event.Event) {
		ev.Time = ev.Start.Add(90*time.Minute + 1)
		ev.KernelTime = ev.StartKernelTime + uint64(90*time.Minute+1)
	})
	add("local-zone-time", jlAccept(event.TCPAccept, "10.0.0.2:443", "10.0.0.1:51000"), func(ev *event.Event) {
		ev.Time = ev.Time.In(time.FixedZone("", -7*3600))
	})
	return cases
}

// jlResourceAttrs returns the resource attributes of ev as the pipeline
// builds them, plus extra ones of every value type a resource can carry
// (from OTEL_RESOURCE_ATTRIBUTES or a future detector).
func jlResourceAttrs(ev *event.Event, extra bool) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.OSTypeLinux, semconv.HostName("node-1"), semconv.HostID("0123abcd")}
	if extra {
		attrs = append(attrs,
			attribute.String("deployment.environment.name", jlNasty),
			attribute.String(jlNasty, "key to escape"),
			attribute.String("a\u2028b", "x"),
			attribute.Bool("x.bool", true),
			attribute.Bool("x.false", false),
			attribute.Int64("x.neg", math.MinInt64),
			attribute.Float64("x.float", 1.5),
			attribute.Float64("x.float.int", 3),
			attribute.Float64("x.float.tiny", 1e-7),
			attribute.Float64("x.float.huge", 1e21),
			attribute.Float64("x.float.big", 123456789012345678),
			attribute.Float64("x.float.negzero", math.Copysign(0, -1)),
			attribute.Float64("x.nan", math.NaN()),
			attribute.Float64("x.inf", math.Inf(1)),
			attribute.Float64("x.ninf", math.Inf(-1)),
			attribute.Float64Slice("x.floats", []float64{0.1, math.NaN(), 2e-9, -1e300}),
			attribute.Float64Slice("x.floats.empty", nil),
			attribute.Int64Slice("x.ints", []int64{1, -2, 3}),
			attribute.Int64Slice("x.ints.empty", []int64{}),
			attribute.BoolSlice("x.bools", []bool{true, false}),
			attribute.StringSlice("x.strings.empty", nil),
			attribute.StringSlice("x.strings.many", []string{"a", "b", "c", "d", "e", "f", "g"}),
			attribute.ByteSlice("x.bytes", []byte{0, 0xff, 'a', 0x10}),
			attribute.ByteSlice("x.bytes.empty", nil),
			attribute.Slice("x.slice", attribute.StringValue("s"), attribute.Int64Value(1),
				attribute.Float64Value(math.Inf(-1)), attribute.SliceValue()),
			attribute.Slice("x.slice.empty"),
			attribute.Map("x.map",
				attribute.String("z", "last"), attribute.Int("a", 1), attribute.String("z", "dup wins"),
				attribute.Map("m", attribute.Bool("b", true))),
			attribute.Map("x.map.empty"),
			attribute.KeyValue{Key: "x.empty.value"},
		)
	}
	return appendWorkloadAttributes(attrs, ev, false)
}

// jlResource returns the resource of attrs, as the pipeline would build
// it, and its attributes as the old exporter's map.
func jlResource(t testing.TB, attrs []attribute.KeyValue) ([]attribute.KeyValue, map[string]any) {
	t.Helper()
	res := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	kvs := res.Attributes()
	if len(kvs) == 0 {
		return kvs, nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = jsonValue(kv.Value)
	}
	return kvs, m
}

// jlAttrMap returns ev's attributes as the old exporter's map.
func jlAttrMap(ev *event.Event) map[string]any {
	kvs := appendAttributes(nil, ev)
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = jsonValue(kv.Value)
	}
	return m
}

func jlEncode(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	return buf.Bytes()
}

// jlOracleLog is what the old exporter wrote for ev's log record.
func jlOracleLog(t testing.TB, ev *event.Event, res map[string]any, observed time.Time, withSpan bool, tid [16]byte, sid [8]byte) []byte {
	tm := ev.Time
	if tm.IsZero() {
		tm = observed
	}
	l := LogLine{
		Type:         "log",
		Time:         formatTime(tm),
		ObservedTime: formatTime(observed),
		Event:        event.Name(ev.EventID),
		Severity:     severityText(severityOf(ev)),
		Body:         bodyOf(ev),
		Attributes:   jlAttrMap(ev),
		Resource:     res,
	}
	if withSpan {
		l.TraceID, l.SpanID = trace.TraceID(tid).String(), trace.SpanID(sid).String()
	}
	return jlEncode(t, l)
}

// jlOracleSpan is what the old exporter wrote for the span s of ev.
func jlOracleSpan(t testing.TB, ev *event.Event, s *spanSpec, res map[string]any, tid [16]byte, sid [8]byte) []byte {
	l := SpanLine{
		Type:       "span",
		Time:       formatTime(s.end),
		Name:       s.name,
		Kind:       s.kind.String(),
		Start:      formatTime(s.start),
		End:        formatTime(s.end),
		DurationNS: s.end.Sub(s.start).Nanoseconds(),
		Status:     "unset",
		TraceID:    trace.TraceID(tid).String(),
		SpanID:     trace.SpanID(sid).String(),
		Attributes: jlAttrMap(ev),
		Resource:   res,
	}
	if s.code == codes.Error {
		l.Status, l.StatusMessage = "error", s.description
	}
	return jlEncode(t, l)
}

func jlCompare(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
		return
	}
	if !json.Valid(got) || got[len(got)-1] != '\n' || bytes.Count(got, []byte{'\n'}) != 1 {
		t.Errorf("%s: not one JSON line: %q", what, got)
	}
}

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

// TestJSONAttrsObject feeds the visitor directly: more attributes than
// its array holds, repeated keys (the last wins, as in the old map) and
// keys to escape, in several orders so that the shapes differ.
func TestJSONAttrsObject(t *testing.T) {
	var a jsonAttrs
	for round := range 12 {
		a.reset()
		m := map[string]any{}
		for i := range 2*jsonAttrCap + round {
			k := fmt.Sprintf("k%02d", (i*7+round)%(jsonAttrCap+3))
			if i%5 == 0 {
				k += jlNasty[:i%len(jlNasty)]
			}
			switch i % 3 {
			case 0:
				a.str(&attrKey{name: k}, jlNasty[i%len(jlNasty):])
				m[k] = jlNasty[i%len(jlNasty):]
			case 1:
				a.int(&attrKey{name: k}, int64(i-30))
				m[k] = int64(i - 30)
			case 2:
				addr := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
				a.addr(&attrKey{name: k}, addr)
				m[k] = addr.String()
			}
		}
		got := append(a.appendObject(nil), '\n')
		if want := jlEncode(t, m); !bytes.Equal(got, want) {
			t.Errorf("round %d:\n got %s\nwant %s", round, got, want)
		}
	}
}

// TestJSONStringEscaping checks appendJSONString against encoding/json
// for every single byte, every rune around the special ones and
// truncated sequences, for both string and []byte input.
func TestJSONStringEscaping(t *testing.T) {
	var inputs []string
	for b := range 256 {
		inputs = append(inputs, string([]byte{byte(b)}), "x"+string([]byte{byte(b)})+"y")
	}
	for _, r := range []rune{0x7f, 0x80, 0x7ff, 0x800, 0x2027, 0x2028, 0x2029, 0x202a, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff} {
		s := string(r)
		inputs = append(inputs, s, "a"+s+"b")
		for i := 1; i < len(s); i++ {
			inputs = append(inputs, s[:i], s[:i]+"z", "z"+s[i:])
		}
	}
	inputs = append(inputs, "", jlNasty, "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf")
	for _, s := range inputs {
		want, err := json.Marshal(s) // differs only in escaping <, > and &
		if err != nil {
			t.Fatal(err)
		}
		want = bytes.ReplaceAll(want, []byte(`\u003c`), []byte("<"))
		want = bytes.ReplaceAll(want, []byte(`\u003e`), []byte(">"))
		want = bytes.ReplaceAll(want, []byte(`\u0026`), []byte("&"))
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("string %q: got %s, want %s", s, got, want)
		}
		if got := appendJSONString([]byte("p"), []byte(s)); !bytes.Equal(got[1:], want) {
			t.Errorf("[]byte %q: got %s, want %s", s, got[1:], want)
		}
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
