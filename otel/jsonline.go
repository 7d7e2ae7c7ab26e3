package otel

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// jsonAttrCap is the number of per-event attributes a jsonEncoder holds
// without growing; visitAttributes yields at most 16 (a failed result or
// accept with both ends), so a warm encoder never grows.
const jsonAttrCap = 24

// jsonAttr is one per-event attribute, its value already encoded as JSON
// in jsonAttrs.vals[start:end]: encoding at visit time keeps one entry
// type for strings, addresses and ints, and makes writing a member a copy.
type jsonAttr struct {
	key        string
	start, end int
}

// jsonAttrs is the attrVisitor of the JSON lines: it collects the
// attributes visitAttributes yields so that they can be written sorted by
// key, as encoding/json writes the map[string]any of LogLine.Attributes.
type jsonAttrs struct {
	list  []jsonAttr // backed by store unless a mapping outgrows it
	store [jsonAttrCap]jsonAttr
	vals  []byte // the encoded values
	tmp   []byte // an address's text before it is escaped

	shapes    [jsonShapes]jsonShape
	nextShape int // the slot the next new shape takes
}

func (a *jsonAttrs) reset() {
	if a.list == nil {
		a.list = a.store[:0]
	}
	a.list = a.list[:0]
	a.vals = a.vals[:0]
}

func (a *jsonAttrs) add(key string, start int) {
	a.list = append(a.list, jsonAttr{key: key, start: start, end: len(a.vals)})
}

func (a *jsonAttrs) str(key *attrKey, val string) {
	start := len(a.vals)
	a.vals = appendJSONString(a.vals, val)
	a.add(key.name, start)
}

func (a *jsonAttrs) addr(key *attrKey, addr netip.Addr) {
	// An address is the string netip.Addr.String returns; escaped like
	// any other string because an IPv6 zone is arbitrary text.
	a.tmp = addr.AppendTo(a.tmp[:0])
	start := len(a.vals)
	a.vals = appendJSONString(a.vals, a.tmp)
	a.add(key.name, start)
}

func (a *jsonAttrs) int(key *attrKey, v int64) {
	start := len(a.vals)
	a.vals = strconv.AppendInt(a.vals, v, 10)
	a.add(key.name, start)
}

// appendObject appends the collected attributes as a JSON object, sorted
// by key. The keys of visitAttributes are distinct; should one repeat,
// the last value wins, as in a map.
func (a *jsonAttrs) appendObject(dst []byte) []byte {
	sh := a.shape()
	dst = append(dst, '{')
	head := 0
	for i, idx := range sh.order {
		dst = append(dst, sh.heads[head:sh.ends[i]]...)
		head = sh.ends[i]
		kv := a.list[idx]
		dst = append(dst, a.vals[kv.start:kv.end]...)
	}
	return append(dst, '}')
}

// jsonShapes is the number of key sequences a jsonAttrs remembers. An
// event's sequence depends only on its kind, which addresses it has and
// whether it failed, so a handful cover a workload's lines.
const jsonShapes = 8

// jsonShape is a sequence of keys as visitAttributes yielded them, with
// the object's members sorted: order indexes the sequence and heads holds
// each member's `,"key":` (no comma for the first), ending at ends[i].
// Sorting and escaping the keys once per sequence rather than per line
// halves the cost of a line.
type jsonShape struct {
	keys  []string
	order []int
	heads []byte
	ends  []int
}

func (sh *jsonShape) matches(list []jsonAttr) bool {
	if len(sh.keys) != len(list) {
		return false
	}
	for i, kv := range list {
		// The keys are the same constants line after line, so this is
		// mostly a comparison of pointers.
		if sh.keys[i] != kv.key {
			return false
		}
	}
	return true
}

// shape returns the shape of the collected keys, building it in place of
// the oldest one when it is new. Rebuilding reuses the slices, so a warm
// jsonAttrs allocates nothing even when more shapes take turns.
func (a *jsonAttrs) shape() *jsonShape {
	for i := range a.shapes {
		if sh := &a.shapes[i]; sh.keys != nil && sh.matches(a.list) {
			return sh
		}
	}
	sh := &a.shapes[a.nextShape]
	a.nextShape = (a.nextShape + 1) % jsonShapes
	if sh.keys == nil {
		// Room for any shape of visitAttributes, so that shapes taking
		// turns in a slot do not grow it; nil marks an unused slot.
		sh.keys = make([]string, 0, jsonAttrCap)
		sh.order = make([]int, 0, jsonAttrCap)
		sh.heads = make([]byte, 0, 32*jsonAttrCap)
		sh.ends = make([]int, 0, jsonAttrCap)
	}
	sh.keys = sh.keys[:0]
	for _, kv := range a.list {
		sh.keys = append(sh.keys, kv.key)
	}
	// Insertion sort of the indexes, stable so that of equal keys the
	// last one is last: a score of short keys, no closure to allocate.
	sh.order = sh.order[:0]
	for i := range sh.keys {
		sh.order = append(sh.order, i)
	}
	o := sh.order
	for i := 1; i < len(o); i++ {
		for j := i; j > 0 && sh.keys[o[j]] < sh.keys[o[j-1]]; j-- {
			o[j], o[j-1] = o[j-1], o[j]
		}
	}
	n := 0
	for i, idx := range o {
		if i+1 < len(o) && sh.keys[o[i+1]] == sh.keys[idx] {
			continue
		}
		o[n] = idx
		n++
	}
	sh.order = o[:n]
	sh.heads, sh.ends = sh.heads[:0], sh.ends[:0]
	for i, idx := range sh.order {
		if i > 0 {
			sh.heads = append(sh.heads, ',')
		}
		sh.heads = appendJSONString(sh.heads, sh.keys[idx])
		sh.heads = append(sh.heads, ':')
		sh.ends = append(sh.ends, len(sh.heads))
	}
	return sh
}

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

