package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/config"
	"github.com/connwatch/connwatch/enrich"
)

const (
	// rescanInterval is how often /proc is rescanned for namespaces (new
	// containers, ones that are gone).
	rescanInterval = 5 * time.Second
	// revalidateInterval is how often the process cache is checked
	// against /proc (enrich.Enricher.Revalidate: one stat read per cached
	// process).
	revalidateInterval = 10 * time.Second
	// watchInterval is how often the config file is checked for changes.
	watchInterval = 2 * time.Second
)

// visibility keeps the kernel's visibility map equal to what the config
// says for the namespaces the enricher knows. Its methods run on the
// control goroutine only; newNS is signalled from the event path.
type visibility struct {
	probe    *bpf.Probe
	enr      *enrich.Enricher
	log      *slog.Logger
	newNS    chan struct{}
	last     int       // entries written last time, for logging changes
	counters *counters // counts failed updates
}

func newVisibility(probe *bpf.Probe, enr *enrich.Enricher, c *counters, log *slog.Logger) *visibility {
	v := &visibility{probe: probe, enr: enr, counters: c, log: log, newNS: make(chan struct{}, 1), last: -1}
	// A namespace seen for the first time is classified at once rather
	// than at the next rescan. The hook runs on the event path: never
	// block it.
	enr.OnNewNamespace(func(enrich.NSEntry) {
		select {
		case v.newNS <- struct{}{}:
		default:
		}
	})
	return v
}

// start scans /proc and writes the first map.
func (v *visibility) start(cfg *config.Config) error {
	if res, err := v.enr.ScanProc(); err != nil {
		v.log.Warn("scanning /proc for namespaces failed; containers are classified when first seen", "err", err)
	} else {
		v.log.Info("namespaces scanned", "processes", res.Processes, "namespaces", res.Namespaces)
	}
	if err := v.apply(cfg); err != nil {
		return fmt.Errorf("writing the visibility map: %w", err)
	}
	return nil
}

// rescan learns new namespaces, forgets the ones that are gone and
// rewrites the map.
func (v *visibility) rescan(cfg *config.Config) {
	if _, err := v.enr.ScanProc(); err != nil {
		v.log.Debug("namespace rescan failed", "err", err)
	}
	v.enr.PruneNamespaces()
	v.refresh(cfg)
}

func (v *visibility) refresh(cfg *config.Config) {
	if err := v.apply(cfg); err != nil {
		v.log.Error("updating the visibility map failed", "err", err)
		v.counters.visibilityErrs.Add(1)
	}
}

// apply computes the entries for cfg and the known namespaces and writes
// them.
func (v *visibility) apply(cfg *config.Config) error {
	known := v.enr.Namespaces()
	nss := make([]config.Namespace, 0, len(known))
	for _, e := range known {
		nss = append(nss, config.Namespace{PidNS: e.PidNS, MntNS: e.MntNS, ContainerID: e.ContainerID, Cgroup: e.Cgroup})
	}
	m := cfg.VisibilityEntries(nss)
	if err := v.probe.SetVisibility(m); err != nil {
		return err
	}
	if len(m) != v.last {
		v.log.Info("visibility map updated", "entries", len(m), "known_namespaces", len(nss))
		v.last = len(m)
	}
	return nil
}
