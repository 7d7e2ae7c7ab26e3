package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/enrich"
	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/metrics"
	"github.com/connwatch/connwatch/otel"
)

// readyFailureThreshold is how long exports may fail before /readyz says
// the agent is not ready.
const readyFailureThreshold = 30 * time.Second

// readyDropWindow is how recent a drop at the export queue must be for
// /readyz to say the agent is dropping.
const readyDropWindow = 10 * time.Second

// eventIDs are the event ids counted one by one; others count as "other".
var eventIDs = [...]uint32{event.TCPConnect, event.TCPAccept, event.TCPConnectV6, event.TCPAcceptV6,
	event.TCPConnectResult, event.TCPConnectResultV6}

// counters are the agent's own, updated on the event path with atomics.
type counters struct {
	samplesRead    atomic.Uint64 // samples taken from the perf or ring buffer
	readerDrops    atomic.Uint64 // samples dropped: the processing queue was full
	decodeDrops    atomic.Uint64 // samples dropped: malformed
	samplesDecoded func() uint64 // samples decoded (one may hold an attempt and its result)
	processed      atomic.Uint64 // events enriched and handed to the output
	eventsByID     [len(eventIDs) + 1]atomic.Uint64
	lostSamples    []atomic.Uint64 // per CPU, from the perf buffer's lost records
	queueLen       func() int
	attachedMode   string
	visibilityErrs atomic.Uint64
}

func newCounters(mode string, cpus int, queueLen func() int) *counters {
	return &counters{lostSamples: make([]atomic.Uint64, cpus), attachedMode: mode, queueLen: queueLen}
}

func (c *counters) countEvent(id uint32) {
	for i, known := range eventIDs {
		if id == known {
			c.eventsByID[i].Add(1)
			return
		}
	}
	c.eventsByID[len(eventIDs)].Add(1)
}

func (c *counters) lost(cpu int, n uint64) {
	if cpu >= 0 && cpu < len(c.lostSamples) {
		c.lostSamples[cpu].Add(n)
	}
}

// telemetry serves /metrics (Prometheus, through client_golang: the
// agent's own counters and the connection metrics), /healthz and /readyz.
type telemetry struct {
	c     *counters
	probe *bpf.Probe
	enr   *enrich.Enricher
	out   *output
	srv   *http.Server
	ln    net.Listener
}

func startTelemetry(listen string, c *counters, probe *bpf.Probe, enr *enrich.Enricher, out *output, log *slog.Logger) (*telemetry, error) {
	if listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("telemetry.listen %s: %w", listen, err)
	}
	t := &telemetry{c: c, probe: probe, enr: enr, out: out, ln: ln}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&selfMetrics{t: t})
	if out.metrics != nil {
		reg.MustRegister(metrics.NewCollector(out.metrics))
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", t.ready)
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := t.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("telemetry server stopped", "err", err)
		}
	}()
	log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	return t, nil
}

func (t *telemetry) close(ctx context.Context) {
	if t != nil {
		t.srv.Shutdown(ctx)
	}
}

// ready is 200 while the probes are attached and the export queue has
// room: "exporting" when exports succeed, "backlogged" while they fail
// and batches wait (an agent that only waits for its collector must not
// be restarted: it would lose what it holds). 503 once exports have
// failed for longer than readyFailureThreshold and records were dropped
// at the full queue within readyDropWindow.
func (t *telemetry) ready(w http.ResponseWriter, _ *http.Request) {
	if t.out.pipeline != nil {
		st := t.out.pipeline.Stats()
		queued := st.Traces.Bytes + st.Logs.Bytes
		limit := max(st.Traces.Limit, st.Logs.Limit)
		batches := st.Traces.Batches + st.Logs.Batches
		lastDrop := st.Traces.LastDrop
		if st.Logs.LastDrop.After(lastDrop) {
			lastDrop = st.Logs.LastDrop
		}
		if !st.FailingSince.IsZero() {
			since := st.FailingSince.UTC().Format(time.RFC3339)
			// Dropping is what a full queue does; with a queue directory
			// the queued bytes may exceed the memory bound without it.
			if !lastDrop.IsZero() && time.Since(lastDrop) < readyDropWindow && time.Since(st.FailingSince) > readyFailureThreshold {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "dropping: exports failing since %s and the queue is full (%d bytes queued); records dropped at %s\n",
					since, queued, lastDrop.UTC().Format(time.RFC3339))
				return
			}
			fmt.Fprintf(w, "backlogged: exports failing since %s; %d batches (%d bytes) queued of %d bytes; probes attached (%s mode)\n",
				since, batches, queued, limit, t.c.attachedMode)
			return
		}
		fmt.Fprintf(w, "exporting: probes attached (%s mode); %d batches queued\n", t.c.attachedMode, batches)
		return
	}
	fmt.Fprintf(w, "ok: probes attached (%s mode)\n", t.c.attachedMode)
}

