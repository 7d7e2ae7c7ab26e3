//go:build linux

package test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
)

// filterConns is how many connections each case makes per port.
const filterConns = 20

// closingServer accepts connections on a loopback address and closes each
// at once, signalling every accept (so that its accept event, if any, has
// been decided when the test looks at the counters).
type closingServer struct {
	addr     netip.AddrPort
	accepted chan struct{}
}

func serveClosing(t *testing.T, network, addr string) *closingServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		skipOrFail(t, "cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &closingServer{addr: netip.MustParseAddrPort(ln.Addr().String()), accepted: make(chan struct{}, 1024)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			s.accepted <- struct{}{}
		}
	}()
	return s
}

// dial connects n times to s (from local, when given), closing each
// connection, waits until s has accepted them all, and returns the
// client ends.
func (s *closingServer) dial(t *testing.T, local net.Addr, n int) []netip.AddrPort {
	t.Helper()
	d := net.Dialer{LocalAddr: local}
	var ends []netip.AddrPort
	for range n {
		c, err := d.Dial("tcp", s.addr.String())
		if err != nil {
			t.Fatalf("connecting to %v: %v", s.addr, err)
		}
		ends = append(ends, netip.MustParseAddrPort(c.LocalAddr().String()))
		c.Close()
	}
	s.waitAccepted(t, n)
	return ends
}

func (s *closingServer) waitAccepted(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-s.accepted:
		case <-time.After(eventTimeout):
			t.Fatalf("%v accepted fewer than %d connections", s.addr, n)
		}
	}
}

// droppedFilter reads KernelStats.DroppedFilter.
func (w *watcher) droppedFilter(t *testing.T) uint64 {
	t.Helper()
	ks, err := w.probe.KernelStats()
	if err != nil {
		t.Fatal(err)
	}
	return ks.DroppedFilter
}

// expectKept waits for the events the filters decide on of the
// connections from ends to server: the attempt and its established result
// (this process's pid) and the accept.
func (w *watcher) expectKept(t *testing.T, server netip.AddrPort, ends []netip.AddrPort) {
	t.Helper()
	for _, end := range ends {
		ours := func(ev *event.Event) bool { return ev.Remote == server && ev.Local == end }
		attempt := w.waitEvent(t, eventTimeout, fmt.Sprintf("attempt %v->%v", end, server), func(ev *event.Event) bool {
			return ev.IsConnect() && ours(ev)
		})
		result := w.waitEvent(t, eventTimeout, fmt.Sprintf("result %v->%v", end, server), func(ev *event.Event) bool {
			return ev.IsResult() && ours(ev)
		})
		if result.Retval != 0 || result.HostPID != uint32(os.Getpid()) || attempt.HostPID != uint32(os.Getpid()) {
			t.Errorf("result retval %d pid %d, attempt pid %d; want 0 and pid %d", result.Retval, result.HostPID, attempt.HostPID, os.Getpid())
		}
		// tcp_connect's probe sends the ISN with the attempt; tracepoint
		// mode's attempt, split from its result, has none.
		if attempt.HasISN != (w.probe.Mode() != bpf.ModeTracepoint) || (attempt.HasISN && attempt.ISN != result.ISN) {
			t.Errorf("%s mode: attempt ISN %#x (%v), its result's %#x", w.probe.Mode(), attempt.ISN, attempt.HasISN, result.ISN)
		}
		w.waitEvent(t, eventTimeout, fmt.Sprintf("accept %v->%v", end, server), func(ev *event.Event) bool {
			return ev.IsAccept() && ev.Local == server && ev.Remote == end
		})
		// Closes are not filtered (they follow a reported connection) and
		// their delivery is close_test.go's; they are not waited for here.
	}
}

// expectNone fails on any event, seen so far or arriving shortly, that
// match selects. Called after the kept connections' events have all
// arrived, which were made after the ones left out.
func (w *watcher) expectNone(t *testing.T, what string, match func(*event.Event) bool) {
	t.Helper()
	w.noEvent(t, 200*time.Millisecond, what, match)
}

