package metrics

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// WorkloadLabels are the resource attributes that name a workload on
// /metrics, each as a label (dots become underscores); an attribute the
// workload lacks is an empty label, which Prometheus treats as absent.
var WorkloadLabels = []attribute.Key{
	"service.name", "host.name", "process.pid", "process.executable.name",
	"container.id", "container.name", "k8s.namespace.name", "k8s.pod.name", "k8s.container.name",
}

// pointLabels are the data point attributes of each metric, as labels.
var pointLabels = map[string][]attribute.Key{
	NameConnections:        {AttrDirection, AttrOutcome, AttrPeerAddress, AttrServerPort, AttrOverflow},
	NameConnectDuration:    {AttrDirection, AttrOutcome, AttrPeerAddress, AttrServerPort, AttrOverflow},
	NameBytes:              {AttrDirection, AttrIODirection, AttrPeerAddress, AttrServerPort, AttrOverflow},
	NameConnectionDuration: {AttrDirection, AttrPeerAddress, AttrServerPort, AttrOverflow},
}

// PromName is the Prometheus name of a metric: the OpenTelemetry name
// with underscores, the unit's suffix and _total for a counter, as the
// OpenTelemetry Prometheus exporter names them.
var PromName = map[string]string{
	NameConnections:        "connwatch_tcp_connections_total",
	NameConnectDuration:    "connwatch_tcp_connect_duration_seconds",
	NameBytes:              "connwatch_tcp_bytes_total",
	NameConnectionDuration: "connwatch_tcp_connection_duration_seconds",
}

func labelName(k attribute.Key) string { return strings.ReplaceAll(string(k), ".", "_") }

// Collector serves a Store's metrics to a Prometheus registry.
type Collector struct {
	store *Store
	descs map[string]*prometheus.Desc
}

// NewCollector returns the Collector of s.
func NewCollector(s *Store) *Collector {
	c := &Collector{store: s, descs: map[string]*prometheus.Desc{}}
	for name, prom := range PromName {
		var labels []string
		for _, k := range WorkloadLabels {
			labels = append(labels, labelName(k))
		}
		for _, k := range pointLabels[name] {
			labels = append(labels, labelName(k))
		}
		help := ""
		switch name {
		case NameConnections:
			help = "TCP connections by workload, direction, outcome and peer."
		case NameConnectDuration:
			help = "Time from an outgoing connection's attempt to its outcome, seconds."
		case NameBytes:
			help = "Bytes of closed connections by workload, direction and peer."
		case NameConnectionDuration:
			help = "Lifetime of closed connections, seconds."
		}
		c.descs[name] = prometheus.NewDesc(prom, help, labels, nil)
	}
	return c
}

// Describe sends the descriptions of the four metrics.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends the current values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, rm := range c.store.Collect() {
		wl := workloadValues(rm.Resource)
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				desc := c.descs[m.Name]
				if desc == nil {
					continue
				}
				keys := pointLabels[m.Name]
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					for _, p := range d.DataPoints {
						ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(p.Value), labelValues(wl, keys, p.Attributes)...)
					}
				case metricdata.Histogram[float64]:
					for _, p := range d.DataPoints {
						buckets := make(map[float64]uint64, len(p.Bounds))
						var cum uint64
						for i, b := range p.Bounds {
							cum += p.BucketCounts[i]
							buckets[b] = cum
						}
						ch <- prometheus.MustNewConstHistogram(desc, p.Count, p.Sum, buckets, labelValues(wl, keys, p.Attributes)...)
					}
				}
			}
		}
	}
}

func workloadValues(res *resource.Resource) []string {
	vals := make([]string, len(WorkloadLabels))
	if res == nil {
		return vals
	}
	set := res.Set()
	for i, k := range WorkloadLabels {
		if v, ok := set.Value(k); ok {
			vals[i] = v.Emit()
		}
	}
	return vals
}

func labelValues(workload []string, keys []attribute.Key, set attribute.Set) []string {
	vals := append(make([]string, 0, len(workload)+len(keys)), workload...)
	for _, k := range keys {
		v, ok := set.Value(k)
		switch {
		case !ok:
			vals = append(vals, "")
		case v.Type() == attribute.INT64:
			vals = append(vals, strconv.FormatInt(v.AsInt64(), 10))
		default:
			vals = append(vals, v.Emit())
		}
	}
	return vals
}
