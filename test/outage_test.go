//go:build linux

package test

// Collector outages, slow and failing collectors and the export queue's
// directory, counted connection by connection: every connection a test
// makes is recorded by its local port and time, and each of its five
// records (CLIENT and SERVER span, the connect, connect-result and accept
// log records) must arrive, or, where the queue is allowed to overflow, be
// counted as dropped. The long tests (five-minute outage, 2 000 conn/s
// against a slow collector) run only with CONNWATCH_LONG_TESTS=1, as
// `make test-outage` sets.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

// ogLongTest skips a test of minutes unless CONNWATCH_LONG_TESTS=1.
func ogLongTest(t *testing.T) {
	t.Helper()
	if os.Getenv("CONNWATCH_LONG_TESTS") != "1" {
		t.Skip("long test: make test-outage runs it")
	}
}

// ogListener listens on a free loopback port and accepts and closes every
// connection at once, so that the tests' thousands of connections hold no
// file descriptors.
func ogListener(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		skipOrFail(t, "cannot listen on loopback: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// EMFILE and the like: keep accepting.
				time.Sleep(time.Millisecond)
				continue
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// ogConn is one connection a test made: its local port and the time just
// before the dial and just after it returned.
type ogConn struct {
	port   int
	t0, t1 time.Time
}

// ogDialed is what a paced dial did.
type ogDialed struct {
	conns    []ogConn
	errs     int
	firstErr error
	elapsed  time.Duration
}

func (d ogDialed) rate() float64 {
	if d.elapsed <= 0 {
		return 0
	}
	return float64(len(d.conns)) / d.elapsed.Seconds()
}

// ogDial makes connections to addr at rate per second, spread evenly:
// connection j is begun at start + j/rate by worker j mod workers (a
// worker that falls behind dials at once). It makes n connections, or,
// with n 0, as many as fit in d. Each connection is closed at once.
func ogDial(addr string, rate float64, workers int, d time.Duration, n int) ogDialed {
	if n == 0 {
		n = int(rate * d.Seconds())
	}
	var (
		mu  sync.Mutex
		out ogDialed
		wg  sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var mine []ogConn
			var errs int
			var firstErr error
			for j := w; j < n; j += workers {
				at := start.Add(time.Duration(float64(j) / rate * float64(time.Second)))
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				t0 := time.Now()
				c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				mine = append(mine, ogConn{port: c.LocalAddr().(*net.TCPAddr).Port, t0: t0, t1: time.Now()})
				c.Close()
			}
			mu.Lock()
			out.conns = append(out.conns, mine...)
			out.errs += errs
			if out.firstErr == nil {
				out.firstErr = firstErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	sort.Slice(out.conns, func(i, j int) bool { return out.conns[i].t0.Before(out.conns[j].t0) })
	return out
}

// ogChildEnv makes the test binary run ogChildMain: a dialer and its
// listener in new pid, mount and network namespaces.
const ogChildEnv = "CONNWATCH_OUTAGE_DIALER"

func init() {
	if os.Getenv(ogChildEnv) == "1" {
		os.Exit(ogChildMain())
	}
}

// ogChildMain brings lo up, listens on 127.0.0.1 (accepting and closing
// every connection), says "ready PORT", then for each line "dial RATE
// WORKERS DURATION_NS N" on stdin makes those connections to its
// listener and writes "conn PORT T0 T1" for each (Unix ns) and "done
// ERRORS ELAPSED_NS FIRST_ERROR". It exits when stdin closes.
func ogChildMain() int {
	if err := loUp(); err != nil {
		fmt.Fprintln(os.Stderr, "outage dialer: lo up:", err)
		return 1
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "outage dialer: listen:", err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(time.Millisecond)
				continue
			}
			c.Close()
		}
	}()
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	fmt.Fprintf(out, "ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var rate float64
		var workers, n int
		var d int64
		if _, err := fmt.Sscanf(in.Text(), "dial %g %d %d %d", &rate, &workers, &d, &n); err != nil {
			fmt.Fprintf(os.Stderr, "outage dialer: bad command %q: %v\n", in.Text(), err)
			return 1
		}
		res := ogDial(ln.Addr().String(), rate, workers, time.Duration(d), n)
		for _, c := range res.conns {
			fmt.Fprintf(out, "conn %d %d %d\n", c.port, c.t0.UnixNano(), c.t1.UnixNano())
		}
		first := ""
		if res.firstErr != nil {
			first = res.firstErr.Error()
		}
		fmt.Fprintf(out, "done %d %d %q\n", res.errs, res.elapsed.Nanoseconds(), first)
		out.Flush()
	}
	return 0
}

// ogNS is a dialer in namespaces of its own (see ogChildMain): the agent
// is told to trace those namespaces only, so that the connections of
// whatever else runs on the machine (a benchmark, other tests) neither
// reach the collector nor fill the queue.
type ogNS struct {
	stdin        io.WriteCloser
	out          *bufio.Scanner
	lport        int
	pidNS, mntNS uint32
}

func ogStartNS(t *testing.T) *ogNS {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), ogChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		skipOrFail(t, "cannot create pid+mount+net namespaces: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	n := &ogNS{stdin: stdin, out: bufio.NewScanner(stdout)}
	n.out.Buffer(make([]byte, 64<<10), 1<<20)
	if !n.out.Scan() {
		t.Fatalf("namespaced dialer exited before it was ready: %v", n.out.Err())
	}
	if _, err := fmt.Sscanf(n.out.Text(), "ready %d", &n.lport); err != nil {
		t.Fatalf("namespaced dialer said %q", n.out.Text())
	}
	n.pidNS = nsInode(t, cmd.Process.Pid, "pid")
	n.mntNS = nsInode(t, cmd.Process.Pid, "mnt")
	return n
}

// visibility is the config that traces the dialer's namespaces only.
func (n *ogNS) visibility() string {
	return fmt.Sprintf("visibility:\n  host: []\n  default: []\n  rules:\n    - match: {pid_ns: %d, mnt_ns: %d}\n      scopes: [network]\n",
		n.pidNS, n.mntNS)
}

// dial is ogDial run by the namespaced dialer against its own listener.
func (n *ogNS) dial(t *testing.T, rate float64, workers int, d time.Duration, count int) ogDialed {
	t.Helper()
	if _, err := fmt.Fprintf(n.stdin, "dial %g %d %d %d\n", rate, workers, d.Nanoseconds(), count); err != nil {
		t.Fatalf("namespaced dialer: %v", err)
	}
	var res ogDialed
	for n.out.Scan() {
		line := n.out.Text()
		switch {
		case strings.HasPrefix(line, "conn "):
			var c ogConn
			var t0, t1 int64
			if _, err := fmt.Sscanf(line, "conn %d %d %d", &c.port, &t0, &t1); err != nil {
				t.Fatalf("namespaced dialer said %q: %v", line, err)
			}
			c.t0, c.t1 = time.Unix(0, t0), time.Unix(0, t1)
			res.conns = append(res.conns, c)
		case strings.HasPrefix(line, "done "):
			var elapsed int64
			var first string
			if _, err := fmt.Sscanf(line, "done %d %d %q", &res.errs, &elapsed, &first); err != nil {
				t.Fatalf("namespaced dialer said %q: %v", line, err)
			}
			res.elapsed = time.Duration(elapsed)
			if first != "" {
				res.firstErr = errors.New(first)
			}
			return res
		default:
			t.Fatalf("namespaced dialer said %q", line)
		}
	}
	t.Fatalf("namespaced dialer exited: %v", n.out.Err())
	return res
}

// The five records of a connection.
const (
	ogClientSpan = iota
	ogServerSpan
	ogLogConnect
	ogLogResult
	ogLogAccept
	ogKinds
)

var ogKindNames = [ogKinds]string{"CLIENT spans", "SERVER spans", "connect logs", "connect.result logs", "accept logs"}

// ogTally matches what a receiver got to the connections a test made to
// the listener on lport: a record belongs to the connection of its local
// (client) port whose dial was nearest its time (see match). It reads the
// receiver's new requests on each update.
type ogTally struct {
	r        *otlptest.Receiver
	lport    int64
	conns    []ogConn
	byPort   map[int][]int // port -> indices into conns, oldest first
	got      []uint8       // per connection, a bit per kind
	count    [ogKinds]int  // connections with that kind of record
	dups     [ogKinds]int  // records of a kind a connection already had
	strays   int           // records to lport of no connection made here
	dupNotes []string      // the first duplicates

	nTraceReqs, nLogReqs int
	onSpan               func(otlptest.Span)
	onLog                func(otlptest.Log)
}

func newOgTally(r *otlptest.Receiver, lport int) *ogTally {
	return &ogTally{r: r, lport: int64(lport), byPort: map[int][]int{}}
}

// add registers connections; call before update sees their records.
func (t *ogTally) add(conns []ogConn) {
	for _, c := range conns {
		t.byPort[c.port] = append(t.byPort[c.port], len(t.conns))
		t.conns = append(t.conns, c)
		t.got = append(t.got, 0)
	}
	for _, idx := range t.byPort {
		sort.Slice(idx, func(i, j int) bool { return t.conns[idx[i]].t0.Before(t.conns[idx[j]].t0) })
	}
}

// match returns the connection of port whose record has time ns, or -1:
// the one whose dial, from just before it began to just after it
// returned, lies nearest that time. A port can be used again within
// 100 ms (the client side of a connection the server closed first keeps
// no TIME_WAIT), so "the last one before" is not enough; an accept, or the
// kernel's time converted to wall-clock time, may be a few milliseconds
// off the dial.
func (t *ogTally) match(port int64, ns uint64) int {
	idx := t.byPort[int(port)]
	if len(idx) == 0 {
		return -1
	}
	ts := time.Unix(0, int64(ns))
	k := sort.Search(len(idx), func(i int) bool { return t.conns[idx[i]].t0.After(ts) })
	best, bestDist := -1, time.Duration(-1)
	for c := max(k-2, 0); c < min(k+2, len(idx)); c++ {
		conn := t.conns[idx[c]]
		var dist time.Duration
		switch {
		case ts.Before(conn.t0):
			dist = conn.t0.Sub(ts)
		case ts.After(conn.t1):
			dist = ts.Sub(conn.t1)
		}
		if bestDist < 0 || dist < bestDist {
			best, bestDist = idx[c], dist
		}
	}
	if bestDist > 2*time.Second {
		return -1
	}
	return best
}

func (t *ogTally) note(kind int, port any, ns uint64) {
	p, ok := port.(int64)
	if !ok {
		t.strays++
		return
	}
	i := t.match(p, ns)
	if i < 0 {
		t.strays++
		return
	}
	if t.got[i]&(1<<kind) != 0 {
		t.dups[kind]++
		if len(t.dupNotes) < 10 {
			t.dupNotes = append(t.dupNotes, fmt.Sprintf("%s of port %d at %s (connection made %s)", ogKindNames[kind], p,
				time.Unix(0, int64(ns)).Format("15:04:05.000"), t.conns[i].t0.Format("15:04:05.000")))
		}
		return
	}
	t.got[i] |= 1 << kind
	t.count[kind]++
}

// update reads the requests received since the last update.
func (t *ogTally) update() {
	treqs := t.r.TraceRequests()
	for _, req := range treqs[t.nTraceReqs:] {
		for _, s := range otlptest.SpansOf(req) {
			if t.onSpan != nil {
				t.onSpan(s)
			}
			a := s.Attrs()
			if a["server.port"] != t.lport {
				continue
			}
			switch {
			case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Name == "tcp connect":
				t.note(ogClientSpan, a["network.local.port"], s.StartTimeUnixNano)
			case s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Name == "tcp accept":
				t.note(ogServerSpan, a["client.port"], s.StartTimeUnixNano)
			}
		}
	}
	t.nTraceReqs = len(treqs)
	lreqs := t.r.LogRequests()
	for _, req := range lreqs[t.nLogReqs:] {
		for _, l := range otlptest.LogsOf(req) {
			if t.onLog != nil {
				t.onLog(l)
			}
			a := l.Attrs()
			if a["server.port"] != t.lport {
				continue
			}
			switch l.EventName {
			case "connwatch.tcp.connect":
				t.note(ogLogConnect, a["network.local.port"], l.TimeUnixNano)
			case "connwatch.tcp.connect.result":
				t.note(ogLogResult, a["network.local.port"], l.TimeUnixNano)
			case "connwatch.tcp.accept":
				t.note(ogLogAccept, a["client.port"], l.TimeUnixNano)
			}
		}
	}
	t.nLogReqs = len(lreqs)
}

// complete reports whether every connection has the records of kinds
// (every kind when none are given).
func (t *ogTally) complete(kinds ...int) bool {
	if len(kinds) == 0 {
		kinds = []int{ogClientSpan, ogServerSpan, ogLogConnect, ogLogResult, ogLogAccept}
	}
	for _, k := range kinds {
		if t.count[k] < len(t.conns) {
			return false
		}
	}
	return true
}

// wait updates until complete(kinds...) or timeout; it reports whether
// the tally is complete.
func (t *ogTally) wait(timeout time.Duration, kinds ...int) bool {
	deadline := time.Now().Add(timeout)
	for {
		t.update()
		if t.complete(kinds...) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Second)
	}
}

// summary says how many of each kind arrived and which are missing.
func (t *ogTally) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d connections:", len(t.conns))
	for k := range ogKinds {
		fmt.Fprintf(&b, " %s %d (missing %d, duplicates %d);", ogKindNames[k], t.count[k], len(t.conns)-t.count[k], t.dups[k])
	}
	fmt.Fprintf(&b, " records of no connection made here %d", t.strays)
	var ex []string
	for i, c := range t.conns {
		if t.got[i] != 1<<ogKinds-1 && len(ex) < 10 {
			has := make([]byte, ogKinds)
			for k := range ogKinds {
				has[k] = '0' + (t.got[i]>>k)&1
			}
			ex = append(ex, fmt.Sprintf("port %d at %s has %s", c.port, c.t0.Format("15:04:05.000"), has))
		}
	}
	if len(ex) > 0 {
		fmt.Fprintf(&b, "; first incomplete (bits: %s): %s", strings.Join(ogKindNames[:], ","), strings.Join(ex, ", "))
	}
	if len(t.dupNotes) > 0 {
		fmt.Fprintf(&b, "; first duplicates: %s", strings.Join(t.dupNotes, ", "))
	}
	return b.String()
}

