package otel

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/connwatch/connwatch/event"
)

// Both ends of one connection, each as its own agent would see it: the
// client's result and close, the server's accept and close.
func connectionEnds(isn uint32) (result, accept, clientClose, serverClose *event.Event) {
	client := netip.MustParseAddrPort("10.0.0.1:51000")
	server := netip.MustParseAddrPort("10.0.0.2:443")
	result = resultEvent(0)
	result.Local, result.Remote, result.ISN, result.HasISN = client, server, isn, true
	accept = acceptEvent()
	// The server's socket is IPv6 and sees the client v4-mapped.
	accept.Local = netip.AddrPortFrom(netip.AddrFrom16(server.Addr().As16()), server.Port())
	accept.Remote = netip.AddrPortFrom(netip.AddrFrom16(client.Addr().As16()), client.Port())
	accept.ISN, accept.HasISN = isn, true
	clientClose = closeEvent(false, 0)
	clientClose.Local, clientClose.Remote, clientClose.ISN = client, server, isn
	serverClose = closeEvent(true, 0)
	serverClose.Local, serverClose.Remote, serverClose.ISN = accept.Local, accept.Remote, isn
	return result, accept, clientClose, serverClose
}

// One connection's spans and records, exported through one exporter as
// an agent that sees both ends does: one trace, the SERVER span under
// the CLIENT span, each close record with its end's span's IDs.
func TestConnectionOneTrace(t *testing.T) {
	e, tt, lt := newTestExporter(t, testOptions())
	result, accept, clientClose, serverClose := connectionEnds(0x12345678)
	for _, ev := range []*event.Event{result, accept, clientClose, serverClose} {
		e.Emit(ev)
	}
	flush(t, e)
	spans := tt.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	client, server := spans[0].Span, spans[1].Span
	if client.Name != SpanNameConnect {
		client, server = server, client
	}
	if !bytes.Equal(client.TraceId, server.TraceId) {
		t.Errorf("client trace %x, server trace %x: not one trace", client.TraceId, server.TraceId)
	}
	if !bytes.Equal(server.ParentSpanId, client.SpanId) || len(client.ParentSpanId) != 0 {
		t.Errorf("server span's parent %x, client span %x (its parent %x)", server.ParentSpanId, client.SpanId, client.ParentSpanId)
	}
	if bytes.Equal(server.SpanId, client.SpanId) {
		t.Errorf("both spans have ID %x", client.SpanId)
	}
	closes := 0
	for _, l := range lt.Logs() {
		if l.EventName != "connwatch.tcp.close" {
			continue
		}
		closes++
		want := client
		if l.Attrs()["connwatch.direction"] == "inbound" {
			want = server
		}
		if !bytes.Equal(l.TraceId, want.TraceId) || !bytes.Equal(l.SpanId, want.SpanId) {
			t.Errorf("%s close record %x/%x, want its span's %x/%x", l.Attrs()["connwatch.direction"], l.TraceId, l.SpanId, want.TraceId, want.SpanId)
		}
	}
	if closes != 2 {
		t.Errorf("%d close records, want 2", closes)
	}
}

// The derivation itself: the client end given in either address form
// agrees; another ISN, client port, client address or key gives other
// IDs; the server's address does not enter (destination NAT changes it
// between the ends).
func TestConnIDsDerivation(t *testing.T) {
	ids := newConnIDs([]byte(DefaultTraceKey))
	c4 := netip.MustParseAddrPort("10.0.0.1:51000")
	c6 := netip.AddrPortFrom(netip.AddrFrom16(c4.Addr().As16()), c4.Port())
	t1, cs1, ss1 := ids.derive(c4, 7)
	if t2, cs2, ss2 := ids.derive(c6, 7); t1 != t2 || cs1 != cs2 || ss1 != ss2 {
		t.Errorf("v4-mapped client gives other IDs")
	}
	if cs1 == ss1 {
		t.Errorf("client and server span IDs equal")
	}
	if t2, _, _ := ids.derive(c4, 8); t2 == t1 {
		t.Errorf("another ISN, the same trace")
	}
	if t2, _, _ := ids.derive(netip.AddrPortFrom(c4.Addr(), 51001), 7); t2 == t1 {
		t.Errorf("another client port, the same trace")
	}
	if t2, _, _ := ids.derive(netip.MustParseAddrPort("10.0.0.3:51000"), 7); t2 == t1 {
		t.Errorf("another client address, the same trace")
	}
	if t2, _, _ := newConnIDs([]byte("another key")).derive(c4, 7); t2 == t1 {
		t.Errorf("another key, the same trace")
	}

	// From events: each end's IDs as the other end computes them.
	result, accept, clientClose, serverClose := connectionEnds(7)
	var tid [16]byte
	var sid [8]byte
	var s spanSpec
	if !ids.ofEvent(result, &tid, &sid, nil) || tid != t1 || sid != cs1 {
		t.Errorf("result: %x/%x, want %x/%x", tid, sid, t1, cs1)
	}
	if !ids.ofEvent(accept, &tid, &sid, &s) || tid != t1 || sid != ss1 || !s.hasParent || s.parent != cs1 {
		t.Errorf("accept: %x/%x parent %x (%v), want %x/%x under %x", tid, sid, s.parent, s.hasParent, t1, ss1, cs1)
	}
	if !ids.ofEvent(clientClose, &tid, &sid, nil) || tid != t1 || sid != cs1 {
		t.Errorf("client close: %x/%x", tid, sid)
	}
	if !ids.ofEvent(serverClose, &tid, &sid, nil) || tid != t1 || sid != ss1 {
		t.Errorf("server close: %x/%x", tid, sid)
	}
	noISN := *result
	noISN.HasISN = false
	if ids.ofEvent(&noISN, &tid, &sid, nil) {
		t.Errorf("an event without an ISN named its connection")
	}
}

