//go:build linux

package test

// Collector outages, slow and failing collectors and the export queue's
// directory, counted connection by connection: every connection a test
// makes is recorded by its local port and time, and each of its five
// records (CLIENT and SERVER span, the connect, connect-result and accept
// log records) must arrive, or, where the queue is allowed to overflow, be
// counted as dropped. The long tests (five-minute outage, 2 000 conn/s
// against a slow collector) run only with CONNWATCH_LONG_TESTS=1, as
// `make test-outage` sets. The connections are made by
// outage_dialer_test.go, matched to what arrived by outage_tally_test.go,
// and the agent is run and read by outage_agent_test.go.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// ogLongTest skips a test of minutes unless CONNWATCH_LONG_TESTS=1.
func ogLongTest(t *testing.T) {
	t.Helper()
	if os.Getenv("CONNWATCH_LONG_TESTS") != "1" {
		t.Skip("long test: make test-outage runs it")
	}
}

// ogOutage is TestOutageNothingLost and TestOutageDiskQueueFiveMinutes:
// the collector is down for outage while connections are made at 200/s;
// after it is back, every record of every connection arrives and nothing
// was dropped, the agent stayed healthy, ready and under maxRSSKiB.
func ogOutage(t *testing.T, outage time.Duration, extra string, maxRSSKiB int) {
	requireRoot(t)
	r := otlptest.Start(t)
	ns := ogStartNS(t)
	a, port, _ := ogAgent(t, r, ns.visibility()+extra)
	tally := newOgTally(r, ns.lport)

	warm := ns.dial(t, 200, 1, 0, 20)
	tally.add(warm.conns)
	if !tally.wait(30 * time.Second) {
		t.Fatalf("before the outage: %s", tally.summary())
	}

	sampler := ogStartSampler(a.cmd.Process.Pid, port)
	defer sampler.Stop() // on a failure before the end
	r.Stop()
	stopped := time.Now()
	d := ns.dial(t, 200, 1, outage, 0)
	if err := r.Restart(); err != nil {
		t.Fatalf("restarting the receiver: %v", err)
	}
	restarted := time.Now()
	tally.add(d.conns)
	if d.errs > 0 {
		t.Errorf("%d dials failed (first: %v)", d.errs, d.firstErr)
	}
	drain, m := ogDrained(t, port, 5*time.Minute)
	samples := sampler.Stop()

	complete := tally.wait(3 * time.Minute)
	if !complete {
		t.Errorf("after the recovery, not every record arrived: %s", tally.summary())
	}
	checkInvariants(t, m)
	if n := ogExportDrops(m); n != 0 {
		t.Errorf("export drops: %v (queue_full traces %v logs %v, export_failed traces %v logs %v)", n,
			m[`connwatch_dropped_total{reason="queue_full",signal="traces",stage="export"}`],
			m[`connwatch_dropped_total{reason="queue_full",signal="logs",stage="export"}`],
			m[`connwatch_dropped_total{reason="export_failed",signal="traces",stage="export"}`],
			m[`connwatch_dropped_total{reason="export_failed",signal="logs",stage="export"}`])
	}

	maxRSS, maxQueue, maxBatches, maxAge := 0, 0.0, 0.0, 0.0
	backlogged, notBacklogged := 0, 0
	var readyBodies []string
	for _, s := range samples {
		at := s.at.Sub(stopped).Round(time.Second)
		if s.err != nil {
			t.Errorf("sample at +%v: %v", at, s.err)
			continue
		}
		maxRSS = max(maxRSS, s.rssKiB)
		maxQueue = max(maxQueue, s.queueBytes)
		maxBatches = max(maxBatches, s.m[`connwatch_export_queue_batches{signal="traces"}`]+s.m[`connwatch_export_queue_batches{signal="logs"}`])
		maxAge = max(maxAge, s.m[`connwatch_export_queue_oldest_age_seconds{signal="traces"}`], s.m[`connwatch_export_queue_oldest_age_seconds{signal="logs"}`])
		if n := ogExportDrops(s.m); n != 0 {
			t.Errorf("sample at +%v: %v records dropped at export", at, n)
		}
		if s.healthz != http.StatusOK {
			t.Errorf("sample at +%v: /healthz %d", at, s.healthz)
		}
		if s.readyz != http.StatusOK {
			t.Errorf("sample at +%v: /readyz %d %q (queue %v bytes)", at, s.readyz, s.readyBody, s.queueBytes)
		}
		if strings.HasPrefix(s.readyBody, "backlogged") {
			backlogged++
		} else if s.at.After(stopped.Add(15*time.Second)) && s.at.Before(restarted) {
			// The agent learns of the outage at its next export
			// attempt; after that it is backlogged until the recovery.
			notBacklogged++
			if len(readyBodies) < 3 {
				readyBodies = append(readyBodies, fmt.Sprintf("+%v: %q", at, s.readyBody))
			}
		}
	}
	if backlogged == 0 || notBacklogged > 0 {
		t.Errorf("/readyz during the outage: %d samples backlogged, %d later than 15 s into it not: %s", backlogged, notBacklogged, strings.Join(readyBodies, "; "))
	}
	if maxRSS > maxRSSKiB {
		t.Errorf("agent RSS reached %d KiB (limit %d KiB)", maxRSS, maxRSSKiB)
	}
	t.Logf("outage %v, %d connections during it at %.1f/s (+%d before): %s", outage, len(d.conns), d.rate(), len(warm.conns), tally.summary())
	t.Logf("max RSS %d KiB (%.1f MiB); max queue %.0f bytes (%.1f MiB) in %.0f batches, oldest %.0f s; drained %v after the restart; %d of %d samples said backlogged",
		maxRSS, float64(maxRSS)/1024, maxQueue, maxQueue/(1<<20), maxBatches, maxAge, drain.Round(time.Millisecond), backlogged, len(samples))
	t.Logf("spans exported %v, logs exported %v, export retries %v",
		m[`connwatch_records_exported_total{signal="traces"}`], m[`connwatch_records_exported_total{signal="logs"}`], sum(m, "connwatch_export_retries_total"))
	var traj []string
	for i, s := range samples {
		if i%15 == 0 || i == len(samples)-1 {
			traj = append(traj, fmt.Sprintf("+%v %.1f/%.1f MiB %d", s.at.Sub(stopped).Round(time.Second),
				float64(s.rssKiB)/1024, s.queueBytes/(1<<20), s.readyz))
		}
	}
	t.Logf("RSS/queue/readyz over time: %s", strings.Join(traj, ", "))
}

