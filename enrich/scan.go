package enrich

import (
	"fmt"
	"os"
	"strconv"
)

// ScanProc walks every process of ProcRoot, reads its pid and mount
// namespaces and, for a pair not yet indexed, its cgroup, and records the
// non-host pairs in the namespace index. Each newly learnt pair fires the
// OnNewNamespace hooks. Pairs already indexed are marked as seen by this
// scan, which is what PruneNamespaces uses.
//
// It fails only when ProcRoot cannot be listed or the host's namespaces
// (those of <ProcRoot>/1) cannot be read, since without them host processes
// cannot be told apart. Processes that exit during the scan are skipped.
// Meant for a background goroutine; safe for concurrent use with Enrich.
func (e *Enricher) ScanProc() (ScanResult, error) {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	var res ScanResult
	host, err := e.loadHostNS()
	if err != nil {
		return res, fmt.Errorf("enrich: host namespaces: %w", err)
	}
	f, err := os.Open(e.procRoot)
	if err != nil {
		return res, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return res, err
	}
	gen := e.ns.beginScan()
	now := e.now()
	seen := make(map[nsKey]struct{})
	for _, name := range names {
		pid, err := strconv.ParseUint(name, 10, 32)
		if err != nil || pid == 0 {
			continue
		}
		dir := e.procRoot + "/" + name
		p, m, err := readNS(dir)
		if err != nil {
			if !isGone(err) {
				res.Errors++
			}
			continue
		}
		res.Processes++
		k := nsKey{p, m}
		if k == host {
			continue
		}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		if e.ns.touch(k, now, gen) {
			continue
		}
		var cg CgroupInfo
		b, err := os.ReadFile(dir + "/cgroup")
		switch {
		case err == nil:
			cg = ParseCgroup(b)
		case isGone(err):
			delete(seen, k)
			continue
		default:
			res.Errors++
		}
		ent, isNew := e.ns.learn(k, cg, now, gen)
		if isNew {
			res.New++
			e.ns.fire(ent)
		}
	}
	res.Namespaces = len(seen)
	e.ns.endScan(gen)
	return res, nil
}

// PruneNamespaces removes from the namespace index the pairs that were not
// observed, by a scan or an enrichment, since the latest completed ScanProc
// started, i.e. namespaces that disappeared, and returns them sorted by
// (PidNS, MntNS). Before the first completed scan it removes nothing. Safe
// for concurrent use.
func (e *Enricher) PruneNamespaces() []NSEntry {
	return e.ns.prune()
}

// Namespaces returns a snapshot of the namespace index sorted by (PidNS,
// MntNS). Safe for concurrent use.
func (e *Enricher) Namespaces() []NSEntry {
	return e.ns.snapshot()
}

// OnNewNamespace registers fn to be called with each namespace pair the
// first time it is learnt (again after it was pruned or evicted). fn runs
// synchronously on the goroutine that learnt the pair, which may be the one
// calling Enrich, so it must be quick and must not block nor call back into
// the Enricher's ScanProc or Revalidate; hand the entry to a channel with a
// non-blocking send if work is needed. A nil fn is ignored. Safe for
// concurrent use.
func (e *Enricher) OnNewNamespace(fn func(NSEntry)) {
	if fn != nil {
		e.ns.addHook(fn)
	}
}
