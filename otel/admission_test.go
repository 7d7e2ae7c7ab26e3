package otel

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// With the backend down, Emit keeps returning at once, no more than the
// queue's byte budget is held, and every record that does not fit is
// dropped and counted, so that emitted + queue-full = offered; once the
// backend is back, every admitted record arrives and none is failed.
func TestEmitDropsAndCountsWhenBackendDown(t *testing.T) {
	// Room for a few batches of each signal (of 16 records of 4
	// workloads, about 12 KiB each), far from the 1000 records offered.
	const queueBytes = 64 << 10
	o := testOptions()
	o.QueueBytes = queueBytes
	o.MaxExportBatchSize = 16
	o.BatchTimeout = 10 * time.Millisecond
	o.Retry = Retry{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}
	e, tt, lt := newTestExporter(t, o)
	down := grpcError(t, codes.Unavailable, -1)
	tt.fail(down)
	lt.fail(down)

	const n = 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			e.Emit(workloadEvent(i % 4))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Emit blocked while the backend is down")
	}
	tt.waitCalls(t, 2) // the senders are retrying
	lt.waitCalls(t, 2)

	st := e.Stats()
	if st.SpansQueueFull == 0 || st.LogsQueueFull == 0 {
		t.Errorf("nothing dropped with a %d-byte queue: %+v", queueBytes, st)
	}
	if st.SpansEmitted+st.SpansQueueFull != n || st.LogsEmitted+st.LogsQueueFull != n {
		t.Errorf("spans emitted %d + queue-full %d, logs %d + %d: want %d each",
			st.SpansEmitted, st.SpansQueueFull, st.LogsEmitted, st.LogsQueueFull, n)
	}
	if used := st.Traces.Bytes + st.Logs.Bytes; used > queueBytes || used == 0 {
		t.Errorf("%d bytes queued, limit %d", used, queueBytes)
	}
	if st.Traces.Limit != queueBytes || st.Logs.Limit != queueBytes {
		t.Errorf("limits %d %d", st.Traces.Limit, st.Logs.Limit)
	}
	if st.Traces.Batches == 0 || st.Traces.Oldest.IsZero() || st.Traces.Retries == 0 {
		t.Errorf("traces queue %+v", st.Traces)
	}
	if st.FailingSince.IsZero() {
		t.Error("FailingSince not set while exports fail")
	}
	if st.SpansExported != 0 || st.SpansFailed != 0 || st.LogsFailed != 0 {
		t.Errorf("exported or failed while retrying: %+v", st)
	}

	tt.fail(nil)
	lt.fail(nil)
	flush(t, e)
	shutdown(t, e)
	st = e.Stats()
	if st.SpansExported != st.SpansEmitted || st.LogsExported != st.LogsEmitted || st.SpansFailed != 0 || st.LogsFailed != 0 {
		t.Errorf("after recovery: spans %d exported, %d failed of %d emitted; logs %d, %d of %d",
			st.SpansExported, st.SpansFailed, st.SpansEmitted, st.LogsExported, st.LogsFailed, st.LogsEmitted)
	}
	if got := uint64(len(tt.Spans())); got != st.SpansEmitted {
		t.Errorf("%d spans delivered, %d emitted", got, st.SpansEmitted)
	}
	if got := uint64(len(lt.Logs())); got != st.LogsEmitted {
		t.Errorf("%d records delivered, %d emitted", got, st.LogsEmitted)
	}
	if st.Traces.Bytes != 0 || st.Logs.Bytes != 0 || !st.FailingSince.IsZero() {
		t.Errorf("after recovery: %+v", st)
	}
}

// A batch larger than the whole budget is refused, not queued forever,
// and the queue takes batches again once there is room.
func TestQueueBudget(t *testing.T) {
	b := &budget{limit: 100}
	q := newQueue(b, nil)
	if !q.push(&batch{body: make([]byte, 60), records: 1}) {
		t.Fatal("first batch refused")
	}
	if q.push(&batch{body: make([]byte, 50), records: 1}) {
		t.Error("batch beyond the budget queued")
	}
	if q.push(&batch{body: make([]byte, 101), records: 1}) {
		t.Error("batch larger than the budget queued")
	}
	if !q.push(&batch{body: make([]byte, 40), records: 1}) {
		t.Error("batch that fits refused")
	}
	if bytes, batches, _ := q.state(); bytes != 100 || batches != 2 || b.used.Load() != 100 {
		t.Errorf("state %d bytes, %d batches, budget %d", bytes, batches, b.used.Load())
	}
	got, ok := q.take()
	if !ok || len(got.body) != 60 {
		t.Fatalf("take %v %v", got, ok)
	}
	q.finish(got)
	if b.used.Load() != 40 || !q.push(&batch{body: make([]byte, 50), records: 1}) {
		t.Errorf("room not given back: %d used", b.used.Load())
	}
	q.close()
	if q.push(&batch{body: make([]byte, 1), records: 1}) {
		t.Error("closed queue took a batch")
	}
	// Two in flight at once, finished out of order.
	first, ok1 := q.take()
	second, ok2 := q.take()
	if !ok1 || !ok2 || len(first.body) != 40 || len(second.body) != 50 {
		t.Fatal("closed queue lost its batches, or gave them out of order")
	}
	q.finish(second)
	if _, batches, oldest := q.state(); batches != 1 || !oldest.Equal(first.created) {
		t.Errorf("after the newer one finished: %d batches", batches)
	}
	q.finish(first)
	if _, ok := q.take(); ok {
		t.Error("take on a closed, empty queue")
	}
	if b.used.Load() != 0 {
		t.Errorf("%d bytes still taken", b.used.Load())
	}
}
