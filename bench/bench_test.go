package main

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel"
	"github.com/connwatch/connwatch/pipeline"
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
	var got []event.Event
	for i, b := range s {
		var evs [2]event.Event
		n, err := d.DecodeSample(b, &evs)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		got = append(got, evs[:n]...)
	}
	if len(got) != eventsPerConnection || len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i, w := range want {
		ev := got[i]
		if ev.EventID != w.id || ev.HostPID != 4242 || ev.Comm != "bench" || ev.Protocol != "TCP" ||
			ev.Remote != netip.MustParseAddrPort(w.remote) || ev.Local != netip.MustParseAddrPort(w.local) {
			t.Errorf("event %d decoded as %+v", i, ev)
		}
		if w.id == event.TCPConnectResult && ev.Duration() != 40*time.Microsecond {
			t.Errorf("result duration %v, want 40µs", ev.Duration())
		}
	}
}

// TestReceiverCounts exports the records of synthetic connections through
// the agent's event path and exporter to the counting receiver and checks
// its counts.
func TestReceiverCounts(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, srv := serveReceiver(lis)
	defer srv.Stop()
	r.watch(8080)

	exp, err := otel.New(context.Background(), otel.Options{Endpoint: "http://" + lis.Addr().String(), Traces: true, Logs: true,
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	path := pipeline.New(pipeline.Options{Sink: exp})
	const conns = 50
	for i := range conns {
		port := uint16(8080)
		if i%10 == 0 {
			port = 9090 // another server: counted in the totals only
		}
		for _, b := range connectionSamples(4242, 1, 0, "bench", 1_000_000, uint16(40000+i), port) {
			if err := path.Handle(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := exp.Shutdown(context.Background()); err != nil {
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

func TestParseMetrics(t *testing.T) {
	text := `# HELP connwatch_dropped_total Samples, events or records dropped, by stage and reason.
# TYPE connwatch_dropped_total counter
connwatch_dropped_total{stage="reader",reason="queue_full"} 0
connwatch_dropped_total{stage="export",reason="queue_full",signal="logs"} 12
connwatch_dropped_total{stage="kernel",reason="buffer_full"} 3
connwatch_lost_samples_total{cpu="0"} 1
connwatch_lost_samples_total{cpu="1"} 2
connwatch_records_emitted_total{signal="traces"} 10
connwatch_records_exported_total{signal="traces"} 9
connwatch_bpf_run_time_seconds_total{program="x"} 0.25
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	d := summarizeDrops(m, nil)
	if !d.Scraped || d.Dropped != 15 || d.Lost != 3 || d.Emitted != 10 || d.Exported != 9 || len(d.NonZero) != 2 {
		t.Errorf("summary %+v", d)
	}
	if c := d.cell(); !strings.HasPrefix(c, "15 (") {
		t.Errorf("cell %q", c)
	}
	if d := summarizeDrops(promMetrics{}, nil); d.Scraped {
		t.Errorf("no dropped family: %+v", d)
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

// TestReportSkipped prints the report of a run where every part was
// skipped, and of one with made-up figures: no panic, and the targets
// table has its six rows.
func TestReportSkipped(t *testing.T) {
	r := &results{started: time.Now(), emptyErr: errSkipped, pipeErr: errSkipped}
	r.agent.Err, r.events.Err, r.stdout.Err, r.peer.Err, r.loss.Err = errSkipped, errSkipped, errSkipped, errSkipped, errSkipped
	var b strings.Builder
	printReport(&b, options{rateDur: time.Second, lossDur: time.Second}, r)
	out := b.String()
	for _, s := range []string{"Targets", "user space end to end", "connection rate with the agent", "records delivered at full speed",
		"stdout OTel JSON lines", "agent RSS at full speed", "BPF time per connection"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}

	r = &results{started: time.Now(), emptyErr: errSkipped}
	r.baseA = loadResult{Conns: 1000, Elapsed: time.Second}
	r.baseB = r.baseA
	r.agent = rateRun{Load: loadResult{Conns: 950, Elapsed: time.Second}}
	r.events.Err, r.peer.Err = errSkipped, errSkipped
	r.stdout = rateRun{Load: loadResult{Conns: 990, Elapsed: time.Second}, CPU: 0.2, Drops: dropSummary{Scraped: true}}
	r.loss = lossRun{Load: loadResult{Conns: 10, Elapsed: time.Second}, Expected: counts{ClientSpans: 10}, Delivered: counts{ClientSpans: 10},
		Drops: dropSummary{Scraped: true}, EndMem: memStatus{HWM: 50 << 20}}
	r.pipe = pipelineResult{E2E: stageResult{Events: 300_000, Elapsed: time.Second, Mallocs: 300_000},
		Expected: counts{ClientSpans: 5}, Delivered: counts{ClientSpans: 5}}
	b.Reset()
	printReport(&b, options{rateDur: time.Second, lossDur: time.Second}, r)
	out = b.String()
	if i := strings.Index(out, "Targets"); i < 0 || strings.Count(out[i:], "| met ") != 6 {
		t.Errorf("want the 6 targets met:\n%s", out)
	}
}
