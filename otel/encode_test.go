package otel

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

// validText is s as a receiver must see it: proto3 strings are UTF-8, so
// each byte of invalid UTF-8 becomes U+FFFD, as in the JSON lines
// (encoding/json's rule).
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // an invalid byte ranges as one RuneError
		b.WriteRune(r)
	}
	return b.String()
}

// okv is an attribute as a receiver decodes it.
type okv struct {
	Key   string
	Value any
}

func (kv okv) String() string { return fmt.Sprintf("%s=%#v", kv.Key, kv.Value) }

// wantKVs is what a receiver must decode of kvs, in order.
func wantKVs(kvs []attribute.KeyValue) []okv {
	out := make([]okv, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, okv{validText(string(kv.Key)), wantValue(kv.Value)})
	}
	return out
}

func wantValue(v attribute.Value) any {
	switch v.Type() {
	case attribute.BOOL:
		return v.AsBool()
	case attribute.INT64:
		return v.AsInt64()
	case attribute.FLOAT64:
		return v.AsFloat64()
	case attribute.STRING:
		return validText(v.AsString())
	case attribute.BOOLSLICE:
		return anySlice(v.AsBoolSlice(), func(b bool) any { return b })
	case attribute.INT64SLICE:
		return anySlice(v.AsInt64Slice(), func(i int64) any { return i })
	case attribute.FLOAT64SLICE:
		return anySlice(v.AsFloat64Slice(), func(f float64) any { return f })
	case attribute.STRINGSLICE:
		return anySlice(v.AsStringSlice(), func(s string) any { return validText(s) })
	}
	return fmt.Sprintf("unexpected type %v", v.Type())
}

func anySlice[E any](s []E, f func(E) any) []any {
	out := make([]any, 0, len(s))
	for _, e := range s {
		out = append(out, f(e))
	}
	return out
}

// gotKVs is kvs as decoded, in order.
func gotKVs(kvs []*commonpb.KeyValue) []okv {
	out := make([]okv, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, okv{kv.GetKey(), otlptest.Value(kv.GetValue())})
	}
	return out
}

func checkKVs(t testing.TB, what string, got []*commonpb.KeyValue, want []attribute.KeyValue) {
	t.Helper()
	if g, w := gotKVs(got), wantKVs(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %v\nwant %v", what, g, w)
	}
}

// wantNanos is t as OTLP Unix nanoseconds: 0 for the zero time and
// before 1970. ok is false beyond 2262, where UnixNano is undefined and
// nothing is promised.
func wantNanos(t time.Time) (n uint64, ok bool) {
	switch {
	case t.IsZero() || t.Before(time.Unix(0, 0)):
		return 0, true
	case t.After(time.Unix(0, math.MaxInt64)):
		return 0, false
	}
	return uint64(t.UnixNano()), true
}

// wantResource is the resource of ev's records, as the mapping builds it.
func wantResource(t testing.TB, o *Options, ev *event.Event) []attribute.KeyValue {
	t.Helper()
	base, err := baseAttributes(o)
	if err != nil {
		t.Fatal(err)
	}
	attrs := appendWorkloadAttributes(base, ev, o.OmitCommandArgs)
	return resource.NewWithAttributes(semconv.SchemaURL, attrs...).Attributes()
}

