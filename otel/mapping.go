package otel

import (
	"math"
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/log"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/connwatch/connwatch/event"
)

// ScopeName is the instrumentation scope of connwatch's spans and log
// records.
const ScopeName = "github.com/connwatch/connwatch/otel"

// Span names. They are constant so that trace back ends show two
// operations per service; the peer is in the server.* and network.peer.*
// attributes, where it can be searched without exploding the operation
// list of a workload that talks to thousands of addresses.
const (
	SpanNameConnect = "tcp connect" // CLIENT span of a connect result
	SpanNameAccept  = "tcp accept"  // SERVER span of an accepted connection
)

// Span and log record attribute keys without a semantic convention. They
// carry the kernel event's own fields (KubeArmor's names where it has
// them).
const (
	AttrEventID      = attribute.Key("connwatch.event_id")      // int: 400–403, 410, 412
	AttrRetval       = attribute.Key("connwatch.retval")        // int: 0 or -errno
	AttrProtocol     = attribute.Key("connwatch.protocol")      // string: "TCP" or "TCPv6"
	AttrDirection    = attribute.Key("connwatch.direction")     // string: "outbound" or "inbound"
	AttrOutcome      = attribute.Key("connwatch.outcome")       // string: results only, see event.Outcome
	AttrError        = attribute.Key("connwatch.error")         // string: errno name, failures only
	AttrDurationNS   = attribute.Key("connwatch.duration_ns")   // int: results only, attempt to outcome
	AttrRemoteFamily = attribute.Key("connwatch.remote_family") // int: only for an undecoded address family

	// Of a close record (connwatch.tcp.close): what the connection carried.
	AttrClose         = attribute.Key("connwatch.close")          // string: "fin", "reset" or "timeout", see event.Event.CloseHow
	AttrLifetimeNS    = attribute.Key("connwatch.lifetime_ns")    // int: established (or accepted) to closed
	AttrBytesSent     = attribute.Key("connwatch.bytes_sent")     // int: tcp_sock.bytes_acked
	AttrBytesReceived = attribute.Key("connwatch.bytes_received") // int: tcp_sock.bytes_received
	AttrRTTMicros     = attribute.Key("connwatch.rtt_us")         // int: smoothed RTT, tcp_sock.srtt_us >> 3
	AttrRetransmits   = attribute.Key("connwatch.retransmits")    // int: tcp_sock.total_retrans
)

// Severity of the log records: SeverityOK for attempts, accepts and
// established connections, SeverityFailed for failed ones.
const (
	SeverityOK     = log.SeverityInfo
	SeverityFailed = log.SeverityWarn
)

// mapped reports whether Emit turns ev into telemetry.
func mapped(ev *event.Event) bool {
	return ev.IsConnect() || ev.IsAccept() || ev.IsResult() || ev.IsClose()
}

// failed reports whether ev reports a failure.
func failed(ev *event.Event) bool { return ev.Retval < 0 }

