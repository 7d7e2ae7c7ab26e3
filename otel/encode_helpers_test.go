package otel

// What a receiver must decode of an event, taken from the mapping
// functions: the checks the encoder's tests and fuzz targets compare a
// decoded span and log record with, field by field.

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

// validText is s as a receiver must see it: proto3 strings are UTF-8, so
// each byte of invalid UTF-8 becomes U+FFFD, as in the JSON lines
// (encoding/json's rule).
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // an invalid byte ranges as one RuneError
		b.WriteRune(r)
	}
	return b.String()
}

// okv is an attribute as a receiver decodes it.
type okv struct {
	Key   string
	Value any
}

func (kv okv) String() string { return fmt.Sprintf("%s=%#v", kv.Key, kv.Value) }

// wantKVs is what a receiver must decode of kvs, in order.
func wantKVs(kvs []attribute.KeyValue) []okv {
	out := make([]okv, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, okv{validText(string(kv.Key)), wantValue(kv.Value)})
	}
	return out
}

func wantValue(v attribute.Value) any {
	switch v.Type() {
	case attribute.BOOL:
		return v.AsBool()
	case attribute.INT64:
		return v.AsInt64()
	case attribute.FLOAT64:
		return v.AsFloat64()
	case attribute.STRING:
		return validText(v.AsString())
	case attribute.BOOLSLICE:
		return anySlice(v.AsBoolSlice(), func(b bool) any { return b })
	case attribute.INT64SLICE:
		return anySlice(v.AsInt64Slice(), func(i int64) any { return i })
	case attribute.FLOAT64SLICE:
		return anySlice(v.AsFloat64Slice(), func(f float64) any { return f })
	case attribute.STRINGSLICE:
		return anySlice(v.AsStringSlice(), func(s string) any { return validText(s) })
	}
	return fmt.Sprintf("unexpected type %v", v.Type())
}

func anySlice[E any](s []E, f func(E) any) []any {
	out := make([]any, 0, len(s))
	for _, e := range s {
		out = append(out, f(e))
	}
	return out
}

// gotKVs is kvs as decoded, in order.
func gotKVs(kvs []*commonpb.KeyValue) []okv {
	out := make([]okv, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, okv{kv.GetKey(), otlptest.Value(kv.GetValue())})
	}
	return out
}

func checkKVs(t testing.TB, what string, got []*commonpb.KeyValue, want []attribute.KeyValue) {
	t.Helper()
	if g, w := gotKVs(got), wantKVs(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %v\nwant %v", what, g, w)
	}
}

// wantNanos is t as OTLP Unix nanoseconds: 0 for the zero time and
// before 1970. ok is false beyond 2262, where UnixNano is undefined and
// nothing is promised.
func wantNanos(t time.Time) (n uint64, ok bool) {
	switch {
	case t.IsZero() || t.Before(time.Unix(0, 0)):
		return 0, true
	case t.After(time.Unix(0, math.MaxInt64)):
		return 0, false
	}
	return uint64(t.UnixNano()), true
}

// wantResource is the resource of ev's records, as the mapping builds it.
func wantResource(t testing.TB, o *Options, ev *event.Event) []attribute.KeyValue {
	t.Helper()
	base, err := baseAttributes(o)
	if err != nil {
		t.Fatal(err)
	}
	attrs := appendWorkloadAttributes(base, ev, o.OmitCommandArgs)
	return resource.NewWithAttributes(semconv.SchemaURL, attrs...).Attributes()
}

// checkLog checks a decoded log record of ev field by field against the
// mapping; span is ev's span (nil when it has none).
func checkLog(t testing.TB, o *Options, ev *event.Event, l otlptest.Log, span *tracepb.Span, observed time.Time) {
	t.Helper()
	name := event.Name(ev.EventID)
	if l.EventName != name {
		t.Errorf("%s: event name %q", name, l.EventName)
	}
	if want, _ := wantNanos(ev.Time); l.TimeUnixNano != want {
		t.Errorf("%s: time %d, want %d", name, l.TimeUnixNano, want)
	}
	if want, _ := wantNanos(observed); l.ObservedTimeUnixNano != want {
		t.Errorf("%s: observed time %d, want %d", name, l.ObservedTimeUnixNano, want)
	}
	sev := severityOf(ev)
	if l.SeverityNumber != logspb.SeverityNumber(sev) || l.SeverityText != severityText(sev) {
		t.Errorf("%s: severity %v %q, want %v %q", name, l.SeverityNumber, l.SeverityText, sev, severityText(sev))
	}
	if _, ok := l.Body.GetValue().(*commonpb.AnyValue_StringValue); !ok {
		t.Errorf("%s: body %v is not a string", name, l.Body)
	} else if got, want := l.Body.GetStringValue(), validText(bodyOf(ev)); got != want {
		t.Errorf("%s: body\n got %q\nwant %q", name, got, want)
	}
	checkKVs(t, name+": log attributes", l.Attributes, appendAttributes(nil, ev))
	if tid, sid, _, ok := wantConnIDs(ev); ok && ev.IsClose() {
		// A close record carries the IDs of its end's span.
		if !bytes.Equal(l.TraceId, tid[:]) || !bytes.Equal(l.SpanId, sid[:]) || l.Flags != 1 {
			t.Errorf("%s: record %x/%x flags %#x, want the connection's %x/%x", name, l.TraceId, l.SpanId, l.Flags, tid, sid)
		}
	} else if span != nil {
		if !bytes.Equal(l.TraceId, span.TraceId) || !bytes.Equal(l.SpanId, span.SpanId) || l.Flags != 1 {
			t.Errorf("%s: record %x/%x flags %#x not linked to span %x/%x", name, l.TraceId, l.SpanId, l.Flags, span.TraceId, span.SpanId)
		}
	} else if len(l.TraceId) != 0 || len(l.SpanId) != 0 || l.Flags != 0 {
		t.Errorf("%s: record without a span has trace %x span %x flags %#x", name, l.TraceId, l.SpanId, l.Flags)
	}
	if l.DroppedAttributesCount != 0 {
		t.Errorf("%s: %d attributes dropped", name, l.DroppedAttributesCount)
	}
	checkKVs(t, name+": log resource", l.Resource.GetAttributes(), wantResource(t, o, ev))
	if l.Scope.GetName() != ScopeName || l.Scope.GetVersion() != "" {
		t.Errorf("%s: scope %v", name, l.Scope)
	}
}

