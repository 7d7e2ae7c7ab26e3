package otel

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Retry defaults: the first retry after DefaultRetryInitial, doubling
// up to DefaultRetryMax, with ±20 % jitter, for as long as the error is
// retryable (no limit on the total time unless Retry.MaxElapsedTime says
// so: the queue's bound decides how much can wait).
const (
	DefaultRetryInitial = time.Second
	DefaultRetryMax     = 5 * time.Second
	DefaultTimeout      = 10 * time.Second
	// DefaultMaxInFlight is how many export requests of one signal may
	// be under way at once: one waiting for its answer while the next
	// is sent keeps the connection busy.
	DefaultMaxInFlight = 2
)

// transport sends encoded export request bodies of one signal.
type transport interface {
	// send makes one export request with body as its encoded fields and
	// returns how many records the receiver rejected in a partial
	// success (err nil then).
	send(ctx context.Context, body []byte) (rejected int64, err error)
	// shutdown closes the connection.
	shutdown(ctx context.Context) error
}

// errPermanent marks an error no retry can cure.
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
func (e errPermanent) Unwrap() error { return e.err }

// retryable reports whether a failed export may succeed when tried again,
// and the delay the receiver asked for (gRPC RetryInfo), if any. It
// follows the OTLP specification's table of retryable gRPC codes:
// RESOURCE_EXHAUSTED only with RetryInfo.
func retryable(err error) (bool, time.Duration) {
	var p errPermanent
	if errors.As(err, &p) {
		return false, 0
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true, 0
	}
	s, ok := status.FromError(err)
	if !ok {
		return false, 0
	}
	var delay time.Duration
	var hasInfo bool
	for _, d := range s.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay, hasInfo = ri.GetRetryDelay().AsDuration(), true
		}
	}
	switch s.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss:
		return true, delay
	case codes.ResourceExhausted:
		return hasInfo, delay
	}
	return false, 0
}

// sender sends the batches of one signal's queue, oldest first, up to
// inFlight requests at once, retrying as Retry says.
type sender struct {
	sig *signal
	t   transport

	timeout           time.Duration
	retry             bool
	initial, maxDelay time.Duration
	maxElapsed        time.Duration
	inFlight          int             // requests at once
	ctx               context.Context // cancelled when Shutdown gives up
	cancel            context.CancelFunc
	done              chan struct{}
	keptOnce          sync.Once

	mu                sync.Mutex // the outage state below, shared by the workers
	failingSince      time.Time  // first failure of the current outage; zero when healthy
	backlogAtRecovery int64
	recoveredAt       time.Time
}

func newSender(s *signal, t transport, o *Options) *sender {
	ctx, cancel := context.WithCancel(context.Background())
	return &sender{
		sig: s, t: t,
		timeout:    orDefault(o.Timeout, DefaultTimeout),
		retry:      !o.Retry.Disabled,
		initial:    orDefault(o.Retry.InitialInterval, DefaultRetryInitial),
		maxDelay:   orDefault(o.Retry.MaxInterval, DefaultRetryMax),
		maxElapsed: o.Retry.MaxElapsedTime,
		inFlight:   orDefault(o.MaxInFlight, DefaultMaxInFlight),
		ctx:        ctx, cancel: cancel,
		done: make(chan struct{}),
	}
}

// run starts the sender's workers, each sending the oldest batch no other
// worker has taken; it returns at once. done is closed when all have
// returned.
func (s *sender) run() {
	var wg sync.WaitGroup
	for range s.inFlight {
		wg.Go(s.work)
	}
	go func() { wg.Wait(); close(s.done) }()
}

func (s *sender) work() {
	q := s.sig.q
	for {
		b, ok := q.take()
		if !ok {
			return
		}
		if !s.deliver(b) && q.store != nil {
			// Shutdown gave up: what is queued stays on disk for the
			// next run.
			s.keptOnce.Do(func() {
				_, batches, _ := q.state()
				s.sig.exp.log.Info("export queue: batches kept on disk for the next run", "signal", s.sig.name,
					"batches", batches, "dir", q.store.dir)
			})
			return
		}
		q.finish(b)
		s.drained()
	}
}

// deliver sends b until it is accepted, rejected for good, or given up
// on. It reports false when Shutdown ended it (b is then counted as
// failed unless a queue directory keeps it).
func (s *sender) deliver(b *batch) bool {
	sig, e := s.sig, s.sig.exp
	delay := s.initial
	first := time.Now()
	abandon := func() bool {
		if sig.q.store == nil {
			sig.failed.Add(uint64(b.records))
		}
		return false
	}
	for {
		if s.ctx.Err() != nil {
			return abandon()
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
		rejected, err := s.t.send(ctx, b.body)
		cancel()
		if err == nil {
			rejected = min(max(rejected, 0), int64(b.records))
			sig.exported.Add(uint64(int64(b.records) - rejected))
			if rejected > 0 {
				sig.failed.Add(uint64(rejected))
				e.log.Warn("collector rejected part of an export", "signal", sig.name, "rejected", rejected, "records", b.records)
			}
			e.exportDone(nil)
			s.recovered()
			return true
		}
		sig.exportErrors.Add(1)
		e.exportDone(err)
		if s.ctx.Err() != nil {
			return abandon()
		}
		again, asked := retryable(err)
		if !again || !s.retry || (s.maxElapsed > 0 && time.Since(first) >= s.maxElapsed) {
			sig.failed.Add(uint64(b.records))
			e.log.Error("export failed; records dropped", "signal", sig.name, "records", b.records,
				"retryable", again, "err", err)
			return true
		}
		s.failing(err)
		sig.retries.Add(1)
		wait := jitter(delay)
		if asked > wait {
			wait = asked
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
		delay = min(2*delay, s.maxDelay)
	}
}

// jitter spreads d by ±20 %.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// failing logs the start of an outage once.
func (s *sender) failing(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failingSince.IsZero() {
		return
	}
	s.failingSince = time.Now()
	s.recoveredAt = time.Time{}
	bytes, batches, _ := s.sig.q.state()
	s.sig.exp.log.Warn("export failing; retrying while the queue has room", "signal", s.sig.name,
		"err", err, "queued_batches", batches, "queued_bytes", bytes)
}

// recovered logs the end of an outage once.
func (s *sender) recovered() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failingSince.IsZero() {
		return
	}
	bytes, batches, _ := s.sig.q.state()
	s.sig.exp.log.Info("export recovered", "signal", s.sig.name, "failed_for", time.Since(s.failingSince).Round(time.Millisecond),
		"queued_batches", batches, "queued_bytes", bytes)
	s.failingSince = time.Time{}
	s.recoveredAt = time.Now()
	s.backlogAtRecovery = int64(batches)
}

// drained logs when the backlog left by an outage has been sent.
func (s *sender) drained() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recoveredAt.IsZero() {
		return
	}
	if _, batches, _ := s.sig.q.state(); batches > 0 {
		return
	}
	s.sig.exp.log.Info("export backlog drained", "signal", s.sig.name, "batches", s.backlogAtRecovery,
		"took", time.Since(s.recoveredAt).Round(time.Millisecond))
	s.recoveredAt = time.Time{}
}

// shutdown closes the queue, lets the sender drain it until ctx ends,
// then gives up on what is left (counted as failed) and closes the
// transport.
func (s *sender) shutdown(ctx context.Context) error {
	s.sig.q.close()
	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		<-s.done
	}
	s.cancel()
	// A transport's own shutdown gets a moment even when ctx is spent.
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return errors.Join(err, s.t.shutdown(sctx))
}
