//go:build linux

package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

// closeServerEnv makes the test binary run closeServerMain.
const closeServerEnv = "CONNWATCH_CLOSE_SERVER"

func init() {
	if v := os.Getenv(closeServerEnv); v != "" {
		os.Exit(closeServerMain(v))
	}
}

// closeServerMain ("RECV SEND") listens on 127.0.0.1, says "ready PORT",
// accepts one connection, reads RECV bytes from it, writes SEND bytes,
// reads until the client closes, closes its end and says "done".
// With "hold N" it accepts N connections instead, says "held", and
// closes them all when its stdin closes.
func closeServerMain(spec string) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "close server:", err)
		return 1
	}
	fmt.Printf("ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	var recv, send, hold int
	if _, err := fmt.Sscanf(spec, "hold %d", &hold); err == nil {
		return holdConnections(ln, hold)
	}
	if _, err := fmt.Sscanf(spec, "%d %d", &recv, &send); err != nil {
		fmt.Fprintln(os.Stderr, "close server:", err)
		return 2
	}
	c, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, "close server: accept:", err)
		return 1
	}
	ln.Close()
	if _, err := io.ReadFull(c, make([]byte, recv)); err != nil {
		fmt.Fprintln(os.Stderr, "close server: read:", err)
		return 1
	}
	if _, err := c.Write(make([]byte, send)); err != nil {
		fmt.Fprintln(os.Stderr, "close server: write:", err)
		return 1
	}
	io.Copy(io.Discard, c) // until the client's FIN
	c.Close()
	fmt.Println("done")
	return 0
}

func holdConnections(ln net.Listener, n int) int {
	conns := make([]net.Conn, 0, n)
	for len(conns) < n {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "close server: accept:", err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Println("held")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	fmt.Println("done")
	return 0
}

// startCloseServer runs closeServerMain with spec in a child process and
// returns it, its address, its output and its stdin.
func startCloseServer(t *testing.T, spec string) (*exec.Cmd, netip.AddrPort, *bufio.Scanner, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), closeServerEnv+"="+spec)
	cmd.Stderr = os.Stderr
	stdin, out := startPiped(t, cmd)
	if !out.Scan() || !strings.HasPrefix(out.Text(), "ready ") {
		t.Fatalf("close server did not start: %q", out.Text())
	}
	port, err := strconv.Atoi(strings.TrimPrefix(out.Text(), "ready "))
	if err != nil {
		t.Fatal(err)
	}
	return cmd, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), out, stdin
}

// talkAndClose connects to the close server at addr, sends sent bytes,
// reads received, closes about a second after connecting, waits for the
// server to close its end, and returns the client's address.
func talkAndClose(t *testing.T, addr netip.AddrPort, out *bufio.Scanner, sent, received int) netip.AddrPort {
	t.Helper()
	start := time.Now()
	c, err := net.Dial("tcp4", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	if _, err := c.Write(make([]byte, sent)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, received)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(start.Add(time.Second)))
	c.Close()
	if !out.Scan() || out.Text() != "done" {
		t.Fatalf("close server: %q", out.Text())
	}
	return local
}

// isClose matches the close event of the connection local -> remote as
// one end sees it.
func isClose(local, remote netip.AddrPort) func(*event.Event) bool {
	return func(ev *event.Event) bool { return ev.IsClose() && ev.Local == local && ev.Remote == remote }
}