// collect reads the agent's own counters into p, on each scrape.
func (t *telemetry) collect(p *emitter) {
	c := t.c

	p.gauge("connwatch_attach_mode", "The attach mode in use (value 1).", 1, "mode", c.attachedMode)
	p.gauge("connwatch_goroutines", "Goroutines of the agent.", float64(runtime.NumGoroutine()))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.gauge("connwatch_go_heap_bytes", "Bytes of allocated heap objects.", float64(ms.HeapAlloc))
	p.counter("connwatch_samples_read_total", "Samples read from the kernel's perf or ring buffer.", c.samplesRead.Load())
	p.counter("connwatch_samples_decoded_total", "Samples decoded (in tracepoint mode one sample holds an attempt and its result).", c.samplesDecoded())
	for i, id := range eventIDs {
		p.counter("connwatch_events_read_total", "Events decoded, by event id.", c.eventsByID[i].Load(), "event_id", strconv.Itoa(int(id)))
	}
	p.counter("connwatch_events_read_total", "Events decoded, by event id.", c.eventsByID[len(eventIDs)].Load(), "event_id", "other")
	p.counter("connwatch_events_processed_total", "Events enriched and handed to the output.", c.processed.Load())
	for cpu := range c.lostSamples {
		p.counter("connwatch_lost_samples_total", "Samples the kernel lost because the perf buffer was full, per CPU.", c.lostSamples[cpu].Load(), "cpu", strconv.Itoa(cpu))
	}
	p.gauge("connwatch_queue_length", "Samples waiting between the perf reader and processing.", float64(c.queueLen()), "stage", "reader")

	const dropped = "connwatch_dropped_total"
	const droppedHelp = "Samples, events or records dropped, by stage and reason."
	p.counter(dropped, droppedHelp, c.readerDrops.Load(), "stage", "reader", "reason", "queue_full")
	p.counter(dropped, droppedHelp, c.decodeDrops.Load(), "stage", "decode", "reason", "malformed")

	if t.out.pipeline != nil {
		st := t.out.pipeline.Stats()
		for _, s := range []struct {
			signal                                          string
			emitted, exported, failed, queueFull, errorsCnt uint64
		}{
			{"traces", st.SpansEmitted, st.SpansExported, st.SpansFailed, st.SpansQueueFull, st.SpanExportErrors},
			{"logs", st.LogsEmitted, st.LogsExported, st.LogsFailed, st.LogsQueueFull, st.LogExportErrors},
		} {
			p.counter("connwatch_records_emitted_total", "Records encoded for export, by signal.", s.emitted, "signal", s.signal)
			p.counter("connwatch_records_exported_total", "Records in successful export calls, by signal.", s.exported, "signal", s.signal)
			p.counter(dropped, droppedHelp, s.queueFull, "stage", "export", "reason", "queue_full", "signal", s.signal)
			p.counter(dropped, droppedHelp, s.failed, "stage", "export", "reason", "export_failed", "signal", s.signal)
			p.counter("connwatch_export_errors_total", "Failed export calls, by signal.", s.errorsCnt, "signal", s.signal)
			p.gauge("connwatch_records_in_flight", "Records emitted and neither exported nor failed yet, by signal.", float64(s.emitted-s.exported-s.failed), "signal", s.signal)
		}
		for _, q := range []struct {
			signal string
			s      otel.QueueStats
		}{{"traces", st.Traces}, {"logs", st.Logs}} {
			p.gauge("connwatch_export_queue_bytes", "Encoded bytes waiting for the collector, by signal.", float64(q.s.Bytes), "signal", q.signal)
			p.gauge("connwatch_export_queue_batches", "Batches waiting for the collector, by signal.", float64(q.s.Batches), "signal", q.signal)
			age := 0.0
			if !q.s.Oldest.IsZero() {
				age = time.Since(q.s.Oldest).Seconds()
			}
			p.gauge("connwatch_export_queue_oldest_age_seconds", "Age of the oldest queued record, by signal (0: queue empty).", age, "signal", q.signal)
			p.counter("connwatch_export_retries_total", "Export attempts retried, by signal.", q.s.Retries, "signal", q.signal)
			p.counter("connwatch_export_recovered_records_total", "Records found in the queue directory at start, left by an earlier run (counted as emitted), by signal.", q.s.Recovered, "signal", q.signal)
		}
		p.gauge("connwatch_export_queue_limit_bytes", "The bound of the export queue in memory, both signals together.", float64(max(st.Traces.Limit, st.Logs.Limit)))
		p.gauge("connwatch_resources", "Workload resources kept encoded.", float64(st.ResourcesLive))
		p.counter("connwatch_records_sampled_out_total", "Log records and spans of successful connections left out by export.sampling.ratio.", t.out.pipeline.SampledOut())
		ms := t.out.pipeline.MetricsStats()
		p.counter("connwatch_metric_exports_total", "Workload metric batches sent over OTLP, by result.", ms.Exports, "result", "ok")
		p.counter("connwatch_metric_exports_total", "Workload metric batches sent over OTLP, by result.", ms.ExportErrors, "result", "error")
		if !st.LastExportOK.IsZero() {
			p.gauge("connwatch_last_export_success_timestamp_seconds", "When an export last succeeded.", float64(st.LastExportOK.UnixNano())/1e9)
		}
	}

	if m := t.out.metrics; m != nil {
		ms := m.Stats()
		p.gauge("connwatch_metric_workloads", "Workloads with connection metric series.", float64(ms.Workloads))
		p.gauge("connwatch_metric_series", "Connection metric series held, overflow series included.", float64(ms.Series))
		p.counter("connwatch_metric_series_overflow_total", "Connections counted in a workload's overflow series (metrics.max_series reached).", ms.Overflowed)
		p.counter("connwatch_metric_series_expired_total", "Connection metric series removed after metrics.expiry without an update.", ms.Expired)
	}

	es := t.enr.Stats()
	p.counter("connwatch_enrich_total", "Events enriched, by cache result.", es.Hits, "result", "hit")
	p.counter("connwatch_enrich_total", "Events enriched, by cache result.", es.Misses, "result", "miss")
	p.counter("connwatch_enrich_misses_total", "Enrichment that could not learn everything, by reason.", es.ProcGone, "reason", "process_gone")
	p.counter("connwatch_enrich_misses_total", "Enrichment that could not learn everything, by reason.", es.PartialReads, "reason", "partial_read")
	p.counter("connwatch_enrich_misses_total", "Enrichment that could not learn everything, by reason.", es.NothingLearnt, "reason", "nothing_learnt")
	p.counter("connwatch_enrich_namespace_fallbacks_total", "Events attributed by their namespaces after the process was gone.", es.NSFallbacks)
	p.counter("connwatch_enrich_parent_fallbacks_total", "Exited processes attributed to their container by their parent's cgroup.", es.ParentFallbacks)
	p.counter("connwatch_enrich_container_lookups_total", "Container metadata lookups, by result.", es.ContainersNamed, "result", "found")
	p.counter("connwatch_enrich_container_lookups_total", "Container metadata lookups, by result.", es.ContainersUnnamed, "result", "not_found")
	p.counter("connwatch_enrich_container_lookups_total", "Container metadata lookups, by result.", es.MetaSourceErrors, "result", "source_error")
	p.gauge("connwatch_enrich_cached_processes", "Processes in the enrichment cache.", float64(es.CachedProcs))
	p.gauge("connwatch_known_namespaces", "Namespace pairs in the namespace index.", float64(es.Namespaces))

	if n, err := t.probe.VisibilityEntries(); err == nil {
		p.gauge("connwatch_visibility_map_entries", "Entries of the kernel visibility map.", float64(n))
	}
	p.counter("connwatch_visibility_update_errors_total", "Failed visibility map updates.", c.visibilityErrs.Load())

	if ks, err := t.probe.KernelStats(); err == nil {
		p.counter("connwatch_kernel_attempts_tracked_total", "Connection attempts the kernel tracked until their outcome.", ks.AttemptsTracked)
		p.counter("connwatch_kernel_results_total", "Outcomes matched to a tracked attempt.", ks.Results)
		p.counter("connwatch_kernel_results_untracked_total", "Sockets leaving SYN_SENT with no tracked attempt (evicted, or begun before start).", ks.ResultsUntracked)
		p.counter("connwatch_kernel_accepts_total", "Accept events assembled in the kernel.", ks.Accepts)
		p.counter("connwatch_kernel_connections_tracked_total", "Connections reported established or accepted, tracked in the kernel until they close.", ks.ConnsTracked)
		p.counter("connwatch_kernel_connections_closed_total", "Tracked connections found again when they closed.", ks.ConnsClosed)
		p.counter("connwatch_kernel_connections_forgotten_total", "Tracked connections evicted while open (probe.max_connections): their close goes unreported.", ks.ConnsForgotten)
		p.gauge("connwatch_kernel_connections_open", "Tracked connections open now.", float64(ks.ConnsOpen))
		p.counter(dropped, droppedHelp, ks.DroppedVisibility, "stage", "kernel", "reason", "visibility")
		p.counter(dropped, droppedHelp, ks.DroppedMonitor, "stage", "kernel", "reason", "monitor")
		p.counter(dropped, droppedHelp, ks.DroppedFilter, "stage", "kernel", "reason", "filter")
		p.counter("connwatch_agent_own_events_total", "Events of the agent's own connections left out in the kernel (probe.include_agent: false).", ks.DroppedAgent)
		p.counter(dropped, droppedHelp, ks.PerfErrors, "stage", "kernel", "reason", "buffer_full")
	}

	if bpfStatsEnabled() {
		progs := t.probe.Programs()
		names := make([]string, 0, len(progs))
		for name := range progs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			st, err := progs[name].Stats()
			if err != nil {
				continue
			}
			p.counter("connwatch_bpf_run_count_total", "Runs of each BPF program (kernel.bpf_stats_enabled=1).", st.RunCount, "program", name)
			p.sample("connwatch_bpf_run_time_seconds_total", prometheus.CounterValue, "Time spent in each BPF program (kernel.bpf_stats_enabled=1).",
				st.Runtime.Seconds(), "program", name)
		}
	}
}

func bpfStatsEnabled() bool {
	b, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
