//go:build linux

package test

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
)

const eventTimeout = 5 * time.Second

// Both transports and both state-change programs deliver the same events,
// whether or not the kernel wakes the reader for them;
// by default the ring buffer and the BTF-typed tracepoint are used where
// the kernel has them.
func TestConnectHost(t *testing.T) {
	requireRoot(t)
	for _, o := range []bpf.Options{
		// A batch of 64 is never reached: the event arrives through
		// the probe's polling, as with the ring buffer.
		{Transport: bpf.TransportPerf, WakeupEvents: 64},
		{Transport: bpf.TransportRingbuf},
		{Transport: bpf.TransportRingbuf, RawStateChanges: true},
	} {
		name := string(o.Transport)
		if o.RawStateChanges {
			name += "/raw_tp"
		}
		t.Run(name, func(t *testing.T) { testConnectHost(t, o) })
	}
}

func testConnectHost(t *testing.T, o bpf.Options) {
	tests := []struct {
		name     string
		network  string
		addr     string
		eventID  uint32
		protocol string
	}{
		{"ipv4", "tcp4", "127.0.0.1:0", event.TCPConnect, "TCP"},
		{"ipv6", "tcp6", "[::1]:0", event.TCPConnectV6, "TCPv6"},
	}
	w := startProbe(t, o)
	prog, whyNot := w.probe.StateChanges()
	t.Logf("attach mode %s, state changes by %s (BTF-typed not used: %v)", w.probe.Mode(), prog, whyNot)
	if got := w.probe.Transport(); got != o.Transport {
		t.Fatalf("probe transport %s, want %s", got, o.Transport)
	}
	if o.RawStateChanges && prog != "tp_inet_sock_set_state" {
		t.Fatalf("state changes by %s, want the raw tracepoint", prog)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listen(t, tt.network, tt.addr)
			before := time.Now()
			c, err := net.Dial(tt.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			local := netip.MustParseAddrPort(c.LocalAddr().String())
			remote := netip.MustParseAddrPort(c.RemoteAddr().String())

			ev := w.waitEvent(t, eventTimeout, "our connect to "+remote.String(), func(ev *event.Event) bool {
				return ev.Remote == remote && ev.Local == local
			})

			want := event.Event{
				KernelTime: ev.KernelTime, Time: ev.Time,
				PidNS: 0, MntNS: 0,
				HostPID: uint32(os.Getpid()), HostPPID: uint32(os.Getppid()),
				PID: uint32(os.Getpid()), PPID: uint32(os.Getppid()),
				UID: uint32(os.Getuid()), EventID: tt.eventID, ArgNum: 3, Retval: 0,
				Comm: commOf(t), Protocol: tt.protocol,
				Remote: remote, Local: local, RemoteFamily: family(remote),
			}
			if w.probe.Mode() != bpf.ModeTracepoint {
				// Sent at tcp_connect's return, the attempt carries the
				// connection's initial sequence number, the one its
				// result carries.
				want.ArgNum, want.HasISN, want.ISN = 4, true, ev.ISN
				res := w.waitEvent(t, eventTimeout, "the result of our connect", func(r *event.Event) bool {
					return r.IsResult() && r.Remote == remote && r.Local == local
				})
				if !res.HasISN || res.ISN != ev.ISN {
					t.Errorf("attempt ISN %#x, result ISN %#x (has %v)", ev.ISN, res.ISN, res.HasISN)
				}
			}
			if ev != want {
				t.Errorf("event\n got  %+v\n want %+v", ev, want)
			}
			if d := ev.Time.Sub(before); d < -time.Second || d > 2*time.Second {
				t.Errorf("event time %v is %v away from the connect at %v", ev.Time, d, before)
			}
		})
	}
}

// A v4-mapped connect on an AF_INET6 socket is reported as TCPv6 with
// plain IPv4 addresses.
func TestConnectV4MappedIPv6(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	ln := listen(t, "tcp4", "127.0.0.1:0")
	port := portOf(t, ln.Addr())
	// Go's dialer will not connect an AF_INET6 socket to a v4-mapped
	// address, so do it by hand.
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		skipOrFail(t, "no IPv6 sockets: %v", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet6{Port: int(port), Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatalf("v4-mapped connect: %v", err)
	}
	lsa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	lport := uint16(lsa.(*unix.SockaddrInet6).Port)
	ev := w.waitEvent(t, eventTimeout, "v4-mapped connect", func(ev *event.Event) bool {
		return ev.Remote.Port() == port && ev.Local.Port() == lport
	})
	if ev.EventID != event.TCPConnectV6 || ev.Protocol != "TCPv6" {
		t.Errorf("event id %d protocol %q, want %d TCPv6", ev.EventID, ev.Protocol, event.TCPConnectV6)
	}
	if want := netip.MustParseAddr("127.0.0.1"); ev.Remote.Addr() != want || ev.Local.Addr() != want {
		t.Errorf("remote %v local %v, want both 127.0.0.1", ev.Remote, ev.Local)
	}
}

// A refused connection is an attempt too: its event carries the port the
// kernel had picked.
func TestConnectRefused(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(t, ln.Addr())
	ln.Close() // nothing listens there now
	if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
		c.Close()
		skipOrFail(t, "port was reused before the test could connect")
	}
	ev := w.waitEvent(t, eventTimeout, "refused connect", func(ev *event.Event) bool {
		return ev.Remote.Port() == port && ev.HostPID == uint32(os.Getpid())
	})
	if ev.Local.Port() == 0 || ev.Local.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("local end %v, want 127.0.0.1 with the port the kernel chose", ev.Local)
	}
}

