package otlptest

// What a Receiver received, flattened: spans and log records with their
// resource and scope, attributes as Go values, and waiting for them.

import (
	"errors"
	"fmt"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Span is a received span with its resource and scope.
type Span struct {
	Resource *resourcepb.Resource
	Scope    *commonpb.InstrumentationScope
	*tracepb.Span
}

// Log is a received log record with its resource and scope.
type Log struct {
	Resource *resourcepb.Resource
	Scope    *commonpb.InstrumentationScope
	*logspb.LogRecord
}

// Attrs returns the span's attributes as Go values (see Value).
func (s Span) Attrs() map[string]any { return Attrs(s.Span.GetAttributes()) }

// ResourceAttrs returns the span's resource attributes as Go values.
func (s Span) ResourceAttrs() map[string]any { return Attrs(s.Resource.GetAttributes()) }

// Attrs returns the record's attributes as Go values (see Value).
func (l Log) Attrs() map[string]any { return Attrs(l.LogRecord.GetAttributes()) }

// ResourceAttrs returns the record's resource attributes as Go values.
func (l Log) ResourceAttrs() map[string]any { return Attrs(l.Resource.GetAttributes()) }

// Spans returns every received span.
func (r *Receiver) Spans() []Span {
	var out []Span
	for _, req := range r.TraceRequests() {
		out = append(out, SpansOf(req)...)
	}
	return out
}

// Logs returns every received log record.
func (r *Receiver) Logs() []Log {
	var out []Log
	for _, req := range r.LogRequests() {
		out = append(out, LogsOf(req)...)
	}
	return out
}

// SpansOf flattens one request.
func SpansOf(req *coltracepb.ExportTraceServiceRequest) []Span {
	var out []Span
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				out = append(out, Span{Resource: rs.GetResource(), Scope: ss.GetScope(), Span: s})
			}
		}
	}
	return out
}

// LogsOf flattens one request.
func LogsOf(req *collogspb.ExportLogsServiceRequest) []Log {
	var out []Log
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, l := range sl.GetLogRecords() {
				out = append(out, Log{Resource: rl.GetResource(), Scope: sl.GetScope(), LogRecord: l})
			}
		}
	}
	return out
}

// ErrTimeout is returned by the Wait methods when too few items matched.
var ErrTimeout = errors.New("otlptest: timed out waiting")

// WaitSpans waits until at least n received spans satisfy match (nil
// matches all) and returns the matching spans, or ErrTimeout with those
// found after timeout.
func (r *Receiver) WaitSpans(timeout time.Duration, n int, match func(Span) bool) ([]Span, error) {
	return wait(r, timeout, n, r.Spans, match)
}

// WaitLogs waits until at least n received log records satisfy match
// (nil matches all) and returns the matching records, or ErrTimeout with
// those found after timeout.
func (r *Receiver) WaitLogs(timeout time.Duration, n int, match func(Log) bool) ([]Log, error) {
	return wait(r, timeout, n, r.Logs, match)
}

func wait[T any](r *Receiver, timeout time.Duration, n int, all func() []T, match func(T) bool) ([]T, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		var got []T
		for _, x := range all() {
			if match == nil || match(x) {
				got = append(got, x)
			}
		}
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return got, fmt.Errorf("%w: %d of %d items after %v", ErrTimeout, len(got), n, timeout)
		}
	}
}

// Attrs converts OTLP attributes to a map of Go values (see Value).
func Attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = Value(kv.GetValue())
	}
	return m
}

// Value converts an OTLP value: string, bool, int64, float64, []byte,
// []any for arrays, map[string]any for key-value lists, nil when empty.
func Value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return x.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			out = append(out, Value(e))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return Attrs(x.KvlistValue.GetValues())
	}
	return nil
}
