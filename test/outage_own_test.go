//go:build linux

package test

// The agent's own connections during a collector outage (outage_test.go
// has the others): its reconnects are left out in the kernel and
// counted, unless probe.include_agent asks for them.

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

// ogOwnConnects counts, with a probe of the test's own that leaves nothing
// out, the refused connections pid makes to port.
type ogOwnConnects struct {
	mu      sync.Mutex
	refused int
}

func ogWatchConnects(t *testing.T, pid, port int) *ogOwnConnects {
	w := startProbe(t, bpf.Options{})
	o := &ogOwnConnects{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case ev := <-w.events:
				if int(ev.HostPID) == pid && ev.IsResult() && int(ev.Remote.Port()) == port && ev.Outcome() == event.OutcomeRefused {
					o.mu.Lock()
					o.refused++
					o.mu.Unlock()
				}
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return o
}

func (o *ogOwnConnects) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.refused
}

// ogOwnAgent starts an agent exporting to r with extra config and watches
// its refused connects to r's port with ogWatchConnects; it returns the
// agent, its telemetry port, r's port and the watch.
func ogOwnAgent(t *testing.T, r *otlptest.Receiver, extra string) (a *agentProc, port, recvPort int, watch *ogOwnConnects) {
	t.Helper()
	a, port, _ = ogAgent(t, r, extra)
	_, p, _ := net.SplitHostPort(r.Addr())
	recvPort, _ = strconv.Atoi(p)
	return a, port, recvPort, ogWatchConnects(t, a.cmd.Process.Pid, recvPort)
}

// ogOwnOutage takes the collector down for 8 s with connections made
// meanwhile, so that the agent's exports fail and its gRPC client tries
// to reconnect to the closed port, then brings it back and waits until
// everything is delivered.
func ogOwnOutage(t *testing.T, r *otlptest.Receiver, port int, ln net.Listener) map[string]float64 {
	t.Helper()
	r.Stop()
	start := time.Now()
	ogDial(ln.Addr().String(), 50, 1, 0, 100)
	time.Sleep(time.Until(start.Add(8 * time.Second)))
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	return ogSettle(t, port, time.Minute)
}

// The agent's own connections (its reconnects to a collector that is
// down) are left out in the kernel and counted; with probe.include_agent
// they are reported like any other.
func TestOutageAgentOwnConnectionsLeftOut(t *testing.T) {
	requireRoot(t)
	r := otlptest.Start(t)
	a, port, rp, watch := ogOwnAgent(t, r, "")
	pid := a.cmd.Process.Pid
	ln, lport := ogListener(t)
	tally := newOgTally(r, lport)
	tally.add(ogDial(ln.Addr().String(), 200, 1, 0, 20).conns)
	if !tally.wait(30 * time.Second) {
		t.Fatalf("before the outage: %s", tally.summary())
	}
	before, err := ogMetrics(port)
	if err != nil {
		t.Fatal(err)
	}
	m := ogOwnOutage(t, r, port, ln)
	ownSpans, ownLogs := 0, 0
	var example string
	for _, s := range r.Spans() {
		if s.ResourceAttrs()["process.pid"] == int64(pid) {
			ownSpans++
			if example == "" {
				example = fmt.Sprintf("%s %v", s.Name, s.Attrs())
			}
		}
	}
	for _, l := range r.Logs() {
		if l.ResourceAttrs()["process.pid"] == int64(pid) {
			ownLogs++
		}
	}
	if ownSpans+ownLogs > 0 {
		t.Errorf("include_agent false: %d spans and %d log records of the agent (pid %d) arrived, e.g. %s", ownSpans, ownLogs, pid, example)
	}
	own0, own1 := before["connwatch_agent_own_events_total"], m["connwatch_agent_own_events_total"]
	refused := watch.count()
	if own1 == 0 {
		t.Errorf("connwatch_agent_own_events_total is 0; the test's own probe saw %d refused connects of the agent to %d", refused, rp)
	}
	if refused > 0 && own1-own0 < float64(refused) {
		t.Errorf("the agent made %d refused connects while the collector was down, but connwatch_agent_own_events_total rose by only %v", refused, own1-own0)
	}
	if refused == 0 {
		t.Logf("the agent made no connection attempt while the collector was down (its gRPC client did not reconnect)")
	}
	t.Logf("include_agent false: agent pid %d made %d refused connects to the collector's port while it was down (seen by the test's own probe); connwatch_agent_own_events_total %v -> %v; export retries %v",
		pid, refused, own0, own1, sum(m, "connwatch_export_retries_total"))

	// include_agent: true
	r2 := otlptest.Start(t)
	b, port2, rp2, watch2 := ogOwnAgent(t, r2, "probe:\n  include_agent: true\n")
	pid2 := b.cmd.Process.Pid
	m2 := ogOwnOutage(t, r2, port2, ln)
	refused2 := watch2.count()
	refusedOfAgent := func(s otlptest.Span) bool {
		return s.ResourceAttrs()["process.pid"] == int64(pid2) && s.Attrs()["server.port"] == int64(rp2) &&
			s.Attrs()["connwatch.outcome"] == "refused"
	}
	spans, err := r2.WaitSpans(30*time.Second, 1, refusedOfAgent)
	if err != nil {
		t.Errorf("include_agent true: refused connects of the agent (pid %d) to %d: %v (its own probe saw %d)", pid2, rp2, err, refused2)
	}
	if refused2 > 0 && len(spans) < refused2 {
		// Those made last may still be in a batch; wait for them.
		spans, _ = r2.WaitSpans(15*time.Second, refused2, refusedOfAgent)
		if len(spans) < refused2 {
			t.Errorf("include_agent true: %d refused-connect spans of the agent arrived; the test's probe saw %d", len(spans), refused2)
		}
	}
	t.Logf("include_agent true: agent pid %d made %d refused connects (test's probe), %d refused-connect spans with its pid arrived; connwatch_agent_own_events_total %v",
		pid2, refused2, len(spans), m2["connwatch_agent_own_events_total"])
}
