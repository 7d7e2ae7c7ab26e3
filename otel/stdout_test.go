package otel

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"reflect"
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

func TestStdoutJSONLines(t *testing.T) {
	out := &syncBuffer{}
	o := testOptions()
	o.Stdout = out
	p, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return tObserved }

	p.Emit(connectEvent())
	// Lines show up without a Shutdown, after the short stdout batch timeout.
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(out.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatal("no line within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Emit(resultEvent(-int64(unix.ECONNREFUSED)))
	p.Emit(acceptEvent())
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	var logs []LogLine
	var spans []SpanLine
	var raw []map[string]any
	for line := range strings.SplitSeq(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		raw = append(raw, m)
		switch m["type"] {
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

	l := logs[0]
	if l.Time != "2026-11-25T17:28:13.364898327Z" || l.ObservedTime != "2026-11-25T17:28:14.364898327Z" ||
		l.Event != "connwatch.tcp.connect" || l.Severity != "INFO" ||
		l.Body != "curl connect 10.0.0.1:51000 -> 93.184.216.34:443" || l.TraceID != "" || l.SpanID != "" {
		t.Errorf("attempt line: %+v", l)
	}
	if l.Attributes["server.address"] != "93.184.216.34" || l.Attributes["server.port"] != 443.0 ||
		l.Attributes["connwatch.event_id"] != 400.0 {
		t.Errorf("attempt attributes: %v", l.Attributes)
	}
	if l.Resource["service.name"] != "curl" || l.Resource["process.pid"] != 1000.0 ||
		l.Resource["host.name"] != "node-1" {
		t.Errorf("attempt resource: %v", l.Resource)
	}
	args, _ := l.Resource["process.command_args"].([]any)
	if len(args) != 3 || args[2] != "https://example.com/" {
		t.Errorf("command args %v", l.Resource["process.command_args"])
	}

	// The refused result: its log line and span line are linked.
	var refusedLog LogLine
	for _, l := range logs {
		if l.Event == "connwatch.tcp.connect.result" {
			refusedLog = l
		}
	}
	var client, server SpanLine
	for _, s := range spans {
		switch s.Kind {
		case "client":
			client = s
		case "server":
			server = s
		}
	}
	if refusedLog.Severity != "WARN" || refusedLog.Attributes["error.type"] != "ECONNREFUSED" ||
		refusedLog.TraceID != client.TraceID || refusedLog.SpanID != client.SpanID || len(client.TraceID) != 32 {
		t.Errorf("refused log line: %+v\nspan: %+v", refusedLog, client)
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
	if server.Name != "tcp accept" || server.Status != "unset" || server.DurationNS != 0 ||
		server.Resource["container.id"] != containerID || server.Attributes["client.address"] != "10.0.0.1" {
		t.Errorf("server span line: %+v", server)
	}
	// Span lines carry the documented keys, in order, and nothing else.
	for _, m := range raw {
		if m["type"] == "span" {
			for _, k := range []string{"time", "name", "kind", "start", "end", "duration_ns", "status", "trace_id", "span_id", "attributes", "resource"} {
				if _, ok := m[k]; !ok {
					t.Errorf("span line without %q: %v", k, m)
				}
			}
		}
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
	o.Stdout = errWriter{}
	p, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(resultEvent(0))
	_ = p.Shutdown(context.Background())
	if st := p.Stats(); st.SpansFailed != 1 || st.LogsFailed != 1 {
		t.Errorf("stats %+v", st)
	}
}
