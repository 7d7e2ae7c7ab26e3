package otel

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

// memLogExporter keeps every exported record (sdklog has no in-memory
// exporter). Unlike tracetest.InMemoryExporter it keeps them across
// Shutdown.
type memLogExporter struct {
	mu       sync.Mutex
	records  []sdklog.Record
	shutdown bool
}

func (e *memLogExporter) Export(_ context.Context, rs []sdklog.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range rs {
		e.records = append(e.records, rs[i].Clone())
	}
	return nil
}

func (e *memLogExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	e.shutdown = true
	e.mu.Unlock()
	return nil
}

func (e *memLogExporter) ForceFlush(context.Context) error { return nil }

func (e *memLogExporter) Records() []sdklog.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]sdklog.Record(nil), e.records...)
}

// memSpanExporter keeps every exported span across Shutdown.
type memSpanExporter struct {
	mu       sync.Mutex
	spans    []sdktrace.ReadOnlySpan
	batches  int
	shutdown bool
}

func (e *memSpanExporter) ExportSpans(_ context.Context, ss []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.spans = append(e.spans, ss...)
	e.batches++
	return nil
}

func (e *memSpanExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	e.shutdown = true
	e.mu.Unlock()
	return nil
}

func (e *memSpanExporter) Spans() []sdktrace.ReadOnlySpan {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]sdktrace.ReadOnlySpan(nil), e.spans...)
}

// Fixed test inputs.
var (
	tAttempt  = time.Date(2026, 11, 25, 17, 28, 13, 364898327, time.UTC)
	tOutcome  = tAttempt.Add(1234567 * time.Nanosecond)
	tObserved = tAttempt.Add(time.Second)
	tStart    = time.Date(2026, 11, 25, 17, 0, 0, 0, time.UTC)
)

const containerID = "3f2a9c1b7d6e5f40123456789abcdef0123456789abcdef0123456789abcdef0"

func hostWorkload() *event.Workload {
	return &event.Workload{
		ExePath:   "/usr/bin/curl",
		ExeName:   "curl",
		Args:      []string{"curl", "-s", "https://example.com/"},
		Owner:     "alice",
		StartTime: tStart,
		Cgroup:    "/user.slice/user-1000.slice/session-3.scope",
	}
}

func containerWorkload() *event.Workload {
	return &event.Workload{
		ExePath:     "/usr/sbin/nginx",
		ExeName:     "nginx",
		Args:        []string{"nginx", "-g", "daemon off;"},
		Owner:       "root",
		StartTime:   tStart.Add(time.Minute),
		ContainerID: containerID,
		Runtime:     "containerd",
		PodUID:      "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
		Cgroup:      "/kubepods.slice/kubepods-pod1b4e28ba.slice/cri-containerd-3f2a.scope",
	}
}

// connectEvent is curl's outgoing IPv4 attempt from a host process.
func connectEvent() *event.Event {
	return &event.Event{
		KernelTime: 1_000_000_000,
		Time:       tAttempt,
		HostPPID:   900, HostPID: 1000, PPID: 900, PID: 1000,
		UID:          1000,
		EventID:      event.TCPConnect,
		ArgNum:       3,
		Comm:         "curl",
		Protocol:     "TCP",
		Remote:       netip.MustParseAddrPort("93.184.216.34:443"),
		Local:        netip.MustParseAddrPort("10.0.0.1:51000"),
		RemoteFamily: unix.AF_INET,
		Workload:     hostWorkload(),
	}
}

// resultEvent is the outcome of connectEvent with the given retval.
func resultEvent(retval int64) *event.Event {
	ev := connectEvent()
	ev.EventID = event.TCPConnectResult
	ev.Retval = retval
	ev.StartKernelTime = ev.KernelTime
	ev.Start = tAttempt
	ev.KernelTime += uint64(tOutcome.Sub(tAttempt))
	ev.Time = tOutcome
	return ev
}

// acceptEvent is an nginx in a container accepting an IPv6 connection
// from a v4-mapped peer.
func acceptEvent() *event.Event {
	return &event.Event{
		KernelTime: 2_000_000_000,
		Time:       tOutcome,
		PidNS:      4026532500, MntNS: 4026532501,
		HostPPID: 2000, HostPID: 2001, PPID: 0, PID: 7,
		UID:          0,
		EventID:      event.TCPAcceptV6,
		ArgNum:       3,
		Comm:         "nginx",
		Protocol:     "TCPv6",
		Remote:       netip.MustParseAddrPort("[::ffff:10.0.0.1]:51000"),
		Local:        netip.MustParseAddrPort("[::ffff:10.0.0.2]:443"),
		RemoteFamily: unix.AF_INET6,
		Workload:     containerWorkload(),
	}
}

func attrMapOf(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func resourceMapOf(r *resource.Resource) map[string]any {
	return attrMapOf(r.Attributes())
}

// testOptions are Options with a fixed host and an empty environment.
func testOptions() Options {
	return Options{
		Traces:   true,
		Logs:     true,
		HostName: "node-1",
		HostID:   "0123456789abcdef0123456789abcdef",
		Getenv:   func(string) string { return "" },
	}
}

func newTestPipeline(t testing.TB, opts Options) (*Pipeline, *memSpanExporter, *memLogExporter) {
	t.Helper()
	se, le := &memSpanExporter{}, &memLogExporter{}
	p, err := NewWithExporters(se, le, opts)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return tObserved }
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, se, le
}
