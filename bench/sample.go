package main

import (
	"net/netip"

	"github.com/connwatch/connwatch/event"
)

// connectionSamples returns the two samples the kernel sends for one
// loopback connection in tracepoint mode — the attempt together with its
// result (one TCPConnectAndResult sample, which the event path splits in
// two) and the accept — for a process `pid` (a host process) connecting
// from localPort to 127.0.0.1:serverPort. They carry three events.
func connectionSamples(pid, ppid, uid uint32, comm string, ts uint64, localPort, serverPort uint16) [2][]byte {
	lo := netip.MustParseAddr("127.0.0.1")
	client := netip.AddrPortFrom(lo, localPort)
	server := netip.AddrPortFrom(lo, serverPort)
	ctx := event.Event{KernelTime: ts, HostPPID: ppid, HostPID: pid, PPID: ppid, PID: pid, UID: uid, Comm: comm}

	c := ctx
	c.EventID, c.KernelTime = event.TCPConnectAndResult, ts+40_000
	result := event.NewSample(c).Str("TCP").Sockaddr(server).Sockaddr(client).ULong(ts).Bytes()

	c = ctx
	c.EventID, c.KernelTime = event.TCPAccept, ts+50_000
	accept := event.NewSample(c).Str("TCP").Sockaddr(client).Sockaddr(server).Bytes()
	return [2][]byte{result, accept}
}

// eventsPerConnection is what connectionSamples carry: attempt, result,
// accept.
const eventsPerConnection = 3
