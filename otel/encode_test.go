package otel

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/otel/otlptest"
)

func oracleEvents() map[string]*event.Event {
	unknownFamily := connectEvent()
	unknownFamily.Remote, unknownFamily.Local, unknownFamily.RemoteFamily, unknownFamily.Protocol = netip.AddrPort{}, netip.AddrPort{}, 1, ""
	unknownFamilyResult := resultEvent(-int64(unix.ETIMEDOUT))
	unknownFamilyResult.Remote, unknownFamilyResult.RemoteFamily = netip.AddrPort{}, 99
	noWorkload := resultEvent(-int64(unix.ECONNREFUSED))
	noWorkload.Workload = nil
	noWorkload.Comm = "wget"
	nameless := connectEvent()
	nameless.Workload, nameless.Comm = nil, ""
	v6 := connectEvent()
	v6.EventID, v6.Protocol = event.TCPConnectResultV6, "TCPv6"
	v6.Remote = netip.MustParseAddrPort("[2001:db8::1]:8443")
	v6.Local = netip.MustParseAddrPort("[2001:db8::2]:40000")
	v6.Start, v6.StartKernelTime, v6.Retval = time.Time{}, v6.KernelTime-5000, -4095
	named := resultEvent(0)
	named.ISN, named.HasISN = 0x9abcdef0, true
	named.Local = netip.MustParseAddrPort("10.0.0.1:51001")
	namedAccept := acceptEvent()
	namedAccept.ISN, namedAccept.HasISN = 0x9abcdef0, true
	namedAccept.Remote = netip.MustParseAddrPort("[::ffff:10.0.0.1]:51001")
	return map[string]*event.Event{
		"established with isn":  named,
		"accept with isn":       namedAccept,
		"close":                 closeEvent(false, 0),
		"close accepted reset":  closeEvent(true, -int64(unix.ECONNRESET)),
		"connect":               connectEvent(),
		"established":           resultEvent(0),
		"refused":               resultEvent(-111),
		"accept":                acceptEvent(),
		"unknown family":        unknownFamily,
		"unknown family result": unknownFamilyResult,
		"nil workload":          noWorkload,
		"nameless":              nameless,
		"v6 unknown errno":      v6,
	}
}

// TestEncodedMatchesMapping decodes the span and log record of each test
// event and checks them field by field against the mapping functions
// (spanOf, appendAttributes, bodyOf, severityOf, event.Name, the
// resource of appendWorkloadAttributes), one event per exporter and all
// of them in one batch.
func TestEncodedMatchesMapping(t *testing.T) {
	for _, omit := range []bool{false, true} {
		for name, ev := range oracleEvents() {
			t.Run(fmt.Sprintf("%s/omit=%v", name, omit), func(t *testing.T) {
				o := testOptions()
				o.OmitCommandArgs = omit
				e, tt, lt := newTestExporter(t, o)
				e.Emit(ev)
				flush(t, e)
				logs, spans := lt.Logs(), tt.Spans()
				_, wantSpan := spanOf(ev)
				if len(logs) != 1 || len(spans) != map[bool]int{false: 0, true: 1}[wantSpan] {
					t.Fatalf("%d records, %d spans", len(logs), len(spans))
				}
				var span *tracepb.Span
				if wantSpan {
					checkSpan(t, &o, ev, spans[0])
					span = spans[0].Span
				}
				checkLog(t, &o, ev, logs[0], span, tObserved)
				checkSchemaURLs(t, tt, lt)
				if st := e.Stats(); st.LogsExported != 1 || st.SpansExported != uint64(len(spans)) {
					t.Errorf("stats %+v", st)
				}
			})
		}
	}

	t.Run("one batch", func(t *testing.T) {
		o := testOptions()
		o.BatchTimeout = time.Hour
		e, tt, lt := newTestExporter(t, o)
		var evs []*event.Event
		for _, ev := range oracleEvents() {
			evs = append(evs, ev)
			e.Emit(ev)
		}
		flush(t, e)
		if len(tt.TraceRequests()) != 1 || len(lt.LogRequests()) != 1 {
			t.Fatalf("%d trace, %d log requests", len(tt.TraceRequests()), len(lt.LogRequests()))
		}
		checkSchemaURLs(t, tt, lt)
		// Records are grouped by resource; find each event's by its body.
		logs := map[string]otlptest.Log{}
		for _, l := range lt.Logs() {
			logs[l.Body.GetStringValue()] = l
		}
		spans := map[string]otlptest.Span{}
		for _, s := range tt.Spans() {
			spans[string(s.SpanId)] = s
		}
		if len(logs) != len(evs) {
			t.Fatalf("%d distinct records for %d events", len(logs), len(evs))
		}
		for _, ev := range evs {
			l, ok := logs[bodyOf(ev)]
			if !ok {
				t.Errorf("no record %q", bodyOf(ev))
				continue
			}
			var span *tracepb.Span
			if _, wantSpan := spanOf(ev); wantSpan {
				s, ok := spans[string(l.SpanId)]
				if !ok {
					t.Errorf("no span for %q", bodyOf(ev))
					continue
				}
				checkSpan(t, &o, ev, s)
				span = s.Span
				delete(spans, string(l.SpanId))
			}
			checkLog(t, &o, ev, l, span, tObserved)
		}
		if len(spans) != 0 {
			t.Errorf("spans of no event: %v", spans)
		}
	})
}