func onPort(port uint16) func(*event.Event) bool {
	return func(ev *event.Event) bool { return ev.Remote.Port() == port || ev.Local.Port() == port }
}

// An excluded server port loses every event of its connections in the
// kernel, counted three per connection (attempt, result, accept; a
// close is never tracked); another port loses none.
func TestFilterExcludePort(t *testing.T) {
	requireRoot(t)
	p := serveClosing(t, "tcp4", "127.0.0.1:0")
	q := serveClosing(t, "tcp4", "127.0.0.1:0")
	w := startProbe(t, bpf.Options{Filters: bpf.Filters{Exclude: bpf.FilterSet{Ports: []uint16{p.addr.Port()}}}})
	before := w.droppedFilter(t)
	p.dial(t, nil, filterConns)
	dropped := w.droppedFilter(t) - before
	ends := q.dial(t, nil, filterConns)
	w.expectKept(t, q.addr, ends)
	w.expectNone(t, fmt.Sprintf("port %d, excluded", p.addr.Port()), onPort(p.addr.Port()))
	t.Logf("%s mode: %d connections to the excluded port, DroppedFilter +%d", w.probe.Mode(), filterConns, dropped)
	if want := uint64(3 * filterConns); dropped != want {
		t.Errorf("DroppedFilter +%d for %d connections to an excluded port, want %d (attempt, result, accept each)", dropped, filterConns, want)
	}
}

// A refused connection to an excluded port still reports its failure
// (the attempt alone is left out), unless exclude.failures says so.
func TestFilterExcludeFailures(t *testing.T) {
	requireRoot(t)
	for _, excludeFailures := range []bool{false, true} {
		t.Run(fmt.Sprintf("failures=%v", excludeFailures), func(t *testing.T) {
			port := uint16(refusedConnectPort(t))
			w := startProbe(t, bpf.Options{Filters: bpf.Filters{Exclude: bpf.FilterSet{Ports: []uint16{port}}, ExcludeFailures: excludeFailures}})
			before := w.droppedFilter(t)
			c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
				skipOrFail(t, "port %d was reused before the test could connect", port)
			}
			isResult := func(ev *event.Event) bool { return ev.IsResult() && ev.Remote.Port() == port }
			var wantDropped uint64 = 1 // the attempt
			if excludeFailures {
				wantDropped = 2
				// A kept connection made after shows how long to wait.
				q := serveClosing(t, "tcp4", "127.0.0.1:0")
				w.expectKept(t, q.addr, q.dial(t, nil, 1))
				w.expectNone(t, "the refused connection's result with exclude.failures", isResult)
			} else {
				ev := w.waitEvent(t, eventTimeout, "the refused connection's result", isResult)
				if ev.Retval != -int64(unix.ECONNREFUSED) || ev.HostPID != uint32(os.Getpid()) {
					t.Errorf("result retval %d pid %d, want %d and %d", ev.Retval, ev.HostPID, -int64(unix.ECONNREFUSED), os.Getpid())
				}
			}
			w.expectNone(t, "the refused connection's attempt", func(ev *event.Event) bool { return ev.IsConnect() && ev.Remote.Port() == port })
			dropped := w.droppedFilter(t) - before
			t.Logf("%s mode: refused, exclude.failures=%v: DroppedFilter +%d", w.probe.Mode(), excludeFailures, dropped)
			if dropped != wantDropped {
				t.Errorf("DroppedFilter +%d, want %d", dropped, wantDropped)
			}
		})
	}
}

