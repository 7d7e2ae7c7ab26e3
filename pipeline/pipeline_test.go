package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/connwatch/connwatch/event"
)

// recorder is a Sink keeping copies of what it is given.
type recorder struct {
	evs              []event.Event
	flushes, closing int
}

func (r *recorder) Emit(ev *event.Event)           { r.evs = append(r.evs, *ev) }
func (r *recorder) Flush(context.Context) error    { r.flushes++; return nil }
func (r *recorder) Shutdown(context.Context) error { r.closing++; return nil }

// fixedEnricher gives every event the same workload.
type fixedEnricher struct{ w *event.Workload }

func (f fixedEnricher) Enrich(ev *event.Event) { ev.Workload = f.w }

const offset = 1_700_000_000_000_000_000 // wall = kernel + offset (ns)

func testClock() *event.Clock {
	c := &event.Clock{}
	c.SetOffset(offset)
	return c
}

var (
	remote = netip.MustParseAddrPort("127.0.0.1:8080")
	local  = netip.MustParseAddrPort("127.0.0.1:40000")
)

func combinedSample() []byte {
	return event.NewSample(event.Event{KernelTime: 2_000, HostPID: 42, PID: 42, UID: 7,
		EventID: event.TCPConnectAndResult, Retval: -111, Comm: "curl"}).
		Str("TCP").Sockaddr(remote).Sockaddr(local).ULong(1_000).Bytes()
}

func TestPathSplitsCombinedSample(t *testing.T) {
	rec := &recorder{}
	w := &event.Workload{ExeName: "curl"}
	var seen []uint32
	p := New(Options{Sink: rec, Enricher: fixedEnricher{w}, Clock: testClock(),
		Observe: func(ev *event.Event) { seen = append(seen, ev.EventID) }})
	if err := p.Handle(combinedSample()); err != nil {
		t.Fatal(err)
	}
	if len(rec.evs) != 2 {
		t.Fatalf("%d events, want the attempt and its result", len(rec.evs))
	}
	attempt, result := rec.evs[0], rec.evs[1]
	if attempt.EventID != event.TCPConnect || result.EventID != event.TCPConnectResult {
		t.Errorf("event IDs %d, %d; want 400, 410", attempt.EventID, result.EventID)
	}
	if attempt.Time.UnixNano() != offset+1_000 || attempt.Retval != 0 {
		t.Errorf("attempt at %d retval %d; want %d, 0", attempt.Time.UnixNano(), attempt.Retval, offset+1_000)
	}
	if result.Start.UnixNano() != offset+1_000 || result.Time.UnixNano() != offset+2_000 || result.Retval != -111 {
		t.Errorf("result %d..%d retval %d", result.Start.UnixNano(), result.Time.UnixNano(), result.Retval)
	}
	if attempt.Remote != remote || result.Local != local || result.HostPID != 42 {
		t.Errorf("addresses %v %v pid %d", attempt.Remote, result.Local, result.HostPID)
	}
	if attempt.Workload != w || result.Workload != w {
		t.Errorf("workloads %p %p, want %p for both", attempt.Workload, result.Workload, w)
	}
	if len(seen) != 2 || seen[0] != event.TCPConnect {
		t.Errorf("observed %v", seen)
	}
	if st := p.Stats(); st != (Stats{Decoded: 1, Events: 2}) {
		t.Errorf("stats %+v", st)
	}
}

func TestPathCountsMalformed(t *testing.T) {
	rec := &recorder{}
	p := New(Options{Sink: rec, Clock: testClock()})
	good := combinedSample()
	queue := make(chan *[]byte, 3)
	short := good[:event.ContextSize-1]
	for _, b := range [][]byte{short, good, good[:event.ContextSize+3]} {
		queue <- &b
	}
	close(queue)
	var released, failed int
	p.Run(queue, func(*[]byte) { released++ }, func(n int, err error) {
		failed++
		if !errors.Is(err, event.ErrShort) {
			t.Errorf("sample of %d bytes: %v, want ErrShort", n, err)
		}
	})
	if released != 3 || failed != 2 || len(rec.evs) != 2 {
		t.Errorf("released %d, failed %d, events %d; want 3, 2, 2", released, failed, len(rec.evs))
	}
	if st := p.Stats(); st.Malformed != 2 || st.Decoded != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestEventsSinkLines(t *testing.T) {
	var buf bytes.Buffer
	s := NewEventsSink(&buf, "tracepoint", nil)
	p := New(Options{Sink: s, Clock: testClock()})
	if err := p.Handle(combinedSample()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil {
		t.Fatal(err)
	}
	if m["event"] != "connwatch.tcp.connect.result" || m["retval"] != float64(-111) || m["mode"] != "tracepoint" ||
		m["remote_port"] != float64(8080) {
		t.Errorf("result line %v", m)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestEventsSinkWriteError(t *testing.T) {
	var reported error
	s := NewEventsSink(failingWriter{}, "kprobe", func(err error) { reported = err })
	p := New(Options{Sink: s, Clock: testClock()})
	p.Handle(combinedSample())
	err := s.Shutdown(context.Background())
	if err == nil || reported == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("Shutdown: %v, reported %v; want the write error", err, reported)
	}
}

// A LineSink writes its header first, then a line per event its format
// shows; events the format leaves out write nothing.
func TestLineSinkHeaderAndSkips(t *testing.T) {
	var buf bytes.Buffer
	s := NewLineSink(&buf, "rows", []byte("HEAD\n"), func(dst []byte, ev *event.Event) []byte {
		if !ev.IsResult() {
			return dst
		}
		return append(dst, event.Name(ev.EventID)+"\n"...)
	}, nil)
	p := New(Options{Sink: s, Clock: testClock()})
	if err := p.Handle(combinedSample()); err != nil { // an attempt and its result
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "HEAD\nconnwatch.tcp.connect.result\n" {
		t.Errorf("output %q", got)
	}
}
