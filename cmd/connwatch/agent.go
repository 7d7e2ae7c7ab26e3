package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
)

const (
	// clockResync is how often the kernel-to-wall-clock offset is re-sampled.
	clockResync = time.Minute
	// wakeupEvents is how many samples the kernel batches before waking
	// the reader; flushInterval bounds how long a partial batch waits.
	wakeupEvents  = 64
	flushInterval = 100 * time.Millisecond
)

// agent loads the probes and prints one JSON line per event until SIGINT or
// SIGTERM.
func agent(o runOptions, stdout io.Writer, log *slog.Logger) error {
	mode, err := bpf.ParseMode(o.attach)
	if err != nil {
		return err
	}

	// Waking the reader for every sample costs the connecting task ~10 µs
	// of BPF time per event; batching wakeups and flushing on a timer
	// bounds the latency instead.
	probe, err := bpf.Open(bpf.Options{Mode: mode, WakeupEvents: wakeupEvents})
	if err != nil {
		return explainLoadError(err)
	}
	defer probe.Close()

	for _, s := range probe.Skipped() {
		log.Info("attach mode not supported, falling back", "mode", s.Mode, "reason", s.Err)
	}
	for _, w := range probe.Warnings() {
		log.Warn("optional probe not attached", "reason", w)
	}
	log.Info("probes attached", "mode", probe.Mode())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		s := <-sigs
		log.Info("stopping", "signal", s.String())
		probe.Close()
	}()

	stopFlush := make(chan struct{})
	defer close(stopFlush)
	go func() {
		t := time.NewTicker(flushInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				probe.Flush()
			case <-stopFlush:
				return
			}
		}
	}()

	clock := event.NewClock()
	lastSync := time.Now()
	var (
		dec  event.Decoder
		ev   event.Event
		rec  bpf.Record
		line []byte
	)
	modeName := string(probe.Mode())
	for {
		err := probe.Read(&rec)
		if errors.Is(err, bpf.ErrClosed) {
			return nil
		}
		if errors.Is(err, bpf.ErrFlushed) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading events: %w", err)
		}
		if rec.LostSamples > 0 {
			log.Warn("kernel lost samples: perf buffer full", "cpu", rec.CPU, "lost", rec.LostSamples)
			continue
		}
		if err := dec.Decode(rec.RawSample, &ev); err != nil {
			log.Warn("bad sample", "cpu", rec.CPU, "bytes", len(rec.RawSample), "err", err)
			continue
		}
		if time.Since(lastSync) > clockResync {
			clock.Sync()
			lastSync = time.Now()
		}
		ev.Time = clock.Wall(ev.KernelTime)
		if ev.StartKernelTime != 0 {
			ev.Start = clock.Wall(ev.StartKernelTime)
		}
		line = event.AppendJSON(line[:0], &ev, modeName)
		line = append(line, '\n')
		if _, err := stdout.Write(line); err != nil {
			return fmt.Errorf("writing event: %w", err)
		}
	}
}

// explainLoadError turns the common reasons a load fails into what the user
// should do about them.
func explainLoadError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, os.ErrPermission):
		return fmt.Errorf("loading the BPF probes needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE): %w", err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("this kernel supports none of connwatch's attach modes (it needs BPF and the sock/inet_sock_set_state tracepoint, Linux 5.8+): %w", err)
	}
	return err
}
