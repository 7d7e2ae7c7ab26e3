package metrics

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/connwatch/connwatch/event"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// result is a connect result from 127.0.0.1:40000 to peer, retval 0 or
// -errno, after d.
func result(peer string, retval int64, d time.Duration) *event.Event {
	return &event.Event{EventID: event.TCPConnectResult, Retval: retval, Time: t0,
		KernelTime: uint64(time.Second + d), StartKernelTime: uint64(time.Second),
		Remote: netip.MustParseAddrPort(peer), Local: netip.MustParseAddrPort("127.0.0.1:40000")}
}

func accept(client, local string) *event.Event {
	return &event.Event{EventID: event.TCPAccept, Time: t0,
		Remote: netip.MustParseAddrPort(client), Local: netip.MustParseAddrPort(local)}
}

func closeOf(peer string, server bool, sent, recvd uint64, life time.Duration) *event.Event {
	ev := &event.Event{EventID: event.TCPClose, Time: t0, KernelTime: uint64(time.Second + life), StartKernelTime: uint64(time.Second),
		Remote: netip.MustParseAddrPort(peer), Local: netip.MustParseAddrPort("127.0.0.1:8080"),
		Close: event.Close{BytesSent: sent, BytesReceived: recvd, Server: server}}
	return ev
}

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

func newRes(name string) *resource.Resource {
	return resource.NewSchemaless(attribute.String("service.name", name), attribute.Int("process.pid", 42))
}

// points returns the data points of the metric name in rm, by their
// attributes' encoding.
func sums(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != name {
			continue
		}
		s, ok := m.Data.(metricdata.Sum[int64])
		if !ok || !s.IsMonotonic || s.Temporality != metricdata.CumulativeTemporality {
			t.Fatalf("%s is %T (monotonic cumulative sum expected)", name, m.Data)
		}
		for _, p := range s.DataPoints {
			out[p.Attributes.Encoded(attribute.DefaultEncoder())] = p.Value
		}
	}
	return out
}

func hists(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == name {
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				out[p.Attributes.Encoded(attribute.DefaultEncoder())] = p
			}
		}
	}
	return out
}

func TestRecordAndCollect(t *testing.T) {
	s := New(Options{Now: at(t0)})
	w := s.Workload("curl", newRes("curl"))
	for range 3 {
		s.Record(w, result("127.0.0.2:443", 0, 2*time.Millisecond))
	}
	s.Record(w, result("127.0.0.2:443", -111, 50*time.Microsecond))
	s.Record(w, result("[::ffff:127.0.0.3]:80", 0, time.Millisecond)) // v4-mapped: the IPv4 address
	s.Record(w, accept("127.0.0.9:5555", "127.0.0.1:8080"))
	s.Record(w, closeOf("127.0.0.2:443", false, 1001, 2001, 3*time.Second))
	s.Record(w, &event.Event{EventID: event.TCPConnect, Time: t0}) // attempts are not counted

	rms := s.Collect()
	if len(rms) != 1 {
		t.Fatalf("%d resource metrics, want 1", len(rms))
	}
	rm := rms[0]
	if v, _ := rm.Resource.Set().Value("service.name"); v.AsString() != "curl" {
		t.Errorf("resource %v", rm.Resource)
	}
	got := sums(t, rm, NameConnections)
	want := map[string]int64{
		"connwatch.direction=outbound,connwatch.outcome=established,network.peer.address=127.0.0.2,server.port=443": 3,
		"connwatch.direction=outbound,connwatch.outcome=refused,network.peer.address=127.0.0.2,server.port=443":     1,
		"connwatch.direction=outbound,connwatch.outcome=established,network.peer.address=127.0.0.3,server.port=80":  1,
		"connwatch.direction=inbound,connwatch.outcome=established,network.peer.address=127.0.0.9,server.port=8080": 1,
	}
	if len(got) != len(want) {
		t.Errorf("connections %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("connections{%s} = %d, want %d", k, got[k], v)
		}
	}
	cd := hists(t, rm, NameConnectDuration)
	p := cd["connwatch.direction=outbound,connwatch.outcome=established,network.peer.address=127.0.0.2,server.port=443"]
	if p.Count != 3 || p.Sum < 0.0059 || p.Sum > 0.0061 {
		t.Errorf("connect duration count %d sum %v, want 3 and 0.006", p.Count, p.Sum)
	}
	// 2 ms falls in (0.001, 0.0025].
	if i := indexOf(p.Bounds, 0.0025); p.BucketCounts[i] != 3 {
		t.Errorf("buckets %v over %v: 2 ms not in the 2.5 ms bucket", p.BucketCounts, p.Bounds)
	}
	bytes := sums(t, rm, NameBytes)
	if bytes["connwatch.direction=outbound,network.io.direction=transmit,network.peer.address=127.0.0.2,server.port=443"] != 1001 ||
		bytes["connwatch.direction=outbound,network.io.direction=receive,network.peer.address=127.0.0.2,server.port=443"] != 2001 {
		t.Errorf("bytes %v", bytes)
	}
	life := hists(t, rm, NameConnectionDuration)
	if lp := life["connwatch.direction=outbound,network.peer.address=127.0.0.2,server.port=443"]; lp.Count != 1 || lp.Sum != 3 {
		t.Errorf("connection duration %+v", life)
	}
}

