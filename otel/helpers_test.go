package otel

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

// memTransport is a transport that decodes every body it is sent as the
// export request of its signal and keeps the requests (across Shutdown).
// It can be made to fail (fail, failNext), to answer with a partial
// success (reject) or to hang (hold); it counts its calls.
type memTransport struct {
	tb     testing.TB
	traces bool // decode ExportTraceServiceRequest, else ExportLogsServiceRequest

	mu        sync.Mutex
	treqs     []*coltracepb.ExportTraceServiceRequest
	lreqs     []*collogpb.ExportLogsServiceRequest
	started   int // calls begun
	calls     int // calls returned
	callTimes []time.Time
	failErr   error // returned by every call while set
	failN     int   // calls still to fail with failNErr
	failNErr  error
	rejected  int64         // partial success answer
	hold      chan struct{} // non-nil: calls wait for it to close (or ctx)
	closed    bool          // shutdown was called
	changed   chan struct{} // closed and replaced on every call
}

func newMemTransport(tb testing.TB, traces bool) *memTransport {
	return &memTransport{tb: tb, traces: traces, changed: make(chan struct{})}
}

func (m *memTransport) send(ctx context.Context, body []byte) (int64, error) {
	m.mu.Lock()
	hold := m.hold
	m.started++
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			m.note(nil, nil)
			return 0, ctx.Err()
		}
	}
	var treq *coltracepb.ExportTraceServiceRequest
	var lreq *collogpb.ExportLogsServiceRequest
	var err error
	if m.traces {
		treq = &coltracepb.ExportTraceServiceRequest{}
		err = proto.Unmarshal(body, treq)
	} else {
		lreq = &collogpb.ExportLogsServiceRequest{}
		err = proto.Unmarshal(body, lreq)
	}
	if err != nil {
		m.tb.Errorf("export request body does not decode: %v", err)
		m.note(nil, nil)
		// What a receiver answers to a request it cannot decode.
		return 0, status.Error(codes.Internal, "grpc: error unmarshalling request: "+err.Error())
	}
	m.mu.Lock()
	var ferr error
	switch {
	case m.failN > 0:
		m.failN--
		ferr = m.failNErr
	case m.failErr != nil:
		ferr = m.failErr
	}
	rejected := m.rejected
	m.mu.Unlock()
	if ferr != nil {
		m.note(nil, nil)
		return 0, ferr
	}
	m.note(treq, lreq)
	return rejected, nil
}

// note counts a call and records the request it delivered, if any.
func (m *memTransport) note(treq *coltracepb.ExportTraceServiceRequest, lreq *collogpb.ExportLogsServiceRequest) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	m.callTimes = append(m.callTimes, time.Now())
	if treq != nil {
		m.treqs = append(m.treqs, treq)
	}
	if lreq != nil {
		m.lreqs = append(m.lreqs, lreq)
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// reset forgets the recorded requests and reports further problems to
// tb, so that one transport can serve many fuzz inputs.
func (m *memTransport) reset(tb testing.TB) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tb, m.treqs, m.lreqs = tb, nil, nil
}

func (m *memTransport) shutdown(context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

// fail makes every later call fail with err (nil: succeed again).
func (m *memTransport) fail(err error) {
	m.mu.Lock()
	m.failErr = err
	m.mu.Unlock()
}

// failNext makes the next n calls fail with err.
func (m *memTransport) failNext(n int, err error) {
	m.mu.Lock()
	m.failN, m.failNErr = n, err
	m.mu.Unlock()
}

// reject makes every later successful call answer with a partial success
// rejecting n records.
func (m *memTransport) reject(n int64) {
	m.mu.Lock()
	m.rejected = n
	m.mu.Unlock()
}

// holdCalls makes calls wait until the returned function is called (or
// their context ends).
func (m *memTransport) holdCalls() (release func()) {
	ch := make(chan struct{})
	m.mu.Lock()
	m.hold = ch
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			m.hold = nil
			m.mu.Unlock()
			close(ch)
		})
	}
}

func (m *memTransport) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

func (m *memTransport) CallTimes() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.callTimes...)
}

func (m *memTransport) IsShutdown() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// waitCalls waits until at least n calls returned.
func (m *memTransport) waitCalls(tb testing.TB, n int) {
	tb.Helper()
	m.wait(tb, n, func() int { return m.calls })
}

// waitStarted waits until at least n calls began.
func (m *memTransport) waitStarted(tb testing.TB, n int) {
	tb.Helper()
	m.wait(tb, n, func() int { return m.started })
}

func (m *memTransport) wait(tb testing.TB, n int, count func() int) {
	tb.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		m.mu.Lock()
		calls, ch := count(), m.changed
		m.mu.Unlock()
		if calls >= n {
			return
		}
		select {
		case <-ch:
		case <-timeout.C:
			tb.Fatalf("%d transport calls after 10s, want %d", calls, n)
		}
	}
}

func (m *memTransport) TraceRequests() []*coltracepb.ExportTraceServiceRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*coltracepb.ExportTraceServiceRequest(nil), m.treqs...)
}

func (m *memTransport) LogRequests() []*collogpb.ExportLogsServiceRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*collogpb.ExportLogsServiceRequest(nil), m.lreqs...)
}

// Spans returns every delivered span with its resource and scope, in
// the order of the requests.
func (m *memTransport) Spans() []otlptest.Span {
	var out []otlptest.Span
	for _, req := range m.TraceRequests() {
		out = append(out, otlptest.SpansOf(req)...)
	}
	return out
}

// Logs returns every delivered log record with its resource and scope.
func (m *memTransport) Logs() []otlptest.Log {
	var out []otlptest.Log
	for _, req := range m.LogRequests() {
		out = append(out, otlptest.LogsOf(req)...)
	}
	return out
}

// discardTransport accepts every body without looking at it.
type discardTransport struct{}

func (discardTransport) send(context.Context, []byte) (int64, error) { return 0, nil }
func (discardTransport) shutdown(context.Context) error              { return nil }

// grpcError returns a gRPC status error with code, carrying a RetryInfo
// detail asking for delay when delay >= 0.
func grpcError(tb testing.TB, code codes.Code, delay time.Duration) error {
	tb.Helper()
	st := status.New(code, "test: "+code.String())
	if delay >= 0 {
		var err error
		st, err = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return st.Err()
}

var errExport = errors.New("collector gone")

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