// checkLog checks a decoded log record of ev field by field against the
// mapping; span is ev's span (nil when it has none).
func checkLog(t testing.TB, o *Options, ev *event.Event, l otlptest.Log, span *tracepb.Span, observed time.Time) {
	t.Helper()
	name := event.Name(ev.EventID)
	if l.EventName != name {
		t.Errorf("%s: event name %q", name, l.EventName)
	}
	if want, _ := wantNanos(ev.Time); l.TimeUnixNano != want {
		t.Errorf("%s: time %d, want %d", name, l.TimeUnixNano, want)
	}
	if want, _ := wantNanos(observed); l.ObservedTimeUnixNano != want {
		t.Errorf("%s: observed time %d, want %d", name, l.ObservedTimeUnixNano, want)
	}
	sev := severityOf(ev)
	if l.SeverityNumber != logspb.SeverityNumber(sev) || l.SeverityText != severityText(sev) {
		t.Errorf("%s: severity %v %q, want %v %q", name, l.SeverityNumber, l.SeverityText, sev, severityText(sev))
	}
	if _, ok := l.Body.GetValue().(*commonpb.AnyValue_StringValue); !ok {
		t.Errorf("%s: body %v is not a string", name, l.Body)
	} else if got, want := l.Body.GetStringValue(), validText(bodyOf(ev)); got != want {
		t.Errorf("%s: body\n got %q\nwant %q", name, got, want)
	}
	checkKVs(t, name+": log attributes", l.Attributes, appendAttributes(nil, ev))
	if tid, sid, _, ok := wantConnIDs(ev); ok && ev.IsClose() {
		// A close record carries the IDs of its end's span.
		if !bytes.Equal(l.TraceId, tid[:]) || !bytes.Equal(l.SpanId, sid[:]) || l.Flags != 1 {
			t.Errorf("%s: record %x/%x flags %#x, want the connection's %x/%x", name, l.TraceId, l.SpanId, l.Flags, tid, sid)
		}
	} else if span != nil {
		if !bytes.Equal(l.TraceId, span.TraceId) || !bytes.Equal(l.SpanId, span.SpanId) || l.Flags != 1 {
			t.Errorf("%s: record %x/%x flags %#x not linked to span %x/%x", name, l.TraceId, l.SpanId, l.Flags, span.TraceId, span.SpanId)
		}
	} else if len(l.TraceId) != 0 || len(l.SpanId) != 0 || l.Flags != 0 {
		t.Errorf("%s: record without a span has trace %x span %x flags %#x", name, l.TraceId, l.SpanId, l.Flags)
	}
	if l.DroppedAttributesCount != 0 {
		t.Errorf("%s: %d attributes dropped", name, l.DroppedAttributesCount)
	}
	checkKVs(t, name+": log resource", l.Resource.GetAttributes(), wantResource(t, o, ev))
	if l.Scope.GetName() != ScopeName || l.Scope.GetVersion() != "" {
		t.Errorf("%s: scope %v", name, l.Scope)
	}
}

