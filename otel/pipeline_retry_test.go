package otel

// Failed exports: which errors are retried and how, how long for, and how
// failures and partial successes are counted.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

func TestExportFailuresCounted(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour // one batch per signal
	e, tt, lt := newTestExporter(t, o)
	tt.fail(errExport)
	lt.fail(errExport)
	for range 3 {
		e.Emit(resultEvent(0))
	}
	flush(t, e)
	st := e.Stats()
	// Not a gRPC status: not retryable, one attempt.
	if st.SpanExportErrors != 1 || st.SpansFailed != 3 || st.LogExportErrors != 1 || st.LogsFailed != 3 ||
		st.SpansExported != 0 || st.LogsExported != 0 || st.Traces.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
	if tt.Calls() != 1 || lt.Calls() != 1 {
		t.Errorf("%d, %d calls, want 1 each", tt.Calls(), lt.Calls())
	}
	if st.FailingSince.IsZero() {
		t.Error("FailingSince not set")
	}

	// Healthy again once the transport is.
	tt.fail(nil)
	lt.fail(nil)
	e.Emit(acceptEvent())
	flush(t, e)
	st = e.Stats()
	if st.SpansExported != 1 || st.LogsExported != 1 || !st.FailingSince.IsZero() || st.LastExportOK.IsZero() {
		t.Errorf("after recovery: %+v", st)
	}
	if s := tt.Spans(); len(s) != 1 || s[0].Name != "tcp accept" {
		t.Errorf("spans after recovery: %v", s)
	}
}

func TestRetryable(t *testing.T) {
	noInfo := time.Duration(-1)
	for _, tt := range []struct {
		code  codes.Code
		delay time.Duration // RetryInfo; -1: none
		want  bool
	}{
		{codes.Canceled, noInfo, true},
		{codes.DeadlineExceeded, noInfo, true},
		{codes.Aborted, noInfo, true},
		{codes.OutOfRange, noInfo, true},
		{codes.Unavailable, noInfo, true},
		{codes.DataLoss, noInfo, true},
		{codes.Unavailable, 3 * time.Second, true},
		{codes.ResourceExhausted, noInfo, false},
		{codes.ResourceExhausted, 2 * time.Second, true},
		{codes.Unknown, noInfo, false},
		{codes.InvalidArgument, noInfo, false},
		{codes.InvalidArgument, time.Second, false},
		{codes.NotFound, noInfo, false},
		{codes.AlreadyExists, noInfo, false},
		{codes.PermissionDenied, noInfo, false},
		{codes.FailedPrecondition, noInfo, false},
		{codes.Unimplemented, noInfo, false},
		{codes.Internal, noInfo, false},
		{codes.Unauthenticated, noInfo, false},
	} {
		got, delay := retryable(grpcError(t, tt.code, tt.delay))
		if got != tt.want {
			t.Errorf("%v (retry info %v): retryable %v, want %v", tt.code, tt.delay, got, tt.want)
		}
		if want := max(tt.delay, 0); got && delay != want {
			t.Errorf("%v: delay %v, want %v", tt.code, delay, want)
		}
	}
	// A status wrapped by the exporter client is still a status.
	if ok, d := retryable(fmt.Errorf("traces export: %w", grpcError(t, codes.ResourceExhausted, time.Second))); !ok || d != time.Second {
		t.Errorf("wrapped: %v %v", ok, d)
	}
	for _, err := range []error{context.DeadlineExceeded, context.Canceled, fmt.Errorf("x: %w", context.DeadlineExceeded)} {
		if ok, _ := retryable(err); !ok {
			t.Errorf("%v: not retryable", err)
		}
	}
	for _, err := range []error{errExport, errPermanent{grpcError(t, codes.Unavailable, noInfo)}} {
		if ok, _ := retryable(err); ok {
			t.Errorf("%v: retryable", err)
		}
	}
}

// fastRetry makes retries quick enough for tests.
func fastRetry(o *Options) {
	o.Retry = Retry{InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}
	o.BatchTimeout = time.Hour // batches close at Flush
}

func TestRetryUntilAccepted(t *testing.T) {
	o := testOptions()
	fastRetry(&o)
	e, tt, lt := newTestExporter(t, o)
	tt.failNext(3, grpcError(t, codes.Unavailable, -1))
	lt.failNext(2, grpcError(t, codes.Aborted, -1))
	e.Emit(resultEvent(0))
	flush(t, e)
	st := e.Stats()
	if tt.Calls() != 4 || lt.Calls() != 3 {
		t.Errorf("%d trace calls, %d log calls; want 4, 3", tt.Calls(), lt.Calls())
	}
	if st.SpansExported != 1 || st.SpansFailed != 0 || st.SpanExportErrors != 3 || st.Traces.Retries != 3 ||
		st.LogsExported != 1 || st.LogsFailed != 0 || st.LogExportErrors != 2 || st.Logs.Retries != 2 {
		t.Errorf("stats %+v", st)
	}
	if len(tt.Spans()) != 1 || len(lt.Logs()) != 1 {
		t.Errorf("%d spans, %d records delivered", len(tt.Spans()), len(lt.Logs()))
	}
	if !st.FailingSince.IsZero() || st.LastExportOK.IsZero() {
		t.Errorf("after recovery: failing since %v, last ok %v", st.FailingSince, st.LastExportOK)
	}
}