// refusedConnectPort is a loopback port nothing listens on.
func refusedConnectPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// An excluded comm is the connecting thread's: its attempts and results
// go, while the accepts of the same connections, made by a thread of
// another name, stay.
func TestFilterExcludeComm(t *testing.T) {
	requireRoot(t)
	const comm = "cwfilter"
	q := serveClosing(t, "tcp4", "127.0.0.1:0")
	w := startProbe(t, bpf.Options{Filters: bpf.Filters{Exclude: bpf.FilterSet{Comms: []string{comm}}}})
	before := w.droppedFilter(t)

	named := make(chan []netip.AddrPort, 1)
	go func() {
		// The thread's name is its comm. The thread may be the process's
		// main one (which Go keeps when a locked goroutine ends, and whose
		// name /proc/self/comm and so the other tests read): its name is
		// put back before it runs anything else.
		runtime.LockOSThread()
		var old [16]byte
		if err := unix.Prctl(unix.PR_GET_NAME, uintptr(unsafe.Pointer(&old[0])), 0, 0, 0); err != nil {
			t.Errorf("PR_GET_NAME: %v", err)
			runtime.UnlockOSThread()
			named <- nil
			return
		}
		defer func() {
			if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&old[0])), 0, 0, 0); err != nil {
				t.Errorf("restoring the thread's name: %v", err)
				return // the thread stays locked, and ends
			}
			runtime.UnlockOSThread()
		}()
		name, _ := unix.BytePtrFromString(comm)
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0); err != nil {
			t.Errorf("PR_SET_NAME: %v", err)
			named <- nil
			return
		}
		var ends []netip.AddrPort
		for range filterConns {
			c, err := net.Dial("tcp4", q.addr.String())
			if err != nil {
				t.Errorf("connecting from %s: %v", comm, err)
				break
			}
			ends = append(ends, netip.MustParseAddrPort(c.LocalAddr().String()))
			c.Close()
		}
		named <- ends
	}()
	hidden := <-named
	q.waitAccepted(t, len(hidden))
	dropped := w.droppedFilter(t) - before

	w.expectKept(t, q.addr, q.dial(t, nil, filterConns))
	for _, end := range hidden {
		w.waitEvent(t, eventTimeout, "the accept of a connection from "+comm, func(ev *event.Event) bool {
			return ev.IsAccept() && ev.Remote == end && ev.Comm != comm
		})
	}
	w.expectNone(t, "comm "+comm+", excluded", func(ev *event.Event) bool { return ev.Comm == comm })
	t.Logf("%s mode: %d connections from comm %s, DroppedFilter +%d", w.probe.Mode(), len(hidden), comm, dropped)
	if want := uint64(2 * filterConns); len(hidden) != filterConns || dropped != want {
		t.Errorf("%d connections from %s, DroppedFilter +%d, want %d connections and %d (attempt and result each)",
			len(hidden), comm, dropped, filterConns, want)
	}
}

// A peer prefix matches the remote address of either end, IPv4 and its
// v4-mapped IPv6 form alike: 127.0.0.2 is excluded, 127.0.0.1 is not
// (both are loopback). The BTF-typed and the raw state-change programs
// read the addresses differently: both are run.
func TestFilterExcludePeer(t *testing.T) {
	requireRoot(t)
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw_tp=%v", raw), func(t *testing.T) { testFilterExcludePeer(t, raw) })
	}
}

func testFilterExcludePeer(t *testing.T, raw bool) {
	two := serveClosing(t, "tcp4", "127.0.0.2:0")
	one := serveClosing(t, "tcp4", "127.0.0.1:0")
	w := startProbe(t, bpf.Options{RawStateChanges: raw,
		Filters: bpf.Filters{Exclude: bpf.FilterSet{Peers: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}}})
	before := w.droppedFilter(t)

	// From 127.0.0.2 to 127.0.0.2: both ends' peer is excluded.
	two.dial(t, &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, filterConns)
	// A v4-mapped connect on an AF_INET6 socket, from 127.0.0.1: the
	// connecting end's peer is ::ffff:127.0.0.2, the accepting end's
	// 127.0.0.1, which is kept.
	mappedEnd := connectV4Mapped(t, two.addr)
	two.waitAccepted(t, 1)
	dropped := w.droppedFilter(t) - before

	w.expectKept(t, one.addr, one.dial(t, nil, filterConns))
	w.waitEvent(t, eventTimeout, "the accept of the v4-mapped connection", func(ev *event.Event) bool {
		return ev.IsAccept() && ev.Local == two.addr && ev.Remote == mappedEnd
	})
	w.expectNone(t, "peer 127.0.0.2, excluded", func(ev *event.Event) bool {
		return ev.Remote.Addr() == two.addr.Addr()
	})
	t.Logf("%s mode: %d connections from and to 127.0.0.2 and one v4-mapped, DroppedFilter +%d", w.probe.Mode(), filterConns, dropped)
	if want := uint64(3*filterConns + 2); dropped != want {
		t.Errorf("DroppedFilter +%d, want %d (attempt, result, accept of each connection, attempt and result of the v4-mapped one)", dropped, want)
	}
}

