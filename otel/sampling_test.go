package otel

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/metrics"
)

// sampledConn returns the result and the accept of the i-th connection
// from 127.0.0.1 to 127.0.0.2:8080, with retval for the result.
func sampledConn(i int, retval int64) (result, accept *event.Event) {
	result = resultEvent(retval)
	result.Local = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+i))
	result.Remote = netip.MustParseAddrPort("127.0.0.2:8080")
	result.ISN, result.HasISN = uint32(i)*2654435761, true
	accept = acceptEvent()
	accept.EventID = event.TCPAccept
	accept.Remote, accept.Local = result.Local, result.Remote
	accept.ISN, accept.HasISN = result.ISN, true
	return result, accept
}

// With a ratio of 0.1, about a tenth of the successful connections keep
// their spans and log records, at both ends alike; every failed one is
// kept; metrics count them all.
func TestSamplingRatio(t *testing.T) {
	o := testOptions()
	o.Sampled, o.SampleRatio = true, 0.1
	o.Metrics = metrics.New(metrics.Options{Peer: metrics.PeerNone, Now: func() time.Time { return tOutcome }})
	e, tt, lt := newTestExporter(t, o)
	const ok, refused = 2000, 20
	for i := range ok + refused {
		retval := int64(0)
		if i >= ok {
			retval = -111
		}
		res, acc := sampledConn(i, retval)
		e.Emit(res)
		if retval == 0 {
			e.Emit(acc)
		}
	}
	flush(t, e)

	clients, servers := map[string]bool{}, map[string]bool{}
	failedClients := 0
	for _, s := range tt.Spans() {
		id := hex.EncodeToString(s.Span.GetTraceId())
		switch s.Span.GetKind().String() {
		case "SPAN_KIND_CLIENT":
			if s.Attrs()["connwatch.outcome"] == "refused" {
				failedClients++
				continue
			}
			clients[id] = true
		case "SPAN_KIND_SERVER":
			servers[id] = true
		}
	}
	if failedClients != refused {
		t.Errorf("%d refused client spans arrived, want all %d", failedClients, refused)
	}
	if n := len(clients); n < ok*3/100 || n > ok*20/100 {
		t.Errorf("%d of %d successful client spans kept at ratio 0.1, want 3–20 %%", n, ok)
	}
	for id := range clients {
		if !servers[id] {
			t.Errorf("trace %s: client span kept, server span not", id)
		}
	}
	if len(servers) != len(clients) {
		t.Errorf("%d server spans kept, %d client spans", len(servers), len(clients))
	}
	if logs := len(lt.Logs()); logs != 2*len(clients)+refused {
		t.Errorf("%d log records, want one per kept span (%d)", logs, 2*len(clients)+refused)
	}
	want := uint64(2*(ok-len(clients))) * 2 // a log record and a span per event left out
	if got := e.SampledOut(); got != want {
		t.Errorf("SampledOut = %d, want %d", got, want)
	}

	var established, refusedCount int64
	for _, rm := range o.Metrics.Collect() {
		for _, m := range rm.ScopeMetrics[0].Metrics {
			if m.Name != metrics.NameConnections {
				continue
			}
			for _, p := range sumPoints(m) {
				switch out, _ := p.Attributes.Value("connwatch.outcome"); {
				case out.AsString() == "refused":
					refusedCount += p.Value
				case out.AsString() == "established":
					if d, _ := p.Attributes.Value("connwatch.direction"); d.AsString() == "outbound" {
						established += p.Value
					}
				}
			}
		}
	}
	if established != ok || refusedCount != refused {
		t.Errorf("metrics count %d established and %d refused, want %d and %d (before sampling)", established, refusedCount, ok, refused)
	}
}

// In tracepoint mode an attempt comes just before its result, without the
// connection's sequence number: it follows its result's decision.
func TestSamplingAttemptFollowsResult(t *testing.T) {
	o := testOptions()
	o.Sampled, o.SampleRatio = true, 0 // successes never kept
	e, tt, lt := newTestExporter(t, o)

	ok, _ := sampledConn(1, 0)
	okAttempt := *ok
	okAttempt.EventID, okAttempt.Retval, okAttempt.ISN, okAttempt.HasISN = event.TCPConnect, 0, 0, false
	e.Emit(&okAttempt)
	e.Emit(ok)

	bad, _ := sampledConn(2, -111)
	badAttempt := *bad
	badAttempt.EventID, badAttempt.Retval, badAttempt.ISN, badAttempt.HasISN = event.TCPConnect, 0, 0, false
	e.Emit(&badAttempt)
	e.Emit(bad)

	// An attempt whose result does not come next is sent as it is.
	lone, _ := sampledConn(3, 0)
	lone.EventID, lone.ISN, lone.HasISN = event.TCPConnect, 0, false
	e.Emit(lone)
	flush(t, e)

	logs := lt.Logs()
	if len(logs) != 3 {
		t.Fatalf("%d log records, want the refused attempt, its result and the lone attempt", len(logs))
	}
	names := map[string]int{}
	for _, l := range logs {
		names[l.LogRecord.GetEventName()]++
	}
	if names["connwatch.tcp.connect"] != 2 || names["connwatch.tcp.connect.result"] != 1 {
		t.Errorf("records %v", names)
	}
	if spans := tt.Spans(); len(spans) != 1 || spans[0].Attrs()["connwatch.outcome"] != "refused" {
		t.Errorf("spans %v, want the refused one", spans)
	}
}

func TestRatioBound(t *testing.T) {
	var all, none [traceIDLen]byte
	for i := range all {
		all[i] = 0xff
	}
	if !keepTrace(&all, ratioBound(1)) || keepTrace(&none, ratioBound(0)) || !keepTrace(&none, ratioBound(0.01)) || keepTrace(&all, ratioBound(0.99)) {
		t.Error("bounds: 1 keeps all, 0 none, a low ID is kept at 1 %, the highest not at 99 %")
	}
}
