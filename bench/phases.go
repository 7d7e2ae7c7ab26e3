package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
)

// ---- part 1: kernel cost per attach mode, in process ----

// modeResult is the kernel cost of one attach mode.
type modeResult struct {
	Mode        bpf.Mode
	NoCloses    bool  // close tracking off (bpf.Options.NoCloses)
	Unsupported error // bpf.Open said ErrNotSupported
	Err         error // any other failure
	Cost        kernelCost
	Load        loadResult
	Samples     uint64 // samples read from the perf buffer
	Lost        uint64 // samples the reader was told were lost
	PerfErrors  uint64 // bpf.KernelStats.PerfErrors
}

// wakeupEvents is what cmd/connwatch passes to bpf.Open.
const wakeupEvents = 64

// kernelCostOfMode measures mode; noCloses turns close tracking off, to
// tell what it costs.
func kernelCostOfMode(srv *server, o options, mode bpf.Mode, noCloses bool) modeResult {
	r := modeResult{Mode: mode, NoCloses: noCloses}
	probe, err := bpf.Open(bpf.Options{Mode: mode, WakeupEvents: o.wakeup, Transport: bpf.Transport(o.transport), RawStateChanges: o.rawState,
		NoCloses: noCloses})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			r.Unsupported = err
		} else {
			r.Err = err
		}
		return r
	}
	ps := progSetOf(probe.Programs())

	// Read like the agent does (decode, nothing more).
	var samples, lost atomic.Uint64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		var rec bpf.Record
		var dec event.Decoder
		var ev event.Event
		for {
			err := probe.Read(&rec)
			if errors.Is(err, bpf.ErrFlushed) {
				continue
			}
			if err != nil {
				return
			}
			if rec.LostSamples > 0 {
				lost.Add(rec.LostSamples)
				continue
			}
			if dec.Decode(rec.RawSample, &ev) == nil {
				samples.Add(1)
			}
		}
	}()

	before, err := ps.stats()
	if err == nil {
		r.Load = srv.observed(ps, o.workers, o.kernelDur, o.maxConns)
		var after []progStat
		if after, err = ps.stats(); err == nil {
			r.Cost = costBetween(before, after, r.Load.Conns)
		}
	}
	if err != nil {
		r.Err = err
	}
	time.Sleep(200 * time.Millisecond) // let the reader drain
	if ks, kerr := probe.KernelStats(); kerr == nil {
		r.PerfErrors = ks.PerfErrors
	}
	probe.Close()
	<-readDone
	r.Samples, r.Lost = samples.Load(), lost.Load()
	return r
}

// emptyCost measures the floor: a program that does nothing, on the same
// raw tracepoint.
func emptyCost(srv *server, o options) (kernelCost, error) {
	ps, detach, err := emptyProgram()
	if err != nil {
		return kernelCost{}, err
	}
	defer detach()
	before, err := ps.stats()
	if err != nil {
		return kernelCost{}, err
	}
	lr := srv.observed(ps, o.workers, o.kernelDur, o.maxConns)
	after, err := ps.stats()
	if err != nil {
		return kernelCost{}, err
	}
	return costBetween(before, after, lr.Conns), nil
}

// ---- part 2: connection rate with and without ----

// rateRun is one run of the generator with something observing.
type rateRun struct {
	Load      loadResult
	Kernel    kernelCost // BPF time of the observer's programs in this run
	CPU       float64    // observer's CPU, cores (-1: unknown)
	HelperCPU float64    // the OTLP receiver's CPU, cores
	Mem       memStatus
	Drops     dropSummary // the agent's /metrics at the end of the load
	Err       error
}

// agentRateRun runs the generator with the agent exporting OTLP to rcv,
// printing -format events to /dev/null, or printing OTel JSON lines to
// /dev/null (no endpoint).
func agentRateRun(srv *server, rcv *receiver, out agentOutput, o options) (r rateRun, l agentLog) {
	name := cmp.Or(o.agentLog, map[agentOutput]string{outOTLP: "agent-rate", outEvents: "agent-events", outStdout: "agent-stdout"}[out])
	if out != outOTLP {
		rcv = nil
	}
	a, err := startAgent(o, rcv, out, name)
	if err != nil {
		r.Err = err
		return
	}
	defer a.stop(10 * time.Second)
	if rcv != nil {
		err = warmUp(rcv, srv, a.alive, o.sampledAgent)
	} else {
		err = srv.dialOnce()
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		r.Err = err
		return
	}
	before, err := a.progs.stats()
	if err != nil {
		r.Err = err
		return
	}
	cpu := startCPU(a.pid())
	hcpu := cpuMeter{}
	if rcv != nil {
		hcpu = startCPU(rcv.pid())
	}
	r.Load = srv.observed(a.progs, o.workers, o.rateDur, o.maxConns)
	r.CPU, r.HelperCPU = cpu.cores(), hcpu.cores()
	r.Mem, _ = readMem(a.pid())
	after, err := a.progs.stats()
	if err != nil {
		r.Err = err
		return
	}
	r.Kernel = costBetween(before, after, r.Load.Conns)
	if out == outStdout {
		// Lines wait up to 200 ms in the buffer (and the reader queue may
		// hold a backlog): let the agent catch up before reading what it
		// wrote and dropped.
		r.Drops = waitWritten(a, 5*time.Second)
	} else {
		r.Drops = a.drops()
	}
	l, err = a.stopAndParse()
	if err != nil {
		r.Err = err
	}
	return
}