// checkSpan checks a decoded span of ev field by field against the
// mapping.
func checkSpan(t testing.TB, o *Options, ev *event.Event, s otlptest.Span) {
	t.Helper()
	spec, ok := spanOf(ev)
	if !ok {
		t.Errorf("%s: a span for an event without one", event.Name(ev.EventID))
		return
	}
	name := event.Name(ev.EventID)
	if s.Name != spec.name {
		t.Errorf("%s: span name %q, want %q", name, s.Name, spec.name)
	}
	wantKind := tracepb.Span_SPAN_KIND_CLIENT
	if spec.kind == trace.SpanKindServer {
		wantKind = tracepb.Span_SPAN_KIND_SERVER
	}
	if s.Kind != wantKind {
		t.Errorf("%s: kind %v, want %v", name, s.Kind, wantKind)
	}
	start, okStart := wantNanos(spec.start)
	end, okEnd := wantNanos(spec.end)
	if okStart && s.StartTimeUnixNano != start {
		t.Errorf("%s: start %d, want %d", name, s.StartTimeUnixNano, start)
	}
	if okEnd && s.EndTimeUnixNano != end {
		t.Errorf("%s: end %d, want %d", name, s.EndTimeUnixNano, end)
	}
	if okStart && okEnd && s.StartTimeUnixNano > s.EndTimeUnixNano {
		t.Errorf("%s: span ends before it starts: %d..%d", name, s.StartTimeUnixNano, s.EndTimeUnixNano)
	}
	wantCode, wantMsg := tracepb.Status_STATUS_CODE_UNSET, ""
	if spec.code == codes.Error {
		wantCode, wantMsg = tracepb.Status_STATUS_CODE_ERROR, validText(spec.description)
	}
	if s.Status.GetCode() != wantCode || s.Status.GetMessage() != wantMsg {
		t.Errorf("%s: status %v, want %v %q", name, s.Status, wantCode, wantMsg)
	}
	if len(s.TraceId) != 16 || bytes.Equal(s.TraceId, make([]byte, 16)) || len(s.SpanId) != 8 || bytes.Equal(s.SpanId, make([]byte, 8)) {
		t.Errorf("%s: IDs %x/%x", name, s.TraceId, s.SpanId)
	}
	// W3C sampled, and whether the parent is remote is known: a SERVER
	// span's CLIENT span is; a CLIENT span has none.
	wantFlags := 0x01 | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	var wantParent []byte
	if tid, sid, parent, ok := wantConnIDs(ev); ok {
		if !bytes.Equal(s.TraceId, tid[:]) || !bytes.Equal(s.SpanId, sid[:]) {
			t.Errorf("%s: IDs %x/%x, want the connection's %x/%x", name, s.TraceId, s.SpanId, tid, sid)
		}
		if ev.IsAccept() {
			wantParent = parent[:]
			wantFlags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
		}
	}
	if !bytes.Equal(s.ParentSpanId, wantParent) || s.TraceState != "" || len(s.Events) != 0 || len(s.Links) != 0 {
		t.Errorf("%s: parent %x (want %x), or not a plain span: %v", name, s.ParentSpanId, wantParent, s.Span)
	}
	if s.Flags != wantFlags {
		t.Errorf("%s: flags %#x, want %#x", name, s.Flags, wantFlags)
	}
	checkKVs(t, name+": span attributes", s.Attributes, appendAttributes(nil, ev))
	checkKVs(t, name+": span resource", s.Resource.GetAttributes(), wantResource(t, o, ev))
	if s.Scope.GetName() != ScopeName || s.Scope.GetVersion() != "" {
		t.Errorf("%s: scope %v", name, s.Scope)
	}
}

// checkSchemaURLs checks the schema URL of every resource entry.
func checkSchemaURLs(t testing.TB, tt, lt *memTransport) {
	t.Helper()
	for _, req := range tt.TraceRequests() {
		for _, rs := range req.ResourceSpans {
			if rs.SchemaUrl != semconv.SchemaURL {
				t.Errorf("ResourceSpans schema URL %q", rs.SchemaUrl)
			}
		}
	}
	for _, req := range lt.LogRequests() {
		for _, rl := range req.ResourceLogs {
			if rl.SchemaUrl != semconv.SchemaURL {
				t.Errorf("ResourceLogs schema URL %q", rl.SchemaUrl)
			}
		}
	}
}

