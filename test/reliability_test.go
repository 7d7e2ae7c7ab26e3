//go:build linux

package test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// metrics scrapes the agent's /metrics into "name{labels}" -> value.
func metrics(t *testing.T, port int) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		m[sampleKey(line[:i])] = v
	}
	return m
}

// sampleKey is a sample's name and labels with the labels sorted by name,
// the order the test's keys are written in (and client_golang's).
func sampleKey(s string) string {
	name, labels, ok := strings.Cut(s, "{")
	if !ok {
		return s
	}
	pairs := strings.Split(strings.TrimSuffix(labels, "}"), ",")
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// sum adds every sample of a metric family.
func sum(m map[string]float64, family string) float64 {
	var s float64
	for k, v := range m {
		if k == family || strings.HasPrefix(k, family+"{") {
			s += v
		}
	}
	return s
}

// reliabilityAgent starts the agent exporting to r with /metrics on a free
// port and the given extra config.
func reliabilityAgent(t *testing.T, r *otlptest.Receiver, extra string) (*agentProc, int) {
	t.Helper()
	port := freePort(t)
	cfg := fmt.Sprintf("telemetry:\n  listen: 127.0.0.1:%d\n%s", port, extra)
	a := startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", writeTempConfig(t, cfg))
	return a, port
}

// burst makes n connections to ln, as fast as one goroutine can, and
// returns their local ports.
func burst(t *testing.T, ln net.Listener, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		ports = append(ports, c.LocalAddr().(*net.TCPAddr).Port)
		c.Close()
	}
	return ports
}

// clientSpanTo matches the CLIENT span of a connection to port.
func clientSpanTo(port int) func(otlptest.Span) bool {
	return func(s otlptest.Span) bool {
		return s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Attrs()["server.port"] == int64(port)
	}
}

