package otel

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newStdoutExporter returns an Exporter writing both signals to out as
// JSON lines, with e.now fixed at tObserved.
func newStdoutExporter(t *testing.T, o Options, out io.Writer) *Exporter {
	t.Helper()
	o.Stdout = out
	e, err := newExporter(o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.now = func() time.Time { return tObserved }
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	return e
}

func TestStdoutJSONLines(t *testing.T) {
	out := &syncBuffer{}
	p := newStdoutExporter(t, testOptions(), out)

	p.Emit(connectEvent())
	// Lines show up without a Shutdown, after the short stdout batch timeout.
	waitFor(t, "the first line", func() bool { return strings.Contains(out.String(), "\n") })
	p.Emit(resultEvent(-int64(unix.ECONNREFUSED)))
	p.Emit(acceptEvent())
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	var logs []LogLine
	var spans []SpanLine
	var raw []map[string]any
	var types []string
	for line := range strings.SplitSeq(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		raw = append(raw, m)
		typ, _ := m["type"].(string)
		types = append(types, typ)
		switch typ {
		case "log":
			var l LogLine
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatal(err)
			}
			logs = append(logs, l)
		case "span":
			var s SpanLine
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatal(err)
			}
			spans = append(spans, s)
		default:
			t.Errorf("line of type %v: %s", m["type"], line)
		}
		if strings.Contains(line, `\u003e`) {
			t.Errorf("HTML-escaped line: %s", line)
		}
	}
	if len(logs) != 3 || len(spans) != 2 {
		t.Fatalf("%d log lines, %d span lines:\n%s", len(logs), len(spans), out.String())
	}
	// Each event's log line comes before its span line.
	if want := []string{"log", "log", "span", "log", "span"}; !slices.Equal(types, want) {
		t.Errorf("line types %v, want %v", types, want)
	}

	l := logs[0]
	if l.Type != "log" || l.Time != "2026-11-25T17:28:13.364898327Z" || l.ObservedTime != "2026-11-25T17:28:14.364898327Z" ||
		l.Event != "connwatch.tcp.connect" || l.Severity != "INFO" ||
		l.Body != "curl connect 10.0.0.1:51000 -> 93.184.216.34:443" || l.TraceID != "" || l.SpanID != "" {
		t.Errorf("attempt line: %+v", l)
	}
	if l.Attributes["server.address"] != "93.184.216.34" || l.Attributes["server.port"] != 443.0 ||
		l.Attributes["connwatch.event_id"] != 400.0 {
		t.Errorf("attempt attributes: %v", l.Attributes)
	}
	if got, want := jsonNumbersToInt(l.Attributes), attrMapOf(appendAttributes(nil, connectEvent())); !equalMaps(got, want) {
		t.Errorf("attempt attributes:\n got %v\nwant %v", got, want)
	}
	if l.Resource["service.name"] != "curl" || l.Resource["process.pid"] != 1000.0 ||
		l.Resource["host.name"] != "node-1" {
		t.Errorf("attempt resource: %v", l.Resource)
	}
	if got, want := jsonNumbersToInt(l.Resource), hostResourceWant(); !equalOTLP(got, want) {
		t.Errorf("attempt resource:\n got %v\nwant %v", got, want)
	}
	args, _ := l.Resource["process.command_args"].([]any)
	if len(args) != 3 || args[2] != "https://example.com/" {
		t.Errorf("command args %v", l.Resource["process.command_args"])
	}

	// The refused result: its log line and span line are linked.
	refusedLog := logs[1]
	client, server := spans[0], spans[1]
	if refusedLog.Event != "connwatch.tcp.connect.result" || client.Kind != "client" || server.Kind != "server" {
		t.Fatalf("lines out of order: %+v %+v %+v", refusedLog, client, server)
	}
	if refusedLog.Severity != "WARN" || refusedLog.Attributes["error.type"] != "ECONNREFUSED" ||
		refusedLog.Body != "curl connect 10.0.0.1:51000 -> 93.184.216.34:443 refused (ECONNREFUSED) after 1.235ms" ||
		refusedLog.TraceID != client.TraceID || refusedLog.SpanID != client.SpanID || len(client.TraceID) != 32 || len(client.SpanID) != 16 {
		t.Errorf("refused log line: %+v\nspan: %+v", refusedLog, client)
	}
	if logs[2].TraceID != server.TraceID || logs[2].SpanID != server.SpanID || server.TraceID == client.TraceID {
		t.Errorf("accept log line %+v, span %+v", logs[2], server)
	}
	want := SpanLine{
		Type: "span", Time: "2026-11-25T17:28:13.366132894Z", Name: "tcp connect", Kind: "client",
		Start: "2026-11-25T17:28:13.364898327Z", End: "2026-11-25T17:28:13.366132894Z",
		DurationNS: 1234567, Status: "error", StatusMessage: "ECONNREFUSED",
		TraceID: client.TraceID, SpanID: client.SpanID,
	}
	got := client
	got.Attributes, got.Resource = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("client span line:\n got %+v\nwant %+v", got, want)
	}
	if client.Attributes["connwatch.outcome"] != "refused" || client.Attributes["connwatch.duration_ns"] != 1234567.0 {
		t.Errorf("client span attributes %v", client.Attributes)
	}
	if server.Name != "tcp accept" || server.Status != "unset" || server.StatusMessage != "" || server.DurationNS != 0 ||
		server.Start != "2026-11-25T17:28:13.366132894Z" || server.End != server.Start ||
		server.Resource["container.id"] != containerID || server.Attributes["client.address"] != "10.0.0.1" {
		t.Errorf("server span line: %+v", server)
	}
	if got, want := jsonNumbersToInt(server.Resource), containerResourceWant(); !equalOTLP(got, want) {
		t.Errorf("server resource:\n got %v\nwant %v", got, want)
	}
	// Span lines carry the documented keys and nothing else.
	for _, m := range raw {
		if m["type"] == "span" {
			keys := []string{"type", "time", "name", "kind", "start", "end", "duration_ns", "status", "trace_id", "span_id", "attributes", "resource"}
			if m["status"] == "error" {
				keys = append(keys, "status_message")
			}
			for _, k := range keys {
				if _, ok := m[k]; !ok {
					t.Errorf("span line without %q: %v", k, m)
				}
			}
			if len(m) != len(keys) {
				t.Errorf("span line with keys beyond %v: %v", keys, m)
			}
		}
	}

	st := p.Stats()
	if st.LogsEmitted != 3 || st.LogsExported != 3 || st.SpansEmitted != 2 || st.SpansExported != 2 ||
		st.LogsFailed != 0 || st.SpansFailed != 0 || st.Traces != (QueueStats{}) {
		t.Errorf("stats %+v", st)
	}
}