func oracleEvents() map[string]*event.Event {
	unknownFamily := connectEvent()
	unknownFamily.Remote, unknownFamily.Local, unknownFamily.RemoteFamily, unknownFamily.Protocol = netip.AddrPort{}, netip.AddrPort{}, 1, ""
	unknownFamilyResult := resultEvent(-int64(unix.ETIMEDOUT))
	unknownFamilyResult.Remote, unknownFamilyResult.RemoteFamily = netip.AddrPort{}, 99
	noWorkload := resultEvent(-int64(unix.ECONNREFUSED))
	noWorkload.Workload = nil
	noWorkload.Comm = "wget"
	nameless := connectEvent()
	nameless.Workload, nameless.Comm = nil, ""
	v6 := connectEvent()
	v6.EventID, v6.Protocol = event.TCPConnectResultV6, "TCPv6"
	v6.Remote = netip.MustParseAddrPort("[2001:db8::1]:8443")
	v6.Local = netip.MustParseAddrPort("[2001:db8::2]:40000")
	v6.Start, v6.StartKernelTime, v6.Retval = time.Time{}, v6.KernelTime-5000, -4095
	named := resultEvent(0)
	named.ISN, named.HasISN = 0x9abcdef0, true
	named.Local = netip.MustParseAddrPort("10.0.0.1:51001")
	namedAccept := acceptEvent()
	namedAccept.ISN, namedAccept.HasISN = 0x9abcdef0, true
	namedAccept.Remote = netip.MustParseAddrPort("[::ffff:10.0.0.1]:51001")
	return map[string]*event.Event{
		"established with isn":  named,
		"accept with isn":       namedAccept,
		"close":                 closeEvent(false, 0),
		"close accepted reset":  closeEvent(true, -int64(unix.ECONNRESET)),
		"connect":               connectEvent(),
		"established":           resultEvent(0),
		"refused":               resultEvent(-111),
		"accept":                acceptEvent(),
		"unknown family":        unknownFamily,
		"unknown family result": unknownFamilyResult,
		"nil workload":          noWorkload,
		"nameless":              nameless,
		"v6 unknown errno":      v6,
	}
}

// TestEncodedMatchesMapping decodes the span and log record of each test
// event and checks them field by field against the mapping functions
// (spanOf, appendAttributes, bodyOf, severityOf, event.Name, the
// resource of appendWorkloadAttributes), one event per exporter and all
// of them in one batch.
func TestEncodedMatchesMapping(t *testing.T) {
	for _, omit := range []bool{false, true} {
		for name, ev := range oracleEvents() {
			t.Run(fmt.Sprintf("%s/omit=%v", name, omit), func(t *testing.T) {
				o := testOptions()
				o.OmitCommandArgs = omit
				e, tt, lt := newTestExporter(t, o)
				e.Emit(ev)
				flush(t, e)
				logs, spans := lt.Logs(), tt.Spans()
				_, wantSpan := spanOf(ev)
				if len(logs) != 1 || len(spans) != map[bool]int{false: 0, true: 1}[wantSpan] {
					t.Fatalf("%d records, %d spans", len(logs), len(spans))
				}
				var span *tracepb.Span
				if wantSpan {
					checkSpan(t, &o, ev, spans[0])
					span = spans[0].Span
				}
				checkLog(t, &o, ev, logs[0], span, tObserved)
				checkSchemaURLs(t, tt, lt)
				if st := e.Stats(); st.LogsExported != 1 || st.SpansExported != uint64(len(spans)) {
					t.Errorf("stats %+v", st)
				}
			})
		}
	}

	t.Run("one batch", func(t *testing.T) {
		o := testOptions()
		o.BatchTimeout = time.Hour
		e, tt, lt := newTestExporter(t, o)
		var evs []*event.Event
		for _, ev := range oracleEvents() {
			evs = append(evs, ev)
			e.Emit(ev)
		}
		flush(t, e)
		if len(tt.TraceRequests()) != 1 || len(lt.LogRequests()) != 1 {
			t.Fatalf("%d trace, %d log requests", len(tt.TraceRequests()), len(lt.LogRequests()))
		}
		checkSchemaURLs(t, tt, lt)
		// Records are grouped by resource; find each event's by its body.
		logs := map[string]otlptest.Log{}
		for _, l := range lt.Logs() {
			logs[l.Body.GetStringValue()] = l
		}
		spans := map[string]otlptest.Span{}
		for _, s := range tt.Spans() {
			spans[string(s.SpanId)] = s
		}
		if len(logs) != len(evs) {
			t.Fatalf("%d distinct records for %d events", len(logs), len(evs))
		}
		for _, ev := range evs {
			l, ok := logs[bodyOf(ev)]
			if !ok {
				t.Errorf("no record %q", bodyOf(ev))
				continue
			}
			var span *tracepb.Span
			if _, wantSpan := spanOf(ev); wantSpan {
				s, ok := spans[string(l.SpanId)]
				if !ok {
					t.Errorf("no span for %q", bodyOf(ev))
					continue
				}
				checkSpan(t, &o, ev, s)
				span = s.Span
				delete(spans, string(l.SpanId))
			}
			checkLog(t, &o, ev, l, span, tObserved)
		}
		if len(spans) != 0 {
			t.Errorf("spans of no event: %v", spans)
		}
	})
}