// settle waits until the agent has nothing queued or in flight.
func settle(t *testing.T, port int, timeout time.Duration) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := metrics(t, port)
		if m[`connwatch_records_in_flight{signal="traces"}`] == 0 && m[`connwatch_records_in_flight{signal="logs"}`] == 0 &&
			m[`connwatch_queue_length{stage="reader"}`] == 0 {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent still has records in flight after %v: %v", timeout, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkInvariants asserts that every sample read is accounted for:
// samples read = decoded + dropped (reader, decode); a decoded sample is one
// event, or two (attempt and result in tracepoint mode); every event
// offers one log record (and results and accepts one span): offered =
// emitted + dropped at the export queue; emitted = exported + failed.
func checkInvariants(t *testing.T, m map[string]float64) {
	t.Helper()
	read := m["connwatch_samples_read_total"]
	decoded := m["connwatch_samples_decoded_total"]
	processed := m["connwatch_events_processed_total"]
	readerDrops := m[`connwatch_dropped_total{reason="queue_full",stage="reader"}`]
	decodeDrops := m[`connwatch_dropped_total{reason="malformed",stage="decode"}`]
	if read != decoded+readerDrops+decodeDrops {
		t.Errorf("samples read %v != decoded %v + reader drops %v + decode drops %v", read, decoded, readerDrops, decodeDrops)
	}
	if processed < decoded {
		t.Errorf("events processed %v < samples decoded %v", processed, decoded)
	}
	if ev := sum(m, "connwatch_events_read_total"); ev != processed {
		t.Errorf("events read by id %v != processed %v", ev, processed)
	}
	spansOffered := m[`connwatch_events_read_total{event_id="410"}`] + m[`connwatch_events_read_total{event_id="412"}`] +
		m[`connwatch_events_read_total{event_id="401"}`] + m[`connwatch_events_read_total{event_id="403"}`]
	for signal, offered := range map[string]float64{"logs": processed, "traces": spansOffered} {
		emitted := m[`connwatch_records_emitted_total{signal="`+signal+`"}`]
		queueFull := m[`connwatch_dropped_total{reason="queue_full",signal="`+signal+`",stage="export"}`]
		exported := m[`connwatch_records_exported_total{signal="`+signal+`"}`]
		failed := m[`connwatch_dropped_total{reason="export_failed",signal="`+signal+`",stage="export"}`]
		if emitted+queueFull != offered {
			t.Errorf("%s: emitted %v + queue-full %v != offered %v", signal, emitted, queueFull, offered)
		}
		if emitted != exported+failed {
			t.Errorf("%s: emitted %v != exported %v + failed %v (nothing in flight)", signal, emitted, exported, failed)
		}
	}
}

// ours counts the received CLIENT spans of connections to port.
func ours(r *otlptest.Receiver, port int) int {
	n := 0
	match := clientSpanTo(port)
	for _, s := range r.Spans() {
		if match(s) {
			n++
		}
	}
	return n
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("agent gone: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func healthy(t *testing.T, port int) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}
}

// Counters add up under a burst of connections, and every span exported
// reached the receiver.
func TestAgentCounterInvariant(t *testing.T) {
	requireRoot(t)
	r := otlptest.Start(t)
	a, port := reliabilityAgent(t, r, "")
	ln := listen(t, "tcp4", "127.0.0.1:0")
	const n = 3000
	burst(t, ln, n)
	lport := ln.Addr().(*net.TCPAddr).Port
	if _, err := r.WaitSpans(30*time.Second, n, clientSpanTo(lport)); err != nil {
		t.Errorf("spans of the burst: %v (agent stderr:\n%s)", err, a.stderr.String())
	}
	m := settle(t, port, 30*time.Second)
	checkInvariants(t, m)
	if got, exported := float64(len(r.Spans())), m[`connwatch_records_exported_total{signal="traces"}`]; got < exported {
		t.Errorf("receiver has %v spans, agent says it exported %v", got, exported)
	}
	t.Logf("metrics after %d connections: read %v processed %v spans exported %v logs exported %v",
		n, m["connwatch_samples_read_total"], m["connwatch_events_processed_total"],
		m[`connwatch_records_exported_total{signal="traces"}`], m[`connwatch_records_exported_total{signal="logs"}`])
}

// The collector goes away for a minute (CONNWATCH_OUTAGE_SECONDS) and comes
// back: the agent keeps running within its memory bound, retries, and
// afterwards every connection either arrived or is counted as dropped;
// connections after the recovery arrive.
func TestAgentSurvivesCollectorOutage(t *testing.T) {
	requireRoot(t)
	outage := 60 * time.Second
	if s := os.Getenv("CONNWATCH_OUTAGE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		outage = time.Duration(n) * time.Second
	}
	r := otlptest.Start(t)
	a, port := reliabilityAgent(t, r, "")
	ln := listen(t, "tcp4", "127.0.0.1:0")
	lport := ln.Addr().(*net.TCPAddr).Port

	burst(t, ln, 100)
	if _, err := r.WaitSpans(15*time.Second, 100, clientSpanTo(lport)); err != nil {
		t.Fatalf("before the outage: %v", err)
	}

	r.Stop()
	start := time.Now()
	const during = 2000
	maxRSS := 0
	for i := 0; time.Since(start) < outage; i++ {
		if i < during/200 {
			burst(t, ln, 200)
		}
		healthy(t, port)
		maxRSS = max(maxRSS, rssKiB(t, a.cmd.Process.Pid))
		time.Sleep(time.Second)
	}
	if err := r.Restart(); err != nil {
		t.Fatalf("restarting the receiver: %v", err)
	}
	// Once the backlog is exported or given up on, new connections flow
	// again.
	settle(t, port, 3*time.Minute)
	after := burst(t, ln, 100)

	m := settle(t, port, time.Minute)
	checkInvariants(t, m)
	got := ours(r, lport)
	const total = 100 + during + 100
	failed := m[`connwatch_dropped_total{reason="export_failed",signal="traces",stage="export"}`]
	queueFull := m[`connwatch_dropped_total{reason="queue_full",signal="traces",stage="export"}`]
	if float64(got)+failed+queueFull < total {
		t.Errorf("%d connections: %d spans arrived, %v failed, %v dropped at the queue: %v unaccounted for",
			total, got, failed, queueFull, total-float64(got)-failed-queueFull)
	}
	// The connections made after the recovery all arrive.
	afterPorts := map[int64]bool{}
	for _, p := range after {
		afterPorts[int64(p)] = true
	}
	if _, err := r.WaitSpans(30*time.Second, len(after), func(s otlptest.Span) bool {
		return clientSpanTo(lport)(s) && afterPorts[s.Attrs()["network.local.port"].(int64)]
	}); err != nil {
		t.Errorf("connections after the recovery: %v", err)
	}
	if maxRSS > 200*1024 {
		t.Errorf("agent RSS reached %d KiB during the outage", maxRSS)
	}
	t.Logf("outage %v: %d of %d spans arrived, %v failed after retries, %v dropped at the queue; max RSS %d KiB",
		outage, got, total, failed, queueFull, maxRSS)
}

// A receiver that takes seconds per export is handled the same way.
func TestAgentSlowCollector(t *testing.T) {
	requireRoot(t)
	r := otlptest.Start(t)
	r.SetDelay(3 * time.Second)
	a, port := reliabilityAgent(t, r, "")
	ln := listen(t, "tcp4", "127.0.0.1:0")
	lport := ln.Addr().(*net.TCPAddr).Port
	const n = 3000
	burst(t, ln, n)
	time.Sleep(5 * time.Second)
	healthy(t, port)
	r.SetDelay(0)
	m := settle(t, port, 2*time.Minute)
	checkInvariants(t, m)
	got := ours(r, lport)
	failed := m[`connwatch_dropped_total{reason="export_failed",signal="traces",stage="export"}`]
	queueFull := m[`connwatch_dropped_total{reason="queue_full",signal="traces",stage="export"}`]
	if float64(got)+failed+queueFull < n {
		t.Errorf("%d connections: %d spans arrived, %v failed, %v dropped at the queue", n, got, failed, queueFull)
	}
	t.Logf("slow receiver: %d of %d spans arrived, %v failed, %v dropped at the queue; RSS %d KiB",
		got, n, failed, queueFull, rssKiB(t, a.cmd.Process.Pid))
}

// SIGTERM with a collector that never answers: the agent gives up flushing
// after export.flush_timeout and exits 0.
func TestAgentShutdownIsBounded(t *testing.T) {
	requireRoot(t)
	r := otlptest.Start(t)
	r.SetDelay(time.Hour)
	a, _ := reliabilityAgent(t, r, "export:\n  flush_timeout: 2s\n")
	ln := listen(t, "tcp4", "127.0.0.1:0")
	burst(t, ln, 200)
	time.Sleep(time.Second)

	start := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	err, ok := a.exited(10 * time.Second)
	if !ok {
		t.Fatalf("agent still running 10s after SIGTERM with flush_timeout 2s")
	}
	if err != nil {
		t.Errorf("exit: %v, want 0", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("shutdown took %v with flush_timeout 2s", d)
	}
	if !strings.Contains(a.stderr.String(), "counters at exit") {
		t.Errorf("no exit counters logged:\n%s", a.stderr.String())
	}
}
