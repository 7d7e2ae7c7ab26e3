//go:build linux

package test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
)

// result waits for the connect result of the connection from local to
// remote.
func (w *watcher) result(t *testing.T, timeout time.Duration, remote netip.AddrPort, localPort uint16) event.Event {
	t.Helper()
	return w.waitEvent(t, timeout, "the result of the connect to "+remote.String(), func(ev *event.Event) bool {
		return ev.IsResult() && ev.Remote == remote && (localPort == 0 || ev.Local.Port() == localPort)
	})
}

func TestResultEstablished(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			wantID := event.TCPConnectResult
			if network == "tcp6" {
				addr, wantID = "[::1]:0", event.TCPConnectResultV6
			}
			ln := listen(t, network, addr)
			c, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			remote := netip.MustParseAddrPort(c.RemoteAddr().String())
			local := netip.MustParseAddrPort(c.LocalAddr().String())

			ev := w.result(t, eventTimeout, remote, local.Port())
			if ev.EventID != wantID || ev.Outcome() != event.OutcomeEstablished || ev.Retval != 0 {
				t.Errorf("event %d outcome %s retval %d, want %d established 0", ev.EventID, ev.Outcome(), ev.Retval, wantID)
			}
			if d := ev.Duration(); d <= 0 || d >= time.Second {
				t.Errorf("duration %v, want > 0 and < 1s", d)
			}
			if ev.HostPID != uint32(os.Getpid()) || ev.Comm != commOf(t) || ev.Local != local {
				t.Errorf("result attributed to pid %d comm %q local %v, want %d %q %v", ev.HostPID, ev.Comm, ev.Local, os.Getpid(), commOf(t), local)
			}
		})
	}
}

// A refused connection is reported even when the visibility map hides the
// host: failures always reach user space, the successful attempt does not.
func TestResultRefusedDespiteVisibility(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	if err := w.probe.SetVisibility(bpf.Visibility{bpf.HostKey: {bpf.ScopeNetwork: 1}}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	remote := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	if c, err := net.Dial("tcp4", remote.String()); err == nil {
		c.Close()
		skipOrFail(t, "port %d was reused", remote.Port())
	} else if !errorIs(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want ECONNREFUSED", err)
	}

	ev := w.result(t, eventTimeout, remote, 0)
	if ev.Outcome() != event.OutcomeRefused || ev.Retval != -int64(unix.ECONNREFUSED) || event.ErrnoName(ev.Retval) != "ECONNREFUSED" {
		t.Errorf("outcome %s retval %d (%s), want refused -111 ECONNREFUSED", ev.Outcome(), ev.Retval, event.ErrnoName(ev.Retval))
	}
	// The attempt itself (retval 0) was dropped in the kernel.
	w.noEvent(t, 200*time.Millisecond, "the hidden attempt", func(e *event.Event) bool {
		return e.IsConnect() && e.Remote == remote
	})
	ks, err := w.probe.KernelStats()
	if err != nil {
		t.Fatal(err)
	}
	if ks.DroppedVisibility == 0 {
		t.Errorf("kernel stats %+v: no event counted as dropped by visibility", ks)
	}
}

// fullListener returns the address of a listener whose accept queue is full,
// so that the kernel drops further SYNs, and the local port of the
// connection that fills it.
func fullListener(t *testing.T) (netip.AddrPort, uint16) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // queue of one
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	addr := netip.AddrPortFrom(netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr), uint16(sa.(*unix.SockaddrInet4).Port))
	// Fill the queue; nobody accepts.
	c, err := net.Dial("tcp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr, portOf(t, c.LocalAddr())
}

// A SYN that is never answered ends in ETIMEDOUT. TCP_SYNCNT=1 makes the
// kernel give up after one retransmission (about 3 s).
func TestResultTimeout(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	remote, fillerPort := fullListener(t)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1) })
		return serr
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if c, err := d.DialContext(ctx, "tcp4", remote.String()); err == nil {
		c.Close()
		t.Fatal("connect to a full accept queue succeeded")
	} else if !errorIs(err, syscall.ETIMEDOUT) {
		t.Fatalf("dial: %v, want ETIMEDOUT", err)
	}
	ev := w.waitEvent(t, eventTimeout, "the timed-out connect's result", func(ev *event.Event) bool {
		return ev.IsResult() && ev.Remote == remote && ev.Local.Port() != fillerPort
	})
	if ev.Outcome() != event.OutcomeTimeout || event.ErrnoName(ev.Retval) != "ETIMEDOUT" {
		t.Errorf("outcome %s (%s), want timeout ETIMEDOUT", ev.Outcome(), event.ErrnoName(ev.Retval))
	}
	if d := ev.Duration(); d < 2*time.Second || d > 10*time.Second {
		t.Errorf("duration %v, want the ~3 s of one SYN retransmission", d)
	}
	// Its outcome says it all: it never lived, so no close follows.
	w.noEvent(t, 500*time.Millisecond, "a close of the timed-out connect", func(e *event.Event) bool {
		return e.IsClose() && e.Local == ev.Local
	})
}

