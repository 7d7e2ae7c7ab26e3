package otel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/connwatch/connwatch/metrics"
)

// metricsTarget says where metrics go: MetricsEndpoint, else Endpoint.
func (o *Options) metricsTarget() signalTarget {
	return signalTarget{endpoint: cmp.Or(o.MetricsEndpoint, o.Endpoint)}
}

// MetricsStats are the counters of the OTLP metrics export.
type MetricsStats struct {
	Exports      uint64 // workload batches of metrics accepted by the collector
	ExportErrors uint64 // workload batches that failed (the next export carries their values: they are cumulative)
}

// metricsExport sends the Store's metrics every interval through
// otlpmetricgrpc, one request per workload (each under its own resource).
// The values are cumulative, so a failed export loses nothing the next
// one does not carry.
type metricsExport struct {
	store    *metrics.Store
	exp      *otlpmetricgrpc.Exporter
	client   *grpcClient
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	stop     chan struct{}
	done     chan struct{}

	exports, errors     atomic.Uint64
	lastErrLog          time.Time
	unimplementedLogged bool
}

// newMetricsExport makes the metrics exporter of o (o.Metrics set and a
// metrics endpoint). It shares nothing with the trace and log clients but
// their settings; nothing in it reads the environment: every setting that
// otlpmetricgrpc would take from OTEL_EXPORTER_OTLP_METRICS_* is given.
func newMetricsExport(ctx context.Context, o *Options, log *slog.Logger) (*metricsExport, error) {
	t := o.metricsTarget()
	s, err := o.exporterSettings(t)
	if err != nil {
		return nil, err
	}
	// otlpmetricgrpc applies compression as a dial option, which a
	// connection of one's own does not take: the connection does.
	var extra []grpc.DialOption
	if s.gzip {
		extra = append(extra, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)))
	}
	c, err := newGRPCClient(o, t, extra...)
	if err != nil {
		return nil, err
	}
	headers := map[string]string{}
	for k, v := range s.headers {
		headers[k] = v
	}
	timeout := cmp.Or(s.timeout, 10*time.Second)
	interval := cmp.Or(o.MetricsInterval, metrics.DefaultInterval)
	retry := otlpmetricgrpc.RetryConfig{Enabled: true, InitialInterval: time.Second, MaxInterval: 5 * time.Second,
		MaxElapsedTime: min(interval/2, 30*time.Second)}
	if o.Retry.Disabled {
		retry.Enabled = false
	}
	exp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithGRPCConn(c.conn), otlpmetricgrpc.WithHeaders(headers),
		otlpmetricgrpc.WithTimeout(timeout), otlpmetricgrpc.WithRetry(retry))
	if err != nil {
		_ = c.shutdown(ctx)
		return nil, fmt.Errorf("creating the OTLP metrics exporter: %w", err)
	}
	return &metricsExport{store: o.Metrics, exp: exp, client: c, interval: interval, timeout: timeout, log: log,
		stop: make(chan struct{}), done: make(chan struct{})}, nil
}

func (m *metricsExport) run() {
	defer close(m.done)
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), m.interval)
			m.export(ctx)
			cancel()
		}
	}
}

// export sends every workload's metrics, within ctx.
func (m *metricsExport) export(ctx context.Context) error {
	var errs []error
	for _, rm := range m.store.Collect() {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			m.errors.Add(1)
			continue
		}
		if err := m.exp.Export(ctx, &rm); err != nil {
			errs = append(errs, err)
			m.errors.Add(1)
			continue
		}
		m.exports.Add(1)
	}
	err := errors.Join(errs...)
	if err != nil && status.Code(errs[0]) == codes.Unimplemented && !m.unimplementedLogged {
		m.unimplementedLogged = true
		m.log.Warn("the collector does not take OTLP metrics (Unimplemented: a traces-only backend such as Jaeger, or no metrics pipeline); "+
			"set export.metrics: false or export.otlp.metrics_endpoint", "err", errs[0])
		m.lastErrLog = time.Now()
	}
	if err != nil && time.Since(m.lastErrLog) > time.Minute {
		m.lastErrLog = time.Now()
		m.log.Warn("exporting metrics failed (the next export carries the same cumulative values)",
			"failed_workloads", len(errs), "err", errs[0])
	}
	return err
}

// stopMetrics sends the last metrics and closes the exporter, within ctx.
func (e *Exporter) stopMetrics(ctx context.Context) {
	m := e.metExp
	if m == nil {
		return
	}
	close(m.stop)
	<-m.done
	_ = m.export(ctx)
	_ = m.exp.Shutdown(ctx)
	_ = m.client.shutdown(ctx)
}

// MetricsStats returns the counters of the OTLP metrics export (zero
// without one).
func (e *Exporter) MetricsStats() MetricsStats {
	if e.metExp == nil {
		return MetricsStats{}
	}
	return MetricsStats{Exports: e.metExp.exports.Load(), ExportErrors: e.metExp.errors.Load()}
}

// SampledOut is how many records (log records and spans) sampling left
// out.
func (e *Exporter) SampledOut() uint64 { return e.sampledOut.Load() }
