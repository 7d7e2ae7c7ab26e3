package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/connwatch/connwatch/metrics"
)

// Metrics is the metrics section: the per-workload connection metrics
// (sent over OTLP when export.metrics is on and an endpoint applies, and
// served on telemetry.listen's /metrics).
type Metrics struct {
	// Peer is the peer attributes of a series (metrics.ParsePeerMode):
	// address (the peer's address and the server port), port, or none.
	Peer metrics.PeerMode
	// MaxSeries bounds the series of one workload; beyond it a new
	// series is folded into the workload's overflow series.
	MaxSeries int
	// Expiry removes series not updated for that long.
	Expiry time.Duration
	// Interval is how often metrics are sent over OTLP.
	// Environment: OTEL_METRIC_EXPORT_INTERVAL (milliseconds).
	Interval time.Duration
}

// Sampling is the export.sampling section.
type Sampling struct {
	// Ratio (0 to 1) of successful connections whose spans and log
	// records are sent, decided on the trace ID; failed connections are
	// always sent and metrics count everything.
	Ratio float64
}

// Bounds of metrics.max_series.
const (
	minMaxSeries = 1
	maxMaxSeries = 1 << 20
)

func defaultMetrics() Metrics {
	return Metrics{Peer: metrics.PeerAddress, MaxSeries: metrics.DefaultMaxSeries,
		Expiry: metrics.DefaultExpiry, Interval: metrics.DefaultInterval}
}

var metricsSchema = newSection(
	nameField("peer", metrics.ParsePeerMode, func(m *Metrics) *metrics.PeerMode { return &m.Peer }),
	intField("max_series", "a whole number", checkMaxSeries, func(m *Metrics) *int { return &m.MaxSeries }),
	durationField("expiry", func(m *Metrics) *time.Duration { return &m.Expiry }),
	durationField("interval", func(m *Metrics) *time.Duration { return &m.Interval }),
)

var samplingSchema = newSection(
	field[Sampling]{"ratio", (*parser).ratio, func(s *Sampling) *yaml.Node { return ratioNode(s.Ratio) }},
)

func checkMaxSeries(text string) string { return checkCount(text, minMaxSeries, maxMaxSeries) }

// checkRatio checks a sampling ratio as written in text.
func checkRatio(text string) string {
	r, err := strconv.ParseFloat(text, 64)
	if err != nil || r < 0 || r > 1 || r != r {
		return fmt.Sprintf("%s is not a ratio from 0 to 1", text)
	}
	return ""
}

// ratio stores a sampling ratio: a number from 0 to 1.
func (p *parser) ratio(n *yaml.Node, where string, s *Sampling) {
	v := deref(n)
	if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!float" && v.ShortTag() != "!!int") {
		p.errorf(n, "%s: expected a number from 0 to 1, got %s", where, describe(v))
		return
	}
	if msg := checkRatio(v.Value); msg != "" {
		p.errorf(n, "%s: %s", where, msg)
		return
	}
	s.Ratio, _ = strconv.ParseFloat(v.Value, 64)
}

// ratioNode prints a ratio as a float ("1.0", not "1").
func ratioNode(r float64) *yaml.Node {
	s := strconv.FormatFloat(r, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: s}
}