// connectV4Mapped connects an AF_INET6 socket to the v4-mapped form of
// to (Go's dialer will not) and returns its local end, unmapped.
func connectV4Mapped(t *testing.T, to netip.AddrPort) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		skipOrFail(t, "no IPv6 sockets: %v", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet6{Port: int(to.Port()), Addr: netip.AddrFrom16(to.Addr().As16()).As16()}
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatalf("v4-mapped connect to %v: %v", to, err)
	}
	lsa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	l := lsa.(*unix.SockaddrInet6)
	return netip.AddrPortFrom(netip.AddrFrom16(l.Addr).Unmap(), uint16(l.Port))
}

// With include.ports set, only connections to those ports are kept.
func TestFilterIncludePort(t *testing.T) {
	requireRoot(t)
	p := serveClosing(t, "tcp4", "127.0.0.1:0")
	q := serveClosing(t, "tcp4", "127.0.0.1:0")
	w := startProbe(t, bpf.Options{Filters: bpf.Filters{Include: bpf.FilterSet{Ports: []uint16{q.addr.Port()}}}})
	before := w.droppedFilter(t)
	p.dial(t, nil, filterConns)
	dropped := w.droppedFilter(t) - before
	w.expectKept(t, q.addr, q.dial(t, nil, filterConns))
	w.expectNone(t, fmt.Sprintf("port %d, not included", p.addr.Port()), onPort(p.addr.Port()))
	t.Logf("%s mode: %d connections to a port not included, DroppedFilter +%d", w.probe.Mode(), filterConns, dropped)
	// Every other connection on the machine is left out too.
	if want := uint64(3 * filterConns); dropped < want {
		t.Errorf("DroppedFilter +%d, want at least %d", dropped, want)
	}
}

// The agent reads filters from its config file and loads them: a
// connection to the excluded port prints nothing, another one its lines.
func TestFilterAgentConfig(t *testing.T) {
	requireRoot(t)
	p := serveClosing(t, "tcp4", "127.0.0.1:0")
	q := serveClosing(t, "tcp4", "127.0.0.1:0")
	cfg := fmt.Sprintf("filters:\n  exclude:\n    ports: [%d]\ntelemetry:\n  listen: \"\"\n", p.addr.Port())
	a := startAgent(t, "-c", writeTempConfig(t, cfg))
	if want := fmt.Sprintf("ports=[%d]", p.addr.Port()); !strings.Contains(a.stderr.String(), "kernel filters") ||
		!strings.Contains(a.stderr.String(), want) {
		t.Errorf("the agent did not log its kernel filters (%s):\n%s", want, a.stderr.String())
	}
	p.dial(t, nil, 1)
	end := q.dial(t, nil, 1)[0]
	a.waitLine(t, eventTimeout, "the result of the connection to the kept port", func(m map[string]any) bool {
		return num(m, "remote_port") == int(q.addr.Port()) && num(m, "local_port") == int(end.Port()) && m["outcome"] == "established"
	})
	a.waitLine(t, eventTimeout, "the accept of the connection to the kept port", func(m map[string]any) bool {
		return num(m, "local_port") == int(q.addr.Port()) && num(m, "remote_port") == int(end.Port())
	})
	a.noLine(t, 300*time.Millisecond, "a connection to the excluded port", func(m map[string]any) bool {
		return num(m, "remote_port") == int(p.addr.Port()) || num(m, "local_port") == int(p.addr.Port())
	})
}