// A minute's outage at 200 connections/s with the defaults (a 64 MiB
// memory queue): nothing is lost, nothing dropped, and the agent stays
// healthy, ready ("backlogged") and under 120 MiB.
func TestOutageNothingLost(t *testing.T) {
	ogOutage(t, time.Minute, "", 120*1024)
}

// Five minutes at 200 connections/s with a queue directory: more than the
// memory queue holds waits on disk; nothing is lost and RSS stays bounded.
func TestOutageDiskQueueFiveMinutes(t *testing.T) {
	ogLongTest(t)
	ogOutage(t, 5*time.Minute, ogQueueDirConfig(t.TempDir()), 120*1024)
}

// What waits in the queue directory survives kill -9: a new agent on the
// same directory sends it once the collector is back (at least once:
// duplicates are allowed, every connection's spans must be there).
func TestOutageDiskQueueSurvivesKill(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	r := otlptest.Start(t)
	r.Stop()
	ns := ogStartNS(t)
	a, port, cfg := ogAgent(t, r, ns.visibility()+ogQueueDirConfig(dir))
	tally := newOgTally(r, ns.lport)

	d := ns.dial(t, 200, 1, 0, 200)
	if d.errs > 0 {
		t.Errorf("%d dials failed (first: %v)", d.errs, d.firstErr)
	}
	tally.add(d.conns)
	time.Sleep(5 * time.Second)
	m, err := ogMetrics(port)
	if err != nil {
		t.Fatal(err)
	}
	files := func(signal string) int {
		ents, _ := os.ReadDir(filepath.Join(dir, signal))
		n := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".batch") {
				n++
			}
		}
		return n
	}
	t.Logf("before kill -9: queued %v+%v batches (%v bytes); files traces %d logs %d",
		m[`connwatch_export_queue_batches{signal="traces"}`], m[`connwatch_export_queue_batches{signal="logs"}`], ogQueueBytes(m),
		files("traces"), files("logs"))
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.exited(10 * time.Second); !ok {
		t.Fatal("agent still running 10 s after SIGKILL")
	}
	if files("traces") == 0 || files("logs") == 0 {
		t.Errorf("after kill -9: %d trace and %d log batch files in %s", files("traces"), files("logs"), dir)
	}

	b := ogStart(t, r, cfg)
	b.waitLog(t, "export queue: sending what an earlier run left")
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	ok := tally.wait(2*time.Minute, ogClientSpan, ogServerSpan)
	if !ok {
		t.Errorf("spans of the connections made before kill -9: %s", tally.summary())
	}
	// The logs wait in the same directory.
	if !tally.wait(30*time.Second) && ok {
		t.Errorf("log records of the connections made before kill -9: %s", tally.summary())
	}
	m = ogSettle(t, port, time.Minute)
	recovered := ogRecovered(b.stderr.String())
	ogInvariants(t, m, recovered)
	t.Logf("after the restart: the new agent recovered %v spans and %v log records from %s; %s",
		recovered["traces"], recovered["logs"], dir, tally.summary())
}

