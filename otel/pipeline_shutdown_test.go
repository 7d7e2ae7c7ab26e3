package otel

// The Exporter's Shutdown: it flushes what is queued, returns within its
// bound when the collector hangs, and may run while events are emitted.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestShutdownFlushes(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour // only Shutdown can export
	o.MaxExportBatchSize = 2048
	e, tt, lt := newTestExporter(t, o)
	const n = 1000
	for i := range n {
		e.Emit(workloadEvent(i % 50))
	}
	if tt.Calls() != 0 || lt.Calls() != 0 {
		t.Fatal("exported before Shutdown")
	}
	shutdown(t, e)
	if len(tt.Spans()) != n || len(lt.Logs()) != n {
		t.Errorf("%d spans, %d records exported, want %d", len(tt.Spans()), len(lt.Logs()), n)
	}
	if st := e.Stats(); st.SpansExported != n || st.LogsExported != n || st.Traces.Batches != 0 || st.Traces.Bytes != 0 {
		t.Errorf("stats %+v", st)
	}

	e.Emit(resultEvent(0))
	if st := e.Stats(); st.Dropped != 1 || st.SpansEmitted != n || st.Events != n+1 {
		t.Errorf("after Shutdown: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestShutdownBounded: with a transport that never answers, Shutdown
// returns when its context ends (or after Options.ShutdownTimeout) with
// the deadline error, and the records it gave up on count as failed.
func TestShutdownBounded(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = 10 * time.Millisecond
	e, tt, lt := newTestExporter(t, o)
	release := tt.holdCalls()
	defer release()
	lt.holdCalls()
	for i := range 100 {
		e.Emit(workloadEvent(i))
	}
	tt.waitStarted(t, 1) // an export is stuck
	lt.waitStarted(t, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := e.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
	st := e.Stats()
	if st.SpansEmitted != 100 || st.SpansFailed != 100 || st.SpansExported != 0 ||
		st.LogsEmitted != 100 || st.LogsFailed != 100 || st.LogsExported != 0 {
		t.Errorf("stats %+v", st)
	}
	if !tt.IsShutdown() || !lt.IsShutdown() {
		t.Error("transports not closed")
	}

	// Without a deadline, Options.ShutdownTimeout bounds it.
	o.ShutdownTimeout = 200 * time.Millisecond
	e, tt, _ = newTestExporter(t, o)
	tt.holdCalls()
	e.Emit(resultEvent(0))
	tt.waitStarted(t, 1)
	if err := e.Shutdown(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline error", err)
	}
	if st := e.Stats(); st.SpansFailed != 1 || st.LogsExported != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestEmitConcurrentWithShutdownAndStats(t *testing.T) {
	e, _, _ := newTestExporter(t, testOptions())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				e.Emit(workloadEvent(g*1000 + i%20))
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = e.Stats()
		}
	})
	waitFor(t, "the first events", func() bool { return e.Stats().Events > 0 })
	shutdown(t, e)
	wg.Wait()
	st := e.Stats()
	if st.Events != 800 || st.SpansEmitted+st.SpansQueueFull+st.Dropped != 800 ||
		st.LogsEmitted+st.LogsQueueFull+st.Dropped != 800 {
		t.Errorf("stats %+v", st)
	}
	// Nothing emitted is left unaccounted for after Shutdown.
	if st.SpansExported+st.SpansFailed != st.SpansEmitted || st.LogsExported+st.LogsFailed != st.LogsEmitted {
		t.Errorf("after Shutdown: spans %d exported + %d failed != %d emitted; logs %d + %d != %d",
			st.SpansExported, st.SpansFailed, st.SpansEmitted, st.LogsExported, st.LogsFailed, st.LogsEmitted)
	}
}
