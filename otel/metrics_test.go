package otel

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/connwatch/connwatch/metrics"
	"github.com/connwatch/connwatch/otel/otlptest"
)

func sumPoints(m metricdata.Metrics) []metricdata.DataPoint[int64] {
	s, _ := m.Data.(metricdata.Sum[int64])
	return s.DataPoints
}

// Metrics reach a real OTLP/gRPC receiver through otlpmetricgrpc, each
// workload under the resource its spans have, with the headers of the
// options and none of the environment's; Shutdown sends the last values.
func TestOTLPMetrics(t *testing.T) {
	r := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-from-env=1")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:1")
	o := testOptions()
	o.Getenv = nil
	o.Endpoint = r.Endpoint()
	o.Headers = map[string]string{"x-tenant": "7"}
	o.Compression = CompressionGzip
	o.BatchTimeout = 10 * time.Millisecond
	o.Metrics = metrics.New(metrics.Options{})
	o.SendMetrics = true
	o.MetricsInterval = 50 * time.Millisecond
	p := newOTLPExporter(t, o)
	now := time.Now()
	for range 3 {
		ev := resultEvent(0)
		ev.Time = now
		p.Emit(ev)
	}
	ev := resultEvent(-111)
	ev.Time = now
	p.Emit(ev)

	spans, err := r.WaitSpans(5*time.Second, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int64
	waitFor(t, "connection counts over OTLP", func() bool {
		got = map[string]int64{}
		for _, pt := range r.Points() {
			if pt.Metric == metrics.NameConnections {
				got[pt.Attrs["connwatch.outcome"].(string)] = pt.Value
				if pt.Resource["process.pid"] != spans[0].ResourceAttrs()["process.pid"] ||
					pt.Resource["service.name"] != spans[0].ResourceAttrs()["service.name"] {
					t.Fatalf("metric resource %v, span resource %v", pt.Resource, spans[0].ResourceAttrs())
				}
				if pt.Attrs["network.peer.address"] != "93.184.216.34" || pt.Attrs["server.port"] != int64(443) {
					t.Fatalf("peer attributes %v", pt.Attrs)
				}
			}
		}
		return got["established"] == 3 && got["refused"] == 1
	})
	hist := false
	for _, pt := range r.Points() {
		if pt.Metric == metrics.NameConnectDuration && pt.Count > 0 && pt.Unit == "s" {
			hist = true
		}
	}
	if !hist {
		t.Error("no connect duration histogram arrived")
	}
	for _, md := range r.Headers() {
		if len(md.Get("x-from-env")) > 0 || len(md.Get("x-tenant")) == 0 {
			t.Errorf("request headers %v: want x-tenant and not the environment's", md)
		}
	}
	for _, enc := range r.Encodings() {
		if enc != "gzip" {
			t.Errorf("a request was sent with encoding %q, want gzip for every signal", enc)
		}
	}

	r.Reset()
	ev = resultEvent(0)
	ev.Time = time.Now()
	p.Emit(ev)
	p.metExp.interval = time.Hour // only Shutdown sends now
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	last := int64(0)
	for _, pt := range r.Points() {
		if pt.Metric == metrics.NameConnections && pt.Attrs["connwatch.outcome"] == "established" {
			last = pt.Value
		}
	}
	if last != 4 {
		t.Errorf("after Shutdown the collector has %d established, want 4", last)
	}
	if st := p.MetricsStats(); st.Exports == 0 || st.ExportErrors != 0 {
		t.Errorf("metrics stats %+v", st)
	}
}
