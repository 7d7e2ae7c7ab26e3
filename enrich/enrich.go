package enrich

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/internal/lru"
)

// Enricher attributes events to the process and container behind them.
//
// # Concurrency
//
// All methods are safe for concurrent use. Enrich is meant for the event
// path: on a cache hit it takes one uncontended mutex, touches no file and
// does not allocate. ScanProc and Revalidate read /proc at length and are
// meant for a background goroutine; they hold the cache locks only while
// copying or updating entries, never during file I/O, so they do not stall
// Enrich. ScanProc and Revalidate calls are serialised among themselves.
//
// # Process cache, execve and pid reuse
//
// The process cache is keyed by host pid; each entry carries the start time
// (stat field 22), comm (stat field 2, the process's own: its main
// thread's) and exe of the process it was read from, the comms its events
// came with and the uid its Owner was resolved for. A cache hit must not
// touch the filesystem, and the event does not carry the start time, so a
// changed executable or comm under a cached pid is found in two cheap ways
// instead of by reading /proc on every event:
//
//   - Comm check, on the event path, with the event's comm as the signal.
//     An event whose comm is not among the entry's comms (a comparison of at
//     most 8 short strings, no allocation) triggers a verification:
//     /proc/<pid>/stat and exe are read. A different start time means the
//     pid was reused; a different comm in stat or a different exe means the
//     process called execve (or renamed its main thread). Either way the
//     entry is replaced by a fresh read of /proc/<pid>, and the event gets
//     the new Workload. Otherwise the comm was a thread's name (threads of
//     one process may have different comms) and it is remembered, up to 8
//     per entry (then round-robin).
//   - Revalidation, off the event path. Revalidate re-reads the stat of
//     every cached pid and drops entries whose start time or comm changed,
//     and entries of processes found gone by two consecutive calls (one
//     grace period, so that events still queued for an exited process are
//     attributed).
//
// A pid reused by a process with the same comm between two Revalidate calls
// keeps the previous process's Workload until the next call; run Revalidate
// often compared with the pid wrap-around time (every few seconds). An
// execve that keeps both the comm and the executable (the same program run
// again with other arguments) is not noticed: the entry keeps the first
// command line.
//
// # Misses
//
// On a miss the process's stat, exe, cmdline and cgroup are read
// synchronously. That is a handful of small procfs reads (tens of
// microseconds) and the only moment the process is still likely to exist;
// deferring it would lose short-lived processes. If the process is gone the
// namespace index attributes the event to its container by (PidNS, MntNS),
// and failing that the Workload carries the event's comm as ExeName. Events
// are never dropped.
//
// # Namespace index
//
// The index maps (pid namespace, mount namespace) pairs other than the
// host's to container identities. It is learnt from every miss and from
// ScanProc, and bounded (least recently used pairs are evicted). Pairs not
// claimed by any container runtime, e.g. systemd services with a private
// mount namespace, are indexed with an empty ContainerID.
type Enricher struct {
	procRoot string
	boot     time.Time
	passwd   *passwdDB // nil: Options.NoOwners
	now      func() time.Time

	hostMu    sync.RWMutex
	hostNS    nsKey
	hostKnown bool

	mu    sync.Mutex // guards procs and the mutable fields of its entries
	procs *lru.Cache[uint32, *procEntry]

	ns     *nsIndex
	scanMu sync.Mutex // serialises ScanProc and Revalidate

	meta *metaResolver // nil without metadata sources
	cri  *criAPI       // closed by Close

	hits, misses, verifications, pidReuse, execs atomic.Uint64
	procGone, partialReads, nsFallbacks, none    atomic.Uint64
	parentFallbacks                              atomic.Uint64
}

// New returns an Enricher reading the procfs at opts.ProcRoot. It fails when
// <ProcRoot>/stat cannot be read, i.e. ProcRoot is not a procfs.
func New(opts Options) (*Enricher, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = DefaultProcRoot
	}
	if opts.PasswdPath == "" {
		opts.PasswdPath = DefaultPasswdPath
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.NSCacheSize <= 0 {
		opts.NSCacheSize = DefaultNSCacheSize
	}
	root := filepath.Clean(opts.ProcRoot)
	boot, err := readBootTime(root)
	if err != nil {
		return nil, fmt.Errorf("enrich: procfs at %s: %w", root, err)
	}
	e := &Enricher{
		procRoot: root,
		boot:     boot,
		now:      time.Now,
		procs:    lru.New[uint32, *procEntry](opts.CacheSize),
		ns:       newNSIndex(opts.NSCacheSize),
	}
	if !opts.NoOwners {
		e.passwd = newPasswdDB(opts.PasswdPath, func() time.Time { return e.now() })
	}
	e.loadHostNS()
	var sources []metaSource
	if opts.DockerRoot != "" {
		sources = append(sources, dockerFiles{root: opts.DockerRoot})
	}
	if opts.ContainerdState != "" {
		sources = append(sources, ociBundles{state: opts.ContainerdState})
	}
	if opts.DockerSocket != "" {
		sources = append(sources, newDockerAPI(opts.DockerSocket))
	}
	if opts.CRISocket != "" {
		c, err := newCRIAPI(opts.CRISocket)
		if err != nil {
			return nil, fmt.Errorf("enrich: CRI socket %s: %w", opts.CRISocket, err)
		}
		e.cri = c
		sources = append(sources, c)
	}
	if len(sources) > 0 {
		log := opts.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		e.meta = newMetaResolver(sources, log)
	}
	return e, nil
}

