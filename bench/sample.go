package main

import (
	"encoding/binary"
	"net/netip"

	"github.com/connwatch/connwatch/event"
)

// sampleBuilder writes wire-format samples the way bpf/connwatch.c does
// (see event/decode.go): a packed 68-byte sys_context_t followed by typed
// arguments.
type sampleBuilder struct {
	ctx  [event.ContextSize]byte
	args []byte
	n    uint32
}

// sampleContext is the sys_context_t of a synthetic sample.
type sampleContext struct {
	ts                uint64
	pidNS, mntNS      uint32
	hostPPID, hostPID uint32
	ppid, pid, uid    uint32
	eventID           uint32
	retval            int64
	comm              string
}

func newSampleBuilder(c sampleContext) *sampleBuilder {
	s := &sampleBuilder{}
	le := binary.LittleEndian
	le.PutUint64(s.ctx[0:], c.ts)
	le.PutUint32(s.ctx[8:], c.pidNS)
	le.PutUint32(s.ctx[12:], c.mntNS)
	le.PutUint32(s.ctx[16:], c.hostPPID)
	le.PutUint32(s.ctx[20:], c.hostPID)
	le.PutUint32(s.ctx[24:], c.ppid)
	le.PutUint32(s.ctx[28:], c.pid)
	le.PutUint32(s.ctx[32:], c.uid)
	le.PutUint32(s.ctx[36:], c.eventID)
	le.PutUint64(s.ctx[44:], uint64(c.retval))
	copy(s.ctx[52:], c.comm)
	return s
}

func (s *sampleBuilder) str(v string) *sampleBuilder {
	s.args = append(s.args, event.ArgStr)
	s.args = binary.LittleEndian.AppendUint32(s.args, uint32(len(v)+1))
	s.args = append(append(s.args, v...), 0)
	s.n++
	return s
}

func (s *sampleBuilder) sockaddr(ap netip.AddrPort) *sampleBuilder {
	s.args = append(s.args, event.ArgSockaddr)
	if ap.Addr().Is4() {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint16(b, 2) // AF_INET
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().As4()
		copy(b[4:], a[:])
		s.args = append(s.args, b...)
	} else {
		b := make([]byte, 28)
		binary.LittleEndian.PutUint16(b, 10) // AF_INET6
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().As16()
		copy(b[8:], a[:])
		s.args = append(s.args, b...)
	}
	s.n++
	return s
}

func (s *sampleBuilder) ulong(v uint64) *sampleBuilder {
	s.args = append(s.args, event.ArgULong)
	s.args = binary.LittleEndian.AppendUint64(s.args, v)
	s.n++
	return s
}

// bytes returns the sample, padded to 8 bytes as perf pads it.
func (s *sampleBuilder) bytes() []byte {
	binary.LittleEndian.PutUint32(s.ctx[40:], s.n)
	b := append(append([]byte{}, s.ctx[:]...), s.args...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

// connectionSamples returns the three samples the kernel sends for one
// loopback connection in tracepoint mode — the attempt, its result and the
// accept — for a process `pid` (a host process) connecting from
// localPort to 127.0.0.1:serverPort.
func connectionSamples(pid, ppid, uid uint32, comm string, ts uint64, localPort, serverPort uint16) [3][]byte {
	lo := netip.MustParseAddr("127.0.0.1")
	client := netip.AddrPortFrom(lo, localPort)
	server := netip.AddrPortFrom(lo, serverPort)
	ctx := sampleContext{ts: ts, hostPPID: ppid, hostPID: pid, ppid: ppid, pid: pid, uid: uid, comm: comm}

	c := ctx
	c.eventID = event.TCPConnect
	attempt := newSampleBuilder(c).str("TCP").sockaddr(server).sockaddr(client).bytes()

	c = ctx
	c.eventID, c.ts = event.TCPConnectResult, ts+40_000
	result := newSampleBuilder(c).str("TCP").sockaddr(server).sockaddr(client).ulong(ts).bytes()

	c = ctx
	c.eventID, c.ts = event.TCPAccept, ts+50_000
	accept := newSampleBuilder(c).str("TCP").sockaddr(client).sockaddr(server).bytes()
	return [3][]byte{attempt, result, accept}
}