func TestResourceExhausted(t *testing.T) {
	o := testOptions()
	fastRetry(&o)
	e, tt, _ := newTestExporter(t, o)

	// Without RetryInfo: not retried.
	tt.failNext(1, grpcError(t, codes.ResourceExhausted, -1))
	e.Emit(resultEvent(0))
	flush(t, e)
	if st := e.Stats(); tt.Calls() != 1 || st.SpansFailed != 1 || st.SpansExported != 0 || st.SpanExportErrors != 1 ||
		st.Traces.Retries != 0 {
		t.Errorf("without RetryInfo: %d calls, stats %+v", tt.Calls(), st)
	}

	// With RetryInfo: retried, after the delay asked for at the least.
	const delay = 100 * time.Millisecond
	tt.failNext(2, grpcError(t, codes.ResourceExhausted, delay))
	e.Emit(resultEvent(0))
	flush(t, e)
	st := e.Stats()
	if tt.Calls() != 4 || st.SpansFailed != 1 || st.SpansExported != 1 || st.SpanExportErrors != 3 || st.Traces.Retries != 2 {
		t.Errorf("with RetryInfo: %d calls, stats %+v", tt.Calls(), st)
	}
	times := tt.CallTimes()
	for i := 2; i < len(times); i++ {
		// A lower bound only: the retry cannot come before the delay.
		if gap := times[i].Sub(times[i-1]); gap < delay {
			t.Errorf("retry %d came %v after the failure, RetryInfo asked for %v", i-1, gap, delay)
		}
	}
	if len(tt.Spans()) != 1 {
		t.Errorf("%d spans delivered", len(tt.Spans()))
	}
}

func TestPermanentErrorNotRetried(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Internal} {
		t.Run(code.String(), func(t *testing.T) {
			o := testOptions()
			fastRetry(&o)
			e, tt, lt := newTestExporter(t, o)
			tt.fail(grpcError(t, code, -1))
			lt.fail(grpcError(t, code, time.Millisecond)) // RetryInfo does not make it retryable
			e.Emit(resultEvent(0))
			e.Emit(acceptEvent())
			flush(t, e)
			st := e.Stats()
			if tt.Calls() != 1 || lt.Calls() != 1 || st.SpansFailed != 2 || st.LogsFailed != 2 ||
				st.SpanExportErrors != 1 || st.LogExportErrors != 1 || st.SpansExported != 0 {
				t.Errorf("%d, %d calls; stats %+v", tt.Calls(), lt.Calls(), st)
			}
		})
	}
}

func TestRetryDisabled(t *testing.T) {
	o := testOptions()
	fastRetry(&o)
	o.Retry.Disabled = true
	e, tt, _ := newTestExporter(t, o)
	tt.fail(grpcError(t, codes.Unavailable, -1))
	e.Emit(resultEvent(0))
	flush(t, e)
	if st := e.Stats(); tt.Calls() != 1 || st.SpansFailed != 1 || st.SpanExportErrors != 1 || st.Traces.Retries != 0 {
		t.Errorf("%d calls, stats %+v", tt.Calls(), st)
	}
}

func TestRetryMaxElapsedTime(t *testing.T) {
	o := testOptions()
	fastRetry(&o)
	o.Retry.MaxElapsedTime = 50 * time.Millisecond
	e, tt, _ := newTestExporter(t, o)
	tt.fail(grpcError(t, codes.Unavailable, -1))
	e.Emit(resultEvent(0))
	flush(t, e) // returns: the batch is given up on
	st := e.Stats()
	if st.SpansFailed != 1 || st.SpansExported != 0 || st.SpanExportErrors < 2 || uint64(tt.Calls()) != st.SpanExportErrors {
		t.Errorf("%d calls, stats %+v", tt.Calls(), st)
	}
	if st.Traces.Batches != 0 {
		t.Errorf("%d batches still queued", st.Traces.Batches)
	}
}

func TestPartialSuccessCounted(t *testing.T) {
	o := testOptions()
	o.BatchTimeout = time.Hour
	e, tt, lt := newTestExporter(t, o)
	tt.reject(2)
	lt.reject(3)
	for range 5 {
		e.Emit(resultEvent(-int64(unix.ETIMEDOUT)))
	}
	flush(t, e)
	st := e.Stats()
	if st.SpansExported != 3 || st.SpansFailed != 2 || st.LogsExported != 2 || st.LogsFailed != 3 ||
		st.SpanExportErrors != 0 || st.LogExportErrors != 0 || tt.Calls() != 1 || lt.Calls() != 1 {
		t.Errorf("%d, %d calls; stats %+v", tt.Calls(), lt.Calls(), st)
	}

	// A receiver rejecting more than it was sent: no more than the batch
	// is counted.
	tt.reject(100)
	lt.reject(-1)
	e.Emit(acceptEvent())
	flush(t, e)
	st = e.Stats()
	if st.SpansExported != 3 || st.SpansFailed != 3 || st.LogsExported != 3 || st.LogsFailed != 3 {
		t.Errorf("stats %+v", st)
	}
}
