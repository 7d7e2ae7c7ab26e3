package otel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/connwatch/connwatch/enrich"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/pipeline"
)

// FuzzEventPath sends arbitrary samples down the agent's event path
// (decode, clock, enrichment on a fake procfs) to three sinks at once:
// the flat event lines of -format events, an Exporter writing JSON lines
// and an Exporter sending OTLP to a transport that decodes every request.
// After each sample everything is flushed: every line must be JSON, every
// request body must decode as its signal's export request, and what the
// transport received must be what the Exporter counts as exported.
//
// Everything here is self-contained (fz prefix): the helpers of the other
// test files may change under it.
func FuzzEventPath(f *testing.F) {
	for _, s := range fzSeeds() {
		f.Add(s)
	}
	h := fzNewHarness(f)
	f.Fuzz(func(t *testing.T, sample []byte) {
		h.run(t, sample)
	})
}

// fzSeeds are real samples of every wire event ID, some truncated, and
// garbage.
func fzSeeds() [][]byte {
	r4 := netip.MustParseAddrPort("10.1.2.3:443")
	l4 := netip.MustParseAddrPort("192.168.0.7:51000")
	r6 := netip.MustParseAddrPort("[2001:db8::1]:8443")
	l6 := netip.MustParseAddrPort("[2001:db8::2]:40000")
	mapped := netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080")
	ctx := func(id uint32, pid uint32, comm string, retval int64) *event.SampleBuilder {
		return event.NewSample(event.Event{
			KernelTime: 5_000_000_000, HostPPID: 1, HostPID: pid, PPID: 1, PID: pid, UID: 1000,
			EventID: id, Retval: retval, Comm: comm,
		})
	}
	container := func(id uint32) *event.SampleBuilder {
		return event.NewSample(event.Event{
			KernelTime: 6_000_000_000, PidNS: 4026532281, MntNS: 4026532279, HostPPID: 5101, HostPID: 5150,
			PPID: 0, PID: 1, UID: 0, EventID: id, Comm: "server",
		})
	}
	seeds := [][]byte{
		ctx(event.TCPConnect, 812, "curl", 0).Str("TCP").Sockaddr(r4).Sockaddr(l4).Bytes(),
		ctx(event.TCPAccept, 4242, "python3", 0).Str("TCP").Sockaddr(r4).Sockaddr(l4).Bytes(),
		ctx(event.TCPConnectV6, 6060, "envoy", 0).Str("TCPv6").Sockaddr(r6).Sockaddr(l6).Bytes(),
		ctx(event.TCPAcceptV6, 1, "systemd", 0).Str("TCPv6").Sockaddr(r6).Sockaddr(l6).Bytes(),
		ctx(event.TCPConnectResult, 812, "curl", 0).Str("TCP").Sockaddr(r4).Sockaddr(l4).ULong(4_999_000_000).Bytes(),
		ctx(event.TCPConnectResult, 812, "curl", -111).Str("TCP").Sockaddr(r4).Sockaddr(l4).ULong(4_999_000_000).Bytes(),
		ctx(event.TCPConnectAndResult, 4242, "python3", -110).Str("TCP").Sockaddr(r4).Sockaddr(l4).ULong(1_000_000_000).Bytes(),
		ctx(event.TCPConnectResultV6, 6060, "envoy", -113).Str("TCPv6").Sockaddr(r6).Sockaddr(l6).ULong(4_000_000_000).Bytes(),
		ctx(event.TCPConnectAndResultV6, 99999, "gone", 0).Str("TCPv6").Sockaddr(mapped).Sockaddr(l6).ULong(4_999_999_000).Bytes(),
		container(event.TCPAccept).Str("TCP").Sockaddr(r4).Sockaddr(l4).Bytes(),
		container(event.TCPConnectAndResult).Str("TCP").Sockaddr(r4).Sockaddr(l4).ULong(5_999_000_000).Bytes(),
		// An address family the kernel program does not decode.
		ctx(event.TCPConnect, 812, "curl", 0).Str("TCP").Family(1).Int(3).Bytes(),
		// Odd contexts: unknown event ID, no arguments, a comm that is
		// not UTF-8, a start after the end, the largest times.
		ctx(777, 812, "curl", 0).Str("TCP").Bytes(),
		ctx(event.TCPAccept, 812, "", 0).Bytes(),
		ctx(event.TCPConnectResult, 31337, "\xff\xfe\"\\\n", -104).Str("T\xc3").Sockaddr(r4).Sockaddr(l4).ULong(9_000_000_000).Bytes(),
		event.NewSample(event.Event{KernelTime: 1<<64 - 1, HostPID: 812, EventID: event.TCPConnectAndResult, Retval: -1 << 63, Comm: "curl"}).
			Str("TCP").Sockaddr(r4).Sockaddr(l4).ULong(1).Bytes(),
		{},
		[]byte("this is not a sample at all, only some garbage bytes of the right length to pass the context size check \x00\xff"),
	}
	// Truncated copies: inside the context and inside the arguments.
	for _, s := range seeds[:11] {
		seeds = append(seeds, s[:event.ContextSize-1], s[:event.ContextSize+3], s[:len(s)-1])
	}
	return seeds
}

