package otel

// The transports the package's tests export to: memTransport records and
// decodes what it is sent and can fail, reject or hang on demand;
// discardTransport takes everything. grpcError and errExport are the
// failures they are given.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

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
