//go:build linux

package test

// The agent under the outage tests (outage_test.go): starting it, reading
// its /metrics and health endpoints, sampling them with its RSS, and
// waiting until it has delivered or accounted for everything.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// ogMetrics scrapes /metrics as metrics does, returning errors instead of
// failing (it runs on the sampler's goroutine too).
func ogMetrics(port int) (map[string]float64, error) {
	resp, err := ogClient.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad metrics line %q", line)
		}
		m[sampleKey(line[:i])] = v
	}
	return m, nil
}

var ogClient = &http.Client{Timeout: 5 * time.Second}

// ogGet returns the status and body of an agent endpoint.
func ogGet(port int, path string) (int, string, error) {
	resp, err := ogClient.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// ogExportDrops adds the export stage's drops of both signals.
func ogExportDrops(m map[string]float64) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, `connwatch_dropped_total{stage="export"`) {
			s += v
		}
	}
	return s
}

func ogQueueBytes(m map[string]float64) float64 {
	return m[`connwatch_export_queue_bytes{signal="traces"}`] + m[`connwatch_export_queue_bytes{signal="logs"}`]
}

// ogRecovered reads, from the agent's log, the records of each signal
// it found in its queue directory at start ("sending what an earlier run
// left"): they count as emitted without having been offered by this run.
func ogRecovered(stderr string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, "sending what an earlier run left") {
			continue
		}
		var signal string
		var records float64
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "signal="); ok {
				signal = v
			}
			if v, ok := strings.CutPrefix(f, "records="); ok {
				records, _ = strconv.ParseFloat(v, 64)
			}
		}
		out[signal] += records
	}
	return out
}

// ogInvariants is checkInvariants for an agent that started with recovered
// records in its queue directory: those are emitted (and then exported or
// failed) without having been offered by this run.
func ogInvariants(t *testing.T, m map[string]float64, recovered map[string]float64) {
	t.Helper()
	if len(recovered) == 0 {
		checkInvariants(t, m)
		return
	}
	adj := make(map[string]float64, len(m))
	for k, v := range m {
		adj[k] = v
	}
	for signal, n := range recovered {
		adj[`connwatch_records_emitted_total{signal="`+signal+`"}`] -= n
		// checkInvariants wants emitted = exported + failed: take the
		// recovered records off both sides.
		adj[`connwatch_records_exported_total{signal="`+signal+`"}`] -= n
	}
	checkInvariants(t, adj)
}

// ogSettle is settle, then waits until every sample read is decoded or
// counted as dropped: settle can see the reader's queue empty while the
// sample taken from it is still being processed.
func ogSettle(t *testing.T, port int, timeout time.Duration) map[string]float64 {
	t.Helper()
	m := settle(t, port, timeout)
	for range 50 {
		if m["connwatch_samples_read_total"] == m["connwatch_samples_decoded_total"]+
			m[`connwatch_dropped_total{reason="queue_full",stage="reader"}`]+m[`connwatch_dropped_total{reason="malformed",stage="decode"}`] {
			break
		}
		time.Sleep(100 * time.Millisecond)
		m = settle(t, port, timeout)
	}
	return m
}

// ogSample is what the sampler saw at one moment.
type ogSample struct {
	at         time.Time
	rssKiB     int
	m          map[string]float64
	healthz    int
	readyz     int
	readyBody  string
	err        error
	queueBytes float64
}

// ogSampler samples the agent's RSS, /metrics, /healthz and /readyz
// every second.
type ogSampler struct {
	stop, done chan struct{}
	once       sync.Once
	samples    []ogSample
}

func ogStartSampler(pid, port int) *ogSampler {
	s := &ogSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			s.samples = append(s.samples, ogTake(pid, port))
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns the samples; later calls return
// them again.
func (s *ogSampler) Stop() []ogSample {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.samples
}

func ogTake(pid, port int) ogSample {
	sm := ogSample{at: time.Now()}
	var errs []error
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		errs = append(errs, fmt.Errorf("agent gone: %w", err))
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			sm.rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	if sm.m, err = ogMetrics(port); err != nil {
		errs = append(errs, fmt.Errorf("/metrics: %w", err))
	}
	sm.queueBytes = ogQueueBytes(sm.m)
	if sm.healthz, _, err = ogGet(port, "/healthz"); err != nil {
		errs = append(errs, fmt.Errorf("/healthz: %w", err))
	}
	if sm.readyz, sm.readyBody, err = ogGet(port, "/readyz"); err != nil {
		errs = append(errs, fmt.Errorf("/readyz: %w", err))
	}
	sm.err = errors.Join(errs...)
	return sm
}

// ogAgent starts the agent exporting to r with /metrics on a free port
// and extra config; it returns the agent, the telemetry port and the
// config file (for an agent to be started again the same way).
func ogAgent(t *testing.T, r *otlptest.Receiver, extra string) (*agentProc, int, string) {
	t.Helper()
	port := freePort(t)
	path := writeTempConfig(t, fmt.Sprintf("telemetry:\n  listen: 127.0.0.1:%d\n%s", port, extra))
	return ogStart(t, r, path), port, path
}

func ogStart(t *testing.T, r *otlptest.Receiver, cfgPath string) *agentProc {
	t.Helper()
	return startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", cfgPath)
}

func ogQueueDirConfig(dir string) string {
	return fmt.Sprintf("export:\n  queue:\n    directory: %q\n", dir)
}

// ogDrained waits until the agent has nothing queued or in flight and
// returns how long that took and the metrics then.
func ogDrained(t *testing.T, port int, timeout time.Duration) (time.Duration, map[string]float64) {
	t.Helper()
	start := time.Now()
	for {
		m, err := ogMetrics(port)
		if err == nil && ogQueueBytes(m) == 0 &&
			m[`connwatch_records_in_flight{signal="traces"}`] == 0 && m[`connwatch_records_in_flight{signal="logs"}`] == 0 &&
			m[`connwatch_queue_length{stage="reader"}`] == 0 &&
			m["connwatch_samples_read_total"] == m["connwatch_samples_decoded_total"]+
				m[`connwatch_dropped_total{reason="queue_full",stage="reader"}`]+m[`connwatch_dropped_total{reason="malformed",stage="decode"}`] {
			return time.Since(start), m
		}
		if time.Since(start) > timeout {
			t.Fatalf("agent still has records queued or in flight %v after the recovery (scrape error %v): %v", timeout, err, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
