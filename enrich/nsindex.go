package enrich

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connwatch/connwatch/internal/lru"
)

// NSEntry is one entry of the namespace index: the container identity of
// the processes sharing a (pid namespace, mount namespace) pair.
type NSEntry struct {
	PidNS       uint32
	MntNS       uint32
	ContainerID string
	Runtime     string
	PodUID      string
	Cgroup      string
	// LastSeen is when a scan or an enrichment last observed a process in
	// the pair.
	LastSeen time.Time
}

type nsKey struct{ pid, mnt uint32 }

type nsRecord struct {
	NSEntry
	seenGen uint64 // scan generation that last observed the pair
}

// nsIndex maps namespace pairs to container identities. Safe for concurrent
// use.
type nsIndex struct {
	mu        sync.Mutex
	pairs     *lru.Cache[nsKey, *nsRecord]
	gen       uint64 // generation of the latest started scan
	completed uint64 // generation of the latest completed scan

	hooks atomic.Pointer[[]func(NSEntry)]
}

func newNSIndex(size int) *nsIndex {
	return &nsIndex{pairs: lru.New[nsKey, *nsRecord](size)}
}

// learn records that a process of the pair k runs in the container cg says.
// gen 0 means the current generation. It returns the entry and whether the
// pair was new; the caller fires the hooks for a new pair, outside any lock.
func (ix *nsIndex) learn(k nsKey, cg CgroupInfo, now time.Time, gen uint64) (NSEntry, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if gen == 0 {
		gen = ix.gen
	}
	if r, ok := ix.pairs.Get(k); ok {
		r.LastSeen = now
		if gen > r.seenGen {
			r.seenGen = gen
		}
		// A pair first seen without a container (e.g. its cgroup could not
		// be read) takes the identity of a later observation that has one.
		if identityRank(cg.ContainerID, cg.PodUID, cg.Path) > identityRank(r.ContainerID, r.PodUID, r.Cgroup) {
			r.ContainerID, r.Runtime, r.PodUID, r.Cgroup = cg.ContainerID, cg.Runtime, cg.PodUID, cg.Path
		}
		return r.NSEntry, false
	}
	r := &nsRecord{
		NSEntry: NSEntry{
			PidNS: k.pid, MntNS: k.mnt,
			ContainerID: cg.ContainerID, Runtime: cg.Runtime, PodUID: cg.PodUID, Cgroup: cg.Path,
			LastSeen: now,
		},
		seenGen: gen,
	}
	ix.pairs.Put(k, r)
	return r.NSEntry, true
}

// identityRank orders identities by how much they say: a container ID over a
// pod UID over a bare cgroup path.
func identityRank(containerID, podUID, path string) int {
	r := 0
	if containerID != "" {
		r += 4
	}
	if podUID != "" {
		r += 2
	}
	if path != "" {
		r++
	}
	return r
}

// touch marks a known pair as observed by scan generation gen and reports
// whether the pair is known.
func (ix *nsIndex) touch(k nsKey, now time.Time, gen uint64) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r, ok := ix.pairs.Get(k)
	if ok {
		r.LastSeen = now
		if gen > r.seenGen {
			r.seenGen = gen
		}
	}
	return ok
}

// lookup returns the entry of k.
func (ix *nsIndex) lookup(k nsKey) (NSEntry, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r, ok := ix.pairs.Get(k)
	if !ok {
		return NSEntry{}, false
	}
	return r.NSEntry, true
}

// beginScan starts a scan generation.
func (ix *nsIndex) beginScan() uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.gen++
	return ix.gen
}

// endScan marks generation gen complete.
func (ix *nsIndex) endScan(gen uint64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if gen > ix.completed {
		ix.completed = gen
	}
}

// prune removes the entries not observed since the latest completed scan
// started and returns them, sorted.
func (ix *nsIndex) prune() []NSEntry {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.completed == 0 {
		return nil
	}
	var gone []nsKey
	var out []NSEntry
	ix.pairs.Each(func(k nsKey, r *nsRecord) bool {
		if r.seenGen < ix.completed {
			gone = append(gone, k)
			out = append(out, r.NSEntry)
		}
		return true
	})
	for _, k := range gone {
		ix.pairs.Remove(k)
	}
	sortEntries(out)
	return out
}

// snapshot returns a copy of every entry, sorted by (PidNS, MntNS).
func (ix *nsIndex) snapshot() []NSEntry {
	ix.mu.Lock()
	out := make([]NSEntry, 0, ix.pairs.Len())
	ix.pairs.Each(func(_ nsKey, r *nsRecord) bool {
		out = append(out, r.NSEntry)
		return true
	})
	ix.mu.Unlock()
	sortEntries(out)
	return out
}

func (ix *nsIndex) len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.pairs.Len()
}

func sortEntries(s []NSEntry) {
	slices.SortFunc(s, func(a, b NSEntry) int {
		if c := cmp.Compare(a.PidNS, b.PidNS); c != 0 {
			return c
		}
		return cmp.Compare(a.MntNS, b.MntNS)
	})
}

// addHook registers fn to be called for every newly learnt pair.
func (ix *nsIndex) addHook(fn func(NSEntry)) {
	for {
		old := ix.hooks.Load()
		var hs []func(NSEntry)
		if old != nil {
			hs = append(hs, *old...)
		}
		hs = append(hs, fn)
		if ix.hooks.CompareAndSwap(old, &hs) {
			return
		}
	}
}

// fire calls the registered hooks with e.
func (ix *nsIndex) fire(e NSEntry) {
	if hs := ix.hooks.Load(); hs != nil {
		for _, fn := range *hs {
			fn(e)
		}
	}
}
