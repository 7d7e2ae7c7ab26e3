package otel

// The package's shared test inputs (fixed times, the events of a host and
// of a container process, options) and the helpers that run an Exporter;
// the transports it exports to are in memtransport_test.go.

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

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

// closeEvent is the close of resultEvent(0)'s connection (server false)
// or of acceptEvent's (server true), with the socket error retval.
func closeEvent(server bool, retval int64) *event.Event {
	ev := resultEvent(0)
	if server {
		ev = acceptEvent()
	}
	ev.EventID = event.TCPClose
	if server {
		ev.EventID = event.TCPCloseV6
	}
	ev.ArgNum, ev.Retval, ev.Protocol = 4, retval, ""
	ev.StartKernelTime, ev.Start = ev.KernelTime, ev.Time
	ev.KernelTime += uint64(1500 * time.Millisecond)
	ev.Time = ev.Time.Add(1500 * time.Millisecond)
	ev.ISN, ev.HasISN = 0x9abcdef0, true
	ev.Close = event.Close{BytesSent: 200001, BytesReceived: 50001, RTTMicros: 42, Retransmits: 3, OldState: 4, Server: server}
	if retval != 0 {
		ev.Close.OldState = event.StateEstablished
	}
	return ev
}

// wantConnIDs derives the trace ID, the span ID and (for an accept) the
// parent span ID that ev's span or record must carry, as the package
// documentation of connIDs lays out the hash input, independently of
// connIDs; ok is false when ev does not name its connection.
func wantConnIDs(ev *event.Event) (tid [16]byte, sid, parent [8]byte, ok bool) {
	if !ev.HasISN || !ev.Local.IsValid() || !ev.Remote.IsValid() || !(ev.IsResult() || ev.IsAccept() || ev.IsClose()) {
		return tid, sid, parent, false
	}
	client := ev.Local
	if ev.Inbound() {
		client = ev.Remote
	}
	t, cs, ss := documentedIDs("connwatch trace key v1", client, ev.ISN)
	copy(tid[:], t)
	copy(sid[:], cs)
	if ev.Inbound() {
		copy(parent[:], cs)
		copy(sid[:], ss)
	}
	return tid, sid, parent, true
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

// newTestExporter returns an Exporter sending both signals to memory
// transports (traces, logs), with e.now fixed at tObserved. It is shut
// down when the test ends.
func newTestExporter(t testing.TB, opts Options) (*Exporter, *memTransport, *memTransport) {
	t.Helper()
	tt, lt := newMemTransport(t, true), newMemTransport(t, false)
	e, err := newExporter(opts, tt, lt)
	if err != nil {
		t.Fatal(err)
	}
	e.now = func() time.Time { return tObserved }
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx) // a test's own Shutdown checks the result
	})
	return e, tt, lt
}

func flush(t testing.TB, e *Exporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func shutdown(t testing.TB, e *Exporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after 15 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
