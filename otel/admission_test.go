package otel

import (
	"context"
	"errors"
	"testing"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// blockingExporters hang in Export until released, as an exporter retrying
// against a collector that is down does.
type blockingSpanExporter struct{ release chan struct{} }

func (e blockingSpanExporter) ExportSpans(ctx context.Context, _ []sdktrace.ReadOnlySpan) error {
	select {
	case <-e.release:
		return errors.New("collector unavailable")
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (blockingSpanExporter) Shutdown(context.Context) error { return nil }

type blockingLogExporter struct{ release chan struct{} }

func (e blockingLogExporter) Export(ctx context.Context, _ []sdklog.Record) error {
	select {
	case <-e.release:
		return errors.New("collector unavailable")
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (blockingLogExporter) Shutdown(context.Context) error   { return nil }
func (blockingLogExporter) ForceFlush(context.Context) error { return nil }

// With the backend stuck, Emit keeps returning at once, no more than a
// queue's worth of records is held, and every refused record is counted, so
// that offered = exported + failed + queue-full + in flight.
func TestEmitDropsAndCountsWhenBackendStuck(t *testing.T) {
	release := make(chan struct{})
	opts := testOptions()
	opts.MaxQueueSize = 64
	opts.MaxExportBatchSize = 16
	opts.BatchTimeout = 10 * time.Millisecond
	p, err := NewWithExporters(blockingSpanExporter{release}, blockingLogExporter{release}, opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	start := time.Now()
	for range n {
		p.Emit(resultEvent(-111))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Emit blocked: %d events took %v", n, d)
	}
	st := p.Stats()
	if st.SpansEmitted > 64 || st.LogsEmitted > 64 {
		t.Errorf("emitted %d spans %d logs while the backend is stuck, want at most the queue size 64", st.SpansEmitted, st.LogsEmitted)
	}
	if st.SpansEmitted+st.SpansQueueFull != n || st.LogsEmitted+st.LogsQueueFull != n {
		t.Errorf("spans emitted %d + queue-full %d, logs %d + %d: want %d each", st.SpansEmitted, st.SpansQueueFull, st.LogsEmitted, st.LogsQueueFull, n)
	}

	close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.Shutdown(ctx)
	st = p.Stats()
	if st.SpansExported+st.SpansFailed != st.SpansEmitted || st.LogsExported+st.LogsFailed != st.LogsEmitted {
		t.Errorf("after shutdown: spans %d exported + %d failed != %d emitted; logs %d + %d != %d",
			st.SpansExported, st.SpansFailed, st.SpansEmitted, st.LogsExported, st.LogsFailed, st.LogsEmitted)
	}
	if st.FailingSince.IsZero() {
		t.Error("FailingSince not set after failed exports")
	}
}
