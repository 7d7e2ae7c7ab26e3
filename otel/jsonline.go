package otel

import (
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/connwatch/connwatch/event"
)

// The standard output exporter's JSON lines, appended directly to a byte
// slice. The output is byte for byte what a json.Encoder with
// SetEscapeHTML(false) writes for the equivalent LogLine or SpanLine
// (struct fields in declaration order, omitempty fields left out when
// empty, map keys sorted, a trailing '\n'), so the LogLine and SpanLine
// types stay the documented format and decoding a line into them keeps
// working; jsonline_test.go checks the equivalence against encoding/json.
// The attributes object is built by jsonattrs.go, the values are written
// by jsonvalue.go.

// jsonEncoder appends the JSON lines of log records and spans. It holds
// the scratch space that makes a line cost no allocation once the encoder
// is warm, so it lives as long as its exporter and is not safe for
// concurrent use: one per exporter, used under the exporter's lock. The
// zero value is ready to use; keep it behind a pointer (it is large and
// hands itself to visitAttributes).
type jsonEncoder struct {
	attrs jsonAttrs
	body  []byte // the log body before it is escaped
}

// appendLogLine appends the JSON line (with '\n') of ev's log record, as
// encoding/json writes this LogLine:
//
//	LogLine{
//		Type:         "log",
//		Time:         formatTime(ev.Time), or of observed when ev.Time is zero,
//		ObservedTime: formatTime(observed),
//		Event:        event.Name(ev.EventID),
//		Severity:     severityText(severityOf(ev)),
//		Body:         bodyOf(ev),
//		TraceID:      hex of tid, only when withSpan,
//		SpanID:       hex of sid, only when withSpan,
//		Attributes:   the attributes of visitAttributes,
//		Resource:     resJSON, see appendResourceJSON,
//	}
//
// resJSON is written as is; it is left out when empty or "{}", as
// encoding/json leaves out an empty Resource map.
func (e *jsonEncoder) appendLogLine(dst []byte, ev *event.Event, resJSON []byte, observed time.Time, withSpan bool, tid [16]byte, sid [8]byte) []byte {
	t := ev.Time
	if t.IsZero() {
		t = observed
	}
	dst = append(dst, `{"type":"log","time":`...)
	dst = appendJSONTime(dst, t)
	if !observed.IsZero() {
		dst = append(dst, `,"observed_time":`...)
		dst = appendJSONTime(dst, observed)
	}
	if name := event.Name(ev.EventID); name != "" {
		dst = append(dst, `,"event":`...)
		dst = appendJSONString(dst, name)
	}
	dst = append(dst, `,"severity":`...)
	dst = appendJSONString(dst, severityText(severityOf(ev)))
	// Body is an interface holding a string, so omitempty keeps it even
	// when the string is empty (it never is: it starts with the service).
	e.body = appendBody(e.body[:0], ev)
	dst = append(dst, `,"body":`...)
	dst = appendJSONString(dst, e.body)
	if withSpan {
		dst = appendJSONHex(append(dst, `,"trace_id":`...), tid[:])
		dst = appendJSONHex(append(dst, `,"span_id":`...), sid[:])
	}
	dst = e.appendAttributes(dst, ev)
	return appendResource(dst, resJSON)
}

// appendSpanLine appends the JSON line (with '\n') of the span s of ev,
// as encoding/json writes this SpanLine:
//
//	SpanLine{
//		Type:          "span",
//		Time:          formatTime(s.end),
//		Name:          s.name,
//		Kind:          s.kind.String(),
//		Start:         formatTime(s.start),
//		End:           formatTime(s.end),
//		DurationNS:    s.end.Sub(s.start).Nanoseconds(),
//		Status:        "error" if s.code is codes.Error, else "unset",
//		StatusMessage: s.description, only with status "error",
//		TraceID:       hex of tid,
//		SpanID:        hex of sid,
//		ParentSpanID:  hex of s.parent, only when s.hasParent,
//		Attributes:    the attributes of visitAttributes,
//		Resource:      resJSON, as for appendLogLine,
//	}
func (e *jsonEncoder) appendSpanLine(dst []byte, ev *event.Event, s *spanSpec, resJSON []byte, tid [16]byte, sid [8]byte) []byte {
	dst = append(dst, `{"type":"span","time":`...)
	dst = appendJSONTime(dst, s.end)
	dst = append(dst, `,"name":`...)
	dst = appendJSONString(dst, s.name)
	dst = append(dst, `,"kind":`...)
	dst = appendJSONString(dst, s.kind.String())
	dst = append(dst, `,"start":`...)
	dst = appendJSONTime(dst, s.start)
	dst = append(dst, `,"end":`...)
	dst = appendJSONTime(dst, s.end)
	dst = append(dst, `,"duration_ns":`...)
	dst = strconv.AppendInt(dst, s.end.Sub(s.start).Nanoseconds(), 10)
	if s.code == codes.Error {
		dst = append(dst, `,"status":"error"`...)
		if s.description != "" {
			dst = append(dst, `,"status_message":`...)
			dst = appendJSONString(dst, s.description)
		}
	} else {
		dst = append(dst, `,"status":"unset"`...)
	}
	dst = appendJSONHex(append(dst, `,"trace_id":`...), tid[:])
	dst = appendJSONHex(append(dst, `,"span_id":`...), sid[:])
	if s.hasParent {
		dst = appendJSONHex(append(dst, `,"parent_span_id":`...), s.parent[:])
	}
	dst = e.appendAttributes(dst, ev)
	return appendResource(dst, resJSON)
}

// appendAttributes appends the "attributes" member of ev's line, left
// out, like an empty map, when there are none.
func (e *jsonEncoder) appendAttributes(dst []byte, ev *event.Event) []byte {
	e.attrs.reset()
	visitAttributes(ev, &e.attrs)
	if len(e.attrs.list) == 0 {
		return dst
	}
	dst = append(dst, `,"attributes":`...)
	return e.attrs.appendObject(dst)
}

// appendResource appends the "resource" member and ends the line.
func appendResource(dst, resJSON []byte) []byte {
	if len(resJSON) > 0 && string(resJSON) != "{}" {
		dst = append(dst, `,"resource":`...)
		dst = append(dst, resJSON...)
	}
	return append(dst, '}', '\n')
}

// appendResourceJSON appends the JSON object of resource attributes, as
// encoding/json writes the map[string]any that jsonValue builds of them.
// attrs are those of resource.Resource.Attributes (sorted by key, no key
// twice); they are sorted and de-duplicated again anyway, the last value
// winning as in the map. It runs once per resource, so it may allocate.
func appendResourceJSON(dst []byte, attrs []attribute.KeyValue) []byte {
	return appendJSONMap(dst, attrs)
}