// A client that sends 200 000 bytes and receives 50 000 over a connection
// that lives about a second: each end's close event carries its own
// process, the bytes in the right direction, the lifetime, an RTT, and
// the ISN both ends and the handshake agree on.
func TestCloseBytesLifetimeRTT(t *testing.T) {
	const sent, received = 200_000, 50_000
	w := startProbe(t, bpf.Options{})
	server, addr, out, _ := startCloseServer(t, fmt.Sprintf("%d %d", sent, received))
	local := talkAndClose(t, addr, out, sent, received)

	result := w.waitEvent(t, eventTimeout, "the client's result", func(ev *event.Event) bool {
		return ev.IsResult() && ev.Local == local && ev.Remote == addr
	})
	cl := w.waitEvent(t, eventTimeout, "the client's close", isClose(local, addr))
	sv := w.waitEvent(t, eventTimeout, "the server's close", isClose(addr, local))

	for _, end := range []struct {
		name           string
		ev             event.Event
		pid            int
		server         bool
		sent, received uint64
	}{
		{"client", cl, os.Getpid(), false, sent, received},
		{"server", sv, server.Process.Pid, true, received, sent},
	} {
		ev, c := end.ev, end.ev.Close
		if ev.HostPID != uint32(end.pid) || ev.PID != uint32(end.pid) {
			t.Errorf("%s close: pid %d/%d, want %d", end.name, ev.HostPID, ev.PID, end.pid)
		}
		if ev.EventID != event.TCPClose || ev.Protocol != "TCP" || c.Server != end.server || ev.Direction() != map[bool]string{false: "outbound", true: "inbound"}[end.server] {
			t.Errorf("%s close: id %d protocol %q server %v direction %s", end.name, ev.EventID, ev.Protocol, c.Server, ev.Direction())
		}
		if c.BytesSent < end.sent || c.BytesReceived < end.received || c.BytesSent > end.sent+2 || c.BytesReceived > end.received+2 {
			t.Errorf("%s close: sent %d received %d, want %d and %d (+ SYN/FIN)", end.name, c.BytesSent, c.BytesReceived, end.sent, end.received)
		}
		if l := ev.Lifetime(); l < 900*time.Millisecond || l > 10*time.Second {
			t.Errorf("%s close: lifetime %v, want about 1 s", end.name, l)
		}
		// The first RTT sample sets srtt_us to at least 1 µs << 3.
		if c.RTTMicros == 0 {
			t.Errorf("%s close: no RTT", end.name)
		}
		if how := ev.CloseHow(); how != event.CloseFIN || ev.Retval != 0 {
			t.Errorf("%s close: %s retval %d, want fin 0", end.name, how, ev.Retval)
		}
		if !ev.HasISN || ev.ISN != result.ISN || !result.HasISN {
			t.Errorf("%s close: ISN %#x (%v), the client's result says %#x (%v)", end.name, ev.ISN, ev.HasISN, result.ISN, result.HasISN)
		}
		t.Logf("%s close: sent %d received %d rtt %d µs retransmits %d lifetime %v from state %d",
			end.name, c.BytesSent, c.BytesReceived, c.RTTMicros, c.Retransmits, ev.Lifetime(), c.OldState)
	}
	acc := w.waitEvent(t, eventTimeout, "the server's accept", func(ev *event.Event) bool {
		return ev.IsAccept() && ev.Local == addr && ev.Remote == local
	})
	if !acc.HasISN || acc.ISN != result.ISN {
		t.Errorf("accept ISN %#x (%v), the client's result says %#x", acc.ISN, acc.HasISN, result.ISN)
	}
}

// A connection closed with SO_LINGER 0 sends an RST: the closing end's
// close says reset, and so does the peer's, which has ECONNRESET.
func TestCloseReset(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	defer sc.Close()
	local, remote := netip.MustParseAddrPort(c.LocalAddr().String()), netip.MustParseAddrPort(c.RemoteAddr().String())
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()

	cl := w.waitEvent(t, eventTimeout, "the resetting end's close", isClose(local, remote))
	if cl.CloseHow() != event.CloseReset || cl.Close.OldState != event.StateEstablished {
		t.Errorf("resetting end: %s from state %d (retval %d), want reset from ESTABLISHED", cl.CloseHow(), cl.Close.OldState, cl.Retval)
	}
	sv := w.waitEvent(t, eventTimeout, "the reset end's close", isClose(remote, local))
	if sv.CloseHow() != event.CloseReset || event.ErrnoName(sv.Retval) != "ECONNRESET" || !sv.Close.Server {
		t.Errorf("reset end: %s retval %s server %v, want reset ECONNRESET on the accepted end", sv.CloseHow(), event.ErrnoName(sv.Retval), sv.Close.Server)
	}
}