// TestEncodeInvalidUTF8: strings from the kernel and /proc (comm,
// executable path, argv, cgroup) and OTEL_RESOURCE_ATTRIBUTES can hold any
// bytes, but a protobuf string must be UTF-8 or the receiver rejects the
// whole request. They arrive with each invalid byte as U+FFFD, as the
// JSON lines write them, and the other records of the request arrive.
func TestEncodeInvalidUTF8(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour
	o.Getenv = func(k string) string {
		if k == EnvResourceAttributes {
			return "team=a%ffb,k\xfe=v" // values are percent-decoded, keys are not
		}
		return ""
	}
	e, tt, lt := newTestExporter(t, o)
	bad := resultEvent(-int64(unix.ECONNRESET))
	w := *bad.Workload
	w.ExeName, w.ExePath, w.Cgroup = "cu\xffrl", "/usr/bin/cu\xffrl", "/x\xc3"
	w.Args = []string{"cu\xffrl", "\xe2\x80", "ok"}
	bad.Workload = &w
	bad.Comm, bad.Protocol = "c\x80omm", "TCP\xff"
	bad.Remote = netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone("eth\xff0"), 443)
	good := acceptEvent()
	e.Emit(bad)
	e.Emit(good)
	flush(t, e)

	st := e.Stats()
	if st.SpansExported != 2 || st.LogsExported != 2 || st.SpansFailed != 0 || st.LogsFailed != 0 {
		t.Fatalf("stats %+v", st)
	}
	spans, logs := tt.Spans(), lt.Logs()
	if len(spans) != 2 || len(logs) != 2 {
		t.Fatalf("%d spans, %d records", len(spans), len(logs))
	}
	checkSpan(t, &o, bad, spans[0])
	checkLog(t, &o, bad, logs[0], spans[0].Span, tObserved)
	checkSpan(t, &o, good, spans[1])
	checkLog(t, &o, good, logs[1], spans[1].Span, tObserved)
	res := spans[0].ResourceAttrs()
	if res["service.name"] != "cu\uFFFDrl" || res["team"] != "a\uFFFDb" || res["k\uFFFD"] != "v" {
		t.Errorf("resource %v", res)
	}
	if got := logs[0].Body.GetStringValue(); !strings.HasPrefix(got, "cu\uFFFDrl connect 10.0.0.1:51000 -> [fe80::1%eth\uFFFD0]:443 reset") {
		t.Errorf("body %q", got)
	}
}

// TestEncodeValue: every attribute value type a resource can hold
// (OTEL_RESOURCE_ATTRIBUTES, detectors) decodes as itself.
func TestEncodeValue(t *testing.T) {
	kvs := []attribute.KeyValue{
		attribute.String("s", "v"),
		attribute.String("empty", ""),
		attribute.Bool("t", true),
		attribute.Bool("f", false),
		attribute.Int64("neg", math.MinInt64),
		attribute.Int64("max", math.MaxInt64),
		attribute.Float64("pi", math.Pi),
		attribute.Float64("negzero", math.Copysign(0, -1)),
		attribute.StringSlice("ss", []string{"a", "", "c"}),
		attribute.Int64Slice("is", []int64{-1, 0, 1 << 40}),
		attribute.BoolSlice("bs", []bool{true, false}),
		attribute.Float64Slice("fs", []float64{1.5, -2}),
		attribute.StringSlice("none", nil),
	}
	var res resourcepb.Resource
	if err := proto.Unmarshal(encodeResource(kvs), &res); err != nil {
		t.Fatal(err)
	}
	checkKVs(t, "resource", res.Attributes, kvs)
	for _, kv := range res.Attributes {
		if kv.Key == "negzero" && !math.Signbit(kv.Value.GetDoubleValue()) {
			t.Error("-0 lost its sign")
		}
		if kv.Key == "none" && kv.Value.GetArrayValue() == nil {
			t.Error("empty string slice is not an empty array")
		}
	}
}

// TestSplitEntries: a body splits into its resource entries; anything
// else is refused (and the trace transport refuses it for good).
func TestSplitEntries(t *testing.T) {
	res := encodeResource([]attribute.KeyValue{attribute.String("service.name", "x")})
	var body []byte
	body = appendResourceEntry(body, res, scopeBytes, nil, semconv.SchemaURL)
	body = appendResourceEntry(body, res, scopeBytes, nil, "")
	var n int
	if !splitEntries(body, func([]byte) { n++ }) || n != 2 {
		t.Errorf("split %d entries", n)
	}
	for _, bad := range [][]byte{{0x12, 0}, {0x0a, 5, 1}, {0x0a}, {0xff}} {
		if splitEntries(bad, func([]byte) {}) {
			t.Errorf("%x: split", bad)
		}
	}
	if n := sizeResourceEntry(res, scopeBytes, 0, semconv.SchemaURL); n != len(appendResourceEntry(nil, res, scopeBytes, nil, semconv.SchemaURL)) {
		t.Errorf("sizeResourceEntry %d", n)
	}
	tr := &tracesTransport{}
	if _, err := tr.send(t.Context(), []byte{0xff}); err == nil {
		t.Error("malformed body sent")
	} else if ok, _ := retryable(err); ok {
		t.Errorf("malformed body: %v is retryable", err)
	}
}
