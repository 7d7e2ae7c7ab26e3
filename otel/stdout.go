package otel

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// LogLine is the JSON object the standard output exporter writes per log
// record, one per line.
type LogLine struct {
	Type         string         `json:"type"` // "log"
	Time         string         `json:"time"` // RFC 3339, UTC, nanoseconds
	ObservedTime string         `json:"observed_time,omitempty"`
	Event        string         `json:"event,omitempty"`
	Severity     string         `json:"severity,omitempty"`
	Body         any            `json:"body,omitempty"`
	TraceID      string         `json:"trace_id,omitempty"`
	SpanID       string         `json:"span_id,omitempty"`
	Attributes   map[string]any `json:"attributes,omitempty"`
	Resource     map[string]any `json:"resource,omitempty"`
}

// SpanLine is the JSON object the standard output exporter writes per
// span, one per line. Time is the span's end, when it was reported.
type SpanLine struct {
	Type          string         `json:"type"` // "span"
	Time          string         `json:"time"`
	Name          string         `json:"name"`
	Kind          string         `json:"kind"` // "client", "server", ...
	Start         string         `json:"start"`
	End           string         `json:"end"`
	DurationNS    int64          `json:"duration_ns"`
	Status        string         `json:"status"` // "unset", "ok" or "error"
	StatusMessage string         `json:"status_message,omitempty"`
	TraceID       string         `json:"trace_id"`
	SpanID        string         `json:"span_id"`
	Attributes    map[string]any `json:"attributes,omitempty"`
	Resource      map[string]any `json:"resource,omitempty"`
}

// lineWriter serialises the JSON lines of both signals onto one writer so
// that lines never interleave. Each batch is flushed when written.
type lineWriter struct {
	mu  sync.Mutex
	bw  *bufio.Writer
	enc *json.Encoder
}

func newLineWriter(w io.Writer) *lineWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &lineWriter{bw: bw, enc: enc}
}

// writeBatch encodes n lines produced by line(i) and flushes.
func (lw *lineWriter) writeBatch(n int, line func(i int) any) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	var err error
	for i := range n {
		if e := lw.enc.Encode(line(i)); e != nil {
			err = e
			break
		}
	}
	return errors.Join(err, lw.bw.Flush())
}

func (lw *lineWriter) flush() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.bw.Flush()
}

// stdoutSpanExporter is an sdktrace.SpanExporter writing SpanLines.
type stdoutSpanExporter struct{ w *lineWriter }

func (e *stdoutSpanExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.w.writeBatch(len(spans), func(i int) any { return spanLine(spans[i]) })
}

func (e *stdoutSpanExporter) Shutdown(context.Context) error { return e.w.flush() }

// stdoutLogExporter is an sdklog.Exporter writing LogLines.
type stdoutLogExporter struct{ w *lineWriter }

func (e *stdoutLogExporter) Export(ctx context.Context, records []sdklog.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.w.writeBatch(len(records), func(i int) any { return logLine(&records[i]) })
}

func (e *stdoutLogExporter) Shutdown(context.Context) error   { return e.w.flush() }
func (e *stdoutLogExporter) ForceFlush(context.Context) error { return e.w.flush() }

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func spanLine(s sdktrace.ReadOnlySpan) SpanLine {
	l := SpanLine{
		Type:       "span",
		Time:       formatTime(s.EndTime()),
		Name:       s.Name(),
		Kind:       s.SpanKind().String(),
		Start:      formatTime(s.StartTime()),
		End:        formatTime(s.EndTime()),
		DurationNS: s.EndTime().Sub(s.StartTime()).Nanoseconds(),
		Status:     statusName(s.Status().Code),
		TraceID:    s.SpanContext().TraceID().String(),
		SpanID:     s.SpanContext().SpanID().String(),
		Attributes: attrMap(s.Attributes()),
		Resource:   resourceMap(s.Resource()),
	}
	if s.Status().Code == codes.Error {
		l.StatusMessage = s.Status().Description
	}
	return l
}

func statusName(c codes.Code) string {
	switch c {
	case codes.Error:
		return "error"
	case codes.Ok:
		return "ok"
	}
	return "unset"
}

func logLine(r *sdklog.Record) LogLine {
	l := LogLine{
		Type:         "log",
		Time:         formatTime(r.Timestamp()),
		ObservedTime: formatTime(r.ObservedTimestamp()),
		Event:        r.EventName(),
		Severity:     r.SeverityText(),
		Body:         jsonValue(r.Body()),
		Resource:     resourceMap(r.Resource()),
	}
	if l.Time == "" {
		l.Time = l.ObservedTime
	}
	if l.Severity == "" && r.Severity() != 0 {
		l.Severity = r.Severity().String()
	}
	if tid := r.TraceID(); tid.IsValid() {
		l.TraceID = tid.String()
	}
	if sid := r.SpanID(); sid.IsValid() {
		l.SpanID = sid.String()
	}
	if n := r.AttributesLen(); n > 0 {
		l.Attributes = make(map[string]any, n)
		r.WalkAttributes(func(kv attribute.KeyValue) bool {
			l.Attributes[string(kv.Key)] = jsonValue(kv.Value)
			return true
		})
	}
	return l
}

func resourceMap(r *resource.Resource) map[string]any {
	if r == nil || r.Len() == 0 {
		return nil
	}
	m := make(map[string]any, r.Len())
	for iter := r.Iter(); iter.Next(); {
		kv := iter.Attribute()
		m[string(kv.Key)] = jsonValue(kv.Value)
	}
	return m
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = jsonValue(kv.Value)
	}
	return m
}

// jsonValue converts an attribute value into what encoding/json writes
// as the natural JSON value: strings, numbers, booleans, arrays, objects;
// byte slices as base64 strings and non-finite floats as strings.
func jsonValue(v attribute.Value) any {
	switch v.Type() {
	case attribute.BOOL:
		return v.AsBool()
	case attribute.INT64:
		return v.AsInt64()
	case attribute.FLOAT64:
		return jsonFloat(v.AsFloat64())
	case attribute.STRING:
		return v.AsString()
	case attribute.BOOLSLICE:
		return v.AsBoolSlice()
	case attribute.INT64SLICE:
		return v.AsInt64Slice()
	case attribute.FLOAT64SLICE:
		fs := v.AsFloat64Slice()
		out := make([]any, len(fs))
		for i, f := range fs {
			out[i] = jsonFloat(f)
		}
		return out
	case attribute.STRINGSLICE:
		return v.AsStringSlice()
	case attribute.BYTESLICE:
		return base64.StdEncoding.EncodeToString(v.AsByteSlice())
	case attribute.SLICE:
		vs := v.AsSlice()
		out := make([]any, len(vs))
		for i, e := range vs {
			out[i] = jsonValue(e)
		}
		return out
	case attribute.MAP:
		kvs := v.AsMap()
		out := make(map[string]any, len(kvs))
		for _, kv := range kvs {
			out[string(kv.Key)] = jsonValue(kv.Value)
		}
		return out
	}
	return nil
}

func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}

var (
	_ sdktrace.SpanExporter = (*stdoutSpanExporter)(nil)
	_ sdklog.Exporter       = (*stdoutLogExporter)(nil)
)
