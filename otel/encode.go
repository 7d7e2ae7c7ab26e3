package otel

import (
	"math"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/connwatch/connwatch/event"
)

// The OTLP protobuf messages connwatch writes, encoded directly with
// protowire into reused buffers (opentelemetry-proto, common/v1,
// resource/v1, trace/v1, logs/v1; the field numbers below are theirs).
// Nothing here builds a message struct: a record costs its bytes.
const (
	// ExportTraceServiceRequest.resource_spans, ExportLogsServiceRequest.resource_logs
	fieldRequestResource = 1
	// ResourceSpans / ResourceLogs
	fieldResource        = 1
	fieldResourceRecords = 2 // scope_spans / scope_logs
	fieldResourceSchema  = 3
	// ScopeSpans / ScopeLogs
	fieldScope        = 1
	fieldScopeRecords = 2 // spans / log_records
	fieldScopeSchema  = 3
	// InstrumentationScope
	fieldScopeName = 1
	// Resource
	fieldResourceAttrs = 1
	// KeyValue
	fieldKey   = 1
	fieldValue = 2
	// AnyValue
	fieldString = 1
	fieldBool   = 2
	fieldInt    = 3
	fieldDouble = 4
	fieldArray  = 5
	// ArrayValue
	fieldArrayValues = 1
	// Span
	fieldSpanTraceID = 1
	fieldSpanID      = 2
	fieldSpanParent  = 4
	fieldSpanName    = 5
	fieldSpanKind    = 6
	fieldSpanStart   = 7
	fieldSpanEnd     = 8
	fieldSpanAttrs   = 9
	fieldSpanStatus  = 15
	fieldSpanFlags   = 16
	// Status
	fieldStatusMessage = 2
	fieldStatusCode    = 3
	// LogRecord
	fieldLogTime      = 1
	fieldLogSeverity  = 2
	fieldLogSevText   = 3
	fieldLogBody      = 5
	fieldLogAttrs     = 6
	fieldLogFlags     = 8
	fieldLogTraceID   = 9
	fieldLogSpanID    = 10
	fieldLogObserved  = 11
	fieldLogEventName = 12

	// Span.kind values.
	spanKindServer = 2
	spanKindClient = 3
	// Status.code value.
	statusCodeError = 2
	// Span.flags: W3C sampled, and "whether the parent is remote is known";
	// with spanFlagRemoteParent, a parent in another process (a SERVER
	// span's CLIENT span).
	spanFlags            = 0x01 | 0x100
	spanFlagRemoteParent = 0x200
	// LogRecord.flags: W3C sampled.
	logFlagsSampled = 0x01
)

// Sizes of the fixed parts of records.
const (
	traceIDLen = 16
	spanIDLen  = 8
)

// appendTag appends the one-byte tag of a field numbered below 16 (every
// field written here but Span.flags, see appendFixed32Field); small
// enough to be inlined.
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return append(b, byte(num)<<3|byte(typ))
}

// appendVarint is protowire.AppendVarint with the one-byte case (most
// lengths and numbers here) inlined.
func appendVarint(b []byte, v uint64) []byte {
	if v < 1<<7 {
		return append(b, byte(v))
	}
	return appendVarintLong(b, v)
}

func appendVarintLong(b []byte, v uint64) []byte {
	if v < 1<<14 {
		return append(b, byte(v)|0x80, byte(v>>7))
	}
	return protowire.AppendVarint(b, v)
}

// sizeVarint is the size of the varint of n.
func sizeVarint(n int) int {
	if n < 1<<7 {
		return 1
	}
	if n < 1<<14 {
		return 2
	}
	return protowire.SizeVarint(uint64(n))
}

