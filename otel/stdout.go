package otel

import (
	"encoding/base64"
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
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
	ParentSpanID  string         `json:"parent_span_id,omitempty"`
	Attributes    map[string]any `json:"attributes,omitempty"`
	Resource      map[string]any `json:"resource,omitempty"`
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
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
