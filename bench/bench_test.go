package main

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel"
)

func TestConnectionSamplesDecode(t *testing.T) {
	s := connectionSamples(4242, 1, 1000, "bench", 1_000_000, 40001, 8080)
	want := []struct {
		id            uint32
		remote, local string
	}{
		{event.TCPConnect, "127.0.0.1:8080", "127.0.0.1:40001"},
		{event.TCPConnectResult, "127.0.0.1:8080", "127.0.0.1:40001"},
		{event.TCPAccept, "127.0.0.1:40001", "127.0.0.1:8080"},
	}
	var d event.Decoder
	for i, w := range want {
		var ev event.Event
		if err := d.Decode(s[i], &ev); err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		if ev.EventID != w.id || ev.HostPID != 4242 || ev.Comm != "bench" || ev.Protocol != "TCP" ||
			ev.Remote != netip.MustParseAddrPort(w.remote) || ev.Local != netip.MustParseAddrPort(w.local) {
			t.Errorf("sample %d decoded as %+v", i, ev)
		}
		if w.id == event.TCPConnectResult && ev.Duration() != 40*time.Microsecond {
			t.Errorf("result duration %v, want 40µs", ev.Duration())
		}
	}
}

// TestReceiverCounts exports the records of synthetic connections through
// the real pipeline to the counting receiver and checks its counts.
func TestReceiverCounts(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, srv := serveReceiver(lis)
	defer srv.Stop()
	r.watch(8080)

	p, err := otel.New(context.Background(), otel.Options{Endpoint: "http://" + lis.Addr().String(), Traces: true, Logs: true,
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	clock := event.NewClock()
	var d event.Decoder
	const conns = 50
	for i := range conns {
		port := uint16(8080)
		if i%10 == 0 {
			port = 9090 // another server: counted in the totals only
		}
		for _, b := range connectionSamples(4242, 1, 0, "bench", 1_000_000, uint16(40000+i), port) {
			var ev event.Event
			if err := d.Decode(b, &ev); err != nil {
				t.Fatal(err)
			}
			clock.Stamp(&ev)
			p.Emit(&ev)
		}
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := r.counts()
	const n = conns - conns/10
	want := counts{ClientSpans: n, ServerSpans: n, ConnectLogs: n, ResultLogs: n, AcceptLogs: n,
		Spans: 2 * conns, Logs: 3 * conns, Requests: got.Requests}
	if got != want || got.Requests == 0 {
		t.Errorf("counts %+v, want %+v", got, want)
	}
}

func TestParseAgentLog(t *testing.T) {
	lines := []string{
		`time=2026-11-25T17:54:41.9Z level=INFO msg="probes attached" mode=tracepoint`,
		`time=2026-11-25T17:54:42.0Z level=WARN msg="kernel lost samples: perf buffer full" cpu=1 lost=12`,
		`time=2026-11-25T17:54:42.1Z level=WARN msg="kernel lost samples: perf buffer full" cpu=0 lost=3`,
		`time=2026-11-25T17:54:43.0Z level=INFO msg="counters at exit" attempts_tracked=10 results=10 event_write_errors=0 enrich_hits=29`,
	}
	l := parseAgentLog(lines)
	if l.Mode != "tracepoint" || l.LostSamples != 15 || l.LostWarnings != 2 {
		t.Errorf("parsed %+v", l)
	}
	if v, ok := l.counter("event_write_errors"); !ok || v != 0 {
		t.Errorf("event_write_errors %d %v", v, ok)
	}
	if v, _ := l.counter("enrich_hits"); v != 29 {
		t.Errorf("enrich_hits %d", v)
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := []byte("1234 (conn watch) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0\n")
	d, err := parseStatCPU(stat)
	if err != nil || d != 3*time.Second {
		t.Errorf("cpu %v %v, want 3s", d, err)
	}
}

func TestGroup(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestScanMalformed(t *testing.T) {
	for _, b := range [][]byte{{0x0a}, {0x0a, 0xff}, {0x0a, 0x05, 0x01}, {0x0b}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		var c counts
		if err := scanTraces(b, 0, &c); err == nil {
			t.Errorf("scanTraces(%x) accepted malformed input", b)
		}
		if err := scanLogs(b, 0, &c); err == nil {
			t.Errorf("scanLogs(%x) accepted malformed input", b)
		}
	}
}
