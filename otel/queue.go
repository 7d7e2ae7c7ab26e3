package otel

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// batch is one export request's worth of records of one signal, encoded
// as the body of its ExportTraceServiceRequest/ExportLogsServiceRequest.
type batch struct {
	body    []byte // nil while it waits on disk only
	records int
	created time.Time // when its first record was added
	inMem   bool      // body counted in the memory budget
	done    bool      // delivered or given up on; removed once older ones are
	qbytes  int64     // encoded bytes it counts for in queue.bytes

	// In a queue directory: its file, sequence number and file size.
	path     string
	seq      uint64
	fileSize int64
}

// budget bounds the bytes of the queued batches of both signals.
type budget struct {
	limit int64
	used  atomic.Int64
}

func (b *budget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) give(n int64) { b.used.Add(-n) }

// queue is the FIFO of one signal's closed batches waiting for its
// sender. push never blocks: a batch that does not fit in the budget is
// refused.
type queue struct {
	budget *budget
	store  *store // nil: memory only
	log    interface {
		Warn(msg string, args ...any)
		Error(msg string, args ...any)
	}
	corrupt func(records int) // a batch file that failed its checks at load

	mu      sync.Mutex
	cond    *sync.Cond
	items   []*batch
	head    int // oldest batch not done
	next    int // oldest batch not taken by a sender (head <= next)
	undone  int // batches not done
	bytes   int64
	closed  bool
	changed chan struct{} // closed and replaced when the queue empties
}

func newQueue(b *budget, st *store) *queue {
	q := &queue{budget: b, store: st, changed: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push appends b, or reports false when the budget has no room for it or
// the queue is closed. With a store, b is written to its file first (and
// refused when the directory's budget has no room); its body stays in
// memory while the memory budget has room, else only on disk.
func (q *queue) push(b *batch) bool {
	n := int64(len(b.body))
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	if q.store != nil {
		ok, err := q.store.write(b)
		if err != nil {
			q.log.Error("export queue: writing a batch file failed; batch dropped", "dir", q.store.dir, "err", err)
		}
		if !ok {
			return false
		}
		if b.inMem = q.budget.take(n); !b.inMem {
			b.body = nil
		}
	} else if b.inMem = q.budget.take(n); !b.inMem {
		return false
	}
	b.qbytes = n
	q.items = append(q.items, b)
	q.bytes += n
	q.undone++
	q.cond.Signal()
	return true
}

// pushRecovered appends a batch an earlier run left in the queue
// directory; its body is read when it is sent.
func (q *queue) pushRecovered(b *batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, b)
	b.qbytes = b.fileSize - batchHeaderLen
	q.bytes += b.qbytes
	q.undone++
	q.cond.Signal()
}

// take waits for the oldest batch no sender has taken and returns it,
// its body loaded; false once the queue is closed and every batch taken.
// Batches are taken in order; several may be in flight at once. A batch
// file that fails its checks is set aside, counted and skipped.
func (q *queue) take() (*batch, bool) {
	for {
		q.mu.Lock()
		for q.next == len(q.items) && !q.closed {
			q.cond.Wait()
		}
		if q.next == len(q.items) {
			q.mu.Unlock()
			return nil, false
		}
		b := q.items[q.next]
		q.next++
		q.mu.Unlock()
		if b.body != nil {
			return b, true
		}
		err := q.store.load(b)
		if err == nil {
			return b, true
		}
		q.store.qd.setAside(b.path, err.Error())
		b.path = ""
		q.store.qd.budget.give(b.fileSize)
		if q.corrupt != nil {
			q.corrupt(b.records)
		}
		q.finish(b)
	}
}

// finish marks b (returned by take) delivered or given up on: its file is
// removed and its bytes given back at once; it leaves the queue once the
// batches before it have too.
func (q *queue) finish(b *batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if b.path != "" {
		q.store.remove(b)
	}
	q.bytes -= b.qbytes
	if b.inMem {
		q.budget.give(b.qbytes)
	}
	putBody(b.body)
	b.body, b.done = nil, true
	q.undone--
	for q.head < q.next && q.items[q.head].done {
		q.items[q.head] = nil
		q.head++
	}
	if q.head == len(q.items) {
		q.items, q.head, q.next = q.items[:0], 0, 0
		close(q.changed)
		q.changed = make(chan struct{})
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.next, q.head = q.items[:n], q.next-q.head, 0
	}
}

// close makes push refuse and take return false once every batch is
// taken.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// state returns the queued bytes and batches and when the oldest queued
// record was made (zero when empty).
func (q *queue) state() (bytes int64, batches int, oldest time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	// items[head] is never done: finish moves head past done batches.
	if q.head < len(q.items) {
		oldest = q.items[q.head].created
	}
	return q.bytes, q.undone, oldest
}

// waitEmpty waits until every batch is delivered or given up on, or ctx
// ends.
func (q *queue) waitEmpty(ctx context.Context) error {
	for {
		q.mu.Lock()
		empty, ch := q.head == len(q.items), q.changed
		q.mu.Unlock()
		if empty {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
