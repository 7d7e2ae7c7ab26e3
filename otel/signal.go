package otel

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Signal indexes into workload.pend and lineOut.pending.
const (
	sigTraces = 0
	sigLogs   = 1
)

// pending are a workload's records in the open batch of one signal: a
// list through the signal's recRefs.
type pending struct {
	first, last int32 // indexes into signal.refs
	size        int   // bytes of the workload's records
	queued      bool  // in the signal's open batch
}

// recRef is one encoded record (a field of ScopeSpans/ScopeLogs) in a
// signal's arena, and the next record of the same workload (-1: none).
type recRef struct {
	off, n, next int32
}

// maxKeptArena bounds the arena a signal keeps between batches.
const maxKeptArena = 2 * maxBatchBytes

// signal is the state of one signal: its open batch and queue, or the
// JSON lines it is written as.
type signal struct {
	name string // "traces" or "logs"
	idx  int
	exp  *Exporter

	stdout *lineOut // non-nil: written as JSON lines

	// Open batch, under exp.mu: the records, encoded one after another
	// in arena whatever their workload, and the workloads that have some.
	arena      []byte
	refs       []recRef
	open       []*workload
	records    int
	opened     time.Time
	maxRecords int

	q   *queue
	snd *sender

	emitted, exported, failed, queueFull atomic.Uint64
	exportErrors, retries, recovered     atomic.Uint64
	lastDropLog, lastDrop                atomic.Int64 // Unix ns
}

// added accounts for the record just appended to the arena at off, of
// workload w. exp.mu is held.
func (s *signal) added(w *workload, off int) {
	s.emitted.Add(1)
	n := len(s.arena) - off
	idx := int32(len(s.refs))
	s.refs = append(s.refs, recRef{off: int32(off), n: int32(n), next: -1})
	p := &w.pend[s.idx]
	if !p.queued {
		p.queued, p.first, p.size = true, idx, 0
		s.open = append(s.open, w)
		if s.records == 0 {
			s.opened = time.Now()
		}
	} else {
		s.refs[p.last].next = idx
	}
	p.last = idx
	p.size += n
	s.records++
	if s.records >= s.maxRecords || len(s.arena) >= maxBatchBytes {
		s.closeBatch()
	}
}

// maxBatchBytes closes a batch before its request nears gRPC's default
// 4 MiB message limit of receivers.
const maxBatchBytes = 2 << 20

// closeBatch encodes the open batch as an export request body, the
// records grouped by workload, and queues it. exp.mu is held.
func (s *signal) closeBatch() {
	if s.records == 0 {
		return
	}
	e := s.exp
	scope := scopeBytes
	size := 0
	for _, w := range s.open {
		size += sizeResourceEntry(w.resPB, scope, w.pend[s.idx].size, semconv.SchemaURL)
	}
	body := getBody(size)
	for _, w := range s.open {
		p := &w.pend[s.idx]
		body = appendResourceHeader(body, w.resPB, scope, p.size, semconv.SchemaURL)
		for i := p.first; i >= 0; i = s.refs[i].next {
			r := s.refs[i]
			body = append(body, s.arena[r.off:r.off+r.n]...)
		}
		body = appendResourceTrailer(body, semconv.SchemaURL)
		p.queued = false
	}
	clear(s.open)
	b := &batch{body: body, records: s.records, created: s.opened}
	s.open, s.records, s.refs = s.open[:0], 0, s.refs[:0]
	if cap(s.arena) > maxKeptArena {
		s.arena = nil
	} else {
		s.arena = s.arena[:0]
	}
	if !s.q.push(b) {
		// Not emitted after all: emitted + queue-full = records offered.
		s.emitted.Add(^uint64(b.records - 1))
		s.queueFull.Add(uint64(b.records))
		s.lastDrop.Store(time.Now().UnixNano())
		s.logDrop(e, b.records)
		putBody(b.body)
	}
}

// bodyPool recycles the buffers of sent batches.
var bodyPool sync.Pool

func getBody(size int) []byte {
	if bp, ok := bodyPool.Get().(*[]byte); ok && cap(*bp) >= size {
		return (*bp)[:0]
	}
	return make([]byte, 0, size)
}

func putBody(b []byte) {
	if cap(b) == 0 || cap(b) > 2*maxBatchBytes {
		return
	}
	b = b[:0]
	bodyPool.Put(&b)
}

// logDrop says that records were dropped, at most once a second.
func (s *signal) logDrop(e *Exporter, n int) {
	now := time.Now().UnixNano()
	last := s.lastDropLog.Load()
	if now-last < int64(time.Second) || !s.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	e.log.Warn("export queue full: records dropped", "signal", s.name, "records", n,
		"dropped_total", s.queueFull.Load(), "queue_bytes", e.budget.used.Load(), "queue_limit_bytes", e.budget.limit)
}

// wrote accounts for a JSON line appended to the stdout buffer. exp.mu is
// held.
func (s *signal) wrote(e *Exporter) {
	s.emitted.Add(1)
	lo := s.stdout
	lo.pending[s.idx]++
	if len(lo.buf) >= lineOutFlushSize {
		lo.flush(e)
	}
}

var scopeBytes = encodeScope()

// lineOut buffers the JSON lines of the signals written to standard
// output; a write of the buffer counts its lines as exported or failed.
type lineOut struct {
	w       io.Writer
	buf     []byte
	pending [2]uint64 // lines in buf, per signal
	err     error     // first write error
}

const lineOutFlushSize = 64 << 10

func newLineOut(w io.Writer) *lineOut {
	return &lineOut{w: w, buf: make([]byte, 0, 2*lineOutFlushSize)}
}

// flush writes the buffer. exp.mu is held.
func (lo *lineOut) flush(e *Exporter) {
	if len(lo.buf) == 0 {
		return
	}
	_, err := lo.w.Write(lo.buf)
	lo.buf = lo.buf[:0]
	for _, s := range e.signals() {
		n := lo.pending[s.idx]
		if s.stdout != lo || n == 0 {
			continue
		}
		lo.pending[s.idx] = 0
		if err != nil {
			s.failed.Add(n)
			s.exportErrors.Add(1)
		} else {
			s.exported.Add(n)
		}
	}
	e.exportDone(err)
	if err != nil && lo.err == nil {
		lo.err = fmt.Errorf("writing to standard output: %w", err)
		e.log.Error("standard output failed; records are counted as failed", "err", err)
	}
}
