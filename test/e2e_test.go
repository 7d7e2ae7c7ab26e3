//go:build linux && e2e

package test

// The end-to-end test runs against a real OpenTelemetry Collector and a
// real Jaeger v2 that `make e2e` builds and starts (deploy/e2e). It is
// built only with -tags e2e.

import (
	"bufio"
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

// Through a real collector to a real Jaeger: connections of a host process
// (curl) and of a namespaced "container" arrive as spans under their own
// services with the right attributes, and as log records in the
// collector's output.
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
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + collector})
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
	if out, err := exec.Command(curl, "-s", fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput(); err != nil {
		t.Fatalf("curl: %v %s", err, out)
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

	logs := filepath.Join(out, "logs.jsonl")
	collectorLog(t, logs, func(event string, res, attrs map[string]any) bool {
		return event == "connwatch.tcp.connect" && res["service.name"] == "curl" && attrs["server.port"] == portStr
	})
	collectorLog(t, logs, func(event string, res, attrs map[string]any) bool {
		return event == "connwatch.tcp.connect" && res["container.id"] == id && attrs["server.port"] == fmt.Sprint(child.Remote)
	})
}