// ogMetrics scrapes /metrics as metrics does, returning errors instead of
// failing (it runs on the sampler's goroutine too).
func ogMetrics(port int) (map[string]float64, error) {
	resp, err := ogClient.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad metrics line %q", line)
		}
		m[line[:i]] = v
	}
	return m, nil
}

var ogClient = &http.Client{Timeout: 5 * time.Second}

// ogGet returns the status and body of an agent endpoint.
func ogGet(port int, path string) (int, string, error) {
	resp, err := ogClient.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// ogExportDrops adds the export stage's drops of both signals.
func ogExportDrops(m map[string]float64) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, `connwatch_dropped_total{stage="export"`) {
			s += v
		}
	}
	return s
}

func ogQueueBytes(m map[string]float64) float64 {
	return m[`connwatch_export_queue_bytes{signal="traces"}`] + m[`connwatch_export_queue_bytes{signal="logs"}`]
}

// ogRecovered reads, from the agent's log, the records of each signal
// it found in its queue directory at start ("sending what an earlier run
// left"): they count as emitted without having been offered by this run.
func ogRecovered(stderr string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, "sending what an earlier run left") {
			continue
		}
		var signal string
		var records float64
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "signal="); ok {
				signal = v
			}
			if v, ok := strings.CutPrefix(f, "records="); ok {
				records, _ = strconv.ParseFloat(v, 64)
			}
		}
		out[signal] += records
	}
	return out
}

