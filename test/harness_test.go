//go:build linux

// Package test holds connwatch's privileged tests: they load the real BPF
// objects, open real connections and assert what the agent reports. They
// need root and skip, saying why, without it. CONNWATCH_ATTACH selects the
// attach mode (default tracepoint), which is how the VM kernel matrix runs
// them once per mode.
package test

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/pipeline"
)

// childEnv makes the test binary act as a namespaced "container" process.
const childEnv = "CONNWATCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "privileged test: needs root to load BPF programs (run `sudo make test-privileged`)")
	}
}

// skipOrFail skips the test, or fails it when CONNWATCH_REQUIRE_PRIVILEGED
// is set (as CI does), so that a privileged test can never pass by skipping.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CONNWATCH_REQUIRE_PRIVILEGED") != "" {
		t.Fatalf("CONNWATCH_REQUIRE_PRIVILEGED is set but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// attachMode is the mode under test.
func attachMode(t *testing.T) bpf.Mode {
	t.Helper()
	m, err := bpf.ParseMode(os.Getenv("CONNWATCH_ATTACH"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("CONNWATCH_ATTACH") == "" {
		m = bpf.ModeTracepoint
	}
	return m
}

// watcher is a loaded probe whose decoded events arrive on a channel.
type watcher struct {
	probe  *bpf.Probe
	events chan event.Event
	lost   chan uint64
	clock  *event.Clock

	skipped passedOver[event.Event] // the events a waitEvent passed over
}

// passedOver holds what a wait for one event or agent line passed over,
// oldest first, for later waits: the per-CPU perf rings are read in turn
// (by the tests' probes and by the agent), so an accept made on one CPU
// can arrive before the connect it answers made on another. It keeps the
// newest maxSkipped.
type passedOver[T any] []T

// maxSkipped bounds a passedOver; the oldest go first.
const maxSkipped = 100000

// add keeps x, dropping the oldest when maxSkipped are kept.
func (p *passedOver[T]) add(x T) {
	if len(*p) == maxSkipped {
		*p = (*p)[1:]
	}
	*p = append(*p, x)
}

// take removes and returns the oldest x that matches.
func (p *passedOver[T]) take(match func(T) bool) (T, bool) {
	for i, x := range *p {
		if match(x) {
			*p = append((*p)[:i], (*p)[i+1:]...)
			return x, true
		}
	}
	var none T
	return none, false
}

// find returns the oldest x that matches, keeping it.
func (p passedOver[T]) find(match func(T) bool) (T, bool) {
	for _, x := range p {
		if match(x) {
			return x, true
		}
	}
	var none T
	return none, false
}

func startProbe(t *testing.T, opts bpf.Options) *watcher {
	t.Helper()
	requireRoot(t)
	if opts.Mode == "" {
		opts.Mode = attachMode(t)
	}
	p, err := bpf.Open(opts)
	if err != nil {
		t.Fatalf("opening probe in %s mode: %v", opts.Mode, err)
	}
	w := &watcher{probe: p, events: make(chan event.Event, 4096), lost: make(chan uint64, 64), clock: event.NewClock()}
	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var rec bpf.Record
		// The agent's own event path, into the channel.
		path := pipeline.New(pipeline.Options{Sink: &chanSink{events: w.events, stop: stop}, Clock: w.clock})
		for {
			err := p.Read(&rec)
			if errors.Is(err, bpf.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("reading perf buffer: %v", err)
				return
			}
			if rec.LostSamples > 0 {
				select {
				case w.lost <- rec.LostSamples:
				default:
				}
				continue
			}
			if err := path.Handle(rec.RawSample); err != nil {
				t.Errorf("decoding a sample the kernel sent: %v", err)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		p.Close()
		<-done
	})
	return w
}

// chanSink hands events to a channel until stop is closed. Tests that
// make many connections need not drain them all.
type chanSink struct {
	events chan<- event.Event
	stop   <-chan struct{}
}

func (s *chanSink) Emit(ev *event.Event) {
	select {
	case s.events <- *ev:
	case <-s.stop:
	}
}
func (s *chanSink) Flush(context.Context) error    { return nil }
func (s *chanSink) Shutdown(context.Context) error { return nil }

// waitEvent returns the first event for which match is true, failing the
// test after timeout.
func (w *watcher) waitEvent(t *testing.T, timeout time.Duration, what string, match func(*event.Event) bool) event.Event {
	t.Helper()
	if ev, ok := w.skipped.take(func(ev event.Event) bool { return match(&ev) }); ok {
		return ev
	}
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-w.events:
			if match(&ev) {
				return ev
			}
			w.skipped.add(ev)
		case n := <-w.lost:
			t.Logf("kernel lost %d samples", n)
		case <-deadline:
			t.Fatalf("no event for %s within %v", what, timeout)
		}
	}
}

// noEvent fails if an event matching match arrives within d.
func (w *watcher) noEvent(t *testing.T, d time.Duration, what string, match func(*event.Event) bool) {
	t.Helper()
	if ev, ok := w.skipped.find(func(ev event.Event) bool { return match(&ev) }); ok {
		t.Fatalf("unexpected event for %s: %+v", what, ev)
	}
	deadline := time.After(d)
	for {
		select {
		case ev := <-w.events:
			if match(&ev) {
				t.Fatalf("unexpected event for %s: %+v", what, ev)
			}
			w.skipped.add(ev)
		case <-deadline:
			return
		}
	}
}

// listen opens a TCP listener on addr that accepts and holds connections
// until the test ends.
func listen(t *testing.T, network, addr string) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		skipOrFail(t, "cannot listen on %s %s: %v", network, addr, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func portOf(t *testing.T, addr net.Addr) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

func commOf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
