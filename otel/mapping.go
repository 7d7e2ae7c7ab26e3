package otel

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/log"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

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
)

// Severity of the log records: SeverityOK for attempts, accepts and
// established connections, SeverityFailed for failed ones.
const (
	SeverityOK     = log.SeverityInfo
	SeverityFailed = log.SeverityWarn
)

// mapped reports whether Emit turns ev into telemetry.
func mapped(ev *event.Event) bool {
	return ev.IsConnect() || ev.IsAccept() || ev.IsResult()
}

// failed reports whether ev reports a failure.
func failed(ev *event.Event) bool { return ev.Retval < 0 }

func unmap(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// appendAttributes appends the attributes shared by ev's span and log
// record to dst.
func appendAttributes(dst []attribute.KeyValue, ev *event.Event) []attribute.KeyValue {
	remote, local := unmap(ev.Remote), unmap(ev.Local)
	dst = append(dst, semconv.NetworkTransportTCP)
	typ := remote
	if !typ.IsValid() {
		typ = local
	}
	if typ.IsValid() {
		if typ.Addr().Is4() {
			dst = append(dst, semconv.NetworkTypeIPv4)
		} else {
			dst = append(dst, semconv.NetworkTypeIPv6)
		}
	}
	var remoteAddr, localAddr string
	if remote.IsValid() {
		remoteAddr = remote.Addr().String()
		dst = append(dst,
			semconv.NetworkPeerAddress(remoteAddr),
			semconv.NetworkPeerPort(int(remote.Port())))
	} else if ev.RemoteFamily != 0 {
		dst = append(dst, AttrRemoteFamily.Int(int(ev.RemoteFamily)))
	}
	if local.IsValid() {
		localAddr = local.Addr().String()
		dst = append(dst,
			semconv.NetworkLocalAddress(localAddr),
			semconv.NetworkLocalPort(int(local.Port())))
	}
	if ev.IsAccept() {
		if local.IsValid() {
			dst = append(dst, semconv.ServerAddress(localAddr), semconv.ServerPort(int(local.Port())))
		}
		if remote.IsValid() {
			dst = append(dst, semconv.ClientAddress(remoteAddr), semconv.ClientPort(int(remote.Port())))
		}
	} else if remote.IsValid() {
		dst = append(dst, semconv.ServerAddress(remoteAddr), semconv.ServerPort(int(remote.Port())))
	}

	dst = append(dst,
		AttrEventID.Int64(int64(ev.EventID)),
		AttrRetval.Int64(ev.Retval),
	)
	if ev.Protocol != "" {
		dst = append(dst, AttrProtocol.String(ev.Protocol))
	}
	dst = append(dst, AttrDirection.String(ev.Direction()))
	if ev.IsResult() {
		dst = append(dst,
			AttrOutcome.String(ev.Outcome().String()),
			AttrDurationNS.Int64(int64(ev.Duration())))
	}
	if failed(ev) {
		name := event.ErrnoName(ev.Retval)
		dst = append(dst, AttrError.String(name), semconv.ErrorTypeKey.String(name))
	}
	return dst
}

// spanSpec is the span an event maps to, without its attributes.
type spanSpec struct {
	name        string
	kind        trace.SpanKind
	start, end  time.Time
	code        codes.Code
	description string
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
func bodyOf(ev *event.Event) string {
	b := make([]byte, 0, 96)
	b = append(b, ServiceName(ev)...)
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
		b = append(b, roundDuration(d).String()...)
	}
	return string(b)
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

// logRecordOf returns ev's log record with the given attributes (which
// the record copies) and observed time.
func logRecordOf(ev *event.Event, attrs []attribute.KeyValue, observed time.Time) log.Record {
	var r log.Record
	r.SetEventName(event.Name(ev.EventID))
	r.SetTimestamp(ev.Time)
	r.SetObservedTimestamp(observed)
	sev := severityOf(ev)
	r.SetSeverity(sev)
	r.SetSeverityText(severityText(sev))
	r.SetBody(attribute.StringValue(bodyOf(ev)))
	r.AddAttributes(attrs...)
	return r
}