// ogInvariants is checkInvariants for an agent that started with recovered
// records in its queue directory: those are emitted (and then exported or
// failed) without having been offered by this run.
func ogInvariants(t *testing.T, m map[string]float64, recovered map[string]float64) {
	t.Helper()
	if len(recovered) == 0 {
		checkInvariants(t, m)
		return
	}
	adj := make(map[string]float64, len(m))
	for k, v := range m {
		adj[k] = v
	}
	for signal, n := range recovered {
		adj[`connwatch_records_emitted_total{signal="`+signal+`"}`] -= n
		// checkInvariants wants emitted = exported + failed: take the
		// recovered records off both sides.
		adj[`connwatch_records_exported_total{signal="`+signal+`"}`] -= n
	}
	checkInvariants(t, adj)
}

// ogSettle is settle, then waits until every sample read is decoded or
// counted as dropped: settle can see the reader's queue empty while the
// sample taken from it is still being processed.
func ogSettle(t *testing.T, port int, timeout time.Duration) map[string]float64 {
	t.Helper()
	m := settle(t, port, timeout)
	for range 50 {
		if m["connwatch_samples_read_total"] == m["connwatch_samples_decoded_total"]+
			m[`connwatch_dropped_total{stage="reader",reason="queue_full"}`]+m[`connwatch_dropped_total{stage="decode",reason="malformed"}`] {
			break
		}
		time.Sleep(100 * time.Millisecond)
		m = settle(t, port, timeout)
	}
	return m
}