// appendRawStringField appends a string field known to be UTF-8 (keys
// and values of connwatch's own vocabulary).
func appendRawStringField(b []byte, num protowire.Number, s string) []byte {
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendStringField appends a string field. Protobuf strings must be
// UTF-8 and receivers reject a request holding one that is not (a comm,
// an argv or a path may hold any bytes), so invalid bytes become U+FFFD.
func appendStringField(b []byte, num protowire.Number, s string) []byte {
	return appendRawStringField(b, num, utf8Text(s))
}

// utf8Text returns s with invalid UTF-8 replaced, as appendStringField
// writes it.
// Each invalid byte becomes one U+FFFD, as encoding/json writes it, so
// that the OTLP and the JSON lines of one record agree.
func utf8Text(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendFixed64Field(b []byte, num protowire.Number, v uint64) []byte {
	b = appendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32Field(b []byte, num protowire.Number, v uint32) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = appendTag(b, num, protowire.VarintType)
	return appendVarint(b, v)
}

// sizeBytesField is the encoded size of a length-delimited field of n bytes.
func sizeBytesField(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// pbAttrs is an attrVisitor appending KeyValue messages as field num of
// the message being written.
type pbAttrs struct {
	b   []byte
	num protowire.Number
	tmp []byte // address text
}

// kv appends the KeyValue of key whose AnyValue holds one field of
// valueSize bytes (tag included); the caller appends that field.
func (p *pbAttrs) kv(b []byte, key *attrKey, valueSize int) []byte {
	b = appendTag(b, p.num, protowire.BytesType)
	b = appendVarint(b, uint64(len(key.pb)+sizeVarint(valueSize)+valueSize))
	b = append(b, key.pb...)
	return appendVarint(b, uint64(valueSize))
}

func (p *pbAttrs) str(key *attrKey, val string) {
	val = utf8Text(val)
	b := p.kv(p.b, key, 1+sizeVarint(len(val))+len(val))
	p.b = appendRawStringField(b, fieldString, val)
}

func (p *pbAttrs) addr(key *attrKey, a netip.Addr) {
	p.tmp = a.AppendTo(p.tmp[:0])
	if a.Zone() != "" && !utf8.Valid(p.tmp) { // an IPv6 zone holds any bytes
		p.tmp = append(p.tmp[:0], utf8Text(string(p.tmp))...)
	}
	b := p.kv(p.b, key, 1+sizeVarint(len(p.tmp))+len(p.tmp))
	p.b = appendBytesField(b, fieldString, p.tmp)
}

func (p *pbAttrs) int(key *attrKey, v int64) {
	b := p.kv(p.b, key, 1+protowire.SizeVarint(uint64(v)))
	p.b = appendVarintField(b, fieldInt, uint64(v))
}

// encoder writes spans and log records of events. Its buffers are reused
// from one record to the next; it is not safe for concurrent use.
type encoder struct {
	attrs pbAttrs
	rec   []byte // the record being written
	body  []byte // a log record's body text
}

// appendSpan appends ev's span, as field spans of ScopeSpans, to dst.
func (e *encoder) appendSpan(dst []byte, ev *event.Event, s *spanSpec, tid [traceIDLen]byte, sid [spanIDLen]byte) []byte {
	r := e.rec[:0]
	r = appendBytesField(r, fieldSpanTraceID, tid[:])
	r = appendBytesField(r, fieldSpanID, sid[:])
	flags := uint32(spanFlags)
	if s.hasParent {
		r = appendBytesField(r, fieldSpanParent, s.parent[:])
		flags |= spanFlagRemoteParent
	}
	r = appendRawStringField(r, fieldSpanName, s.name)
	kind := uint64(spanKindClient)
	if s.kind == trace.SpanKindServer {
		kind = spanKindServer
	}
	r = appendVarintField(r, fieldSpanKind, kind)
	r = appendFixed64Field(r, fieldSpanStart, unixNano(s.start))
	r = appendFixed64Field(r, fieldSpanEnd, unixNano(s.end))
	e.attrs.b, e.attrs.num = r, fieldSpanAttrs
	visitAttributes(ev, &e.attrs)
	r = e.attrs.b
	// Status: empty (unset) or code error with the errno name.
	var st int
	if s.code == codes.Error {
		st = sizeBytesField(fieldStatusMessage, len(s.description)) + protowire.SizeTag(fieldStatusCode) + 1
	}
	r = appendTag(r, fieldSpanStatus, protowire.BytesType)
	r = appendVarint(r, uint64(st))
	if st > 0 {
		r = appendStringField(r, fieldStatusMessage, s.description)
		r = appendVarintField(r, fieldStatusCode, statusCodeError)
	}
	r = appendFixed32Field(r, fieldSpanFlags, flags)
	e.rec = r
	return appendBytesField(dst, fieldScopeRecords, r)
}

// appendLog appends ev's log record, as field log_records of ScopeLogs,
// to dst. withSpan says whether tid and sid name the record's span (or,
// for a close, its connection's).
func (e *encoder) appendLog(dst []byte, ev *event.Event, observed uint64, withSpan bool, tid [traceIDLen]byte, sid [spanIDLen]byte) []byte {
	r := e.rec[:0]
	r = appendFixed64Field(r, fieldLogTime, unixNano(ev.Time))
	sev := severityOf(ev)
	r = appendVarintField(r, fieldLogSeverity, uint64(sev))
	r = appendRawStringField(r, fieldLogSevText, severityText(sev))
	e.body = appendBody(e.body[:0], ev)
	if !utf8.Valid(e.body) {
		e.body = append(e.body[:0], utf8Text(string(e.body))...)
	}
	r = appendTag(r, fieldLogBody, protowire.BytesType)
	r = appendVarint(r, uint64(sizeBytesField(fieldString, len(e.body))))
	r = appendBytesField(r, fieldString, e.body)
	e.attrs.b, e.attrs.num = r, fieldLogAttrs
	visitAttributes(ev, &e.attrs)
	r = e.attrs.b
	if withSpan {
		r = appendFixed32Field(r, fieldLogFlags, logFlagsSampled)
		r = appendBytesField(r, fieldLogTraceID, tid[:])
		r = appendBytesField(r, fieldLogSpanID, sid[:])
	}
	r = appendFixed64Field(r, fieldLogObserved, observed)
	r = appendRawStringField(r, fieldLogEventName, event.Name(ev.EventID))
	e.rec = r
	return appendBytesField(dst, fieldScopeRecords, r)
}

// unixNano is t as OTLP's fixed64 Unix nanoseconds; 0 (unknown) for
// the zero time and times before 1970, and the largest int64 for times
// past 2262 (time.UnixNano wraps outside that range: a time before 1678
// came out as a huge positive value, found by FuzzEncode).
func unixNano(t time.Time) uint64 {
	switch {
	case t.IsZero() || t.Before(unixEpoch):
		return 0
	case t.After(lastUnixNano):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

var (
	unixEpoch    = time.Unix(0, 0)
	lastUnixNano = time.Unix(0, math.MaxInt64)
)

// encodeResource returns the encoded Resource message of attrs.
func encodeResource(attrs []attribute.KeyValue) []byte {
	var b []byte
	for _, kv := range attrs {
		b = appendBytesField(b, fieldResourceAttrs, encodeKeyValue(kv))
	}
	return b
}

// encodeScope returns the encoded InstrumentationScope of connwatch.
func encodeScope() []byte {
	return appendStringField(nil, fieldScopeName, ScopeName)
}

func encodeKeyValue(kv attribute.KeyValue) []byte {
	b := appendStringField(nil, fieldKey, string(kv.Key))
	return appendBytesField(b, fieldValue, encodeValue(kv.Value))
}

// encodeValue encodes an attribute value as an AnyValue.
func encodeValue(v attribute.Value) []byte {
	var b []byte
	switch v.Type() {
	case attribute.BOOL:
		x := uint64(0)
		if v.AsBool() {
			x = 1
		}
		b = appendVarintField(b, fieldBool, x)
	case attribute.INT64:
		b = appendVarintField(b, fieldInt, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b = appendFixed64Field(b, fieldDouble, math.Float64bits(v.AsFloat64()))
	case attribute.STRING:
		b = appendStringField(b, fieldString, v.AsString())
	case attribute.STRINGSLICE:
		var arr []byte
		for _, s := range v.AsStringSlice() {
			arr = appendBytesField(arr, fieldArrayValues, appendStringField(nil, fieldString, s))
		}
		b = appendBytesField(b, fieldArray, arr)
	case attribute.INT64SLICE:
		var arr []byte
		for _, x := range v.AsInt64Slice() {
			arr = appendBytesField(arr, fieldArrayValues, appendVarintField(nil, fieldInt, uint64(x)))
		}
		b = appendBytesField(b, fieldArray, arr)
	case attribute.BOOLSLICE:
		var arr []byte
		for _, x := range v.AsBoolSlice() {
			y := uint64(0)
			if x {
				y = 1
			}
			arr = appendBytesField(arr, fieldArrayValues, appendVarintField(nil, fieldBool, y))
		}
		b = appendBytesField(b, fieldArray, arr)
	case attribute.FLOAT64SLICE:
		var arr []byte
		for _, x := range v.AsFloat64Slice() {
			arr = appendBytesField(arr, fieldArrayValues, appendFixed64Field(nil, fieldDouble, math.Float64bits(x)))
		}
		b = appendBytesField(b, fieldArray, arr)
	default:
		b = appendStringField(b, fieldString, v.Emit())
	}
	return b
}

// appendResourceHeader starts one ResourceSpans or ResourceLogs message,
// as a field of the export request, for records bytes of records
// (encoded as fields of ScopeSpans/ScopeLogs) under res and scope; the
// caller appends the records, then appendResourceTrailer.
func appendResourceHeader(dst, res, scope []byte, records int, schemaURL string) []byte {
	scopeRecs := sizeBytesField(fieldScope, len(scope)) + records + sizeBytesField(fieldScopeSchema, len(schemaURL))
	entry := sizeBytesField(fieldResource, len(res)) + sizeBytesField(fieldResourceRecords, scopeRecs) +
		sizeBytesField(fieldResourceSchema, len(schemaURL))
	dst = appendTag(dst, fieldRequestResource, protowire.BytesType)
	dst = appendVarint(dst, uint64(entry))
	dst = appendBytesField(dst, fieldResource, res)
	dst = appendTag(dst, fieldResourceRecords, protowire.BytesType)
	dst = appendVarint(dst, uint64(scopeRecs))
	return appendBytesField(dst, fieldScope, scope)
}

// appendResourceTrailer ends what appendResourceHeader began.
func appendResourceTrailer(dst []byte, schemaURL string) []byte {
	dst = appendRawStringField(dst, fieldScopeSchema, schemaURL)
	return appendRawStringField(dst, fieldResourceSchema, schemaURL)
}

// appendResourceEntry appends a whole resource entry (see
// appendResourceHeader) holding records.
func appendResourceEntry(dst, res, scope, records []byte, schemaURL string) []byte {
	dst = appendResourceHeader(dst, res, scope, len(records), schemaURL)
	dst = append(dst, records...)
	return appendResourceTrailer(dst, schemaURL)
}

// sizeResourceEntry is the size appendResourceEntry adds.
func sizeResourceEntry(res, scope []byte, records int, schemaURL string) int {
	scopeRecs := sizeBytesField(fieldScope, len(scope)) + records + sizeBytesField(fieldScopeSchema, len(schemaURL))
	entry := sizeBytesField(fieldResource, len(res)) + sizeBytesField(fieldResourceRecords, scopeRecs) +
		sizeBytesField(fieldResourceSchema, len(schemaURL))
	return sizeBytesField(fieldRequestResource, entry)
}

// splitEntries calls f with each resource entry (the bytes of one
// ResourceSpans/ResourceLogs message) of an encoded export request body.
// It reports false for a body that is not a sequence of such fields.
func splitEntries(body []byte, f func(entry []byte)) bool {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || num != fieldRequestResource || typ != protowire.BytesType {
			return false
		}
		body = body[n:]
		v, m := protowire.ConsumeBytes(body)
		if m < 0 {
			return false
		}
		f(v)
		body = body[m:]
	}
	return true
}