// fzHarness is the event path and its three sinks, built once per fuzz
// process (an Exporter is too heavy to build per input).
type fzHarness struct {
	path     *pipeline.Path
	events   *fzBuffer
	evSink   *pipeline.LineSink
	jsonOut  *fzBuffer
	jsonExp  *Exporter
	otlpExp  *Exporter
	tt, lt   *fzTransport
	sinks    []pipeline.Sink
	prevJSON Stats
	prevPath pipeline.Stats
}

func fzNewHarness(tb testing.TB) *fzHarness {
	enr, err := enrich.New(enrich.Options{ProcRoot: "../enrich/testdata/proc", PasswdPath: "../enrich/testdata/passwd"})
	if err != nil {
		tb.Fatalf("enricher on the fake procfs: %v", err)
	}
	opts := Options{
		Traces:   true,
		Logs:     true,
		HostName: "fuzz-node",
		HostID:   "0123456789abcdef0123456789abcdef",
		Getenv:   func(string) string { return "" },
	}
	h := &fzHarness{events: &fzBuffer{}, jsonOut: &fzBuffer{}, tt: &fzTransport{traces: true}, lt: &fzTransport{}}
	h.evSink = pipeline.NewEventsSink(h.events, "tracepoint", nil)
	jopts := opts
	jopts.Stdout = h.jsonOut
	if h.jsonExp, err = newExporter(jopts, nil, nil); err != nil {
		tb.Fatal(err)
	}
	if h.otlpExp, err = newExporter(opts, h.tt, h.lt); err != nil {
		tb.Fatal(err)
	}
	h.sinks = []pipeline.Sink{h.evSink, h.jsonExp, h.otlpExp}
	h.path = pipeline.New(pipeline.Options{Sink: fzTee(h.sinks), Enricher: enr})
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range h.sinks {
			_ = s.Shutdown(ctx)
		}
	})
	return h
}

// run handles one sample, flushes, and checks what came out.
func (h *fzHarness) run(t *testing.T, sample []byte) {
	h.events.reset()
	h.jsonOut.reset()
	h.prevJSON, h.prevPath = h.jsonExp.Stats(), h.path.Stats()

	herr := h.path.Handle(sample)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range h.sinks {
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}

	ps := h.path.Stats()
	events := ps.Events - h.prevPath.Events
	if herr != nil && events != 0 {
		t.Fatalf("Handle failed (%v) but %d events reached the sinks", herr, events)
	}
	if lines := fzCheckLines(t, "event line", h.events.take()); uint64(lines) != events {
		t.Fatalf("%d event lines for %d events", lines, events)
	}

	js := h.jsonExp.Stats()
	jsonRecords := js.SpansExported + js.LogsExported - h.prevJSON.SpansExported - h.prevJSON.LogsExported
	if lines := fzCheckLines(t, "JSON line", h.jsonOut.take()); uint64(lines) != jsonRecords {
		t.Fatalf("%d JSON lines, the Exporter counts %d records exported", lines, jsonRecords)
	}
	if js.SpansFailed+js.LogsFailed != 0 || js.Events != ps.Events {
		t.Fatalf("JSON Exporter: %d spans and %d logs failed; %d events seen of %d", js.SpansFailed, js.LogsFailed, js.Events, ps.Events)
	}

	ost := h.otlpExp.Stats()
	for _, tr := range []*fzTransport{h.tt, h.lt} {
		if err := tr.takeErr(); err != nil {
			t.Fatal(err)
		}
	}
	spans, logs := h.tt.count(), h.lt.count()
	if spans != ost.SpansExported || logs != ost.LogsExported {
		t.Fatalf("transport received %d spans and %d logs; the Exporter counts %d and %d exported", spans, logs, ost.SpansExported, ost.LogsExported)
	}
	if ost.SpansEmitted != ost.SpansExported || ost.LogsEmitted != ost.LogsExported ||
		ost.SpansFailed+ost.LogsFailed+ost.SpansQueueFull+ost.LogsQueueFull != 0 {
		t.Fatalf("OTLP Exporter after Flush: %+v", ost)
	}
	// Both Exporters map the same events.
	if ost.SpansExported != js.SpansExported || ost.LogsExported != js.LogsExported {
		t.Fatalf("OTLP Exporter exported %d spans and %d logs, the JSON one %d and %d",
			ost.SpansExported, ost.LogsExported, js.SpansExported, js.LogsExported)
	}
}