func unmap(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// attrKey is an attribute key of the per-event attributes, with its
// encodings made once: the start of its OTLP KeyValue message.
type attrKey struct {
	name string
	pb   []byte // KeyValue.key field, then the tag of KeyValue.value
}

func newAttrKey(name string) *attrKey {
	b := appendRawStringField(nil, fieldKey, name)
	return &attrKey{name: name, pb: appendTag(b, fieldValue, protowire.BytesType)}
}

// The per-event attribute keys (semantic conventions and connwatch's).
var (
	keyNetworkTransport   = newAttrKey(string(semconv.NetworkTransportKey))
	keyNetworkType        = newAttrKey(string(semconv.NetworkTypeKey))
	keyNetworkPeerAddress = newAttrKey(string(semconv.NetworkPeerAddressKey))
	keyNetworkPeerPort    = newAttrKey(string(semconv.NetworkPeerPortKey))
	keyNetworkLocalAddr   = newAttrKey(string(semconv.NetworkLocalAddressKey))
	keyNetworkLocalPort   = newAttrKey(string(semconv.NetworkLocalPortKey))
	keyServerAddress      = newAttrKey(string(semconv.ServerAddressKey))
	keyServerPort         = newAttrKey(string(semconv.ServerPortKey))
	keyClientAddress      = newAttrKey(string(semconv.ClientAddressKey))
	keyClientPort         = newAttrKey(string(semconv.ClientPortKey))
	keyErrorType          = newAttrKey(string(semconv.ErrorTypeKey))
	keyRemoteFamily       = newAttrKey(string(AttrRemoteFamily))
	keyEventID            = newAttrKey(string(AttrEventID))
	keyRetval             = newAttrKey(string(AttrRetval))
	keyProtocol           = newAttrKey(string(AttrProtocol))
	keyDirection          = newAttrKey(string(AttrDirection))
	keyOutcome            = newAttrKey(string(AttrOutcome))
	keyDurationNS         = newAttrKey(string(AttrDurationNS))
	keyError              = newAttrKey(string(AttrError))
	keyClose              = newAttrKey(string(AttrClose))
	keyLifetimeNS         = newAttrKey(string(AttrLifetimeNS))
	keyBytesSent          = newAttrKey(string(AttrBytesSent))
	keyBytesReceived      = newAttrKey(string(AttrBytesReceived))
	keyRTTMicros          = newAttrKey(string(AttrRTTMicros))
	keyRetransmits        = newAttrKey(string(AttrRetransmits))
)

// Attribute values of the semantic conventions, as strings.
var (
	valTCP  = semconv.NetworkTransportTCP.Value.AsString()
	valIPv4 = semconv.NetworkTypeIPv4.Value.AsString()
	valIPv6 = semconv.NetworkTypeIPv6.Value.AsString()
)

// attrVisitor receives the attributes of an event's span and log record,
// in order. Every encoder of records (OTLP protobuf, JSON lines, the
// tests' attribute lists) is one; the mapping itself is visitAttributes.
type attrVisitor interface {
	str(key *attrKey, val string)
	addr(key *attrKey, a netip.Addr)
	int(key *attrKey, v int64)
}

// visitAttributes calls v for each attribute shared by ev's span and log
// record. It allocates nothing.
func visitAttributes(ev *event.Event, v attrVisitor) {
	remote, local := unmap(ev.Remote), unmap(ev.Local)
	v.str(keyNetworkTransport, valTCP)
	typ := remote
	if !typ.IsValid() {
		typ = local
	}
	if typ.IsValid() {
		if typ.Addr().Is4() {
			v.str(keyNetworkType, valIPv4)
		} else {
			v.str(keyNetworkType, valIPv6)
		}
	}
	if remote.IsValid() {
		v.addr(keyNetworkPeerAddress, remote.Addr())
		v.int(keyNetworkPeerPort, int64(remote.Port()))
	} else if ev.RemoteFamily != 0 {
		v.int(keyRemoteFamily, int64(ev.RemoteFamily))
	}
	if local.IsValid() {
		v.addr(keyNetworkLocalAddr, local.Addr())
		v.int(keyNetworkLocalPort, int64(local.Port()))
	}
	if ev.Inbound() {
		if local.IsValid() {
			v.addr(keyServerAddress, local.Addr())
			v.int(keyServerPort, int64(local.Port()))
		}
		if remote.IsValid() {
			v.addr(keyClientAddress, remote.Addr())
			v.int(keyClientPort, int64(remote.Port()))
		}
	} else if remote.IsValid() {
		v.addr(keyServerAddress, remote.Addr())
		v.int(keyServerPort, int64(remote.Port()))
	}
	v.int(keyEventID, int64(ev.EventID))
	v.int(keyRetval, ev.Retval)
	if ev.Protocol != "" {
		v.str(keyProtocol, ev.Protocol)
	}
	v.str(keyDirection, ev.Direction())
	if ev.IsResult() {
		v.str(keyOutcome, ev.Outcome().String())
		v.int(keyDurationNS, int64(ev.Duration()))
	}
	if ev.IsClose() {
		c := &ev.Close
		v.str(keyClose, ev.CloseHow())
		v.int(keyLifetimeNS, int64(ev.Lifetime()))
		v.int(keyBytesSent, clampInt(c.BytesSent))
		v.int(keyBytesReceived, clampInt(c.BytesReceived))
		v.int(keyRTTMicros, int64(c.RTTMicros))
		v.int(keyRetransmits, int64(c.Retransmits))
	}
	if failed(ev) {
		name := event.ErrnoName(ev.Retval)
		v.str(keyError, name)
		v.str(keyErrorType, name)
	}
}

// clampInt is v as an OTLP int (int64), saturated.
func clampInt(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// kvList collects attributes as attribute.KeyValue (it allocates; for
// tests and the rare caller that wants the SDK's types).
type kvList []attribute.KeyValue

func (l *kvList) str(k *attrKey, s string) { *l = append(*l, attribute.String(k.name, s)) }
func (l *kvList) addr(k *attrKey, a netip.Addr) {
	*l = append(*l, attribute.String(k.name, a.String()))
}
func (l *kvList) int(k *attrKey, v int64) { *l = append(*l, attribute.Int64(k.name, v)) }

// appendAttributes appends the attributes shared by ev's span and log
// record to dst, as visitAttributes yields them.
func appendAttributes(dst []attribute.KeyValue, ev *event.Event) []attribute.KeyValue {
	l := kvList(dst)
	visitAttributes(ev, &l)
	return l
}

// spanSpec is the span an event maps to, without its attributes.
type spanSpec struct {
	name        string
	kind        trace.SpanKind
	start, end  time.Time
	code        codes.Code
	description string
	// parent is the span's parent span ID, valid when hasParent: a
	// SERVER span's CLIENT span (see connIDs).
	parent    [spanIDLen]byte
	hasParent bool
}

// spanOf returns the span of ev: a CLIENT span from the attempt to the
// outcome for a connect result, a SERVER span at the accept for an
// accepted connection (the kernel reports no earlier time of an accepted
// connection, so it has no duration), none for an attempt, whose result
// brings the span.
//
// A failed connection has status Error with the errno name
// ("ECONNREFUSED") as description; an established or accepted one keeps
// status Unset, as the semantic conventions ask of instrumentation.
func spanOf(ev *event.Event) (spanSpec, bool) {
	var s spanSpec
	switch {
	case ev.IsResult():
		s.name, s.kind, s.end = SpanNameConnect, trace.SpanKindClient, ev.Time
		s.start = ev.Start
		if s.start.IsZero() {
			s.start = ev.Time.Add(-ev.Duration())
		}
		if s.end.Before(s.start) {
			s.end = s.start
		}
	case ev.IsAccept():
		s.name, s.kind, s.start, s.end = SpanNameAccept, trace.SpanKindServer, ev.Time, ev.Time
	default:
		return s, false
	}
	if failed(ev) {
		s.code, s.description = codes.Error, event.ErrnoName(ev.Retval)
	}
	return s, true
}

// severityOf returns the severity of ev's log record.
func severityOf(ev *event.Event) log.Severity {
	if failed(ev) {
		return SeverityFailed
	}
	return SeverityOK
}

// severityText returns the text of a severity used by this package.
func severityText(s log.Severity) string {
	if s == SeverityFailed {
		return "WARN"
	}
	return "INFO"
}

// bodyOf returns the human-readable body of ev's log record:
//
//	curl connect 10.0.0.1:51000 -> 93.184.216.34:443
//	curl connect 10.0.0.1:51000 -> 93.184.216.34:443 established after 1.2ms
//	curl connect 10.0.0.1:51000 -> 93.184.216.34:443 refused (ECONNREFUSED) after 1.2ms
//	nginx accept 10.0.0.2:443 <- 10.0.0.1:51000
func bodyOf(ev *event.Event) string { return string(appendBody(nil, ev)) }

// appendBody appends ev's body (see bodyOf) to b.
func appendBody(b []byte, ev *event.Event) []byte {
	b = append(b, ServiceName(ev)...)
	if ev.IsClose() {
		return appendCloseBody(b, ev)
	}
	if ev.IsAccept() {
		b = append(b, " accept "...)
		b = appendAddrPort(b, ev.Local)
		b = append(b, " <- "...)
		b = appendAddrPort(b, ev.Remote)
	} else {
		b = append(b, " connect "...)
		b = appendAddrPort(b, ev.Local)
		b = append(b, " -> "...)
		b = appendAddrPort(b, ev.Remote)
	}
	if ev.IsResult() {
		b = append(b, ' ')
		b = append(b, ev.Outcome().String()...)
	}
	if failed(ev) {
		b = append(b, " ("...)
		b = append(b, event.ErrnoName(ev.Retval)...)
		b = append(b, ')')
	}
	if d := ev.Duration(); d > 0 {
		b = append(b, " after "...)
		b = appendDuration(b, roundDuration(d))
	}
	return b
}

// appendCloseBody appends the rest of a close record's body:
//
//	curl close 10.0.0.1:51000 -> 93.184.216.34:443 fin after 1.2s, sent 200001 B, received 50001 B
//	nginx close 10.0.0.2:443 <- 10.0.0.1:51000 reset (ECONNRESET) after 3ms, sent 0 B, received 120 B
func appendCloseBody(b []byte, ev *event.Event) []byte {
	b = append(b, " close "...)
	b = appendAddrPort(b, ev.Local)
	if ev.Inbound() {
		b = append(b, " <- "...)
	} else {
		b = append(b, " -> "...)
	}
	b = appendAddrPort(b, ev.Remote)
	b = append(b, ' ')
	b = append(b, ev.CloseHow()...)
	if failed(ev) {
		b = append(b, " ("...)
		b = append(b, event.ErrnoName(ev.Retval)...)
		b = append(b, ')')
	}
	b = append(b, " after "...)
	b = appendDuration(b, roundDuration(ev.Lifetime()))
	b = append(b, ", sent "...)
	b = strconv.AppendUint(b, ev.Close.BytesSent, 10)
	b = append(b, " B, received "...)
	b = strconv.AppendUint(b, ev.Close.BytesReceived, 10)
	return append(b, " B"...)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return append(b, '?')
	}
	return unmap(ap).AppendTo(b)
}

// roundDuration keeps three or four significant digits, enough for a
// human and shorter than nanoseconds.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Microsecond)
	}
	return d
}