// Close stops the container metadata lookups. The Enricher must not be
// used after.
func (e *Enricher) Close() {
	if e.meta != nil {
		e.meta.close()
	}
	if e.cri != nil {
		e.cri.close()
	}
}

// withContainer returns wl with the container metadata the runtimes gave
// for its container, once known, and otherwise wl itself (and the lookup
// queued). Cheap enough for the event path: one map lookup.
func (e *Enricher) withContainer(wl *event.Workload) *event.Workload {
	if e.meta == nil || wl == nil || wl.ContainerID == "" || wl.Container != nil {
		return wl
	}
	m := e.meta.lookup(wl.ContainerID, wl.Runtime)
	if m == nil {
		return wl
	}
	nw := *wl
	nw.Container = m
	if nw.PodUID == "" {
		nw.PodUID = m.PodUID
	}
	return &nw
}

// loadHostNS reads the namespaces of <ProcRoot>/1, the host's init, or
// when those cannot be read, of <ProcRoot>/self.
func (e *Enricher) loadHostNS() (nsKey, error) {
	e.hostMu.RLock()
	k, ok := e.hostNS, e.hostKnown
	e.hostMu.RUnlock()
	if ok {
		return k, nil
	}
	p, m, err := readNS(e.procRoot + "/1")
	if err != nil {
		// Some sandboxes deny even root a look at init's namespaces. The
		// agent runs in the host's namespaces (hostPID in a container), so
		// its own are the host's.
		var serr error
		if p, m, serr = readNS(e.procRoot + "/self"); serr != nil {
			return nsKey{}, errors.Join(err, serr)
		}
	}
	k = nsKey{p, m}
	e.hostMu.Lock()
	e.hostNS, e.hostKnown = k, true
	e.hostMu.Unlock()
	return k, nil
}

// HostNamespaces returns the pid and mount namespaces of the host, those of
// <ProcRoot>/1; ok is false when they could not be read.
func (e *Enricher) HostNamespaces() (pidNS, mntNS uint32, ok bool) {
	e.hostMu.RLock()
	defer e.hostMu.RUnlock()
	return e.hostNS.pid, e.hostNS.mnt, e.hostKnown
}

// isHost reports whether ev comes from a process in the host's namespaces.
func (e *Enricher) isHost(ev *event.Event) bool {
	if ev.Host() {
		return true
	}
	e.hostMu.RLock()
	defer e.hostMu.RUnlock()
	return e.hostKnown && ev.PidNS == e.hostNS.pid && ev.MntNS == e.hostNS.mnt
}

// Enrich sets ev.Workload to what is known of the process and container
// behind ev. It never fails and never drops: when nothing could be learnt
// ev.Workload carries the event's comm as ExeName (nil only when the event
// has neither comm nor a resolvable uid). The Workload may be shared with
// other events and must not be modified.
//
// A cache hit touches no file and does not allocate. A miss, or an event
// whose comm the cached entry has not seen, reads /proc/<HostPID>
// synchronously (see Enricher). Safe for concurrent use.
func (e *Enricher) Enrich(ev *event.Event) {
	pid := ev.HostPID
	if pid == 0 {
		e.misses.Add(1)
		e.fallback(ev)
		return
	}
	e.mu.Lock()
	pe, ok := e.procs.Get(pid)
	if !ok {
		e.mu.Unlock()
		e.miss(ev)
		return
	}
	commOK := pe.hasComm(ev.Comm)
	if commOK && pe.uid == ev.UID {
		if wl := e.withContainer(pe.wl); wl != pe.wl {
			pe.wl = wl // later events of the process share it
		}
		ev.Workload = pe.wl
		e.mu.Unlock()
		e.hits.Add(1)
		return
	}
	e.mu.Unlock()
	e.revisit(ev, pe, commOK)
}
