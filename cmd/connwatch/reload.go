package main

// Loading the configuration, and the control loop that reloads it and
// keeps the visibility map current.

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"syscall"
	"time"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/config"
)

// loadConfig reads the config file (defaults when path is empty), applies
// the OpenTelemetry environment variables over it and then the -attach
// flag, if given, and checks the rules between settings on the result.
func loadConfig(path, attach string, log *slog.Logger) (*config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return nil, err
		}
		if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
			log.Warn("config file is empty: every setting has its default", "file", path)
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return nil, err
	}
	for _, name := range config.IgnoredEnv(os.Getenv) {
		log.Warn("environment variable ignored: both signals are exported with the same settings, only the endpoint can differ per signal; set the variable without TRACES_ or LOGS_ instead", "variable", name)
	}
	if attach != "" {
		mode, err := bpf.ParseMode(attach)
		if err != nil {
			return nil, fmt.Errorf("-attach: %w", err)
		}
		cfg.Probe.Attach = mode
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// control runs everything but the event path: SIGHUP and config-file
// reloads, the namespace rescans that keep the visibility map current, and
// the check for events the kernel could not write. It returns on SIGINT/SIGTERM (after closing the
// probe, which ends the event loop) or when stop is closed.
func control(o runOptions, cfg *config.Config, vis *visibility, probe *bpf.Probe,
	sigs <-chan os.Signal, stop <-chan struct{}, log *slog.Logger) {
	path := o.configPath
	rescan := time.NewTicker(rescanInterval)
	defer rescan.Stop()
	watch := time.NewTicker(watchInterval)
	defer watch.Stop()
	revalidate := time.NewTicker(revalidateInterval)
	defer revalidate.Stop()
	fileState := statFile(path)

	// The kernel counts the events it could not write (a full ring
	// buffer gives no lost-sample records, a full perf buffer gives both).
	var writeErrors uint64
	checkWriteErrors := func() {
		ks, err := probe.KernelStats()
		if err != nil || ks.PerfErrors == writeErrors {
			return
		}
		log.Warn("kernel could not write events: buffer full", "events", ks.PerfErrors-writeErrors, "transport", probe.Transport())
		writeErrors = ks.PerfErrors
	}

	reload := func(why string) {
		next, err := loadConfig(path, o.attach, log)
		if err != nil {
			log.Error("config reload failed; keeping the running config", "trigger", why, "err", err)
			return
		}
		// Only visibility is applied to the running agent.
		if next.Probe != cfg.Probe || next.Monitor != cfg.Monitor || !reflect.DeepEqual(next.Filters, cfg.Filters) ||
			!reflect.DeepEqual(next.Export, cfg.Export) ||
			next.Metrics != cfg.Metrics || !reflect.DeepEqual(next.Telemetry, cfg.Telemetry) || !reflect.DeepEqual(next.Enrich, cfg.Enrich) {
			log.Warn("probe.*, monitor, filters.*, export.*, metrics.*, telemetry.* and enrich.* take effect at the next start", "trigger", why)
		}
		if err := vis.apply(next); err != nil {
			log.Error("applying reloaded visibility failed; keeping the running config", "err", err)
			vis.apply(cfg)
			return
		}
		cfg = next
		log.Info("config reloaded", "trigger", why, "file", path)
	}

	for {
		select {
		case <-stop:
			return
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if path == "" {
					log.Info("SIGHUP ignored: no config file (-c)")
					continue
				}
				fileState = statFile(path)
				reload("SIGHUP")
				continue
			}
			log.Info("stopping", "signal", s.String())
			probe.Close()
			return
		case <-watch.C:
			checkWriteErrors()
			if path == "" {
				continue
			}
			if st := statFile(path); st != fileState {
				fileState = st
				reload("file changed")
			}
		case <-rescan.C:
			vis.rescan(cfg)
		case <-revalidate.C:
			// A pid reused by a process of the same comm, or a cached
			// process gone, is found here rather than at its next event.
			vis.enr.Revalidate()
		case <-vis.newNS:
			vis.refresh(cfg)
		}
	}
}

// fileState is what the watcher compares to notice a changed config file.
type fileState struct {
	size    int64
	modTime time.Time
	ino     uint64
}

func statFile(path string) fileState {
	if path == "" {
		return fileState{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	st := fileState{size: fi.Size(), modTime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}