// appendDuration appends d as time.Duration.String formats it, without
// allocating. d is not negative.
func appendDuration(b []byte, d time.Duration) []byte {
	u := uint64(d)
	switch {
	case u == 0:
		return append(b, "0s"...)
	case u < uint64(time.Microsecond):
		return append(strconv.AppendUint(b, u, 10), "ns"...)
	case u < uint64(time.Millisecond):
		return append(appendFrac(b, u, 3), "µs"...)
	case u < uint64(time.Second):
		return append(appendFrac(b, u, 6), "ms"...)
	}
	h, rest := u/uint64(time.Hour), u%uint64(time.Hour)
	m, ns := rest/uint64(time.Minute), rest%uint64(time.Minute)
	if h > 0 {
		b = append(strconv.AppendUint(b, h, 10), 'h')
	}
	if h > 0 || m > 0 {
		b = append(strconv.AppendUint(b, m, 10), 'm')
	}
	return append(appendFrac(b, ns, 9), 's')
}

// appendFrac appends v / 10^prec in decimal with trailing zeros (and a
// bare point) left out.
func appendFrac(b []byte, v uint64, prec int) []byte {
	pow := uint64(1)
	for range prec {
		pow *= 10
	}
	b = strconv.AppendUint(b, v/pow, 10)
	frac := v % pow
	if frac == 0 {
		return b
	}
	b = append(b, '.')
	for pow /= 10; frac > 0; pow /= 10 {
		b = append(b, byte('0'+frac/pow))
		frac %= pow
	}
	return b
}
