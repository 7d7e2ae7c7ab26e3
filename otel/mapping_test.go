package otel

import (
	"bytes"
	"maps"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/trace"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

func TestAttributes(t *testing.T) {
	tests := []struct {
		name string
		ev   *event.Event
		want map[string]any
	}{
		{
			name: "connect attempt",
			ev:   connectEvent(),
			want: map[string]any{
				"network.transport":     "tcp",
				"network.type":          "ipv4",
				"network.peer.address":  "93.184.216.34",
				"network.peer.port":     int64(443),
				"network.local.address": "10.0.0.1",
				"network.local.port":    int64(51000),
				"server.address":        "93.184.216.34",
				"server.port":           int64(443),
				"connwatch.event_id":    int64(400),
				"connwatch.retval":      int64(0),
				"connwatch.protocol":    "TCP",
				"connwatch.direction":   "outbound",
			},
		},
		{
			name: "established",
			ev:   resultEvent(0),
			want: map[string]any{
				"network.transport":     "tcp",
				"network.type":          "ipv4",
				"network.peer.address":  "93.184.216.34",
				"network.peer.port":     int64(443),
				"network.local.address": "10.0.0.1",
				"network.local.port":    int64(51000),
				"server.address":        "93.184.216.34",
				"server.port":           int64(443),
				"connwatch.event_id":    int64(410),
				"connwatch.retval":      int64(0),
				"connwatch.protocol":    "TCP",
				"connwatch.direction":   "outbound",
				"connwatch.outcome":     "established",
				"connwatch.duration_ns": int64(1234567),
			},
		},
		{
			name: "refused",
			ev:   resultEvent(-int64(unix.ECONNREFUSED)),
			want: map[string]any{
				"network.transport":     "tcp",
				"network.type":          "ipv4",
				"network.peer.address":  "93.184.216.34",
				"network.peer.port":     int64(443),
				"network.local.address": "10.0.0.1",
				"network.local.port":    int64(51000),
				"server.address":        "93.184.216.34",
				"server.port":           int64(443),
				"connwatch.event_id":    int64(410),
				"connwatch.retval":      -int64(unix.ECONNREFUSED),
				"connwatch.protocol":    "TCP",
				"connwatch.direction":   "outbound",
				"connwatch.outcome":     "refused",
				"connwatch.duration_ns": int64(1234567),
				"connwatch.error":       "ECONNREFUSED",
				"error.type":            "ECONNREFUSED",
			},
		},
		{
			name: "accept of a v4-mapped peer",
			ev:   acceptEvent(),
			want: map[string]any{
				"network.transport":     "tcp",
				"network.type":          "ipv4",
				"network.peer.address":  "10.0.0.1",
				"network.peer.port":     int64(51000),
				"network.local.address": "10.0.0.2",
				"network.local.port":    int64(443),
				"server.address":        "10.0.0.2",
				"server.port":           int64(443),
				"client.address":        "10.0.0.1",
				"client.port":           int64(51000),
				"connwatch.event_id":    int64(403),
				"connwatch.retval":      int64(0),
				"connwatch.protocol":    "TCPv6",
				"connwatch.direction":   "inbound",
			},
		},
		{
			name: "IPv6 attempt",
			ev: func() *event.Event {
				ev := connectEvent()
				ev.EventID, ev.Protocol = event.TCPConnectV6, "TCPv6"
				ev.Remote = netip.MustParseAddrPort("[2001:db8::1]:8443")
				ev.Local = netip.MustParseAddrPort("[2001:db8::2]:40000")
				return ev
			}(),
			want: map[string]any{
				"network.transport":     "tcp",
				"network.type":          "ipv6",
				"network.peer.address":  "2001:db8::1",
				"network.peer.port":     int64(8443),
				"network.local.address": "2001:db8::2",
				"network.local.port":    int64(40000),
				"server.address":        "2001:db8::1",
				"server.port":           int64(8443),
				"connwatch.event_id":    int64(402),
				"connwatch.retval":      int64(0),
				"connwatch.protocol":    "TCPv6",
				"connwatch.direction":   "outbound",
			},
		},
		{
			name: "undecoded address family",
			ev: func() *event.Event {
				ev := connectEvent()
				ev.Remote, ev.Local, ev.RemoteFamily, ev.Protocol = netip.AddrPort{}, netip.AddrPort{}, 1, ""
				return ev
			}(),
			want: map[string]any{
				"network.transport":       "tcp",
				"connwatch.remote_family": int64(1),
				"connwatch.event_id":      int64(400),
				"connwatch.retval":        int64(0),
				"connwatch.direction":     "outbound",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kvs := appendAttributes(nil, tt.ev)
			if got := attrMapOf(kvs); !equalMaps(got, tt.want) {
				t.Errorf("attributes:\n got %v\nwant %v", got, tt.want)
			}
			if len(kvs) != len(tt.want) {
				t.Errorf("%d attributes for %d keys: duplicates", len(kvs), len(tt.want))
			}
		})
	}
}

func equalMaps(a, b map[string]any) bool {
	return maps.EqualFunc(a, b, func(x, y any) bool {
		xs, xok := x.([]string)
		ys, yok := y.([]string)
		if xok || yok {
			return xok && yok && equalStrings(xs, ys)
		}
		return x == y
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSpanOf(t *testing.T) {
	if _, ok := spanOf(connectEvent()); ok {
		t.Error("a connect attempt has a span")
	}

	s, ok := spanOf(resultEvent(0))
	want := spanSpec{name: "tcp connect", kind: trace.SpanKindClient, start: tAttempt, end: tOutcome}
	if !ok || s != want {
		t.Errorf("established: got %+v, %v; want %+v", s, ok, want)
	}

	s, _ = spanOf(resultEvent(-int64(unix.ECONNREFUSED)))
	want.code, want.description = codes.Error, "ECONNREFUSED"
	if s != want {
		t.Errorf("refused: got %+v, want %+v", s, want)
	}

	s, _ = spanOf(resultEvent(-int64(unix.ETIMEDOUT)))
	if s.code != codes.Error || s.description != "ETIMEDOUT" {
		t.Errorf("timeout: got %+v", s)
	}

	ev := resultEvent(0)
	ev.Start = time.Time{} // no wall clock of the attempt: derived from the kernel times
	if s, _ = spanOf(ev); !s.start.Equal(tAttempt) || !s.end.Equal(tOutcome) {
		t.Errorf("without Start: %v .. %v", s.start, s.end)
	}

	ev = resultEvent(0)
	ev.Start = tOutcome.Add(time.Second) // clock step: never a negative duration
	if s, _ = spanOf(ev); s.end.Before(s.start) {
		t.Errorf("end %v before start %v", s.end, s.start)
	}

	s, ok = spanOf(acceptEvent())
	want = spanSpec{name: "tcp accept", kind: trace.SpanKindServer, start: tOutcome, end: tOutcome}
	if !ok || s != want {
		t.Errorf("accept: got %+v, %v; want %+v", s, ok, want)
	}

	if _, ok := spanOf(&event.Event{EventID: 999}); ok {
		t.Error("an unknown event has a span")
	}
}

func TestBody(t *testing.T) {
	noWorkload := connectEvent()
	noWorkload.Workload = nil
	noWorkload.Comm = "wget"
	tests := []struct {
		ev   *event.Event
		want string
	}{
		{connectEvent(), "curl connect 10.0.0.1:51000 -> 93.184.216.34:443"},
		{resultEvent(0), "curl connect 10.0.0.1:51000 -> 93.184.216.34:443 established after 1.235ms"},
		{resultEvent(-int64(unix.ECONNREFUSED)), "curl connect 10.0.0.1:51000 -> 93.184.216.34:443 refused (ECONNREFUSED) after 1.235ms"},
		{resultEvent(-int64(unix.EHOSTUNREACH)), "curl connect 10.0.0.1:51000 -> 93.184.216.34:443 unreachable (EHOSTUNREACH) after 1.235ms"},
		{acceptEvent(), "nginx accept 10.0.0.2:443 <- 10.0.0.1:51000"},
		{noWorkload, "wget connect 10.0.0.1:51000 -> 93.184.216.34:443"},
		{&event.Event{EventID: event.TCPConnect}, "unknown_service connect ? -> ?"},
	}
	for _, tt := range tests {
		if got := bodyOf(tt.ev); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

// decodeLog decodes one record appendLog wrote (a log_records field of
// ScopeLogs).
func decodeLog(t *testing.T, rec []byte) *logspb.LogRecord {
	t.Helper()
	var sl logspb.ScopeLogs
	if err := proto.Unmarshal(rec, &sl); err != nil {
		t.Fatal(err)
	}
	if len(sl.LogRecords) != 1 {
		t.Fatalf("%d records", len(sl.LogRecords))
	}
	return sl.LogRecords[0]
}

// TestEncodedLogRecord checks the log record the encoder writes for an
// event: event name, timestamps, severity, body, attributes and, with a
// span, its IDs.
func TestEncodedLogRecord(t *testing.T) {
	var enc encoder
	ev := resultEvent(-int64(unix.ECONNREFUSED))
	tid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	sid := [8]byte{8, 7, 6, 5, 4, 3, 2, 1}
	r := decodeLog(t, enc.appendLog(nil, ev, uint64(tObserved.UnixNano()), true, tid, sid))
	if r.EventName != "connwatch.tcp.connect.result" {
		t.Errorf("event name %q", r.EventName)
	}
	if r.TimeUnixNano != uint64(tOutcome.UnixNano()) || r.ObservedTimeUnixNano != uint64(tObserved.UnixNano()) {
		t.Errorf("timestamps %d, %d", r.TimeUnixNano, r.ObservedTimeUnixNano)
	}
	if r.SeverityNumber != logspb.SeverityNumber(log.SeverityWarn) || r.SeverityText != "WARN" {
		t.Errorf("severity %v %q", r.SeverityNumber, r.SeverityText)
	}
	if r.Body.GetStringValue() != bodyOf(ev) {
		t.Errorf("body %v", r.Body)
	}
	if got, want := otlptest.Attrs(r.Attributes), attrMapOf(appendAttributes(nil, ev)); !equalMaps(got, want) {
		t.Errorf("attributes\n got %v\nwant %v", got, want)
	}
	if !bytes.Equal(r.TraceId, tid[:]) || !bytes.Equal(r.SpanId, sid[:]) || r.Flags != 1 {
		t.Errorf("trace %x span %x flags %#x", r.TraceId, r.SpanId, r.Flags)
	}

	for _, ev := range []*event.Event{connectEvent(), resultEvent(0), acceptEvent()} {
		r := decodeLog(t, enc.appendLog(nil, ev, 0, false, tid, sid))
		if r.SeverityNumber != logspb.SeverityNumber(log.SeverityInfo) || r.SeverityText != "INFO" {
			t.Errorf("%s: severity %v %q", event.Name(ev.EventID), r.SeverityNumber, r.SeverityText)
		}
		if r.EventName != event.Name(ev.EventID) {
			t.Errorf("event name %q", r.EventName)
		}
		if len(r.TraceId) != 0 || len(r.SpanId) != 0 || r.Flags != 0 {
			t.Errorf("%s: IDs without a span: %x %x", event.Name(ev.EventID), r.TraceId, r.SpanId)
		}
	}
	for _, errno := range []unix.Errno{unix.ETIMEDOUT, unix.ECONNRESET, unix.ENETUNREACH, unix.ECONNABORTED} {
		ev := resultEvent(-int64(errno))
		if sev := severityOf(ev); sev != log.SeverityWarn || severityText(sev) != "WARN" {
			t.Errorf("%v: severity %v", errno, sev)
		}
		if r := decodeLog(t, enc.appendLog(nil, ev, 0, false, tid, sid)); r.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_WARN {
			t.Errorf("%v: encoded severity %v", errno, r.SeverityNumber)
		}
	}
}

// TestEncodedSpan checks the span the encoder writes against spanOf.
func TestEncodedSpan(t *testing.T) {
	var enc encoder
	tid := [16]byte{15: 1}
	sid := [8]byte{7: 2}
	for _, ev := range []*event.Event{resultEvent(0), resultEvent(-int64(unix.ECONNREFUSED)), acceptEvent()} {
		spec, _ := spanOf(ev)
		var ss tracepb.ScopeSpans
		if err := proto.Unmarshal(enc.appendSpan(nil, ev, &spec, tid, sid), &ss); err != nil || len(ss.Spans) != 1 {
			t.Fatalf("%v, %d spans", err, len(ss.Spans))
		}
		s := ss.Spans[0]
		kind := tracepb.Span_SPAN_KIND_CLIENT
		if ev.IsAccept() {
			kind = tracepb.Span_SPAN_KIND_SERVER
		}
		if s.Name != spec.name || s.Kind != kind || s.StartTimeUnixNano != uint64(spec.start.UnixNano()) ||
			s.EndTimeUnixNano != uint64(spec.end.UnixNano()) || !bytes.Equal(s.TraceId, tid[:]) || !bytes.Equal(s.SpanId, sid[:]) {
			t.Errorf("span %v for %+v", s, spec)
		}
		wantCode := tracepb.Status_STATUS_CODE_UNSET
		if spec.code == codes.Error {
			wantCode = tracepb.Status_STATUS_CODE_ERROR
		}
		if s.Status.GetCode() != wantCode || s.Status.GetMessage() != spec.description {
			t.Errorf("status %v, want %v %q", s.Status, wantCode, spec.description)
		}
		if got, want := otlptest.Attrs(s.Attributes), attrMapOf(appendAttributes(nil, ev)); !equalMaps(got, want) {
			t.Errorf("attributes\n got %v\nwant %v", got, want)
		}
	}
}
