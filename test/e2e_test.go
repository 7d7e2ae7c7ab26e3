//go:build linux && e2e

package test

// The end-to-end test runs against a real OpenTelemetry Collector and a
// real Jaeger v2 that `make e2e` builds and starts (deploy/e2e). It is
// built only with -tags e2e.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/connwatch/connwatch/otel/otlptest"
)

func e2eEnv(t *testing.T, name, def string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// jaegerTraces is the part of Jaeger's /api/traces answer the test reads.
type jaegerTraces struct {
	Data []struct {
		Spans []struct {
			OperationName string     `json:"operationName"`
			ProcessID     string     `json:"processID"`
			Tags          []jaegerKV `json:"tags"`
		} `json:"spans"`
		Processes map[string]struct {
			ServiceName string     `json:"serviceName"`
			Tags        []jaegerKV `json:"tags"`
		} `json:"processes"`
	} `json:"data"`
}

type jaegerKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

func tag(kvs []jaegerKV, key string) any {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

// jaegerSpan polls Jaeger for a span of service whose tags and process
// tags satisfy match.
func jaegerSpan(t *testing.T, base, service string, match func(tags, process []jaegerKV) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/api/traces?limit=200&lookback=1h&service=" + url.QueryEscape(service))
		if err == nil {
			var tr jaegerTraces
			err = json.NewDecoder(resp.Body).Decode(&tr)
			resp.Body.Close()
			if err == nil {
				for _, d := range tr.Data {
					for _, s := range d.Spans {
						if match(s.Tags, d.Processes[s.ProcessID].Tags) {
							return
						}
					}
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("Jaeger shows no matching span of service %q", service)
}

func jaegerServices(t *testing.T, base string) []string {
	t.Helper()
	resp, err := http.Get(base + "/api/services")
	if err != nil {
		t.Fatalf("Jaeger query API: %v", err)
	}
	defer resp.Body.Close()
	var out struct{ Data []string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Data
}

// collectorLog polls the collector's file output for a log record whose
// event name, resource and attributes satisfy match.
func collectorLog(t *testing.T, path string, match func(event string, res, attrs map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				var req struct {
					ResourceLogs []struct {
						Resource  struct{ Attributes []otlpKV } `json:"resource"`
						ScopeLogs []struct {
							LogRecords []struct {
								EventName  string   `json:"eventName"`
								Attributes []otlpKV `json:"attributes"`
							} `json:"logRecords"`
						} `json:"scopeLogs"`
					} `json:"resourceLogs"`
				}
				if json.Unmarshal(sc.Bytes(), &req) != nil {
					continue
				}
				for _, rl := range req.ResourceLogs {
					res := otlpAttrs(rl.Resource.Attributes)
					for _, sl := range rl.ScopeLogs {
						for _, lr := range sl.LogRecords {
							if match(lr.EventName, res, otlpAttrs(lr.Attributes)) {
								f.Close()
								return
							}
						}
					}
				}
			}
			f.Close()
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no matching log record in %s", path)
}

// otlpKV is an attribute in OTLP JSON: {"key":..,"value":{"stringValue":..}}.
type otlpKV struct {
	Key   string         `json:"key"`
	Value map[string]any `json:"value"`
}

func otlpAttrs(kvs []otlpKV) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		for _, v := range kv.Value {
			m[kv.Key] = fmt.Sprint(v) // intValue is a string in OTLP JSON
		}
	}
	return m
}

// curls is how many connections curl makes to the test's HTTP server.
const curls = 8

// Through a real collector to a real Jaeger: connections of a host process
// (curl) and of a namespaced "container" arrive as spans under their own
// services with the right attributes, and as log records in the
// collector's output. Each curl connection's CLIENT span (service curl)
// and SERVER span (this test's HTTP server) join in one trace, so Jaeger
// derives the edge curl → this test from them, and the gateway tier,
// routing by trace ID to two service-graph collectors, counts each of
// them once on that edge.
func TestE2ECollectorAndJaeger(t *testing.T) {
	requireRoot(t)
	collector := e2eEnv(t, "CONNWATCH_E2E_COLLECTOR_OTLP_GRPC", "127.0.0.1:14317")
	jaeger := "http://" + e2eEnv(t, "CONNWATCH_E2E_JAEGER_QUERY_HTTP", "127.0.0.1:16686")
	out := e2eEnv(t, "CONNWATCH_E2E_OUT", "/tmp/connwatch-e2e")
	curl, err := exec.LookPath("curl")
	if err != nil {
		skipOrFail(t, "curl is needed as the host workload: %v", err)
	}

	id := randomContainerID(t)
	child := startNamespacedChild(t, func(pid int) { intoContainerCgroup(t, id, pid) })
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + collector, "OTEL_METRIC_EXPORT_INTERVAL=1000"})
	self, _ := os.Executable()

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })}
	ln := listen(t, "tcp4", "127.0.0.1:0")
	ln.Close()
	httpLn, err := net.Listen("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(httpLn)
	defer srv.Close()
	port := httpLn.Addr().(*net.TCPAddr).Port
	for range curls {
		if out, err := exec.Command(curl, "-s", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput(); err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
	}
	child.connect(t, false)

	portStr := fmt.Sprint(port)
	jaegerSpan(t, jaeger, "curl", func(tags, process []jaegerKV) bool {
		return fmt.Sprint(tag(tags, "server.port")) == portStr && tag(tags, "span.kind") == "client" &&
			tag(process, "container.id") == nil
	})
	jaegerSpan(t, jaeger, filepath.Base(self), func(tags, process []jaegerKV) bool {
		return fmt.Sprint(tag(tags, "server.port")) == fmt.Sprint(child.Remote) && tag(process, "container.id") == id &&
			fmt.Sprint(tag(process, "process.pid")) == fmt.Sprint(child.ConnPID)
	})
	services := strings.Join(jaegerServices(t, jaeger), ",")
	if !strings.Contains(services, "curl") || !strings.Contains(services, filepath.Base(self)) {
		t.Errorf("Jaeger services %q, want curl and %s", services, filepath.Base(self))
	}

	server := filepath.Base(self)
	jaegerDependency(t, jaeger, "curl", server, curls)
	serviceGraphEdge(t, strings.Split(e2eEnv(t, "CONNWATCH_E2E_SG_PROMETHEUS_ENDPOINTS", "127.0.0.1:24891,127.0.0.1:24892"), ","),
		"curl", server, curls)

	logs := filepath.Join(out, "logs.jsonl")
	collectorLog(t, logs, func(event string, res, attrs map[string]any) bool {
		return event == "connwatch.tcp.connect" && res["service.name"] == "curl" && attrs["server.port"] == portStr
	})
	collectorLog(t, logs, func(event string, res, attrs map[string]any) bool {
		return event == "connwatch.tcp.connect" && res["container.id"] == id && attrs["server.port"] == fmt.Sprint(child.Remote)
	})

	// The connection metrics through the Collector: each curl process is a
	// workload with one established connection to the server.
	collectorMetrics(t, filepath.Join(out, "metrics.jsonl"), func(pts []metricPoint) bool {
		conns, hists := map[string]int64{}, map[string]uint64{}
		for _, p := range pts {
			if p.res["service.name"] != "curl" || p.attrs["server.port"] != portStr || p.attrs["connwatch.direction"] != "outbound" {
				continue
			}
			pid := fmt.Sprint(p.res["process.pid"])
			switch {
			case p.name == "connwatch.tcp.connections" && p.attrs["connwatch.outcome"] == "established":
				conns[pid] = max(conns[pid], p.value)
			case p.name == "connwatch.tcp.connect.duration":
				hists[pid] = max(hists[pid], p.count)
			}
		}
		var n int64
		var h uint64
		for pid, v := range conns {
			n += v
			h += hists[pid]
		}
		return len(conns) == curls && n == curls && h == curls
	})
}

// metricPoint is a sum's or a histogram's data point as a Collector's file
// exporter writes it.
type metricPoint struct {
	name       string
	res, attrs map[string]any
	value      int64  // sum
	count      uint64 // histogram
}

// collectorMetrics reads the Collector's metrics file until check, given
// every data point so far, holds.
func collectorMetrics(t *testing.T, path string, check func([]metricPoint) bool) {
	t.Helper()
	var pts []metricPoint
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		pts = pts[:0]
		if b, err := os.ReadFile(path); err == nil {
			for _, line := range bytes.Split(b, []byte("\n")) {
				var req colmetricspb.ExportMetricsServiceRequest
				if len(line) == 0 || protojson.Unmarshal(line, &req) != nil {
					continue
				}
				for _, rm := range req.GetResourceMetrics() {
					res := otlptest.Attrs(rm.GetResource().GetAttributes())
					for _, sm := range rm.GetScopeMetrics() {
						for _, m := range sm.GetMetrics() {
							for _, p := range m.GetSum().GetDataPoints() {
								pts = append(pts, metricPoint{name: m.GetName(), res: res, attrs: strAttrs(p.GetAttributes()), value: p.GetAsInt()})
							}
							for _, p := range m.GetHistogram().GetDataPoints() {
								pts = append(pts, metricPoint{name: m.GetName(), res: res, attrs: strAttrs(p.GetAttributes()), count: p.GetCount()})
							}
						}
					}
				}
			}
		}
		if check(pts) {
			t.Logf("collector metrics: %d data points, check passed", len(pts))
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the collector's metrics (%d data points in %s) never passed the check", len(pts), path)
}

// strAttrs is otlptest.Attrs with every value as a string, as the log
// checks compare them.
func strAttrs(kvs []*commonpb.KeyValue) map[string]any {
	out := map[string]any{}
	for k, v := range otlptest.Attrs(kvs) {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// jaegerDependency polls Jaeger's dependencies API (its memory storage
// derives an edge parent → child from spans of different services, one
// call per child span whose parent it holds) until the edge client →
// server has calls calls.
func jaegerDependency(t *testing.T, base, client, server string, calls int) {
	t.Helper()
	var links []struct {
		Parent    string `json:"parent"`
		Child     string `json:"child"`
		CallCount int    `json:"callCount"`
	}
	got := 0
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		u := fmt.Sprintf("%s/api/dependencies?endTs=%d&lookback=%d", base, time.Now().UnixMilli(), time.Hour.Milliseconds())
		if resp, err := http.Get(u); err == nil {
			var body struct{ Data json.RawMessage }
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err == nil && json.Unmarshal(body.Data, &links) == nil {
				for _, l := range links {
					if l.Parent == client && l.Child == server {
						got = l.CallCount
					}
				}
				if got == calls {
					t.Logf("Jaeger dependencies: %s → %s, %d calls", client, server, got)
					return
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("Jaeger dependencies: %s → %s has %d calls, want %d (links: %+v)", client, server, got, calls, links)
}

// serviceGraphEdge polls the service-graph collectors' Prometheus
// endpoints until traces_service_graph_request_total{client, server}
// summed over them is requests. A connection whose two spans the gateway
// routed to different collectors would never pair, and be missing.
func serviceGraphEdge(t *testing.T, endpoints []string, client, server string, requests int) {
	t.Helper()
	want := fmt.Sprintf(`client=%q`, client)
	wantServer := fmt.Sprintf(`server=%q`, server)
	var per []string
	total := 0
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		total, per = 0, per[:0]
		for _, ep := range endpoints {
			n := 0
			if resp, err := http.Get("http://" + ep + "/metrics"); err == nil {
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					line := sc.Text()
					if !strings.HasPrefix(line, "traces_service_graph_request_total{") ||
						!strings.Contains(line, want) || !strings.Contains(line, wantServer) {
						continue
					}
					var v float64
					if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
						n += int(v)
					}
				}
				resp.Body.Close()
			}
			per = append(per, fmt.Sprintf("%s: %d", ep, n))
			total += n
		}
		if total >= requests {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("service graph %s → %s: %d requests (%s)", client, server, total, strings.Join(per, ", "))
	if total != requests {
		t.Errorf("service graph edge %s → %s counts %d requests, want %d", client, server, total, requests)
	}
}

// The collector configurations in deploy/ that the e2e collector cannot
// run (their components are in the gateway's build, collector v0.141.0)
// are valid for that real collector: `otelcol validate` builds every
// component from its configuration without starting it.
func TestE2EDeployConfigsValidate(t *testing.T) {
	bin := os.Getenv("CONNWATCH_E2E_GATEWAY_BIN")
	if bin == "" {
		skipOrFail(t, "CONNWATCH_E2E_GATEWAY_BIN is not set (make e2e sets it)")
	}
	root := filepath.Join("..")
	configs := map[string]string{}
	for _, f := range []string{"deploy/e2e/gateway-e2e.yaml", "deploy/e2e/servicegraph-e2e.yaml", "deploy/compose/otel-collector.yaml"} {
		configs[f] = filepath.Join(root, f)
	}
	// Each ConfigMap of deploy/kubernetes with a collector's config.yaml.
	k8s, err := filepath.Glob(filepath.Join(root, "deploy/kubernetes/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range k8s {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc struct {
				Kind     string
				Metadata struct{ Name string }
				Data     map[string]string
			}
			if err := dec.Decode(&doc); err != nil {
				break
			}
			if cfg, ok := doc.Data["config.yaml"]; ok && doc.Kind == "ConfigMap" {
				path := filepath.Join(t.TempDir(), doc.Metadata.Name+".yaml")
				if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
					t.Fatal(err)
				}
				configs["ConfigMap "+doc.Metadata.Name+" ("+filepath.Base(f)+")"] = path
			}
		}
	}
	if len(configs) < 5 {
		t.Errorf("found %d collector configs, want the three files and the two tiers' ConfigMaps: %v", len(configs), configs)
	}
	for name, path := range configs {
		out, err := exec.Command(bin, "validate", "--config", path).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %s validate: %v\n%s", name, filepath.Base(bin), err, out)
		} else {
			t.Logf("%s: valid", name)
		}
	}
}
