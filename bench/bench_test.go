package main

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/metrics"
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

// TestReceiverCounts exports the records and metrics of synthetic
// connections through the agent's event path and exporter to the counting
// receiver and checks its counts.
func TestReceiverCounts(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, srv := serveReceiver(lis)
	defer srv.Stop()
	r.watch(8080)

	store := metrics.New(metrics.Options{})
	exp, err := otel.New(context.Background(), otel.Options{Endpoint: "http://" + lis.Addr().String(), Traces: true, Logs: true,
		Metrics: store, SendMetrics: true, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	path := pipeline.New(pipeline.Options{Sink: exp})
	// Timed now: the metrics store drops series not updated for 5 minutes.
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	const conns = 50
	for i := range conns {
		port := uint16(8080)
		if i%10 == 0 {
			port = 9090 // another server: counted in the totals only
		}
		for _, b := range connectionSamples(4242, 1, 0, "bench", uint64(now.Nano()), uint16(40000+i), port) {
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
	// The metrics went once, at shutdown (the interval is a minute): one
	// request per workload, with the data points the store holds.
	ms := exp.MetricsStats()
	var points uint64
	for _, rm := range store.Collect() {
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					points += uint64(len(d.DataPoints))
				case metricdata.Histogram[float64]:
					points += uint64(len(d.DataPoints))
				default:
					t.Fatalf("metric %s: data %T not counted here", m.Name, d)
				}
			}
		}
	}
	want := counts{ClientSpans: n, ServerSpans: n, ConnectLogs: n, ResultLogs: n, AcceptLogs: n,
		Spans: 2 * conns, Logs: 3 * conns, Requests: got.Requests, MetricReqs: ms.Exports, MetricPoints: points}
	if got != want || got.Requests == 0 || ms.Exports == 0 || points == 0 {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	if ms.ExportErrors != 0 {
		t.Errorf("%d metric exports failed", ms.ExportErrors)
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
// table has its seven rows.
func TestReportSkipped(t *testing.T) {
	r := &results{started: time.Now(), emptyErr: errSkipped, pipeErr: errSkipped}
	r.agent.Err, r.events.Err, r.stdout.Err, r.peer.Err, r.loss.Err = errSkipped, errSkipped, errSkipped, errSkipped, errSkipped
	r.sampling.Err = errSkipped
	var b strings.Builder
	printReport(&b, options{rateDur: time.Second, lossDur: time.Second}, r)
	out := b.String()
	for _, s := range []string{"Targets", "user space end to end", "connection rate with the agent", "records delivered at full speed",
		"stdout OTel JSON lines", "agent RSS at full speed", "BPF time per connection", "connection rate, OTLP with sampling 0.01 vs OTLP off"} {
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
	run := func(conns uint64, cpu float64) rateRun {
		return rateRun{Load: loadResult{Conns: conns, Elapsed: time.Second}, CPU: cpu}
	}
	r.sampling = samplingResult{Off: []rateRun{run(1000, 0.2), run(1100, 0.2), run(900, 0.2)},
		On: []rateRun{run(960, 0.3), run(1000, 0.3), run(890, 0.3)}, Got: counts{ClientSpans: 30, MetricReqs: 3}, Conns: 2850}
	b.Reset()
	printReport(&b, options{rateDur: time.Second, lossDur: time.Second}, r)
	out = b.String()
	if i := strings.Index(out, "Targets"); i < 0 || strings.Count(out[i:], "| met ") != 7 {
		t.Errorf("want the 7 targets met:\n%s", out)
	}
	// The means of the interleaved runs, 950 of 1,000/s, and every run.
	for _, s := range []string{"950/s = 95.0 % of OTLP off (runs: 960/s, 1,000/s, 890/s; agent 0.30 cores)",
		"OTLP off: 1,000/s (runs: 1,000/s, 1,100/s, 900/s; agent 0.20 cores)", "30 client spans of 2,850 connections (1.05 %)"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q:\n%s", s, out)
		}
	}
	r.sampling.On[0] = run(950, 0.3) // mean 946.7/s: 94.7 %
	b.Reset()
	printReport(&b, options{rateDur: time.Second, lossDur: time.Second}, r)
	out = b.String()
	if i := strings.Index(out, "Targets"); i < 0 || !strings.Contains(out[i:], "| 94.7 % (947/s of 1,000/s) ") || strings.Count(out[i:], "**MISSED**") != 1 {
		t.Errorf("want the sampling target missed:\n%s", out)
	}
}