// A collector that takes 3 s per export, under 2 000 connections/s for a
// minute: nothing is dropped while the queue has room; past its bound
// batches are dropped and counted (queue_full) and RSS stays bounded;
// once the collector is fast again everything is accounted for.
func TestOutageSlowCollector(t *testing.T) {
	ogLongTest(t)
	requireRoot(t)
	r := otlptest.Start(t)
	ns := ogStartNS(t)
	a, port, _ := ogAgent(t, r, ns.visibility())
	tally := newOgTally(r, ns.lport)
	r.SetDelay(3 * time.Second)

	sampler := ogStartSampler(a.cmd.Process.Pid, port)
	defer sampler.Stop()
	start := time.Now()
	d := ns.dial(t, 2000, 8, time.Minute, 0)
	samples := sampler.Stop()
	tally.add(d.conns)
	r.SetDelay(0)
	if d.errs > 0 {
		t.Logf("%d dials failed (first: %v)", d.errs, d.firstErr)
	}

	limit := 0.0
	maxRSS, maxQueue := 0, 0.0
	firstDrop := -1
	for i, s := range samples {
		if s.err != nil {
			t.Errorf("sample at +%v: %v", s.at.Sub(start).Round(time.Second), s.err)
			continue
		}
		limit = max(limit, s.m["connwatch_export_queue_limit_bytes"])
		maxRSS = max(maxRSS, s.rssKiB)
		maxQueue = max(maxQueue, s.queueBytes)
		if s.healthz != http.StatusOK {
			t.Errorf("sample at +%v: /healthz %d", s.at.Sub(start).Round(time.Second), s.healthz)
		}
		if firstDrop < 0 && ogExportDrops(s.m) > 0 {
			firstDrop = i
			// A batch is refused when it does not fit: the queue
			// was within a batch or two (≤ 2 MiB each) of its bound.
			if limit > 0 && maxQueue < limit-4<<20 {
				t.Errorf("records dropped (%v) at +%v with the queue at most %.0f of %.0f bytes so far",
					ogExportDrops(s.m), s.at.Sub(start).Round(time.Second), maxQueue, limit)
			}
		}
	}
	if maxRSS > 160*1024 {
		t.Errorf("agent RSS reached %d KiB (limit 160 MiB)", maxRSS)
	}
	if firstDrop < 0 {
		t.Logf("the queue never overflowed (max %.0f of %.0f bytes)", maxQueue, limit)
	} else {
		t.Logf("first drop at +%v, queue %.0f of %.0f bytes", samples[firstDrop].at.Sub(start).Round(time.Second), samples[firstDrop].queueBytes, limit)
	}

	m := ogSettle(t, port, 5*time.Minute)
	checkInvariants(t, m)
	tally.wait(30*time.Second, ogClientSpan)
	tally.update()
	spanDrops := m[`connwatch_dropped_total{reason="queue_full",signal="traces",stage="export"}`] +
		m[`connwatch_dropped_total{reason="export_failed",signal="traces",stage="export"}`]
	// A lost or dropped sample is at most one connection's CLIENT span.
	sampleDrops := m[`connwatch_dropped_total{reason="queue_full",stage="reader"}`] + m[`connwatch_dropped_total{reason="malformed",stage="decode"}`] +
		m[`connwatch_dropped_total{reason="buffer_full",stage="kernel"}`] + sum(m, "connwatch_lost_samples_total")
	made := len(tally.conns)
	if float64(tally.count[ogClientSpan])+spanDrops+sampleDrops < float64(made) {
		t.Errorf("%d connections: %d CLIENT spans arrived + %v spans dropped at export + %v samples dropped or lost < made",
			made, tally.count[ogClientSpan], spanDrops, sampleDrops)
	}
	t.Logf("%d connections in %v: %.0f/s achieved of 2000/s (%d dial errors); max RSS %d KiB (%.1f MiB); max queue %.0f bytes (%.1f MiB) of %.0f",
		made, d.elapsed.Round(time.Millisecond), d.rate(), d.errs, maxRSS, float64(maxRSS)/1024, maxQueue, maxQueue/(1<<20), limit)
	t.Logf("spans: emitted %v exported %v dropped queue_full %v export_failed %v; logs: emitted %v exported %v dropped queue_full %v; samples dropped or lost %v",
		m[`connwatch_records_emitted_total{signal="traces"}`], m[`connwatch_records_exported_total{signal="traces"}`],
		m[`connwatch_dropped_total{reason="queue_full",signal="traces",stage="export"}`], m[`connwatch_dropped_total{reason="export_failed",signal="traces",stage="export"}`],
		m[`connwatch_records_emitted_total{signal="logs"}`], m[`connwatch_records_exported_total{signal="logs"}`],
		m[`connwatch_dropped_total{reason="queue_full",signal="logs",stage="export"}`], sampleDrops)
	t.Logf("arrived: %s", tally.summary())
}

