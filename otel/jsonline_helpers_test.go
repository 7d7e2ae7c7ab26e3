package otel

// The inputs and the oracle of the JSON line tests: events of every shape
// the mapping produces, resources of every value type, and what
// encoding/json writes for the equivalent LogLine and SpanLine. The
// helpers are prefixed jl so that they stay apart from the package's
// shared test helpers.

import (
	"bytes"
	"encoding/json"
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
