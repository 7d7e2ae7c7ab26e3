//go:build linux

// Package test holds connwatch's privileged tests: they load the real BPF
// objects, open real connections and assert what the agent reports. They
// need root and skip, saying why, without it. CONNWATCH_ATTACH selects the
// attach mode (default tracepoint), which is how the VM kernel matrix runs
// them once per mode.
package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

	// skipped holds the events a waitEvent passed over, for later waits:
	// the per-CPU perf rings are read in turn, so an accept made on one
	// CPU can arrive before the connect it answers made on another.
	skipped []event.Event
}

func (w *watcher) skip(ev event.Event) {
	if len(w.skipped) == maxSkipped {
		w.skipped = w.skipped[1:]
	}
	w.skipped = append(w.skipped, ev)
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
	for i := range w.skipped {
		if ev := w.skipped[i]; match(&ev) {
			w.skipped = append(w.skipped[:i], w.skipped[i+1:]...)
			return ev
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-w.events:
			if match(&ev) {
				return ev
			}
			w.skip(ev)
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
	for i := range w.skipped {
		if match(&w.skipped[i]) {
			t.Fatalf("unexpected event for %s: %+v", what, w.skipped[i])
		}
	}
	deadline := time.After(d)
	for {
		select {
		case ev := <-w.events:
			if match(&ev) {
				t.Fatalf("unexpected event for %s: %+v", what, ev)
			}
			w.skip(ev)
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

// nsInode returns the inode number of /proc/<pid>/ns/<name>, which is the
// namespace's inum.
func nsInode(t *testing.T, pid int, name string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, name), &st); err != nil {
		t.Fatalf("stat ns/%s of %d: %v", name, pid, err)
	}
	return uint32(st.Ino)
}

// namespacedChild is a copy of the test binary running childMain in new pid,
// mount and network namespaces, like a container's process.
type namespacedChild struct {
	cmd     *exec.Cmd
	stdin   *os.File
	HostPID int
	Local   int // local port of its connection
	Remote  int // port it connected to
	PidNS   uint32
	MntNS   uint32
	ConnPID int // host pid of the process that connected
	out     *bufio.Scanner
}

// startNamespacedChild starts the child; prepare (if not nil) runs with its
// host pid, e.g. to move it into a cgroup. The child waits for connect.
func startNamespacedChild(t *testing.T, prepare func(pid int)) *namespacedChild {
	t.Helper()
	return startChild(t, syscall.CLONE_NEWPID|syscall.CLONE_NEWNS|syscall.CLONE_NEWNET, "1", prepare)
}

// startHostNetChild starts a child in new pid and mount namespaces that
// shares the host's network, as a container run with --network host
// does; it waits for dial.
func startHostNetChild(t *testing.T, prepare func(pid int)) *namespacedChild {
	t.Helper()
	return startChild(t, syscall.CLONE_NEWPID|syscall.CLONE_NEWNS, childHostNet, prepare)
}

// childHostNet is childEnv's value for a child started by
// startHostNetChild.
const childHostNet = "hostnet"

func startChild(t *testing.T, cloneflags uintptr, mode string, prepare func(pid int)) *namespacedChild {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: cloneflags,
		Pdeathsig:  syscall.SIGKILL,
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = stdinR
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		skipOrFail(t, "cannot create pid+mount+net namespaces: %v", err)
	}
	stdinR.Close()
	c := &namespacedChild{cmd: cmd, stdin: stdinW, out: bufio.NewScanner(out), HostPID: cmd.Process.Pid}
	t.Cleanup(func() {
		stdinW.Close()
		cmd.Wait()
	})
	c.PidNS = nsInode(t, c.HostPID, "pid")
	c.MntNS = nsInode(t, c.HostPID, "mnt")
	if prepare != nil {
		prepare(c.HostPID)
	}
	return c
}

// connect has the child connect to a listener of its own on 127.0.0.1
// inside its network namespace; with shortLived, a new process in the same
// namespaces connects and exits at once.
func (c *namespacedChild) connect(t *testing.T, shortLived bool) {
	t.Helper()
	cmd := "go\n"
	if shortLived {
		cmd = "short\n"
	}
	if _, err := c.stdin.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	c.readConnected(t)
}

// dial has a child of startHostNetChild connect to addr, on the host's
// network, and keep the connection open until the child exits.
func (c *namespacedChild) dial(t *testing.T, addr string) {
	t.Helper()
	if _, err := fmt.Fprintf(c.stdin, "dial %s\n", addr); err != nil {
		t.Fatal(err)
	}
	c.readConnected(t)
}

func (c *namespacedChild) readConnected(t *testing.T) {
	t.Helper()
	if !c.out.Scan() {
		t.Fatalf("namespaced child exited before connecting: %v", c.out.Err())
	}
	var ok string
	if _, err := fmt.Sscan(c.out.Text(), &ok, &c.Local, &c.Remote, &c.ConnPID); err != nil || ok != "connected" {
		t.Fatalf("namespaced child said %q", c.out.Text())
	}
}

// childMain runs inside the new namespaces: it brings lo up, then on each
// line of stdin connects to its own listener ("go") or has a short-lived
// child process do it ("short"), and reports the ports and the connecting
// process's host pid. It exits when stdin closes. A child on the host's
// network (childHostNet) runs hostNetChild instead.
func childMain() int {
	switch os.Getenv(childEnv) {
	case "short":
		return shortConnect(os.Args[len(os.Args)-1])
	case childHostNet:
		return hostNetChild()
	case childNAT:
		return natChild()
	}
	ln, ok := loListener("child")
	if !ok {
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	r := bufio.NewReader(os.Stdin)
	var conns []net.Conn
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		switch strings.TrimSpace(line) {
		case "go":
			c, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				fmt.Fprintln(os.Stderr, "child: dial:", err)
				return 1
			}
			conns = append(conns, c)
			reportConn(c)
		case "short":
			self, _ := os.Executable()
			cmd := exec.Command(self, "-test.run=^$", ln.Addr().String())
			cmd.Env = append(os.Environ(), childEnv+"=short")
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				fmt.Fprintln(os.Stderr, "child: short-lived connect:", err)
				return 1
			}
			fmt.Print(string(out))
		}
	}
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// hostNetChild connects to the address of each "dial ADDR" line of stdin,
// reports like childMain, and keeps the connections open until stdin
// closes.
func hostNetChild() int {
	r := bufio.NewReader(os.Stdin)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0
		}
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "dial ")
		if !ok {
			fmt.Fprintf(os.Stderr, "child: unknown command %q\n", line)
			return 1
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: dial:", err)
			return 1
		}
		conns = append(conns, c)
		reportConn(c)
	}
}

// reportConn tells the test about a child's connection: "connected
// <local port> <remote port> <host pid of the connecting process>".
func reportConn(c net.Conn) {
	_, lport, _ := net.SplitHostPort(c.LocalAddr().String())
	_, rport, _ := net.SplitHostPort(c.RemoteAddr().String())
	fmt.Printf("connected %s %s %d\n", lport, rport, hostPID(os.Getpid()))
}

// loListener brings lo up in the child's network namespace and listens on
// 127.0.0.1; who names the child in errors.
func loListener(who string) (net.Listener, bool) {
	if err := loUp(); err != nil {
		fmt.Fprintln(os.Stderr, who+": lo up:", err)
		return nil, false
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, who+": listen:", err)
		return nil, false
	}
	return ln, true
}

// shortConnect connects to addr, reports like childMain and exits.
func shortConnect(addr string) int {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "short: dial:", err)
		return 1
	}
	reportConn(c)
	c.Close()
	return 0
}

// hostPID maps a pid of this pid namespace to the host's, from the NSpid
// line of /proc/self/status (first value: outermost namespace).
func hostPID(pid int) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// loUp sets the loopback interface of the current network namespace up.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
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
