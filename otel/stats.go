package otel

import "time"

// Stats are the Exporter's counters since New. Per signal:
// emitted = exported + failed + queued (0 after Shutdown); records a full
// queue refused are counted apart (QueueFull) and are not in emitted.
type Stats struct {
	Events  uint64 // events passed to Emit
	Ignored uint64 // events that map to nothing (nil, unknown event IDs)
	Dropped uint64 // events passed to Emit after Shutdown

	LogsEmitted  uint64 // log records encoded
	SpansEmitted uint64 // spans encoded

	LogsExported  uint64 // log records the receiver accepted
	SpansExported uint64 // spans the receiver accepted

	LogExportErrors  uint64 // failed log export attempts (retried or not)
	SpanExportErrors uint64 // failed span export attempts (retried or not)
	LogsFailed       uint64 // log records given up on or rejected by the receiver
	SpansFailed      uint64 // spans given up on or rejected by the receiver

	// LogsQueueFull and SpansQueueFull are records dropped because their
	// batch did not fit in the queue (backend down or slow for long).
	LogsQueueFull  uint64
	SpansQueueFull uint64

	// Traces and Logs describe each signal's queue (zero for a signal
	// written to standard output or disabled).
	Traces, Logs QueueStats

	// LastExportOK is when an export of either signal last succeeded;
	// FailingSince when exports began failing since then (zero: not
	// failing).
	LastExportOK time.Time
	FailingSince time.Time

	ResourcesLive    int    // workload resources kept encoded
	ResourcesCreated uint64 // resources encoded
	ResourcesEvicted uint64 // resources dropped from the cache
}

// QueueStats describe one signal's export queue.
type QueueStats struct {
	Bytes   int64     // encoded bytes queued (including the batch being sent)
	Batches int       // batches queued
	Oldest  time.Time // when the oldest queued record was made; zero when empty
	Retries uint64    // export attempts retried
	// Recovered are the records this run found in the queue directory,
	// left by an earlier run (they are in the emitted count).
	Recovered uint64
	// LastDrop is when a batch last did not fit in the queue (zero:
	// never).
	LastDrop time.Time
	Limit    int64 // the byte bound shared by both signals' queues
}

// Stats returns the current counters.
func (e *Exporter) Stats() Stats {
	st := Stats{
		Events:           e.events.Load(),
		Ignored:          e.ignored.Load(),
		Dropped:          e.dropped.Load(),
		ResourcesLive:    int(e.resourcesLive.Load()),
		ResourcesCreated: e.resourcesCreated.Load(),
		ResourcesEvicted: e.resourcesEvicted.Load(),
		LastExportOK:     unixTime(e.lastExportOK.Load()),
		FailingSince:     unixTime(e.failingSince.Load()),
	}
	if s := e.traces; s != nil {
		st.SpansEmitted, st.SpansExported, st.SpansFailed = s.emitted.Load(), s.exported.Load(), s.failed.Load()
		st.SpansQueueFull, st.SpanExportErrors = s.queueFull.Load(), s.exportErrors.Load()
		st.Traces = s.queueStats()
	}
	if s := e.logs; s != nil {
		st.LogsEmitted, st.LogsExported, st.LogsFailed = s.emitted.Load(), s.exported.Load(), s.failed.Load()
		st.LogsQueueFull, st.LogExportErrors = s.queueFull.Load(), s.exportErrors.Load()
		st.Logs = s.queueStats()
	}
	return st
}

func (s *signal) queueStats() QueueStats {
	if s.q == nil {
		return QueueStats{}
	}
	var q QueueStats
	q.Bytes, q.Batches, q.Oldest = s.q.state()
	q.Retries = s.retries.Load()
	q.Recovered = s.recovered.Load()
	q.LastDrop = unixTime(s.lastDrop.Load())
	q.Limit = s.exp.budget.limit
	return q
}

func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