func indexOf(bounds []float64, b float64) int {
	for i, x := range bounds {
		if x == b {
			return i
		}
	}
	return -1
}

func TestPeerModes(t *testing.T) {
	for mode, want := range map[PeerMode]string{
		PeerAddress: "connwatch.direction=outbound,connwatch.outcome=established,network.peer.address=127.0.0.2,server.port=443",
		PeerPort:    "connwatch.direction=outbound,connwatch.outcome=established,server.port=443",
		PeerNone:    "connwatch.direction=outbound,connwatch.outcome=established",
	} {
		s := New(Options{Peer: mode, Now: at(t0)})
		w := s.Workload(1, newRes("x"))
		s.Record(w, result("127.0.0.2:443", 0, time.Millisecond))
		s.Record(w, result("127.0.0.2:443", 0, time.Millisecond))
		got := sums(t, s.Collect()[0], NameConnections)
		if len(got) != 1 || got[want] != 2 {
			t.Errorf("peer %s: %v, want {%s: 2}", mode, got, want)
		}
	}
	if _, err := ParsePeerMode("addr"); err == nil {
		t.Error("ParsePeerMode accepted addr")
	}
}

// A workload talking to 10 000 peers keeps the default MaxSeries series;
// the rest are counted in its overflow series, and nothing is lost.
func TestMaxSeries(t *testing.T) {
	s := New(Options{Now: at(t0)})
	w := s.Workload(1, newRes("scanner"))
	for i := range 10000 {
		peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), 80)
		s.Record(w, result(peer.String(), 0, time.Millisecond))
	}
	s.Record(w, result("127.200.0.1:80", -111, time.Millisecond))
	st := s.Stats()
	if st.Series != DefaultMaxSeries+2 || st.Overflowed != 8001 {
		t.Errorf("stats %+v, want %d series + 2 overflow series, 8001 overflowed", st, DefaultMaxSeries)
	}
	got := sums(t, s.Collect()[0], NameConnections)
	var total int64
	for _, v := range got {
		total += v
	}
	if total != 10001 {
		t.Errorf("connections sum to %d, want 10001", total)
	}
	if got["connwatch.direction=outbound,connwatch.outcome=established,connwatch.overflow=true"] != 8000 ||
		got["connwatch.direction=outbound,connwatch.outcome=refused,connwatch.overflow=true"] != 1 {
		t.Errorf("overflow series: %v", got)
	}
}