func BenchmarkConnIDs(b *testing.B) {
	ids := newConnIDs([]byte(DefaultTraceKey))
	c := netip.MustParseAddrPort("10.0.0.1:51000")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ids.derive(c, uint32(i))
	}
}

// The JSON lines carry the same trace context: the SERVER span names the
// CLIENT span as parent_span_id, each close line its end's span.
func TestStdoutConnectionOneTrace(t *testing.T) {
	out := &syncBuffer{}
	e := newStdoutExporter(t, testOptions(), out)
	result, accept, clientClose, serverClose := connectionEnds(0x12345678)
	for _, ev := range []*event.Event{result, accept, clientClose, serverClose} {
		e.Emit(ev)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := map[string]SpanLine{}
	var closes []LogLine
	for line := range strings.SplitSeq(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if strings.Contains(line, `"type":"span"`) {
			var s SpanLine
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatal(err)
			}
			spans[s.Kind] = s
		} else if strings.Contains(line, `"event":"connwatch.tcp.close"`) {
			var l LogLine
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatal(err)
			}
			closes = append(closes, l)
		}
	}
	client, server := spans["client"], spans["server"]
	if client.TraceID == "" || server.TraceID != client.TraceID || server.ParentSpanID != client.SpanID || client.ParentSpanID != "" {
		t.Errorf("client %+v\nserver %+v", client, server)
	}
	if len(closes) != 2 {
		t.Fatalf("%d close lines", len(closes))
	}
	for _, l := range closes {
		want := client
		if l.Attributes["connwatch.direction"] == "inbound" {
			want = server
		}
		if l.TraceID != want.TraceID || l.SpanID != want.SpanID {
			t.Errorf("close line %s/%s, its span %s/%s", l.TraceID, l.SpanID, want.TraceID, want.SpanID)
		}
	}
}

// documentedIDs computes a connection's IDs as the README documents them,
// independently of connIDs: HMAC-SHA256(key, 0x02 ‖ client address ‖
// client port ‖ isn), the address in its 16-byte form, port and ISN
// big-endian.
func documentedIDs(key string, client netip.AddrPort, isn uint32) (tid, clientSpan, serverSpan []byte) {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte{2})
	a := client.Addr().Unmap().As16()
	m.Write(a[:])
	m.Write([]byte{byte(client.Port() >> 8), byte(client.Port())})
	m.Write([]byte{byte(isn >> 24), byte(isn >> 16), byte(isn >> 8), byte(isn)})
	sum := m.Sum(nil)
	return sum[0:16], sum[16:24], sum[24:32]
}

// Two agents sharing only Options.TraceKey, one seeing the client end and
// one the server end: their spans join in one trace, with the IDs the
// README documents; an agent keyed otherwise computes another trace.
func TestTraceKeyJoinsTwoAgents(t *testing.T) {
	const key = "a cluster key, 32 bytes long...."
	opts := testOptions()
	opts.TraceKey = key
	clientAgent, clientSpans, _ := newTestExporter(t, opts)
	serverAgent, serverSpans, _ := newTestExporter(t, opts)
	otherAgent, otherSpans, _ := newTestExporter(t, testOptions())
	result, accept, _, _ := connectionEnds(0xdeadbeef)
	clientAgent.Emit(result)
	serverAgent.Emit(accept)
	otherAgent.Emit(result)
	for _, e := range []*Exporter{clientAgent, serverAgent, otherAgent} {
		flush(t, e)
	}
	if len(clientSpans.Spans()) != 1 || len(serverSpans.Spans()) != 1 || len(otherSpans.Spans()) != 1 {
		t.Fatalf("spans: client agent %d, server agent %d, other %d; want 1 each",
			len(clientSpans.Spans()), len(serverSpans.Spans()), len(otherSpans.Spans()))
	}
	client, server, other := clientSpans.Spans()[0].Span, serverSpans.Spans()[0].Span, otherSpans.Spans()[0].Span
	tid, cs, ss := documentedIDs(key, result.Local, 0xdeadbeef)
	if !bytes.Equal(client.TraceId, tid) || !bytes.Equal(client.SpanId, cs) {
		t.Errorf("client span %x/%x, documented %x/%x", client.TraceId, client.SpanId, tid, cs)
	}
	if !bytes.Equal(server.TraceId, tid) || !bytes.Equal(server.SpanId, ss) || !bytes.Equal(server.ParentSpanId, cs) {
		t.Errorf("server span %x/%x under %x, documented %x/%x under %x", server.TraceId, server.SpanId, server.ParentSpanId, tid, ss, cs)
	}
	dtid, dcs, _ := documentedIDs(DefaultTraceKey, result.Local, 0xdeadbeef)
	if !bytes.Equal(other.TraceId, dtid) || !bytes.Equal(other.SpanId, dcs) {
		t.Errorf("default-key span %x/%x, documented %x/%x", other.TraceId, other.SpanId, dtid, dcs)
	}
	if bytes.Equal(other.TraceId, client.TraceId) {
		t.Errorf("another key, the same trace %x", other.TraceId)
	}
}