// bpftraceScript prints every socket entering SYN_SENT (a connect).
const bpftraceScript = `tracepoint:sock:inet_sock_set_state /args->newstate == 2/ { printf("%s %d %d\n", comm, pid, args->dport); }`

func bpftraceRateRun(srv *server, o options) (r rateRun) {
	if o.bpftrace == "" {
		r.Err = errors.New("bpftrace not found (install the Debian package bpftrace)")
		return
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		r.Err = err
		return
	}
	defer devnull.Close()
	cmd := exec.Command(o.bpftrace, "-e", bpftraceScript)
	cmd.Stdout = devnull
	c, err := startChild("bpftrace", cmd, filepath.Join(o.dir, "bpftrace.log"))
	if err != nil {
		r.Err = err
		return
	}
	defer c.stop(10 * time.Second)
	ps, err := waitProgramsOf(c.pid(), 60*time.Second, c.alive)
	if err != nil {
		r.Err = fmt.Errorf("bpftrace: %w", err)
		return
	}
	defer ps.close()
	// Loaded is not attached yet: wait until a connection runs it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		srv.dialOnce()
		st, err := ps.stats()
		if err != nil {
			r.Err = err
			return
		}
		var runs uint64
		for _, s := range st {
			runs += s.Runs
		}
		if runs > 0 {
			break
		}
		if err := c.alive(); err != nil {
			r.Err = err
			return
		}
		if time.Now().After(deadline) {
			r.Err = errors.New("bpftrace's program never ran within 20s of loading")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	before2, err := ps.stats()
	if err != nil {
		r.Err = err
		return
	}
	cpu := startCPU(c.pid())
	r.Load = srv.observed(ps, o.workers, o.rateDur, o.maxConns)
	r.CPU = cpu.cores()
	r.Mem, _ = readMem(c.pid())
	after, err := ps.stats()
	if err != nil {
		r.Err = err
		return
	}
	r.Kernel = costBetween(before2, after, r.Load.Conns)
	return
}

// ---- part 3 and 5: loss over a long run at full speed, and RSS ----

type lossRun struct {
	Load      loadResult
	Log       agentLog
	Expected  counts
	Delivered counts
	IdleMem   memStatus // after start, before any load
	PeakRSS   uint64    // highest VmRSS sampled during the run
	EndMem    memStatus // at the end of the load (VmHWM: the peak)
	CPU       float64
	HelperCPU float64
	Drops     dropSummary // the agent's /metrics after the load, before it stops
	Err       error
}

func agentLossRun(srv *server, rcv *receiver, o options) (r lossRun) {
	a, err := startAgent(o, rcv, outOTLP, "agent-loss")
	if err != nil {
		r.Err = err
		return
	}
	defer a.stop(10 * time.Second)
	time.Sleep(o.idle)
	if r.IdleMem, err = readMem(a.pid()); err != nil {
		r.Err = err
		return
	}
	if err := warmUp(rcv, srv, a.alive, false); err != nil {
		r.Err = err
		return
	}
	base, err := rcv.counts()
	if err != nil {
		r.Err = err
		return
	}
	stopSampling := make(chan struct{})
	var peak atomic.Uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				if m, err := readMem(a.pid()); err == nil && m.RSS > peak.Load() {
					peak.Store(m.RSS)
				}
			}
		}
	})
	cpu, hcpu := startCPU(a.pid()), startCPU(rcv.pid())
	r.Load = srv.observed(a.progs, o.workers, o.lossDur, o.maxConns)
	r.CPU, r.HelperCPU = cpu.cores(), hcpu.cores()
	close(stopSampling)
	wg.Wait()
	r.EndMem, _ = readMem(a.pid())
	r.PeakRSS = max(peak.Load(), r.EndMem.RSS)
	n := r.Load.Conns
	// Both ends of every connection close: a close record each.
	r.Expected = counts{ClientSpans: n, ConnectLogs: n, ResultLogs: n, ServerSpans: n, AcceptLogs: n, CloseLogs: 2 * n}
	if l := parseAgentLog(a.out.snapshot()); l.AcceptSkipped {
		r.Expected.ServerSpans, r.Expected.AcceptLogs, r.Expected.CloseLogs = 0, 0, n
	}
	// Let the agent send what it holds (batches close within a second),
	// then read its /metrics while it still serves them.
	if _, err := rcv.settle(r.Expected.records(), base, 3*time.Second, 20*time.Second); err != nil {
		r.Err = err
	}
	r.Drops = a.drops()
	// SIGTERM: the agent flushes what it has queued, then logs its
	// counters.
	r.Log, err = a.stopAndParse()
	if err != nil && r.Err == nil {
		r.Err = err
	}
	got, err := rcv.settle(r.Expected.records(), base, 2*time.Second, 15*time.Second)
	if err != nil && r.Err == nil {
		r.Err = err
	}
	r.Delivered = got.sub(base)
	return
}

// waitWritten scrapes the agent's /metrics until the records it has
// written (exported) stop changing and equal those it emitted, or until
// timeout, and returns the last scrape.
func waitWritten(a *agentProc, timeout time.Duration) dropSummary {
	deadline := time.Now().Add(timeout)
	var last dropSummary
	for {
		time.Sleep(500 * time.Millisecond)
		d := a.drops()
		// The scrapes are connections too (5 records each): settled is
		// within a few records.
		const slack = 10
		if !d.Scraped || (d.Emitted <= d.Exported+slack && d.Exported <= last.Exported+slack) || time.Now().After(deadline) {
			return d
		}
		last = d
	}
}