func TestExpiry(t *testing.T) {
	now := t0
	s := New(Options{Expiry: time.Minute, Now: func() time.Time { return now }})
	old := s.Workload("old", newRes("old"))
	live := s.Workload("live", newRes("live"))
	s.Record(old, result("127.0.0.2:443", 0, time.Millisecond))
	s.Record(live, result("127.0.0.2:443", 0, time.Millisecond))
	now = t0.Add(50 * time.Second)
	ev := result("127.0.0.3:443", 0, time.Millisecond)
	ev.Time = now
	s.Record(live, ev)
	now = t0.Add(90 * time.Second)
	rms := s.Collect()
	if len(rms) != 1 {
		t.Fatalf("%d workloads after expiry, want 1", len(rms))
	}
	got := sums(t, rms[0], NameConnections)
	if len(got) != 1 || got["connwatch.direction=outbound,connwatch.outcome=established,network.peer.address=127.0.0.3,server.port=443"] != 1 {
		t.Errorf("after expiry %v", got)
	}
	if st := s.Stats(); st.Expired != 2 || st.Workloads != 1 {
		t.Errorf("stats %+v, want 2 expired, 1 workload", st)
	}
	// The expired workload comes back from zero, with a new start time.
	ev = result("127.0.0.2:443", 0, time.Millisecond)
	ev.Time = now
	s.Record(old, ev)
	for _, rm := range s.Collect() {
		if v, _ := rm.Resource.Set().Value("service.name"); v.AsString() == "old" {
			for _, m := range rm.ScopeMetrics[0].Metrics {
				if m.Name == NameConnections {
					p := m.Data.(metricdata.Sum[int64]).DataPoints[0]
					if p.Value != 1 || !p.StartTime.Equal(now) {
						t.Errorf("revived series %+v, want 1 from %v", p, now)
					}
				}
			}
			return
		}
	}
	t.Error("the expired workload did not come back")
}

// Counting an event of a known series allocates nothing.
func TestRecordAllocs(t *testing.T) {
	s := New(Options{Now: at(t0)})
	w := s.Workload(1, newRes("x"))
	ev := result("127.0.0.2:443", 0, time.Millisecond)
	cl := closeOf("127.0.0.2:443", false, 10, 10, time.Second)
	s.Record(w, ev)
	s.Record(w, cl)
	if n := testing.AllocsPerRun(1000, func() { s.Record(w, ev); s.Record(w, cl) }); n != 0 {
		t.Errorf("Record allocates %v times per event", n)
	}
}

func TestPrometheus(t *testing.T) {
	s := New(Options{Now: at(t0)})
	w := s.Workload(1, newRes("curl"))
	s.Record(w, result("127.0.0.2:443", 0, 2*time.Millisecond))
	s.Record(w, result("127.0.0.2:443", -111, time.Millisecond))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(s))
	want := `
# HELP connwatch_tcp_connections_total TCP connections by workload, direction, outcome and peer.
# TYPE connwatch_tcp_connections_total counter
connwatch_tcp_connections_total{connwatch_direction="outbound",connwatch_outcome="established",connwatch_overflow="",container_id="",container_name="",host_name="",k8s_container_name="",k8s_namespace_name="",k8s_pod_name="",network_peer_address="127.0.0.2",process_executable_name="",process_pid="42",server_port="443",service_name="curl"} 1
connwatch_tcp_connections_total{connwatch_direction="outbound",connwatch_outcome="refused",connwatch_overflow="",container_id="",container_name="",host_name="",k8s_container_name="",k8s_namespace_name="",k8s_pod_name="",network_peer_address="127.0.0.2",process_executable_name="",process_pid="42",server_port="443",service_name="curl"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "connwatch_tcp_connections_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "connwatch_tcp_connect_duration_seconds"); err != nil || n != 2 {
		t.Errorf("connect duration histograms: %d, %v", n, err)
	}
}