// ogSample is what the sampler saw at one moment.
type ogSample struct {
	at         time.Time
	rssKiB     int
	m          map[string]float64
	healthz    int
	readyz     int
	readyBody  string
	err        error
	queueBytes float64
}

// ogSampler samples the agent's RSS, /metrics, /healthz and /readyz
// every second.
type ogSampler struct {
	stop, done chan struct{}
	once       sync.Once
	samples    []ogSample
}

func ogStartSampler(pid, port int) *ogSampler {
	s := &ogSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			s.samples = append(s.samples, ogTake(pid, port))
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns the samples; later calls return
// them again.
func (s *ogSampler) Stop() []ogSample {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.samples
}

func ogTake(pid, port int) ogSample {
	sm := ogSample{at: time.Now()}
	var errs []error
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		errs = append(errs, fmt.Errorf("agent gone: %w", err))
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			sm.rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	if sm.m, err = ogMetrics(port); err != nil {
		errs = append(errs, fmt.Errorf("/metrics: %w", err))
	}
	sm.queueBytes = ogQueueBytes(sm.m)
	if sm.healthz, _, err = ogGet(port, "/healthz"); err != nil {
		errs = append(errs, fmt.Errorf("/healthz: %w", err))
	}
	if sm.readyz, sm.readyBody, err = ogGet(port, "/readyz"); err != nil {
		errs = append(errs, fmt.Errorf("/readyz: %w", err))
	}
	sm.err = errors.Join(errs...)
	return sm
}

// ogAgent starts the agent exporting to r with /metrics on a free port
// and extra config; it returns the agent, the telemetry port and the
// config file (for an agent to be started again the same way).
func ogAgent(t *testing.T, r *otlptest.Receiver, extra string) (*agentProc, int, string) {
	t.Helper()
	port := freePort(t)
	path := writeTempConfig(t, fmt.Sprintf("telemetry:\n  listen: 127.0.0.1:%d\n%s", port, extra))
	return ogStart(t, r, path), port, path
}

func ogStart(t *testing.T, r *otlptest.Receiver, cfgPath string) *agentProc {
	t.Helper()
	return startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", cfgPath)
}

func ogQueueDirConfig(dir string) string {
	return fmt.Sprintf("export:\n  queue:\n    directory: %q\n", dir)
}

// ogDrained waits until the agent has nothing queued or in flight and
// returns how long that took and the metrics then.
func ogDrained(t *testing.T, port int, timeout time.Duration) (time.Duration, map[string]float64) {
	t.Helper()
	start := time.Now()
	for {
		m, err := ogMetrics(port)
		if err == nil && ogQueueBytes(m) == 0 &&
			m[`connwatch_records_in_flight{signal="traces"}`] == 0 && m[`connwatch_records_in_flight{signal="logs"}`] == 0 &&
			m[`connwatch_queue_length{stage="reader"}`] == 0 &&
			m["connwatch_samples_read_total"] == m["connwatch_samples_decoded_total"]+
				m[`connwatch_dropped_total{stage="reader",reason="queue_full"}`]+m[`connwatch_dropped_total{stage="decode",reason="malformed"}`] {
			return time.Since(start), m
		}
		if time.Since(start) > timeout {
			t.Fatalf("agent still has records queued or in flight %v after the recovery (scrape error %v): %v", timeout, err, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ogOutage is TestOutageNothingLost and TestOutageDiskQueueFiveMinutes:
// the collector is down for outage while connections are made at 200/s;
// after it is back, every record of every connection arrives and nothing
// was dropped, the agent stayed healthy, ready and under maxRSSKiB.
func ogOutage(t *testing.T, outage time.Duration, extra string, maxRSSKiB int) {
	requireRoot(t)
	r := otlptest.Start(t)
	ns := ogStartNS(t)
	a, port, _ := ogAgent(t, r, ns.visibility()+extra)
	tally := newOgTally(r, ns.lport)

	warm := ns.dial(t, 200, 1, 0, 20)
	tally.add(warm.conns)
	if !tally.wait(30 * time.Second) {
		t.Fatalf("before the outage: %s", tally.summary())
	}

	sampler := ogStartSampler(a.cmd.Process.Pid, port)
	defer sampler.Stop() // on a failure before the end
	r.Stop()
	stopped := time.Now()
	d := ns.dial(t, 200, 1, outage, 0)
	if err := r.Restart(); err != nil {
		t.Fatalf("restarting the receiver: %v", err)
	}
	restarted := time.Now()
	tally.add(d.conns)
	if d.errs > 0 {
		t.Errorf("%d dials failed (first: %v)", d.errs, d.firstErr)
	}
	drain, m := ogDrained(t, port, 5*time.Minute)
	samples := sampler.Stop()

	complete := tally.wait(3 * time.Minute)
	if !complete {
		t.Errorf("after the recovery, not every record arrived: %s", tally.summary())
	}
	checkInvariants(t, m)
	if n := ogExportDrops(m); n != 0 {
		t.Errorf("export drops: %v (queue_full traces %v logs %v, export_failed traces %v logs %v)", n,
			m[`connwatch_dropped_total{stage="export",reason="queue_full",signal="traces"}`],
			m[`connwatch_dropped_total{stage="export",reason="queue_full",signal="logs"}`],
			m[`connwatch_dropped_total{stage="export",reason="export_failed",signal="traces"}`],
			m[`connwatch_dropped_total{stage="export",reason="export_failed",signal="logs"}`])
	}

	maxRSS, maxQueue, maxBatches, maxAge := 0, 0.0, 0.0, 0.0
	backlogged, notBacklogged := 0, 0
	var readyBodies []string
	for _, s := range samples {
		at := s.at.Sub(stopped).Round(time.Second)
		if s.err != nil {
			t.Errorf("sample at +%v: %v", at, s.err)
			continue
		}
		maxRSS = max(maxRSS, s.rssKiB)
		maxQueue = max(maxQueue, s.queueBytes)
		maxBatches = max(maxBatches, s.m[`connwatch_export_queue_batches{signal="traces"}`]+s.m[`connwatch_export_queue_batches{signal="logs"}`])
		maxAge = max(maxAge, s.m[`connwatch_export_queue_oldest_age_seconds{signal="traces"}`], s.m[`connwatch_export_queue_oldest_age_seconds{signal="logs"}`])
		if n := ogExportDrops(s.m); n != 0 {
			t.Errorf("sample at +%v: %v records dropped at export", at, n)
		}
		if s.healthz != http.StatusOK {
			t.Errorf("sample at +%v: /healthz %d", at, s.healthz)
		}
		if s.readyz != http.StatusOK {
			t.Errorf("sample at +%v: /readyz %d %q (queue %v bytes)", at, s.readyz, s.readyBody, s.queueBytes)
		}
		if strings.HasPrefix(s.readyBody, "backlogged") {
			backlogged++
		} else if s.at.After(stopped.Add(15*time.Second)) && s.at.Before(restarted) {
			// The agent learns of the outage at its next export
			// attempt; after that it is backlogged until the recovery.
			notBacklogged++
			if len(readyBodies) < 3 {
				readyBodies = append(readyBodies, fmt.Sprintf("+%v: %q", at, s.readyBody))
			}
		}
	}
	if backlogged == 0 || notBacklogged > 0 {
		t.Errorf("/readyz during the outage: %d samples backlogged, %d later than 15 s into it not: %s", backlogged, notBacklogged, strings.Join(readyBodies, "; "))
	}
	if maxRSS > maxRSSKiB {
		t.Errorf("agent RSS reached %d KiB (limit %d KiB)", maxRSS, maxRSSKiB)
	}
	t.Logf("outage %v, %d connections during it at %.1f/s (+%d before): %s", outage, len(d.conns), d.rate(), len(warm.conns), tally.summary())
	t.Logf("max RSS %d KiB (%.1f MiB); max queue %.0f bytes (%.1f MiB) in %.0f batches, oldest %.0f s; drained %v after the restart; %d of %d samples said backlogged",
		maxRSS, float64(maxRSS)/1024, maxQueue, maxQueue/(1<<20), maxBatches, maxAge, drain.Round(time.Millisecond), backlogged, len(samples))
	t.Logf("spans exported %v, logs exported %v, export retries %v",
		m[`connwatch_records_exported_total{signal="traces"}`], m[`connwatch_records_exported_total{signal="logs"}`], sum(m, "connwatch_export_retries_total"))
	var traj []string
	for i, s := range samples {
		if i%15 == 0 || i == len(samples)-1 {
			traj = append(traj, fmt.Sprintf("+%v %.1f/%.1f MiB %d", s.at.Sub(stopped).Round(time.Second),
				float64(s.rssKiB)/1024, s.queueBytes/(1<<20), s.readyz))
		}
	}
	t.Logf("RSS/queue/readyz over time: %s", strings.Join(traj, ", "))
}

// A minute's outage at 200 connections/s with the defaults (a 64 MiB
// memory queue): nothing is lost, nothing dropped, and the agent stays
// healthy, ready ("backlogged") and under 120 MiB.
func TestOutageNothingLost(t *testing.T) {
	ogOutage(t, time.Minute, "", 120*1024)
}

// Five minutes at 200 connections/s with a queue directory: more than the
// memory queue holds waits on disk; nothing is lost and RSS stays bounded.
func TestOutageDiskQueueFiveMinutes(t *testing.T) {
	ogLongTest(t)
	ogOutage(t, 5*time.Minute, ogQueueDirConfig(t.TempDir()), 120*1024)
}

// What waits in the queue directory survives kill -9: a new agent on the
// same directory sends it once the collector is back (at least once:
// duplicates are allowed, every connection's spans must be there).
func TestOutageDiskQueueSurvivesKill(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	r := otlptest.Start(t)
	r.Stop()
	ns := ogStartNS(t)
	a, port, cfg := ogAgent(t, r, ns.visibility()+ogQueueDirConfig(dir))
	tally := newOgTally(r, ns.lport)

	d := ns.dial(t, 200, 1, 0, 200)
	if d.errs > 0 {
		t.Errorf("%d dials failed (first: %v)", d.errs, d.firstErr)
	}
	tally.add(d.conns)
	time.Sleep(5 * time.Second)
	m, err := ogMetrics(port)
	if err != nil {
		t.Fatal(err)
	}
	files := func(signal string) int {
		ents, _ := os.ReadDir(filepath.Join(dir, signal))
		n := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".batch") {
				n++
			}
		}
		return n
	}
	t.Logf("before kill -9: queued %v+%v batches (%v bytes); files traces %d logs %d",
		m[`connwatch_export_queue_batches{signal="traces"}`], m[`connwatch_export_queue_batches{signal="logs"}`], ogQueueBytes(m),
		files("traces"), files("logs"))
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.exited(10 * time.Second); !ok {
		t.Fatal("agent still running 10 s after SIGKILL")
	}
	if files("traces") == 0 || files("logs") == 0 {
		t.Errorf("after kill -9: %d trace and %d log batch files in %s", files("traces"), files("logs"), dir)
	}

	b := ogStart(t, r, cfg)
	b.waitLog(t, "export queue: sending what an earlier run left")
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	ok := tally.wait(2*time.Minute, ogClientSpan, ogServerSpan)
	if !ok {
		t.Errorf("spans of the connections made before kill -9: %s", tally.summary())
	}
	// The logs wait in the same directory.
	if !tally.wait(30*time.Second) && ok {
		t.Errorf("log records of the connections made before kill -9: %s", tally.summary())
	}
	m = ogSettle(t, port, time.Minute)
	recovered := ogRecovered(b.stderr.String())
	ogInvariants(t, m, recovered)
	t.Logf("after the restart: the new agent recovered %v spans and %v log records from %s; %s",
		recovered["traces"], recovered["logs"], dir, tally.summary())
}

// A collector that takes 3 s per export, under 2 000 connections/s for a
// minute: nothing is dropped while the queue has room; past its bound
// batches are dropped and counted (queue_full) and RSS stays bounded;
// once the collector is fast again everything is accounted for.
func TestOutageSlowCollector(t *testing.T) {
	ogLongTest(t)
	requireRoot(t)
	r := otlptest.Start(t)
	ns := ogStartNS(t)
	a, port, _ := ogAgent(t, r, ns.visibility())
	tally := newOgTally(r, ns.lport)
	r.SetDelay(3 * time.Second)

	sampler := ogStartSampler(a.cmd.Process.Pid, port)
	defer sampler.Stop()
	start := time.Now()
	d := ns.dial(t, 2000, 8, time.Minute, 0)
	samples := sampler.Stop()
	tally.add(d.conns)
	r.SetDelay(0)
	if d.errs > 0 {
		t.Logf("%d dials failed (first: %v)", d.errs, d.firstErr)
	}

	limit := 0.0
	maxRSS, maxQueue := 0, 0.0
	firstDrop := -1
	for i, s := range samples {
		if s.err != nil {
			t.Errorf("sample at +%v: %v", s.at.Sub(start).Round(time.Second), s.err)
			continue
		}
		limit = max(limit, s.m["connwatch_export_queue_limit_bytes"])
		maxRSS = max(maxRSS, s.rssKiB)
		maxQueue = max(maxQueue, s.queueBytes)
		if s.healthz != http.StatusOK {
			t.Errorf("sample at +%v: /healthz %d", s.at.Sub(start).Round(time.Second), s.healthz)
		}
		if firstDrop < 0 && ogExportDrops(s.m) > 0 {
			firstDrop = i
			// A batch is refused when it does not fit: the queue
			// was within a batch or two (≤ 2 MiB each) of its bound.
			if limit > 0 && maxQueue < limit-4<<20 {
				t.Errorf("records dropped (%v) at +%v with the queue at most %.0f of %.0f bytes so far",
					ogExportDrops(s.m), s.at.Sub(start).Round(time.Second), maxQueue, limit)
			}
		}
	}
	if maxRSS > 160*1024 {
		t.Errorf("agent RSS reached %d KiB (limit 160 MiB)", maxRSS)
	}
	if firstDrop < 0 {
		t.Logf("the queue never overflowed (max %.0f of %.0f bytes)", maxQueue, limit)
	} else {
		t.Logf("first drop at +%v, queue %.0f of %.0f bytes", samples[firstDrop].at.Sub(start).Round(time.Second), samples[firstDrop].queueBytes, limit)
	}

	m := ogSettle(t, port, 5*time.Minute)
	checkInvariants(t, m)
	tally.wait(30*time.Second, ogClientSpan)
	tally.update()
	spanDrops := m[`connwatch_dropped_total{stage="export",reason="queue_full",signal="traces"}`] +
		m[`connwatch_dropped_total{stage="export",reason="export_failed",signal="traces"}`]
	// A lost or dropped sample is at most one connection's CLIENT span.
	sampleDrops := m[`connwatch_dropped_total{stage="reader",reason="queue_full"}`] + m[`connwatch_dropped_total{stage="decode",reason="malformed"}`] +
		m[`connwatch_dropped_total{stage="kernel",reason="buffer_full"}`] + sum(m, "connwatch_lost_samples_total")
	made := len(tally.conns)
	if float64(tally.count[ogClientSpan])+spanDrops+sampleDrops < float64(made) {
		t.Errorf("%d connections: %d CLIENT spans arrived + %v spans dropped at export + %v samples dropped or lost < made",
			made, tally.count[ogClientSpan], spanDrops, sampleDrops)
	}
	t.Logf("%d connections in %v: %.0f/s achieved of 2000/s (%d dial errors); max RSS %d KiB (%.1f MiB); max queue %.0f bytes (%.1f MiB) of %.0f",
		made, d.elapsed.Round(time.Millisecond), d.rate(), d.errs, maxRSS, float64(maxRSS)/1024, maxQueue, maxQueue/(1<<20), limit)
	t.Logf("spans: emitted %v exported %v dropped queue_full %v export_failed %v; logs: emitted %v exported %v dropped queue_full %v; samples dropped or lost %v",
		m[`connwatch_records_emitted_total{signal="traces"}`], m[`connwatch_records_exported_total{signal="traces"}`],
		m[`connwatch_dropped_total{stage="export",reason="queue_full",signal="traces"}`], m[`connwatch_dropped_total{stage="export",reason="export_failed",signal="traces"}`],
		m[`connwatch_records_emitted_total{signal="logs"}`], m[`connwatch_records_exported_total{signal="logs"}`],
		m[`connwatch_dropped_total{stage="export",reason="queue_full",signal="logs"}`], sampleDrops)
	t.Logf("arrived: %s", tally.summary())
}

// A collector that rejects every request as InvalidArgument: nothing is
// retried, every record is counted as failed, the agent stays healthy;
// once the collector accepts again, new connections arrive.
func TestOutageInvalidArgument(t *testing.T) {
	requireRoot(t)
	r := otlptest.Start(t)
	r.SetFailure(codes.InvalidArgument)
	ns := ogStartNS(t)
	_, port, _ := ogAgent(t, r, ns.visibility())
	ns.dial(t, 200, 1, 0, 200)
	m := ogSettle(t, port, time.Minute)
	for _, signal := range []string{"traces", "logs"} {
		emitted := m[`connwatch_records_emitted_total{signal="`+signal+`"}`]
		failed := m[`connwatch_dropped_total{stage="export",reason="export_failed",signal="`+signal+`"}`]
		if emitted == 0 || failed != emitted {
			t.Errorf("%s: export_failed %v, emitted %v: want equal and > 0", signal, failed, emitted)
		}
		if n := m[`connwatch_records_exported_total{signal="`+signal+`"}`]; n != 0 {
			t.Errorf("%s: %v records exported while every request is rejected", signal, n)
		}
	}
	if n := sum(m, "connwatch_export_retries_total"); n != 0 {
		t.Errorf("connwatch_export_retries_total %v, want 0 for InvalidArgument", n)
	}
	healthy(t, port)
	rejected := r.Rejected()
	if len(r.Spans()) != 0 || len(r.Logs()) != 0 {
		t.Errorf("receiver recorded %d spans and %d logs while failing every request", len(r.Spans()), len(r.Logs()))
	}

	r.SetFailure(codes.OK)
	tally := newOgTally(r, ns.lport)
	tally.add(ns.dial(t, 200, 1, 0, 50).conns)
	if !tally.wait(30 * time.Second) {
		t.Errorf("after the failure was cleared: %s", tally.summary())
	}
	t.Logf("rejected %d requests: spans emitted %v failed %v, logs emitted %v failed %v; afterwards %s", rejected,
		m[`connwatch_records_emitted_total{signal="traces"}`], m[`connwatch_dropped_total{stage="export",reason="export_failed",signal="traces"}`],
		m[`connwatch_records_emitted_total{signal="logs"}`], m[`connwatch_dropped_total{stage="export",reason="export_failed",signal="logs"}`],
		tally.summary())
}

// A second agent on a queue directory that one already uses refuses to
// start, naming the directory and the other agent; the first runs on.
func TestOutageQueueDirLocked(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	r := otlptest.Start(t)
	a, port, _ := ogAgent(t, r, ogQueueDirConfig(dir))

	cfg2 := writeTempConfig(t, "telemetry:\n  listen: \"\"\n"+ogQueueDirConfig(dir))
	args := []string{"-c", cfg2}
	if m := os.Getenv("CONNWATCH_ATTACH"); m != "" {
		args = append(args, "-attach", m)
	}
	b := launchAgent(t, agentOpts{env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}}, args...)
	if code := b.wait(t, 30*time.Second); code != 1 {
		t.Errorf("second agent exited %d, want 1", code)
	}
	stderr := b.stderr.String()
	pid := strconv.Itoa(a.cmd.Process.Pid)
	if !strings.Contains(stderr, dir) || !strings.Contains(stderr, "in use") || !strings.Contains(stderr, pid) {
		t.Errorf("second agent's stderr does not name %s, \"in use\" and pid %s:\n%s", dir, pid, stderr)
	}
	t.Logf("second agent: %s", strings.TrimSpace(stderr[strings.LastIndex(strings.TrimSpace(stderr), "\n")+1:]))

	healthy(t, port)
	ln, lport := ogListener(t)
	tally := newOgTally(r, lport)
	tally.add(ogDial(ln.Addr().String(), 200, 1, 0, 20).conns)
	if !tally.wait(30 * time.Second) {
		t.Errorf("first agent after the second was refused: %s", tally.summary())
	}
}

// ogBatchFile is a queue directory batch file: magic "CWQ1", u32
// records, i64 created, u32 body length, u32 CRC-32C, body.
func ogBatchFile(records uint32, bodyLen uint32, crc uint32, body []byte) []byte {
	h := make([]byte, 24)
	copy(h, "CWQ1")
	binary.LittleEndian.PutUint32(h[4:], records)
	binary.LittleEndian.PutUint64(h[8:], uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint32(h[16:], bodyLen)
	binary.LittleEndian.PutUint32(h[20:], crc)
	return append(h, body...)
}

// Bad batch files left in the queue directory (truncated, garbage, a body
// that fails its checksum) are reported with their path and set aside as
// *.corrupt; the agent runs on and exports new connections.
func TestOutageCorruptQueueFile(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	for _, s := range []string{"traces", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, s), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	body := []byte("\x0a\x05hello")
	goodCRC := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	truncated := filepath.Join(dir, "traces", "00000000000000000001.batch")
	garbage := filepath.Join(dir, "traces", "00000000000000000002.batch")
	badCRC := filepath.Join(dir, "logs", "00000000000000000001.batch")
	for path, content := range map[string][]byte{
		truncated: ogBatchFile(3, 1000, goodCRC, body),
		garbage:   []byte("this is not a batch file at all, just some garbage bytes \x00\xff\x13\x37"),
		badCRC:    ogBatchFile(3, uint32(len(body)), goodCRC^1, body),
	} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := otlptest.Start(t)
	ns := ogStartNS(t)
	a, port, _ := ogAgent(t, r, ns.visibility()+ogQueueDirConfig(dir))

	// The files whose header is wrong are set aside at start; the one
	// whose body fails its checksum when its turn to be sent comes.
	for _, path := range []string{truncated, garbage, badCRC} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, errOld := os.Stat(path)
			_, errNew := os.Stat(path + ".corrupt")
			if errors.Is(errOld, os.ErrNotExist) && errNew == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: not renamed to .corrupt (stat: %v, .corrupt: %v)", path, errOld, errNew)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(a.stderr.String(), path) {
			t.Errorf("agent did not log %s:\n%s", path, a.stderr.String())
		}
	}
	tally := newOgTally(r, ns.lport)
	tally.add(ns.dial(t, 200, 1, 0, 50).conns)
	if !tally.wait(30 * time.Second) {
		t.Errorf("after the bad files: %s", tally.summary())
	}
	healthy(t, port)
	m := ogSettle(t, port, 30*time.Second)
	ogInvariants(t, m, ogRecovered(a.stderr.String()))
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		if strings.Contains(line, "set aside") {
			t.Logf("agent: %s", line)
		}
	}
	t.Logf("%s; logs export_failed %v (the 3 records the bad-checksum file claimed)", tally.summary(),
		m[`connwatch_dropped_total{stage="export",reason="export_failed",signal="logs"}`])
}

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
	a, port, _ := ogAgent(t, r, "")
	pid := a.cmd.Process.Pid
	_, recvPort, _ := net.SplitHostPort(r.Addr())
	rp, _ := strconv.Atoi(recvPort)
	watch := ogWatchConnects(t, pid, rp)
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
	b, port2, _ := ogAgent(t, r2, "probe:\n  include_agent: true\n")
	pid2 := b.cmd.Process.Pid
	_, recvPort2, _ := net.SplitHostPort(r2.Addr())
	rp2, _ := strconv.Atoi(recvPort2)
	watch2 := ogWatchConnects(t, pid2, rp2)
	m2 := ogOwnOutage(t, r2, port2, ln)
	refused2 := watch2.count()
	spans, err := r2.WaitSpans(30*time.Second, 1, func(s otlptest.Span) bool {
		return s.ResourceAttrs()["process.pid"] == int64(pid2) && s.Attrs()["server.port"] == int64(rp2) &&
			s.Attrs()["connwatch.outcome"] == "refused"
	})
	if err != nil {
		t.Errorf("include_agent true: refused connects of the agent (pid %d) to %d: %v (its own probe saw %d)", pid2, rp2, err, refused2)
	}
	if refused2 > 0 && len(spans) < refused2 {
		// Those made last may still be in a batch; wait for them.
		spans, _ = r2.WaitSpans(15*time.Second, refused2, func(s otlptest.Span) bool {
			return s.ResourceAttrs()["process.pid"] == int64(pid2) && s.Attrs()["server.port"] == int64(rp2) &&
				s.Attrs()["connwatch.outcome"] == "refused"
		})
		if len(spans) < refused2 {
			t.Errorf("include_agent true: %d refused-connect spans of the agent arrived; the test's probe saw %d", len(spans), refused2)
		}
	}
	t.Logf("include_agent true: agent pid %d made %d refused connects (test's probe), %d refused-connect spans with its pid arrived; connwatch_agent_own_events_total %v",
		pid2, refused2, len(spans), m2["connwatch_agent_own_events_total"])
}