// TestEncodeInvalidUTF8: strings from the kernel and /proc (comm,
// executable path, argv, cgroup) and OTEL_RESOURCE_ATTRIBUTES can hold any
// bytes, but a protobuf string must be UTF-8 or the receiver rejects the
// whole request. They arrive with each invalid byte as U+FFFD, as the
// JSON lines write them, and the other records of the request arrive.
func TestEncodeInvalidUTF8(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour
	o.Getenv = func(k string) string {
		if k == EnvResourceAttributes {
			return "team=a%ffb,k\xfe=v" // values are percent-decoded, keys are not
		}
		return ""
	}
	e, tt, lt := newTestExporter(t, o)
	bad := resultEvent(-int64(unix.ECONNRESET))
	w := *bad.Workload
	w.ExeName, w.ExePath, w.Cgroup = "cu\xffrl", "/usr/bin/cu\xffrl", "/x\xc3"
	w.Args = []string{"cu\xffrl", "\xe2\x80", "ok"}
	bad.Workload = &w
	bad.Comm, bad.Protocol = "c\x80omm", "TCP\xff"
	bad.Remote = netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone("eth\xff0"), 443)
	good := acceptEvent()
	e.Emit(bad)
	e.Emit(good)
	flush(t, e)

	st := e.Stats()
	if st.SpansExported != 2 || st.LogsExported != 2 || st.SpansFailed != 0 || st.LogsFailed != 0 {
		t.Fatalf("stats %+v", st)
	}
	spans, logs := tt.Spans(), lt.Logs()
	if len(spans) != 2 || len(logs) != 2 {
		t.Fatalf("%d spans, %d records", len(spans), len(logs))
	}
	checkSpan(t, &o, bad, spans[0])
	checkLog(t, &o, bad, logs[0], spans[0].Span, tObserved)
	checkSpan(t, &o, good, spans[1])
	checkLog(t, &o, good, logs[1], spans[1].Span, tObserved)
	res := spans[0].ResourceAttrs()
	if res["service.name"] != "cu\uFFFDrl" || res["team"] != "a\uFFFDb" || res["k\uFFFD"] != "v" {
		t.Errorf("resource %v", res)
	}
	if got := logs[0].Body.GetStringValue(); !strings.HasPrefix(got, "cu\uFFFDrl connect 10.0.0.1:51000 -> [fe80::1%eth\uFFFD0]:443 reset") {
		t.Errorf("body %q", got)
	}
}

// FuzzEncode emits an event with arbitrary fields (and a well-formed one
// after it, in the same batch) and checks that every export request body
// decodes and that the decoded records carry what the mapping says.
// fuzzExporter is an Exporter that FuzzEncode reuses across inputs.
type fuzzExporter struct {
	o      Options
	e      *Exporter
	tt, lt *memTransport
}

var fuzzExporters [2]fuzzExporter // OmitCommandArgs false, true

// statsSince returns the counters FuzzEncode checks, as changes since
// before.
func statsSince(now, before Stats) Stats {
	return Stats{
		Ignored:       now.Ignored - before.Ignored,
		LogsExported:  now.LogsExported - before.LogsExported,
		SpansExported: now.SpansExported - before.SpansExported,
		LogsFailed:    now.LogsFailed - before.LogsFailed,
		SpansFailed:   now.SpansFailed - before.SpansFailed,
	}
}

