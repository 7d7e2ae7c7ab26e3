package otel

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"

	"github.com/connwatch/connwatch/event"
)

// DefaultTraceKey is the key of the hash that trace and span IDs are
// derived from. It is public, so anyone who sees a connection's addresses
// and initial sequence number can compute its IDs; what it buys is that
// every agent computes the same ones without talking to the others.
const DefaultTraceKey = "connwatch trace key v1"

// idVersion starts the hashed input, so that a later derivation cannot
// collide with this one. Version 1 hashed the server's end too.
const idVersion = 2

// connIDs derives the trace context of connections from their identity:
// the client's address and port and its initial sequence number. Each
// end of a connection knows them (the client from its socket, the server
// from the accepted one), so two agents that each see one end, or one
// agent that sees both, compute the same trace ID, and the SERVER span
// names the CLIENT span as its parent, with nothing exchanged.
//
// The server's end is left out on purpose: destination NAT (kube-proxy
// sending a Service's ClusterIP to a pod, a published port) gives the
// client one server address and the server another, while the client's
// address, port and ISN reach the server unchanged. The ISN keeps
// connections apart: the kernel derives it from the whole 4-tuple and a
// clock, so two connections that share a client port (to different
// servers, or one after the other) get different ISNs but for a one in
// 2^32 chance.
//
// The IDs are HMAC-SHA256(key, version ‖ client ‖ isn): bytes 0–15 the
// trace ID, 16–23 the CLIENT span ID, 24–31 the SERVER span ID. The
// address is its 16-byte IPv6 form (IPv4 as ::ffff:a.b.c.d), the port
// and the ISN big-endian.
//
// Not safe for concurrent use (the Exporter holds its lock).
type connIDs struct {
	mac hash.Hash
	in  [1 + 18 + 4]byte
	out [sha256.Size]byte
}

func newConnIDs(key []byte) *connIDs {
	return &connIDs{mac: hmac.New(sha256.New, key)}
}

// derive computes the IDs of the connection of client whose client chose
// isn.
func (c *connIDs) derive(client netip.AddrPort, isn uint32) (tid [traceIDLen]byte, clientSpan, serverSpan [spanIDLen]byte) {
	b := c.in[:0]
	b = append(b, idVersion)
	a := client.Addr().Unmap().As16()
	b = append(b, a[:]...)
	b = binary.BigEndian.AppendUint16(b, client.Port())
	b = binary.BigEndian.AppendUint32(b, isn)
	c.mac.Reset()
	c.mac.Write(b)
	out := c.mac.Sum(c.out[:0])
	copy(tid[:], out[0:16])
	copy(clientSpan[:], out[16:24])
	copy(serverSpan[:], out[24:32])
	// All-zero IDs are invalid; one in 2^64 is not worth a branch more
	// than this.
	if tid == ([traceIDLen]byte{}) {
		tid[15] = 1
	}
	if clientSpan == ([spanIDLen]byte{}) {
		clientSpan[7] = 1
	}
	if serverSpan == ([spanIDLen]byte{}) {
		serverSpan[7] = 1
	}
	return tid, clientSpan, serverSpan
}

// ofEvent fills the trace ID and span ID an event's span or record carries
// and, for an accept's SERVER span, the CLIENT span as s's parent: a
// connect result's is the CLIENT span, an accept's the SERVER span, a
// close's that of its end. It returns false when the event does not name
// its connection (no ISN, or an end without an address).
func (c *connIDs) ofEvent(ev *event.Event, tid *[traceIDLen]byte, sid *[spanIDLen]byte, s *spanSpec) bool {
	if !ev.HasISN || !ev.Local.IsValid() || !ev.Remote.IsValid() {
		return false
	}
	if !ev.Inbound() {
		t, cs, _ := c.derive(ev.Local, ev.ISN)
		*tid, *sid = t, cs
		return true
	}
	t, cs, ss := c.derive(ev.Remote, ev.ISN)
	*tid, *sid = t, ss
	if s != nil && ev.IsAccept() {
		s.parent, s.hasParent = cs, true
	}
	return true
}
