//go:build linux

package test

import (
	"bufio"
	_ "embed"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// The families on the agent's /metrics, with their types and label names,
// are those of testdata/metrics_names.txt: the names dashboards use are
// kept, whatever library writes them. The scrape is parsed as Prometheus
// parses it.
func TestMetricsNames(t *testing.T) {
	requireRoot(t)
	const stats = "/proc/sys/kernel/bpf_stats_enabled"
	if old, err := os.ReadFile(stats); err == nil {
		// connwatch_bpf_run_* exist only while the kernel counts.
		if err := os.WriteFile(stats, []byte("1"), 0o644); err == nil {
			t.Cleanup(func() { _ = os.WriteFile(stats, old, 0o644) })
		}
	}
	r := otlptest.Start(t)
	port := freePort(t)
	cfg := fmt.Sprintf("telemetry:\n  listen: 127.0.0.1:%d\n", port)
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", writeTempConfig(t, cfg))

	// One connection closed (bytes, lifetime) and one refused.
	serveClosing(t, "tcp4", "127.0.0.1:0").dial(t, nil, 1)
	refusedConnect(t)
	if _, err := r.WaitSpans(exportTimeout, 2, nil); err != nil {
		t.Fatal(err)
	}

	// Some families appear with their first data: the closes, an export
	// acknowledged.
	want := goldenNames(t)
	var got []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		got = scrapeNames(t, port)
		if !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(got, w) }) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing from /metrics: %s", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("on /metrics but not in testdata/metrics_names.txt: %s", g)
		}
	}
}

// scrapeNames returns "name type label,names" for every label set of every
// family the agent serves.
func scrapeNames(t *testing.T, port int) []string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("Prometheus cannot parse /metrics: %v", err)
	}
	seen := map[string]bool{}
	for name, f := range fams {
		typ := strings.ToLower(f.GetType().String())
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			sort.Strings(labels)
			seen[strings.TrimSpace(name+" "+typ+" "+strings.Join(labels, ","))] = true
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// metricsNames is testdata/metrics_names.txt, embedded so that the test
// binary runs anywhere (a VM).
//
//go:embed testdata/metrics_names.txt
var metricsNames string

func goldenNames(t *testing.T) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(metricsNames))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}