func FuzzEncode(f *testing.F) {
	for i := range fuzzExporters {
		o := testOptions()
		o.BatchTimeout = time.Hour
		o.OmitCommandArgs = i == 1
		e, tt, lt := newTestExporter(f, o)
		fuzzExporters[i] = fuzzExporter{o: o, e: e, tt: tt, lt: lt}
	}
	v4 := []byte{93, 184, 216, 34}
	v6 := netip.MustParseAddr("2001:db8::1").AsSlice()
	f.Add(uint32(0), int64(0), uint8(1), v4, uint16(443), uint8(1), []byte{10, 0, 0, 1}, uint16(51000), uint16(unix.AF_INET),
		"curl", "TCP", "https://example.com/", tAttempt.UnixNano(), int64(0), uint64(1e9), uint64(0), uint32(0), true)
	f.Add(uint32(4), int64(-111), uint8(1), v4, uint16(443), uint8(1), []byte{10, 0, 0, 1}, uint16(51000), uint16(unix.AF_INET),
		"curl", "TCP", "-s", tOutcome.UnixNano(), tAttempt.UnixNano(), uint64(2e9), uint64(1234567), uint32(0), true)
	f.Add(uint32(3), int64(0), uint8(3), v4, uint16(51000), uint8(3), []byte{10, 0, 0, 2}, uint16(443), uint16(unix.AF_INET6),
		"nginx", "TCPv6", "daemon off;", tOutcome.UnixNano(), int64(0), uint64(2e9), uint64(0), uint32(4026532500), true)
	f.Add(uint32(5), int64(-110), uint8(2), v6, uint16(8443), uint8(0), []byte(nil), uint16(0), uint16(unix.AF_INET6),
		"", "", "", int64(0), int64(0), uint64(5), uint64(10), uint32(7), false)
	f.Add(uint32(2), int64(0), uint8(0), []byte(nil), uint16(0), uint8(0), []byte(nil), uint16(0), uint16(1),
		"c\xffomm", "TCP\x80", "\xe2\x80", int64(-1), int64(math.MaxInt64), uint64(math.MaxUint64), uint64(math.MaxUint64), uint32(1), true)
	f.Add(uint32(1), int64(math.MinInt64), uint8(4), append(v6, "eth\xff0"...), uint16(65535), uint8(4), append(v6, "\"\\\n"...), uint16(1),
		uint16(0), "\x00\x01", "\u2028", "naïve 世界", int64(math.MinInt64), int64(1), uint64(0), uint64(1), uint32(math.MaxUint32), true)
	f.Add(uint32(7+8*999), int64(1), uint8(1), v4, uint16(1), uint8(1), v4, uint16(2), uint16(2),
		"x", "y", "z", int64(1), int64(2), uint64(3), uint64(4), uint32(5), false)

	f.Fuzz(func(t *testing.T, idSel uint32, retval int64, rsel uint8, raddr []byte, rport uint16, lsel uint8, laddr []byte, lport uint16,
		family uint16, comm, protocol, arg string, timeNS, startNS int64, kt, dur uint64, pidNS uint32, withWorkload bool,
	) {
		ids := [...]uint32{event.TCPConnect, event.TCPAccept, event.TCPConnectV6, event.TCPAcceptV6, event.TCPConnectResult, event.TCPConnectResultV6,
			event.TCPClose, event.TCPCloseV6}
		ev := &event.Event{
			KernelTime:      kt,
			StartKernelTime: kt - dur,
			PidNS:           pidNS,
			MntNS:           pidNS / 3,
			HostPPID:        idSel >> 16,
			HostPID:         idSel>>8 + 1,
			PPID:            idSel >> 20,
			PID:             idSel >> 4,
			UID:             idSel >> 12,
			EventID:         idSel >> 3,
			Retval:          retval,
			Comm:            comm,
			Protocol:        protocol,
			Remote:          fuzzAddr(rsel, raddr, rport),
			Local:           fuzzAddr(lsel, laddr, lport),
			RemoteFamily:    family,
		}
		if sel := idSel % 16; sel < uint32(len(ids)) {
			ev.EventID = ids[sel]
		}
		// The connection's identity and a close's account, from inputs
		// the corpus already varies.
		ev.ISN, ev.HasISN = uint32(dur), kt&1 == 1
		ev.Close = event.Close{BytesSent: dur, BytesReceived: kt, RTTMicros: pidNS, Retransmits: idSel,
			OldState: uint8(rport), Server: lsel&1 == 1}
		if timeNS != 0 {
			ev.Time = time.Unix(0, timeNS)
		}
		if startNS != 0 {
			ev.Start = time.Unix(0, startNS)
		}
		if withWorkload {
			ev.Workload = &event.Workload{
				ExePath: "/bin/" + arg, ExeName: arg, Args: []string{comm, arg, protocol}, Owner: arg,
				StartTime: ev.Start, ContainerID: arg, Runtime: protocol, PodUID: comm, Cgroup: "/" + arg,
			}
		}

		// One exporter per option set serves every input of this
		// process: making one per input would cost more than the input.
		fe := fuzzExporters[pidNS%2]
		o, e, tt, lt := fe.o, fe.e, fe.tt, fe.lt
		tt.reset(t)
		lt.reset(t)
		before := e.Stats()
		fixed := resultEvent(-int64(unix.ECONNREFUSED))
		e.Emit(ev)
		e.Emit(fixed)
		flush(t, e)

		st := statsSince(e.Stats(), before)
		logs, spans := lt.Logs(), tt.Spans()
		_, fuzzSpan := spanOf(ev)
		wantLogs, wantSpans := 1, 1
		if mapped(ev) {
			wantLogs++
			if fuzzSpan {
				wantSpans++
			}
		} else if st.Ignored != 1 {
			t.Errorf("unmapped event %d not ignored: %+v", ev.EventID, st)
		}
		if len(logs) != wantLogs || len(spans) != wantSpans {
			t.Fatalf("event %d: %d records, %d spans; want %d, %d", ev.EventID, len(logs), len(spans), wantLogs, wantSpans)
		}
		if st.LogsExported != uint64(wantLogs) || st.SpansExported != uint64(wantSpans) || st.LogsFailed != 0 || st.SpansFailed != 0 {
			t.Errorf("stats %+v", st)
		}
		// The fuzzed event comes first: its resource entry is the
		// batch's first, or it shares the fixed event's and precedes it.
		checkSpan(t, &o, fixed, spans[len(spans)-1])
		checkLog(t, &o, fixed, logs[len(logs)-1], spans[len(spans)-1].Span, tObserved)
		if !mapped(ev) {
			return
		}
		var span *tracepb.Span
		if fuzzSpan {
			checkSpan(t, &o, ev, spans[0])
			span = spans[0].Span
		}
		checkLog(t, &o, ev, logs[0], span, tObserved)

		// The event's own fields, independently of appendAttributes.
		attrs := logs[0].Attrs()
		if attrs["connwatch.event_id"] != int64(ev.EventID) || attrs["connwatch.retval"] != retval {
			t.Errorf("event id %v retval %v", attrs["connwatch.event_id"], attrs["connwatch.retval"])
		}
		for _, end := range []struct {
			key string
			ap  netip.AddrPort
		}{{"network.peer", ev.Remote}, {"network.local", ev.Local}} {
			addr, port := attrs[end.key+".address"], attrs[end.key+".port"]
			if !end.ap.IsValid() {
				if addr != nil || port != nil {
					t.Errorf("%s of an invalid address: %v %v", end.key, addr, port)
				}
				continue
			}
			if want := validText(end.ap.Addr().Unmap().String()); addr != want || port != int64(end.ap.Port()) {
				t.Errorf("%s: %v %v, want %v %v", end.key, addr, port, want, end.ap.Port())
			}
		}
		if !ev.Remote.IsValid() && family != 0 && attrs["connwatch.remote_family"] != int64(family) {
			t.Errorf("remote family %v, want %d", attrs["connwatch.remote_family"], family)
		}
	})
}

