package otel

import (
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/connwatch/connwatch/event"
)

// FuzzEncodeWire is the encoder alone, cheap enough for make fuzz-long's
// 10^7 executions (FuzzEncode goes through an Exporter and checks every
// field against the mapping, FuzzEventPath through every sink): an event
// of arbitrary fields is encoded as a span and a log record in a request
// body, which must decode, carry one record of each, and the event's
// name, times, IDs, attribute count, event ID and retval.
func FuzzEncodeWire(f *testing.F) {
	f.Add(uint32(event.TCPConnectResult), int64(-111), []byte{127, 0, 0, 1}, uint16(8080), []byte{127, 0, 0, 1}, uint16(40000),
		"curl", "TCP", int64(1e18), int64(1e18-1e6))
	f.Add(uint32(event.TCPAcceptV6), int64(0), []byte{0x20, 1, 0xd, 0xb8, 15: 1}, uint16(443), []byte(nil), uint16(0),
		"ngi\xffnx", "TCPv6", int64(0), int64(0))
	res := encodeResource(resourceAttrsForFuzz())
	f.Fuzz(func(t *testing.T, id uint32, retval int64, raddr []byte, rport uint16, laddr []byte, lport uint16,
		comm, protocol string, timeNS, startNS int64) {
		ev := &event.Event{EventID: id, Retval: retval, Comm: comm, Protocol: protocol,
			Remote: wireAddr(raddr, rport), Local: wireAddr(laddr, lport), RemoteFamily: 2}
		if timeNS > 0 {
			ev.Time = time.Unix(0, timeNS)
		}
		if startNS > 0 {
			ev.Start = time.Unix(0, startNS)
		}
		spec, ok := spanOf(ev)
		if !ok {
			spec = spanSpec{name: SpanNameAccept, kind: trace.SpanKindServer, start: ev.Time, end: ev.Time}
		}
		var enc encoder
		tid := [traceIDLen]byte{1, 2, 3}
		sid := [spanIDLen]byte{4, 5, 6}
		spans := enc.appendSpan(nil, ev, &spec, tid, sid)
		logs := enc.appendLog(nil, ev, 42, true, tid, sid)

		var treq coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(appendResourceEntry(nil, res, scopeBytes, spans, semconv.SchemaURL), &treq); err != nil {
			t.Fatalf("span does not decode: %v", err)
		}
		var lreq collogpb.ExportLogsServiceRequest
		if err := proto.Unmarshal(appendResourceEntry(nil, res, scopeBytes, logs, semconv.SchemaURL), &lreq); err != nil {
			t.Fatalf("log record does not decode: %v", err)
		}
		s := treq.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0]
		l := lreq.GetResourceLogs()[0].GetScopeLogs()[0].GetLogRecords()[0]
		want := len(appendAttributes(nil, ev))
		if s.GetName() != spec.name || len(s.GetAttributes()) != want || len(l.GetAttributes()) != want {
			t.Errorf("span %q with %d attributes, log with %d; want %q, %d", s.GetName(), len(s.GetAttributes()), len(l.GetAttributes()), spec.name, want)
		}
		if s.GetStartTimeUnixNano() != unixNano(spec.start) || l.GetTimeUnixNano() != unixNano(ev.Time) || l.GetObservedTimeUnixNano() != 42 {
			t.Errorf("times %d %d %d", s.GetStartTimeUnixNano(), l.GetTimeUnixNano(), l.GetObservedTimeUnixNano())
		}
		if [traceIDLen]byte(l.GetTraceId()) != tid || [spanIDLen]byte(s.GetSpanId()) != sid || l.GetEventName() != event.Name(id) {
			t.Errorf("ids %x %x, event %q", l.GetTraceId(), s.GetSpanId(), l.GetEventName())
		}
		for _, kv := range l.GetAttributes() {
			switch kv.GetKey() {
			case string(AttrEventID):
				if kv.GetValue().GetIntValue() != int64(id) {
					t.Errorf("event id %v", kv.GetValue())
				}
			case string(AttrRetval):
				if kv.GetValue().GetIntValue() != retval {
					t.Errorf("retval %v", kv.GetValue())
				}
			}
		}
	})
}

// resourceAttrsForFuzz is a resource like the agent's for a host process.
func resourceAttrsForFuzz() []attribute.KeyValue {
	o := testOptions()
	base, _ := baseAttributes(&o)
	return appendWorkloadAttributes(base, connectEvent(), false)
}

// wireAddr is an IPv4 address from 4 bytes, IPv6 from 16 (a zone from
// what follows), invalid otherwise.
func wireAddr(b []byte, port uint16) netip.AddrPort {
	switch {
	case len(b) == 4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), port)
	case len(b) >= 16:
		a := netip.AddrFrom16([16]byte(b[:16]))
		if len(b) > 16 {
			a = a.WithZone(string(b[16:]))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}
