package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/config"
	"github.com/connwatch/connwatch/enrich"
	"github.com/connwatch/connwatch/otel/otlptest"
)

// goldenPath is the list test.TestMetricsNames checks a real agent's
// scrape against; this test checks the same list without root.
const goldenPath = "../../test/testdata/metrics_names.txt"

// needsProbe are the golden families that appear only with BPF programs
// loaded, an export acknowledged or connections counted: none of them
// here, where no probe is loaded and no event is read.
var needsProbe = []string{
	"connwatch_bpf_run_count_total",
	"connwatch_bpf_run_time_seconds_total",
	"connwatch_visibility_map_entries",
	"connwatch_last_export_success_timestamp_seconds",
	"connwatch_tcp_bytes_total",
	"connwatch_tcp_connect_duration_seconds",
	"connwatch_tcp_connection_duration_seconds",
	"connwatch_tcp_connections_total",
}

// The agent's own families on /metrics, without a probe loaded: every
// (name, type, label names) is one of the golden list, none of the list is
// missing but those needing a probe, and the values are the counters'.
func TestSelfMetricsNames(t *testing.T) {
	r := otlptest.Start(t)
	cfg := config.Default()
	cfg.Export.OTLP.Endpoint = r.Endpoint()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	out, err := newOutput("", string(bpf.ModeTracepoint), cfg, io.Discard, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = out.close(ctx)
	})
	enr, err := enrich.New(enrich.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := newCounters(string(bpf.ModeTracepoint), 2, func() int { return 4 })
	c.samplesDecoded = func() uint64 { return 9 }
	c.samplesRead.Add(12)
	c.readerDrops.Add(3)
	c.lost(1, 5)
	tel, err := startTelemetry("127.0.0.1:0", c, &bpf.Probe{}, enr, out, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.close(context.Background()) })

	resp, err := http.Get("http://" + tel.ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q, want the Prometheus text format", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("Prometheus cannot parse /metrics: %v", err)
	}

	golden := readGolden(t)
	got := familyShapes(fams)
	for _, g := range got {
		if !slices.Contains(golden, g) {
			t.Errorf("on /metrics but not in %s: %s", goldenPath, g)
		}
	}
	for _, w := range golden {
		if !slices.Contains(got, w) && !slices.Contains(needsProbe, strings.Fields(w)[0]) {
			t.Errorf("missing from /metrics: %s", w)
		}
	}

	for _, s := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"connwatch_samples_read_total", nil, 12},
		{"connwatch_samples_decoded_total", nil, 9},
		{"connwatch_lost_samples_total", map[string]string{"cpu": "1"}, 5},
		{"connwatch_queue_length", map[string]string{"stage": "reader"}, 4},
		{"connwatch_attach_mode", map[string]string{"mode": "tracepoint"}, 1},
		// Label sets with and without signal in one family: the registry
		// serves both.
		{"connwatch_dropped_total", map[string]string{"stage": "reader", "reason": "queue_full"}, 3},
		{"connwatch_dropped_total", map[string]string{"stage": "export", "reason": "queue_full", "signal": "traces"}, 0},
	} {
		if v, ok := sampleValue(fams[s.name], s.labels); !ok || v != s.want {
			t.Errorf("%s%v = %v (found %v), want %v", s.name, s.labels, v, ok, s.want)
		}
	}
}

// The same families in OpenMetrics, for a scraper asking for it.
func TestSelfMetricsOpenMetrics(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	enr, err := enrich.New(enrich.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := newCounters(string(bpf.ModeTracepoint), 1, func() int { return 0 })
	c.samplesDecoded = func() uint64 { return 0 }
	c.samplesRead.Add(2)
	tel, err := startTelemetry("127.0.0.1:0", c, &bpf.Probe{}, enr, &output{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.close(context.Background()) })
	req, _ := http.NewRequest("GET", "http://"+tel.ln.Addr().String()+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("Content-Type %q", ct)
	}
	for _, line := range []string{"connwatch_samples_read_total 2.0", "# EOF"} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("OpenMetrics scrape has no line %q:\n%s", line, body)
		}
	}
}

func readGolden(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// familyShapes returns "name type label,names" for every label set, as the
// golden list writes them.
func familyShapes(fams map[string]*dto.MetricFamily) []string {
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

// sampleValue is the value of f's sample with exactly these labels.
func sampleValue(f *dto.MetricFamily, labels map[string]string) (float64, bool) {
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if fmt.Sprint(got) != fmt.Sprint(labels) { // maps print sorted, nil as empty
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}