// fuzzAddr makes an address of sel's kind from b: invalid, IPv4, IPv6,
// v4-mapped IPv6 or IPv6 with a zone of arbitrary bytes.
func fuzzAddr(sel uint8, b []byte, port uint16) netip.AddrPort {
	var a16 [16]byte
	copy(a16[:], b)
	var a netip.Addr
	switch sel % 5 {
	case 0:
		return netip.AddrPort{}
	case 1:
		a = netip.AddrFrom4([4]byte(a16[:4]))
	case 2:
		a = netip.AddrFrom16(a16)
	case 3:
		a = netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: a16[0], 13: a16[1], 14: a16[2], 15: a16[3]})
	case 4:
		zone := "z"
		if len(b) > 16 {
			zone = string(b[16:])
		}
		a = netip.AddrFrom16(a16).WithZone(zone)
	}
	return netip.AddrPortFrom(a, port)
}

// TestEncodeValue: every attribute value type a resource can hold
// (OTEL_RESOURCE_ATTRIBUTES, detectors) decodes as itself.
func TestEncodeValue(t *testing.T) {
	kvs := []attribute.KeyValue{
		attribute.String("s", "v"),
		attribute.String("empty", ""),
		attribute.Bool("t", true),
		attribute.Bool("f", false),
		attribute.Int64("neg", math.MinInt64),
		attribute.Int64("max", math.MaxInt64),
		attribute.Float64("pi", math.Pi),
		attribute.Float64("negzero", math.Copysign(0, -1)),
		attribute.StringSlice("ss", []string{"a", "", "c"}),
		attribute.Int64Slice("is", []int64{-1, 0, 1 << 40}),
		attribute.BoolSlice("bs", []bool{true, false}),
		attribute.Float64Slice("fs", []float64{1.5, -2}),
		attribute.StringSlice("none", nil),
	}
	var res resourcepb.Resource
	if err := proto.Unmarshal(encodeResource(kvs), &res); err != nil {
		t.Fatal(err)
	}
	checkKVs(t, "resource", res.Attributes, kvs)
	for _, kv := range res.Attributes {
		if kv.Key == "negzero" && !math.Signbit(kv.Value.GetDoubleValue()) {
			t.Error("-0 lost its sign")
		}
		if kv.Key == "none" && kv.Value.GetArrayValue() == nil {
			t.Error("empty string slice is not an empty array")
		}
	}
}

