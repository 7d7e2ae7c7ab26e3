package otlptest

import (
	"context"
	"slices"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
)

type metricsService struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *Receiver
}

func (s metricsService) Export(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	if err := s.r.admit(ctx); err != nil {
		return nil, err
	}
	s.r.record(ctx, func() { s.r.metReqs = append(s.r.metReqs, req) })
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// MetricRequests returns the recorded metrics export requests in arrival
// order. The requests must not be modified.
func (r *Receiver) MetricRequests() []*colmetricspb.ExportMetricsServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.metReqs)
}

// Point is one data point of a sum or histogram metric as received.
type Point struct {
	Metric   string
	Unit     string
	Resource map[string]any
	Attrs    map[string]any
	Value    int64  // sums
	Count    uint64 // histograms
	Sum      float64
	Buckets  []uint64
	Start    time.Time
	Time     time.Time
}

// Points returns the data points of every recorded request, in arrival
// order.
func (r *Receiver) Points() []Point {
	var out []Point
	for _, req := range r.MetricRequests() {
		for _, rm := range req.GetResourceMetrics() {
			res := Attrs(rm.GetResource().GetAttributes())
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					for _, p := range m.GetSum().GetDataPoints() {
						out = append(out, Point{Metric: m.GetName(), Unit: m.GetUnit(), Resource: res, Attrs: Attrs(p.GetAttributes()),
							Value: p.GetAsInt(), Start: time.Unix(0, int64(p.GetStartTimeUnixNano())), Time: time.Unix(0, int64(p.GetTimeUnixNano()))})
					}
					for _, p := range m.GetHistogram().GetDataPoints() {
						out = append(out, Point{Metric: m.GetName(), Unit: m.GetUnit(), Resource: res, Attrs: Attrs(p.GetAttributes()),
							Count: p.GetCount(), Sum: p.GetSum(), Buckets: p.GetBucketCounts(),
							Start: time.Unix(0, int64(p.GetStartTimeUnixNano())), Time: time.Unix(0, int64(p.GetTimeUnixNano()))})
					}
				}
			}
		}
	}
	return out
}
