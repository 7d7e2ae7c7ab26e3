package metrics

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// The metrics, as OpenTelemetry names them.
const (
	NameConnections        = "connwatch.tcp.connections"
	NameConnectDuration    = "connwatch.tcp.connect.duration"
	NameBytes              = "connwatch.tcp.bytes"
	NameConnectionDuration = "connwatch.tcp.connection.duration"
)

// Attribute keys of the data points.
const (
	AttrDirection   = attribute.Key("connwatch.direction")  // "outbound" or "inbound"
	AttrOutcome     = attribute.Key("connwatch.outcome")    // event.Outcome's names
	AttrOverflow    = attribute.Key("connwatch.overflow")   // true on a workload's overflow series
	AttrPeerAddress = attribute.Key("network.peer.address") // peer: address
	AttrServerPort  = attribute.Key("server.port")          // peer: address or port
	AttrIODirection = attribute.Key("network.io.direction") // bytes: "transmit" or "receive"
)

// Scope is the instrumentation scope of the metrics.
var Scope = instrumentation.Scope{Name: "github.com/connwatch/connwatch/metrics"}

// sets are a series' attribute sets, built at its first collection.
type sets struct {
	conn, life, tx, rx attribute.Set
}

func (k *seriesKey) sets() *sets {
	dir := "outbound"
	if k.dir == inbound {
		dir = "inbound"
	}
	base := make([]attribute.KeyValue, 0, 6)
	base = append(base, AttrDirection.String(dir))
	if k.peer.IsValid() {
		base = append(base, AttrPeerAddress.String(k.peer.String()))
	}
	if k.port != 0 {
		base = append(base, AttrServerPort.Int(int(k.port)))
	}
	if k.overflow {
		base = append(base, AttrOverflow.Bool(true))
	}
	with := func(kv attribute.KeyValue) attribute.Set {
		return attribute.NewSet(append(base[:len(base):len(base)], kv)...)
	}
	return &sets{
		conn: with(AttrOutcome.String(k.outcome.String())),
		life: attribute.NewSet(base...),
		tx:   with(AttrIODirection.String("transmit")),
		rx:   with(AttrIODirection.String("receive")),
	}
}

// Collect returns the cumulative values of every workload, one
// ResourceMetrics each under its resource, after removing what expired.
// A workload without data points is left out.
func (s *Store) Collect() []metricdata.ResourceMetrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.lastSweep = now.Add(-s.expiry) // force the sweep
	s.maybeSweep()
	out := make([]metricdata.ResourceMetrics, 0, len(s.workloads))
	for _, w := range s.workloads {
		if rm, ok := w.collect(now); ok {
			out = append(out, rm)
		}
	}
	return out
}

func (w *Workload) collect(now time.Time) (metricdata.ResourceMetrics, bool) {
	var (
		conns         []metricdata.DataPoint[int64]
		bytes         []metricdata.DataPoint[int64]
		connect, life []metricdata.HistogramDataPoint[float64]
	)
	for k, sr := range w.series {
		if sr.sets == nil {
			sr.sets = k.sets()
		}
		at := sr.sets
		if sr.conns > 0 {
			conns = append(conns, metricdata.DataPoint[int64]{Attributes: at.conn, StartTime: sr.start, Time: now, Value: clamp(sr.conns)})
		}
		if sr.connect.count > 0 {
			connect = append(connect, sr.connect.point(connectBounds[:], at.conn, sr.start, now))
		}
		if sr.lifetime.count > 0 {
			life = append(life, sr.lifetime.point(lifetimeBounds[:], at.life, sr.start, now))
			bytes = append(bytes,
				metricdata.DataPoint[int64]{Attributes: at.tx, StartTime: sr.start, Time: now, Value: clamp(sr.sent)},
				metricdata.DataPoint[int64]{Attributes: at.rx, StartTime: sr.start, Time: now, Value: clamp(sr.recvd)})
		}
	}
	var ms []metricdata.Metrics
	if len(conns) > 0 {
		ms = append(ms, metricdata.Metrics{Name: NameConnections, Unit: "{connection}",
			Description: "TCP connections by direction, outcome and peer.",
			Data:        metricdata.Sum[int64]{DataPoints: conns, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}})
	}
	if len(connect) > 0 {
		ms = append(ms, metricdata.Metrics{Name: NameConnectDuration, Unit: "s",
			Description: "Time from an outgoing connection's attempt to its outcome.",
			Data:        metricdata.Histogram[float64]{DataPoints: connect, Temporality: metricdata.CumulativeTemporality}})
	}
	if len(bytes) > 0 {
		ms = append(ms, metricdata.Metrics{Name: NameBytes, Unit: "By",
			Description: "Bytes of closed connections, as the kernel counts them (tcp_sock bytes_acked and bytes_received).",
			Data:        metricdata.Sum[int64]{DataPoints: bytes, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}})
	}
	if len(life) > 0 {
		ms = append(ms, metricdata.Metrics{Name: NameConnectionDuration, Unit: "s",
			Description: "Lifetime of closed connections, established or accepted to closed.",
			Data:        metricdata.Histogram[float64]{DataPoints: life, Temporality: metricdata.CumulativeTemporality}})
	}
	if len(ms) == 0 {
		return metricdata.ResourceMetrics{}, false
	}
	res := w.res
	if res == nil {
		res = resource.Empty()
	}
	return metricdata.ResourceMetrics{Resource: res, ScopeMetrics: []metricdata.ScopeMetrics{{Scope: Scope, Metrics: ms}}}, true
}

func (h *histogram) point(bounds []float64, set attribute.Set, start, now time.Time) metricdata.HistogramDataPoint[float64] {
	counts := make([]uint64, len(bounds)+1)
	copy(counts, h.counts[:])
	return metricdata.HistogramDataPoint[float64]{Attributes: set, StartTime: start, Time: now,
		Count: h.count, Bounds: bounds, BucketCounts: counts, Sum: h.sum,
		Min: metricdata.NewExtrema(h.min), Max: metricdata.NewExtrema(h.max)}
}

func clamp(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}
