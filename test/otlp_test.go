//go:build linux

package test

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/connwatch/connwatch/otel/otlptest"
)

const exportTimeout = 15 * time.Second

// The agent, pointed at an OTLP gRPC receiver with nothing but
// OTEL_EXPORTER_OTLP_ENDPOINT, delivers log records and spans for a
// connection from a namespaced "container" and one from the host under two
// distinct resources naming each workload; a refused connection arrives as
// a span with Error status.
func TestAgentExportsOTLP(t *testing.T) {
	requireRoot(t)
	r := otlptest.Start(t)
	id := randomContainerID(t)
	child := startNamespacedChild(t, func(pid int) { intoContainerCgroup(t, id, pid) })
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", writeTempConfig(t, "telemetry:\n  listen: \"\"\n"))
	self, _ := os.Executable()

	child.connect(t, false)
	ln := listen(t, "tcp4", "127.0.0.1:0")
	hostPort := ln.Addr().(*net.TCPAddr).Port
	hostLocal := hostConnect(t, ln)

	closedPort := refusedConnect(t)

	containerSpans, err := r.WaitSpans(exportTimeout, 1, func(s otlptest.Span) bool {
		return s.ResourceAttrs()["container.id"] == id && s.Attrs()["network.peer.port"] == int64(child.Remote)
	})
	if err != nil {
		t.Fatalf("container span: %v", err)
	}
	cs := containerSpans[0]
	cres := cs.ResourceAttrs()
	for k, want := range map[string]any{
		"process.pid":             int64(child.ConnPID),
		"process.executable.name": filepath.Base(self),
		"process.executable.path": self,
		"container.runtime.name":  "docker",
		"connwatch.pid_ns":        int64(child.PidNS),
		"connwatch.mnt_ns":        int64(child.MntNS),
		"service.name":            filepath.Base(self),
	} {
		if cres[k] != want {
			t.Errorf("container span resource %s = %v (%T), want %v", k, cres[k], cres[k], want)
		}
	}
	if cs.Name != "tcp connect" || cs.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("container span %q kind %v, want \"tcp connect\" CLIENT", cs.Name, cs.Kind)
	}
	if a := cs.Attrs(); a["network.peer.address"] != "127.0.0.1" || a["server.port"] != int64(child.Remote) ||
		a["network.local.port"] != int64(child.Local) || a["connwatch.outcome"] != "established" {
		t.Errorf("container span attributes %v", a)
	}
	if cs.EndTimeUnixNano <= cs.StartTimeUnixNano || cs.EndTimeUnixNano-cs.StartTimeUnixNano > uint64(time.Second) {
		t.Errorf("container span lasts %dns, want > 0 and < 1s", cs.EndTimeUnixNano-cs.StartTimeUnixNano)
	}

	hostSpans, err := r.WaitSpans(exportTimeout, 1, func(s otlptest.Span) bool {
		return s.ResourceAttrs()["process.pid"] == int64(os.Getpid()) && s.Attrs()["network.local.port"] == int64(hostLocal)
	})
	if err != nil {
		t.Fatalf("host span: %v", err)
	}
	hres := hostSpans[0].ResourceAttrs()
	if _, ok := hres["container.id"]; ok {
		t.Errorf("host span resource has container.id %v", hres["container.id"])
	}
	if hres["process.executable.name"] != filepath.Base(self) || hostSpans[0].Attrs()["server.port"] != int64(hostPort) {
		t.Errorf("host span: resource %v attributes %v", hres, hostSpans[0].Attrs())
	}
	if equalResources(cres, hres) {
		t.Errorf("host and container spans share one resource: %v", hres)
	}

	refused, err := r.WaitSpans(exportTimeout, 1, func(s otlptest.Span) bool {
		return s.Attrs()["server.port"] == int64(closedPort)
	})
	if err != nil {
		t.Fatalf("refused span: %v", err)
	}
	if st := refused[0].Status; st.GetCode() != tracepb.Status_STATUS_CODE_ERROR || st.GetMessage() != "ECONNREFUSED" {
		t.Errorf("refused span status %v %q, want ERROR ECONNREFUSED", st.GetCode(), st.GetMessage())
	}

	logs, err := r.WaitLogs(exportTimeout, 1, func(l otlptest.Log) bool {
		return l.EventName == "connwatch.tcp.connect" && l.ResourceAttrs()["container.id"] == id
	})
	if err != nil {
		t.Fatalf("container log record: %v", err)
	}
	if a := logs[0].Attrs(); a["network.peer.port"] != int64(child.Remote) || a["connwatch.event_id"] != int64(400) {
		t.Errorf("container log record attributes %v", a)
	}
	if _, err := r.WaitLogs(exportTimeout, 1, func(l otlptest.Log) bool {
		return l.EventName == "connwatch.tcp.connect" && l.ResourceAttrs()["process.pid"] == int64(os.Getpid()) &&
			l.Attrs()["network.local.port"] == int64(hostLocal)
	}); err != nil {
		t.Fatalf("host log record: %v", err)
	}
}

func equalResources(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func writeTempConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "connwatch.yaml")
	writeConfig(t, path, content)
	return path
}