// appendJSONMap appends kvs as encoding/json writes a map[string]any of
// them: keys sorted, the last of equal keys kept.
func appendJSONMap(dst []byte, kvs []attribute.KeyValue) []byte {
	if !slices.IsSortedFunc(kvs, compareKeys) {
		kvs = slices.Clone(kvs)
		slices.SortStableFunc(kvs, compareKeys)
	}
	dst = append(dst, '{')
	first := true
	for i, kv := range kvs {
		if i+1 < len(kvs) && kvs[i+1].Key == kv.Key {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, string(kv.Key))
		dst = append(dst, ':')
		dst = appendJSONValue(dst, kv.Value)
	}
	return append(dst, '}')
}

func compareKeys(a, b attribute.KeyValue) int { return strings.Compare(string(a.Key), string(b.Key)) }

// appendJSONValue appends v as encoding/json writes jsonValue(v). The
// typed slices of jsonValue are written as null when nil, as
// encoding/json writes a nil slice; the []any it builds never are.
func appendJSONValue(dst []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return strconv.AppendBool(dst, v.AsBool())
	case attribute.INT64:
		return strconv.AppendInt(dst, v.AsInt64(), 10)
	case attribute.FLOAT64:
		return appendJSONFloat(dst, v.AsFloat64())
	case attribute.STRING:
		return appendJSONString(dst, v.AsString())
	case attribute.BOOLSLICE:
		return appendJSONArray(dst, v.AsBoolSlice(), strconv.AppendBool)
	case attribute.INT64SLICE:
		return appendJSONArray(dst, v.AsInt64Slice(), func(b []byte, i int64) []byte {
			return strconv.AppendInt(b, i, 10)
		})
	case attribute.FLOAT64SLICE:
		return appendJSONArray(dst, nonNil(v.AsFloat64Slice()), appendJSONFloat)
	case attribute.STRINGSLICE:
		return appendJSONArray(dst, v.AsStringSlice(), appendJSONString[string])
	case attribute.BYTESLICE:
		// Base64 needs no escaping.
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v.AsByteSlice())
		return append(dst, '"')
	case attribute.SLICE:
		return appendJSONArray(dst, nonNil(v.AsSlice()), appendJSONValue)
	case attribute.MAP:
		return appendJSONMap(dst, v.AsMap())
	}
	return append(dst, "null"...)
}

// nonNil turns a nil slice into an empty one, for the values jsonValue
// copies into a new []any, which encoding/json writes as [] even when
// empty.
func nonNil[S ~[]E, E any](s S) S {
	if s == nil {
		return S{}
	}
	return s
}

func appendJSONArray[E any](dst []byte, s []E, appendElem func([]byte, E) []byte) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, e := range s {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendElem(dst, e)
	}
	return append(dst, ']')
}

// appendJSONFloat appends f as encoding/json writes jsonFloat(f): the
// non-finite values as the strings of jsonFloat, the others in the
// shortest form, with an exponent only for magnitudes below 1e-6 or from
// 1e21 on, and without a leading zero in a negative exponent.
func appendJSONFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-07 becomes e-7.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendJSONTime appends formatTime(t) as a JSON string. RFC 3339 text
// needs no escaping.
func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	if !t.IsZero() {
		dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	return append(dst, '"')
}

// appendJSONHex appends b in lower-case hex as a JSON string, as
// trace.TraceID.String and trace.SpanID.String write the IDs.
func appendJSONHex(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, b)
	return append(dst, '"')
}

const lowerHex = "0123456789abcdef"

// jsonSafe marks the ASCII bytes encoding/json copies unescaped with
// EscapeHTML off: all but the control characters, '"' and '\\'.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := range t {
		t[b] = b >= 0x20 && b != '"' && b != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string, escaped exactly as
// encoding/json escapes it with EscapeHTML off: '"' and '\\' with a
// backslash, \b \f \n \r \t as such, the other control characters as
// \u00XX, each byte of invalid UTF-8 as \ufffd, and U+2028 and U+2029 as
// \u2028 and \u2029 (for JSONP). Runs of safe bytes are copied at once.
func appendJSONString[S []byte | string](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerHex[b>>4], lowerHex[b&0xf])
			}
			i++
			start = i
			continue
		}
		// Converting at most UTFMax bytes keeps a []byte's conversion on
		// the stack.
		c, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', lowerHex[c&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
