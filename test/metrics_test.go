//go:build linux

package test

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// With export.sampling.ratio 0.1, 2 000 successful and 20 refused
// connections: about a tenth of the successful client spans (and the
// server spans of the same connections, decided alike on the trace ID)
// and every refused one reach the collector; the metrics count all of
// them, over OTLP under the test process's resource and on /metrics.
func TestSamplingAndMetrics(t *testing.T) {
	requireRoot(t)
	r := otlptest.Start(t)
	port := freePort(t)
	cfg := fmt.Sprintf("telemetry:\n  listen: 127.0.0.1:%d\nexport:\n  sampling:\n    ratio: 0.1\nmetrics:\n  interval: 1s\n", port)
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", writeTempConfig(t, cfg))

	srv := serveClosing(t, "tcp4", "127.0.0.1:0")
	srvPort := int(srv.addr.Port())
	const ok, refused = 2000, 20
	srv.dial(t, nil, ok)
	closed := freePort(t)
	for range refused {
		if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", closed)); err == nil {
			c.Close()
			t.Fatalf("port %d accepted a connection", closed)
		}
	}
	pid := int64(os.Getpid())

	// The OTLP metrics: cumulative, so the last point of each series is
	// its count.
	var established, refusedN int64
	var durations uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		established, refusedN, durations = 0, 0, 0
		for _, p := range r.Points() {
			if p.Resource["process.pid"] != pid || p.Attrs["connwatch.direction"] != "outbound" {
				continue
			}
			switch {
			case p.Metric == "connwatch.tcp.connections" && p.Attrs["server.port"] == int64(srvPort) && p.Attrs["connwatch.outcome"] == "established":
				established = max(established, p.Value)
			case p.Metric == "connwatch.tcp.connections" && p.Attrs["server.port"] == int64(closed) && p.Attrs["connwatch.outcome"] == "refused":
				refusedN = max(refusedN, p.Value)
			case p.Metric == "connwatch.tcp.connect.duration" && p.Attrs["server.port"] == int64(srvPort):
				durations = max(durations, p.Count)
			}
		}
		if (established >= ok && refusedN >= refused && durations >= ok) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if established < ok || refusedN != refused || durations < ok {
		t.Fatalf("OTLP metrics for pid %d: %d established to :%d, %d refused to :%d, connect-duration count %d; want ≥ %d, %d, ≥ %d",
			pid, established, srvPort, refusedN, closed, durations, ok, refused, ok)
	}

	// Spans: everything the agent emitted has been exported once nothing
	// is in flight.
	settle(t, port, 30*time.Second)
	clients, servers := map[string]bool{}, map[string]bool{}
	failed := 0
	for _, s := range r.Spans() {
		if s.ResourceAttrs()["process.pid"] != pid {
			continue
		}
		a := s.Attrs()
		id := hex.EncodeToString(s.TraceId)
		switch {
		case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && a["server.port"] == int64(closed):
			if a["connwatch.outcome"] == "refused" {
				failed++
			}
		case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && a["server.port"] == int64(srvPort):
			clients[id] = true
		case s.Kind == tracepb.Span_SPAN_KIND_SERVER && a["server.port"] == int64(srvPort):
			servers[id] = true
		}
	}
	if failed != refused {
		t.Errorf("%d refused client spans arrived, want all %d", failed, refused)
	}
	if n := len(clients); n < ok*3/100 || n > ok*20/100 {
		t.Errorf("%d of %d successful client spans arrived at ratio 0.1, want 3–20 %%", n, ok)
	}
	joined := 0
	for id := range clients {
		if servers[id] {
			joined++
		}
	}
	if joined != len(clients) || len(servers) != len(clients) {
		t.Errorf("%d client and %d server spans kept, %d of the same connections: both ends must decide alike", len(clients), len(servers), joined)
	}
	t.Logf("kept %d of %d successful connections' client spans (%.1f %%), all %d refused", len(clients), ok, 100*float64(len(clients))/ok, failed)

	// /metrics: the same counts, the workload as labels.
	m := metrics(t, port)
	var promOK, promRefused float64
	for k, v := range m {
		if !strings.HasPrefix(k, "connwatch_tcp_connections_total{") || !strings.Contains(k, fmt.Sprintf(`process_pid="%d"`, pid)) ||
			!strings.Contains(k, `connwatch_direction="outbound"`) {
			continue
		}
		switch {
		case strings.Contains(k, fmt.Sprintf(`server_port="%d"`, srvPort)) && strings.Contains(k, `connwatch_outcome="established"`):
			promOK += v
		case strings.Contains(k, fmt.Sprintf(`server_port="%d"`, closed)) && strings.Contains(k, `connwatch_outcome="refused"`):
			promRefused += v
		}
	}
	if promOK != float64(established) || promRefused != refused {
		t.Errorf("/metrics connwatch_tcp_connections_total: %v established, %v refused; OTLP said %d and %d", promOK, promRefused, established, refused)
	}
	if sum(m, "connwatch_tcp_connect_duration_seconds_count") < ok {
		t.Errorf("/metrics has no connect-duration histogram of %d connections", ok)
	}
	if got := sum(m, "connwatch_records_sampled_out_total"); got < float64(ok) {
		t.Errorf("connwatch_records_sampled_out_total = %v, want at least %d", got, ok)
	}
}

// A workload that talks to 10 000 distinct peers (refused connections to
// 127.1.x.y: loopback, nothing listening) keeps metrics.max_series series
// on /metrics; the rest are counted in its overflow series, and the counts
// add up to every connection.
func TestMetricsSeriesCap(t *testing.T) {
	requireRoot(t)
	port := freePort(t)
	cfg := fmt.Sprintf("telemetry:\n  listen: 127.0.0.1:%d\nexport:\n  traces: false\n  logs: false\nmetrics:\n  max_series: 2000\n", port)
	startAgentEnv(t, nil, "-c", writeTempConfig(t, cfg))
	const peers = 10000
	target := freePort(t)
	for i := range peers {
		addr := fmt.Sprintf("127.1.%d.%d:%d", i>>8, i&0xff, target)
		if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s accepted a connection", addr)
		}
	}
	pid := fmt.Sprintf(`process_pid="%d"`, os.Getpid())
	var series, overflowSeries int
	var total float64
	var m map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		m = metrics(t, port)
		series, overflowSeries, total = 0, 0, 0
		for k, v := range m {
			// The refused connections' series: by peer to the target
			// port, and the overflow one (the scrapes, established,
			// have their own).
			if !strings.HasPrefix(k, "connwatch_tcp_connections_total{") || !strings.Contains(k, pid) ||
				!strings.Contains(k, `connwatch_outcome="refused"`) {
				continue
			}
			switch {
			case strings.Contains(k, `connwatch_overflow="true"`):
				overflowSeries++
			case !strings.Contains(k, fmt.Sprintf(`server_port="%d"`, target)):
				continue
			}
			series++
			total += v
		}
		if total >= peers || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d series (%d overflow) count %v connections; overflowed %v", series, overflowSeries, total, m["connwatch_metric_series_overflow_total"])
	if total != peers {
		t.Errorf("the workload's series count %v refused connections, want %d", total, peers)
	}
	if series > 2000+overflowSeries || overflowSeries != 1 {
		t.Errorf("%d series of refused connections, %d of them overflow: want at most 2000 and one overflow series", series, overflowSeries)
	}
	if got := m["connwatch_metric_series_overflow_total"]; got < peers-2000 {
		t.Errorf("connwatch_metric_series_overflow_total = %v, want at least %d", got, peers-2000)
	}
}