// A connection accepted by the test's server is reported with the
// accepting process and both ends, IPv4 and IPv6.
func TestAccept(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	if len(w.probe.Warnings()) > 0 {
		t.Fatalf("accept probes not attached: %v", w.probe.Warnings())
	}
	for _, f := range w.probe.Fallbacks() {
		t.Logf("accept side replaced: %v", f)
	}
	for _, tt := range []struct {
		network, addr string
		id            uint32
	}{{"tcp4", "127.0.0.1:0", event.TCPAccept}, {"tcp6", "[::1]:0", event.TCPAcceptV6}} {
		t.Run(tt.network, func(t *testing.T) {
			ln, err := net.Listen(tt.network, tt.addr)
			if err != nil {
				skipOrFail(t, "listen %s: %v", tt.addr, err)
			}
			defer ln.Close()
			c, err := net.Dial(tt.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			server := netip.MustParseAddrPort(s.LocalAddr().String())
			client := netip.MustParseAddrPort(s.RemoteAddr().String())

			ev := w.waitEvent(t, eventTimeout, "the accept", func(ev *event.Event) bool {
				return ev.IsAccept() && ev.Local == server && ev.Remote == client
			})
			if ev.EventID != tt.id || ev.HostPID != uint32(os.Getpid()) || ev.Comm != commOf(t) || ev.Direction() != "inbound" {
				t.Errorf("accept event id %d pid %d comm %q direction %s, want %d %d %q inbound",
					ev.EventID, ev.HostPID, ev.Comm, ev.Direction(), tt.id, os.Getpid(), commOf(t))
			}
		})
	}
}

// A non-blocking connect returns EINPROGRESS; its attempt is not a failure
// and its result is the handshake's.
func TestNonBlockingConnect(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	ln := listen(t, "tcp4", "127.0.0.1:0")
	remote := netip.MustParseAddrPort(ln.Addr().String())
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: remote.Addr().As4(), Port: int(remote.Port())})
	if err != nil && err != unix.EINPROGRESS {
		t.Fatalf("connect: %v", err)
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if _, err := unix.Poll(fds, 5000); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	lport := uint16(sa.(*unix.SockaddrInet4).Port)

	attempt := w.waitEvent(t, eventTimeout, "the attempt", func(ev *event.Event) bool {
		return ev.IsConnect() && ev.Remote == remote && ev.Local.Port() == lport
	})
	if attempt.Retval != 0 {
		t.Errorf("attempt retval %d, want 0", attempt.Retval)
	}
	res := w.result(t, eventTimeout, remote, lport)
	if res.Outcome() != event.OutcomeEstablished {
		t.Errorf("outcome %s, want established", res.Outcome())
	}
}

// 10 000 attempts that never resolve cannot grow the kernel's tracking map
// past its bound, and the ones it had to forget are counted.
func TestPendingAttemptsBounded(t *testing.T) {
	const maxPending, attempts = 1024, 10000
	w := startProbe(t, bpf.Options{MaxPending: maxPending})
	remote, _ := fullListener(t)

	raiseNoFile(t, attempts)
	before, err := w.probe.KernelStats()
	if err != nil {
		t.Fatal(err)
	}

	sa := &unix.SockaddrInet4{Addr: remote.Addr().As4(), Port: int(remote.Port())}
	fds := make([]int, 0, attempts)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range attempts {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("socket %d: %v", len(fds), err)
		}
		fds = append(fds, fd)
		if err := unix.Connect(fd, sa); err != unix.EINPROGRESS {
			t.Fatalf("connect %d: %v, want EINPROGRESS", len(fds), err)
		}
	}

	n, err := w.probe.PendingAttempts()
	if err != nil {
		t.Fatal(err)
	}
	if n > maxPending {
		t.Errorf("%d attempts tracked, more than the bound %d", n, maxPending)
	}
	mid, _ := w.probe.KernelStats()
	if got := mid.AttemptsTracked - before.AttemptsTracked; got < attempts {
		t.Errorf("attempts tracked moved by %d, want >= %d", got, attempts)
	}

	// Closing them resolves each: the ones still tracked as results, the
	// evicted ones counted as untracked.
	for _, fd := range fds {
		unix.Close(fd)
	}
	fds = nil
	after, _ := w.probe.KernelStats()
	untracked := after.ResultsUntracked - before.ResultsUntracked
	results := after.Results - before.Results
	if untracked < attempts-maxPending || results+untracked < attempts {
		t.Errorf("after closing %d half-open sockets: %d results, %d untracked; want >= %d untracked and %d in all",
			attempts, results, untracked, attempts-maxPending, attempts)
	}
	if n, _ := w.probe.PendingAttempts(); n != 0 {
		t.Errorf("%d attempts still tracked after every socket closed", n)
	}
	t.Logf("kernel stats delta: tracked %d, results %d, untracked %d, perf errors %d",
		after.AttemptsTracked-before.AttemptsTracked, results, untracked, after.PerfErrors-before.PerfErrors)
}

func errorIs(err error, errno syscall.Errno) bool {
	for err != nil {
		if e, ok := err.(syscall.Errno); ok {
			return e == errno
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