// fzCheckLines fails unless every line of b is valid JSON, and returns
// the number of lines.
func fzCheckLines(t *testing.T, what string, b []byte) int {
	t.Helper()
	if len(b) == 0 {
		return 0
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s output does not end with a newline: %q", what, b)
	}
	n := 0
	for line := range bytes.SplitSeq(b[:len(b)-1], []byte{'\n'}) {
		n++
		if !json.Valid(line) {
			t.Fatalf("%s %d is not valid JSON: %q", what, n, line)
		}
	}
	return n
}

// fzTee hands every event to each sink.
type fzTee []pipeline.Sink

func (t fzTee) Emit(ev *event.Event) {
	for _, s := range t {
		s.Emit(ev)
	}
}

func (t fzTee) Flush(ctx context.Context) error {
	var errs []error
	for _, s := range t {
		errs = append(errs, s.Flush(ctx))
	}
	return errors.Join(errs...)
}

func (t fzTee) Shutdown(ctx context.Context) error {
	var errs []error
	for _, s := range t {
		errs = append(errs, s.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// fzBuffer is a bytes.Buffer safe for the sinks' flush goroutines.
type fzBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *fzBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *fzBuffer) take() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := bytes.Clone(b.b.Bytes())
	b.b.Reset()
	return out
}

func (b *fzBuffer) reset() { b.take() }

// fzTransport decodes every body as an export request of its signal and
// counts the records; a body that does not decode, or a record without
// proper IDs, is an error the fuzz function reports.
type fzTransport struct {
	traces bool

	mu      sync.Mutex
	records uint64
	err     error
}

func (f *fzTransport) send(_ context.Context, body []byte) (int64, error) {
	n, err := f.decode(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		if f.err == nil {
			f.err = err
		}
		// Delivered all the same: the fuzz function reports this
		// error before it compares counts.
	}
	f.records += n
	return 0, nil
}

func (f *fzTransport) decode(body []byte) (uint64, error) {
	var n uint64
	if f.traces {
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			return 0, fmt.Errorf("trace export body does not decode: %v (%d bytes)", err, len(body))
		}
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					n++
					if len(s.GetTraceId()) != 16 || len(s.GetSpanId()) != 8 {
						return n, fmt.Errorf("span %q with a %d-byte trace ID and a %d-byte span ID", s.GetName(), len(s.GetTraceId()), len(s.GetSpanId()))
					}
				}
			}
		}
		return n, nil
	}
	req := &collogpb.ExportLogsServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		return 0, fmt.Errorf("log export body does not decode: %v (%d bytes)", err, len(body))
	}
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, l := range sl.GetLogRecords() {
				n++
				if id := len(l.GetTraceId()); id != 0 && id != 16 {
					return n, fmt.Errorf("log record with a %d-byte trace ID", id)
				}
			}
		}
	}
	return n, nil
}

func (f *fzTransport) shutdown(context.Context) error { return nil }

func (f *fzTransport) count() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.records
}

// takeErr returns and clears the first error since the last call.
func (f *fzTransport) takeErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.err
	f.err = nil
	return err
}