// A refused connect is reported by its outcome and sends no close event,
// nor does a listening socket that closes.
func TestCloseNotForRefused(t *testing.T) {
	w := startProbe(t, bpf.Options{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	if c, err := net.Dial("tcp4", addr.String()); err == nil {
		c.Close()
		skipOrFail(t, "port was reused before the test could connect")
	}
	res := w.waitEvent(t, eventTimeout, "the refused result", func(ev *event.Event) bool {
		return ev.IsResult() && ev.Remote == addr
	})
	if res.Outcome() != event.OutcomeRefused {
		t.Fatalf("outcome %s, want refused", res.Outcome())
	}
	w.noEvent(t, time.Second, "a close of the refused connect or the closed listener", func(ev *event.Event) bool {
		return ev.IsClose() && (ev.Local == res.Local || ev.Local.Port() == addr.Port())
	})
}

// raiseNoFile makes sure this process may open n more files.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	if lim.Cur >= n+1000 {
		return
	}
	old := lim
	lim.Cur = max(lim.Max, n+1000)
	lim.Max = lim.Cur
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		skipOrFail(t, "cannot raise RLIMIT_NOFILE to %d: %v", lim.Cur, err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
}

// 10 000 connections left open (20 000 ends, all reported: this process
// connects, a child accepts and holds) against a sockets map of 1 024: the
// map stays within its bound and the ends it had to forget are counted;
// closing them all sends a close for each end still tracked and leaves
// the map empty.
func TestOpenConnectionsBounded(t *testing.T) {
	const maxConns, conns = 1024, 10000
	w := startProbe(t, bpf.Options{MaxConnections: maxConns})
	raiseNoFile(t, conns)
	before, err := w.probe.KernelStats()
	if err != nil {
		t.Fatal(err)
	}
	_, addr, out, stdin := startCloseServer(t, fmt.Sprintf("hold %d", conns))
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := net.Dial("tcp4", addr.String())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
	}
	if !out.Scan() || out.Text() != "held" {
		t.Fatalf("server: %q", out.Text())
	}

	n, err := w.probe.OpenConnections()
	if err != nil {
		t.Fatal(err)
	}
	mid, _ := w.probe.KernelStats()
	tracked := mid.ConnsTracked - before.ConnsTracked
	forgotten := mid.ConnsForgotten - before.ConnsForgotten
	t.Logf("%d ends tracked, %d in the map, %d forgotten", tracked, n, forgotten)
	if n > maxConns {
		t.Errorf("%d connections tracked, more than the bound %d", n, maxConns)
	}
	if tracked < 2*conns {
		t.Errorf("tracked moved by %d, want >= %d (both ends of each connection)", tracked, 2*conns)
	}
	if forgotten < 2*conns-maxConns {
		t.Errorf("forgotten moved by %d, want >= %d", forgotten, 2*conns-maxConns)
	}

	for _, c := range open {
		c.Close()
	}
	open = nil
	stdin.Close()
	if !out.Scan() || out.Text() != "done" {
		t.Fatalf("server: %q", out.Text())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		left, err := w.probe.OpenConnections()
		if err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still tracked 20 s after every socket closed", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after, _ := w.probe.KernelStats()
	closed := after.ConnsClosed - mid.ConnsClosed
	if closed < uint64(n)-uint64(n)/100 || closed > uint64(n)+64 {
		t.Errorf("%d tracked ends closed, want the %d the map held", closed, n)
	}
}

// The agent exports each end's close as a connwatch.tcp.close log record
// under the end's workload, with the connection's figures, and with the
// trace and span IDs of that end's span; the SERVER span is in the CLIENT
// span's trace, under it.
func TestAgentExportsCloseRecords(t *testing.T) {
	const sent, received = 200_000, 50_000
	requireRoot(t)
	r := otlptest.Start(t)
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", writeTempConfig(t, "telemetry:\n  listen: \"\"\n"))
	server, addr, out, _ := startCloseServer(t, fmt.Sprintf("%d %d", sent, received))
	local := talkAndClose(t, addr, out, sent, received)

	span := func(what string, match func(otlptest.Span) bool) otlptest.Span {
		t.Helper()
		got, err := r.WaitSpans(exportTimeout, 1, match)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return got[0]
	}
	clientSpan := span("the CLIENT span", func(s otlptest.Span) bool {
		return s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Attrs()["network.local.port"] == int64(local.Port())
	})
	serverSpan := span("the SERVER span", func(s otlptest.Span) bool {
		return s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Attrs()["client.port"] == int64(local.Port())
	})
	if !bytes.Equal(serverSpan.TraceId, clientSpan.TraceId) || !bytes.Equal(serverSpan.ParentSpanId, clientSpan.SpanId) {
		t.Errorf("SERVER span %x/%x parent %x; CLIENT span %x/%x: not joined", serverSpan.TraceId, serverSpan.SpanId,
			serverSpan.ParentSpanId, clientSpan.TraceId, clientSpan.SpanId)
	}

	for _, end := range []struct {
		name           string
		pid            int
		port           string // the attribute with the other end's port
		span           otlptest.Span
		sent, received int64
		direction      string
	}{
		{"client", os.Getpid(), "network.local.port", clientSpan, sent, received, "outbound"},
		{"server", server.Process.Pid, "client.port", serverSpan, received, sent, "inbound"},
	} {
		logs, err := r.WaitLogs(exportTimeout, 1, func(l otlptest.Log) bool {
			return l.EventName == "connwatch.tcp.close" && l.ResourceAttrs()["process.pid"] == int64(end.pid) &&
				l.Attrs()[end.port] == int64(local.Port())
		})
		if err != nil {
			t.Fatalf("%s close record: %v", end.name, err)
		}
		l, a := logs[0], logs[0].Attrs()
		t.Logf("%s close record: %s %v", end.name, l.Body.GetStringValue(), a)
		if a["connwatch.bytes_sent"].(int64) < end.sent || a["connwatch.bytes_received"].(int64) < end.received {
			t.Errorf("%s: bytes sent %v received %v, want >= %d, %d", end.name, a["connwatch.bytes_sent"], a["connwatch.bytes_received"], end.sent, end.received)
		}
		if lt, _ := a["connwatch.lifetime_ns"].(int64); lt < int64(900*time.Millisecond) {
			t.Errorf("%s: lifetime %v, want >= 0.9 s", end.name, a["connwatch.lifetime_ns"])
		}
		if rtt, ok := a["connwatch.rtt_us"].(int64); !ok || rtt < 0 {
			t.Errorf("%s: rtt %v", end.name, a["connwatch.rtt_us"])
		}
		if _, ok := a["connwatch.retransmits"].(int64); !ok {
			t.Errorf("%s: no retransmits attribute", end.name)
		}
		if a["connwatch.close"] != "fin" || a["connwatch.direction"] != end.direction || a["server.port"] != int64(addr.Port()) ||
			a["network.transport"] != "tcp" || a["connwatch.event_id"] != int64(event.TCPClose) {
			t.Errorf("%s: attributes %v", end.name, a)
		}
		if !bytes.Equal(l.TraceId, end.span.TraceId) || !bytes.Equal(l.SpanId, end.span.SpanId) {
			t.Errorf("%s close record %x/%x, its span %x/%x", end.name, l.TraceId, l.SpanId, end.span.TraceId, end.span.SpanId)
		}
	}
}