// checkSpan checks a decoded span of ev field by field against the
// mapping.
func checkSpan(t testing.TB, o *Options, ev *event.Event, s otlptest.Span) {
	t.Helper()
	spec, ok := spanOf(ev)
	if !ok {
		t.Errorf("%s: a span for an event without one", event.Name(ev.EventID))
		return
	}
	name := event.Name(ev.EventID)
	if s.Name != spec.name {
		t.Errorf("%s: span name %q, want %q", name, s.Name, spec.name)
	}
	wantKind := tracepb.Span_SPAN_KIND_CLIENT
	if spec.kind == trace.SpanKindServer {
		wantKind = tracepb.Span_SPAN_KIND_SERVER
	}
	if s.Kind != wantKind {
		t.Errorf("%s: kind %v, want %v", name, s.Kind, wantKind)
	}
	start, okStart := wantNanos(spec.start)
	end, okEnd := wantNanos(spec.end)
	if okStart && s.StartTimeUnixNano != start {
		t.Errorf("%s: start %d, want %d", name, s.StartTimeUnixNano, start)
	}
	if okEnd && s.EndTimeUnixNano != end {
		t.Errorf("%s: end %d, want %d", name, s.EndTimeUnixNano, end)
	}
	if okStart && okEnd && s.StartTimeUnixNano > s.EndTimeUnixNano {
		t.Errorf("%s: span ends before it starts: %d..%d", name, s.StartTimeUnixNano, s.EndTimeUnixNano)
	}
	wantCode, wantMsg := tracepb.Status_STATUS_CODE_UNSET, ""
	if spec.code == codes.Error {
		wantCode, wantMsg = tracepb.Status_STATUS_CODE_ERROR, validText(spec.description)
	}
	if s.Status.GetCode() != wantCode || s.Status.GetMessage() != wantMsg {
		t.Errorf("%s: status %v, want %v %q", name, s.Status, wantCode, wantMsg)
	}
	if len(s.TraceId) != 16 || bytes.Equal(s.TraceId, make([]byte, 16)) || len(s.SpanId) != 8 || bytes.Equal(s.SpanId, make([]byte, 8)) {
		t.Errorf("%s: IDs %x/%x", name, s.TraceId, s.SpanId)
	}
	// W3C sampled, and whether the parent is remote is known: a SERVER
	// span's CLIENT span is; a CLIENT span has none.
	wantFlags := 0x01 | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	var wantParent []byte
	if tid, sid, parent, ok := wantConnIDs(ev); ok {
		if !bytes.Equal(s.TraceId, tid[:]) || !bytes.Equal(s.SpanId, sid[:]) {
			t.Errorf("%s: IDs %x/%x, want the connection's %x/%x", name, s.TraceId, s.SpanId, tid, sid)
		}
		if ev.IsAccept() {
			wantParent = parent[:]
			wantFlags |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
		}
	}
	if !bytes.Equal(s.ParentSpanId, wantParent) || s.TraceState != "" || len(s.Events) != 0 || len(s.Links) != 0 {
		t.Errorf("%s: parent %x (want %x), or not a plain span: %v", name, s.ParentSpanId, wantParent, s.Span)
	}
	if s.Flags != wantFlags {
		t.Errorf("%s: flags %#x, want %#x", name, s.Flags, wantFlags)
	}
	checkKVs(t, name+": span attributes", s.Attributes, appendAttributes(nil, ev))
	checkKVs(t, name+": span resource", s.Resource.GetAttributes(), wantResource(t, o, ev))
	if s.Scope.GetName() != ScopeName || s.Scope.GetVersion() != "" {
		t.Errorf("%s: scope %v", name, s.Scope)
	}
}

// checkSchemaURLs checks the schema URL of every resource entry.
func checkSchemaURLs(t testing.TB, tt, lt *memTransport) {
	t.Helper()
	for _, req := range tt.TraceRequests() {
		for _, rs := range req.ResourceSpans {
			if rs.SchemaUrl != semconv.SchemaURL {
				t.Errorf("ResourceSpans schema URL %q", rs.SchemaUrl)
			}
		}
	}
	for _, req := range lt.LogRequests() {
		for _, rl := range req.ResourceLogs {
			if rl.SchemaUrl != semconv.SchemaURL {
				t.Errorf("ResourceLogs schema URL %q", rl.SchemaUrl)
			}
		}
	}
}