// A process in its own pid and mount namespaces is reported with those
// namespaces' inums and its namespace-relative pid.
func TestConnectNamespacedChild(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	child := startNamespacedChild(t, nil)
	child.connect(t, false)

	ev := w.waitEvent(t, eventTimeout, "the namespaced child's connect", func(ev *event.Event) bool {
		return ev.IsConnect() && ev.HostPID == uint32(child.HostPID)
	})
	if ev.PidNS != child.PidNS || ev.MntNS != child.MntNS {
		t.Errorf("pid_ns %d mnt_ns %d, want %d %d (the child's /proc/%d/ns)", ev.PidNS, ev.MntNS, child.PidNS, child.MntNS, child.HostPID)
	}
	if ev.PID != 1 {
		t.Errorf("namespace pid %d, want 1 (first process of its pid namespace)", ev.PID)
	}
	if ev.PPID != 0 {
		t.Errorf("namespace ppid %d, want 0 (the parent is outside the namespace)", ev.PPID)
	}
	if ev.HostPPID != uint32(os.Getpid()) {
		t.Errorf("host ppid %d, want the test's pid %d", ev.HostPPID, os.Getpid())
	}
	if ev.Remote.Port() != uint16(child.Remote) || ev.Local.Port() != uint16(child.Local) {
		t.Errorf("ports %d->%d, want %d->%d", ev.Local.Port(), ev.Remote.Port(), child.Local, child.Remote)
	}
	if ev.Remote.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("remote %v, want 127.0.0.1", ev.Remote)
	}
}

// monitor=host is the seed's MONITOR_HOST build: everything is reported as
// host, with host pids.
func TestMonitorHost(t *testing.T) {
	w := startProbe(t, bpf.Options{Monitor: bpf.MonitorHost})
	child := startNamespacedChild(t, nil)
	child.connect(t, false)
	ev := w.waitEvent(t, eventTimeout, "the namespaced child's connect", func(ev *event.Event) bool {
		return ev.IsConnect() && ev.HostPID == uint32(child.HostPID)
	})
	if ev.PidNS != 0 || ev.MntNS != 0 || ev.PID != uint32(child.HostPID) {
		t.Errorf("pid_ns %d mnt_ns %d pid %d, want 0 0 %d", ev.PidNS, ev.MntNS, ev.PID, child.HostPID)
	}
}

// monitor=containers leaves host processes out in the kernel.
// The events it leaves out are counted as the monitor's, not as
// visibility's.
func TestMonitorContainers(t *testing.T) {
	w := startProbe(t, bpf.Options{Monitor: bpf.MonitorContainers})
	before, err := w.probe.KernelStats()
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, "tcp4", "127.0.0.1:0")
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		after, err := w.probe.KernelStats()
		if err != nil {
			t.Fatal(err)
		}
		// The host connect, its result and its accept at least; other
		// host processes may add to it.
		if d := after.DroppedMonitor - before.DroppedMonitor; d < 3 {
			t.Errorf("DroppedMonitor moved by %d for a host connection and its accept, want >= 3", d)
		}
		if d := after.DroppedVisibility - before.DroppedVisibility; d != 0 {
			t.Errorf("DroppedVisibility moved by %d: the monitor's drops counted as visibility's", d)
		}
	}()
	child := startNamespacedChild(t, nil)
	child.connect(t, false)
	w.waitEvent(t, eventTimeout, "the namespaced child's connect", func(ev *event.Event) bool {
		return ev.IsConnect() && ev.HostPID == uint32(child.HostPID)
	})
	w.noEvent(t, 300*time.Millisecond, "a host connect with monitor=containers", func(ev *event.Event) bool {
		return ev.HostPID == uint32(os.Getpid())
	})
}

func family(ap netip.AddrPort) uint16 {
	if ap.Addr().Is4() {
		return 2
	}
	return 10
}