// jsonNumbersToInt turns the float64 numbers encoding/json decodes into
// int64 (every number connwatch writes is an integer), recursively.
func jsonNumbersToInt(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case float64:
			out[k] = int64(x)
		default:
			out[k] = v
		}
	}
	return out
}

// TestStdoutMixed: traces over a transport, logs as JSON lines: the
// lines name the spans the transport received.
func TestStdoutMixed(t *testing.T) {
	out := &syncBuffer{}
	o := testOptions()
	o.Stdout = out
	tt := newMemTransport(t, true)
	e, err := newExporter(o, tt, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.now = func() time.Time { return tObserved }
	e.Emit(resultEvent(0))
	shutdown(t, e)
	spans := tt.Spans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	var l LogLine
	if err := json.Unmarshal([]byte(out.String()), &l); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	if l.Type != "log" || l.TraceID != hex.EncodeToString(spans[0].TraceId) || l.SpanID != hex.EncodeToString(spans[0].SpanId) {
		t.Errorf("log line %+v not linked to span %x/%x", l, spans[0].TraceId, spans[0].SpanId)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("stdout: %s", out.String())
	}
}

func TestJSONValue(t *testing.T) {
	for _, tt := range []struct {
		v    attribute.Value
		want string
	}{
		{attribute.BoolValue(true), `true`},
		{attribute.Int64Value(-3), `-3`},
		{attribute.Float64Value(1.5), `1.5`},
		{attribute.Float64Value(math.NaN()), `"NaN"`},
		{attribute.Float64Value(math.Inf(-1)), `"-Infinity"`},
		{attribute.StringValue("a<b>"), `"a<b>"`},
		{attribute.StringSliceValue([]string{"x", "y"}), `["x","y"]`},
		{attribute.Int64SliceValue([]int64{1, 2}), `[1,2]`},
		{attribute.BoolSliceValue([]bool{false}), `[false]`},
		{attribute.Float64SliceValue([]float64{math.Inf(1), 2}), `["Infinity",2]`},
		{attribute.ByteSliceValue([]byte("hi")), `"aGk="`},
		{attribute.SliceValue(attribute.StringValue("s"), attribute.Int64Value(1)), `["s",1]`},
		{attribute.MapValue(attribute.String("k", "v"), attribute.Int("n", 2)), `{"k":"v","n":2}`},
		{attribute.Value{}, `null`},
	} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(jsonValue(tt.v)); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(b.String()); got != tt.want {
			t.Errorf("%v: got %s, want %s", tt.v.Type(), got, tt.want)
		}
	}
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, unix.EPIPE }

func TestStdoutWriteErrorCounted(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour // one write, at Shutdown
	p := newStdoutExporter(t, o, errWriter{})
	p.Emit(resultEvent(0))
	p.Emit(connectEvent())
	err := p.Shutdown(context.Background())
	if !errors.Is(err, unix.EPIPE) {
		t.Errorf("Shutdown: %v, want the write error", err)
	}
	st := p.Stats()
	if st.SpansFailed != 1 || st.LogsFailed != 2 || st.SpansExported != 0 || st.LogsExported != 0 ||
		st.SpanExportErrors != 1 || st.LogExportErrors != 1 || st.FailingSince.IsZero() {
		t.Errorf("stats %+v", st)
	}
}