// TestSplitEntries: a body splits into its resource entries; anything
// else is refused (and the trace transport refuses it for good).
func TestSplitEntries(t *testing.T) {
	res := encodeResource([]attribute.KeyValue{attribute.String("service.name", "x")})
	var body []byte
	body = appendResourceEntry(body, res, scopeBytes, nil, semconv.SchemaURL)
	body = appendResourceEntry(body, res, scopeBytes, nil, "")
	var n int
	if !splitEntries(body, func([]byte) { n++ }) || n != 2 {
		t.Errorf("split %d entries", n)
	}
	for _, bad := range [][]byte{{0x12, 0}, {0x0a, 5, 1}, {0x0a}, {0xff}} {
		if splitEntries(bad, func([]byte) {}) {
			t.Errorf("%x: split", bad)
		}
	}
	if n := sizeResourceEntry(res, scopeBytes, 0, semconv.SchemaURL); n != len(appendResourceEntry(nil, res, scopeBytes, nil, semconv.SchemaURL)) {
		t.Errorf("sizeResourceEntry %d", n)
	}
	tr := &tracesTransport{}
	if _, err := tr.send(t.Context(), []byte{0xff}); err == nil {
		t.Error("malformed body sent")
	} else if ok, _ := retryable(err); ok {
		t.Errorf("malformed body: %v is retryable", err)
	}
}