// A collector that rejects every request as InvalidArgument: nothing is
// retried, every record is counted as failed, the agent stays healthy;
// once the collector accepts again, new connections arrive.
func TestOutageInvalidArgument(t *testing.T) {
	requireRoot(t)
	r := otlptest.Start(t)
	r.SetFailure(codes.InvalidArgument)
	ns := ogStartNS(t)
	_, port, _ := ogAgent(t, r, ns.visibility())
	ns.dial(t, 200, 1, 0, 200)
	m := ogSettle(t, port, time.Minute)
	for _, signal := range []string{"traces", "logs"} {
		emitted := m[`connwatch_records_emitted_total{signal="`+signal+`"}`]
		failed := m[`connwatch_dropped_total{reason="export_failed",signal="`+signal+`",stage="export"}`]
		if emitted == 0 || failed != emitted {
			t.Errorf("%s: export_failed %v, emitted %v: want equal and > 0", signal, failed, emitted)
		}
		if n := m[`connwatch_records_exported_total{signal="`+signal+`"}`]; n != 0 {
			t.Errorf("%s: %v records exported while every request is rejected", signal, n)
		}
	}
	if n := sum(m, "connwatch_export_retries_total"); n != 0 {
		t.Errorf("connwatch_export_retries_total %v, want 0 for InvalidArgument", n)
	}
	healthy(t, port)
	rejected := r.Rejected()
	if len(r.Spans()) != 0 || len(r.Logs()) != 0 {
		t.Errorf("receiver recorded %d spans and %d logs while failing every request", len(r.Spans()), len(r.Logs()))
	}

	r.SetFailure(codes.OK)
	tally := newOgTally(r, ns.lport)
	tally.add(ns.dial(t, 200, 1, 0, 50).conns)
	if !tally.wait(30 * time.Second) {
		t.Errorf("after the failure was cleared: %s", tally.summary())
	}
	t.Logf("rejected %d requests: spans emitted %v failed %v, logs emitted %v failed %v; afterwards %s", rejected,
		m[`connwatch_records_emitted_total{signal="traces"}`], m[`connwatch_dropped_total{reason="export_failed",signal="traces",stage="export"}`],
		m[`connwatch_records_emitted_total{signal="logs"}`], m[`connwatch_dropped_total{reason="export_failed",signal="logs",stage="export"}`],
		tally.summary())
}
