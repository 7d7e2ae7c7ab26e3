package enrich

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connwatch/connwatch/event"
)

// Defaults of Options.
const (
	DefaultProcRoot    = "/proc"
	DefaultPasswdPath  = "/etc/passwd"
	DefaultCacheSize   = 8192
	DefaultNSCacheSize = 4096
)

// Options configures an Enricher. Zero fields take the defaults.
type Options struct {
	// ProcRoot is the procfs mount showing the host's processes, e.g.
	// "/host/proc" when the agent runs in a container. Default "/proc".
	ProcRoot string
	// PasswdPath is the passwd(5) file resolving uids to owners, e.g.
	// "/host/etc/passwd" in a container. A missing file leaves Owner empty.
	// Default "/etc/passwd".
	PasswdPath string
	// NoOwners leaves Owner empty without reading any passwd file (the
	// config's `enrich.passwd: ""`).
	NoOwners bool
	// CacheSize bounds the process cache (entries). Default 8192.
	CacheSize int
	// NSCacheSize bounds the namespace index (entries). Default 4096.
	NSCacheSize int

	// Where container runtimes' metadata (names, image, pod) is read, in
	// this order; each empty field leaves its source out. The on-disk
	// sources need only read access; an API socket grants control of
	// every container to whoever can write to it.
	//
	// DockerRoot is Docker's data root: <DockerRoot>/containers/<id>/config.v2.json.
	DockerRoot string
	// ContainerdState is containerd's state directory:
	// <ContainerdState>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json.
	ContainerdState string
	// DockerSocket is the Docker Engine API's unix socket.
	DockerSocket string
	// CRISocket is a CRI runtime's (containerd, CRI-O) gRPC unix socket.
	CRISocket string
	// Logger receives the metadata sources' warnings; nil discards them.
	Logger *slog.Logger
}

// Stats are the Enricher's counters since New. Every Enrich call counts
// exactly one of Hits and Misses.
type Stats struct {
	// Hits are events served from the process cache without reading /proc.
	Hits uint64
	// Misses are events for which /proc/<pid> was read because nothing, or
	// nothing valid, was cached.
	Misses uint64
	// Verifications are cache entries checked against /proc/<pid>/stat and
	// exe because the event's comm was not one the entry had seen.
	Verifications uint64
	// PidReuse counts cache entries found to belong to an earlier process
	// of the same pid (different start time), by a verification or
	// Revalidate.
	PidReuse uint64
	// ProcGone counts /proc reads that found the process gone.
	ProcGone uint64
	// PartialReads counts /proc reads of a live process where some file
	// (stat, exe, cmdline, cgroup) could not be read; its fields are left
	// empty.
	PartialReads uint64
	// NSFallbacks counts events whose container identity came from the
	// namespace index.
	NSFallbacks uint64
	// NothingLearnt counts events for which neither /proc nor the namespace
	// index said anything: the Workload carries only the event's comm and
	// the owner.
	NothingLearnt uint64
	// ParentFallbacks counts exited or vanished processes whose container
	// was read from their parent's cgroup (same namespaces).
	ParentFallbacks uint64
	// ContainersNamed counts containers whose runtime metadata was found,
	// ContainersUnnamed lookups no source could answer (retried with
	// backoff), MetaSourceErrors lookups a source failed (unreachable,
	// hung, garbage).
	ContainersNamed, ContainersUnnamed, MetaSourceErrors uint64
	// CachedProcs and Namespaces are the current sizes of the process cache
	// and the namespace index.
	CachedProcs int
	Namespaces  int
}

// ScanResult summarises one ScanProc.
type ScanResult struct {
	Processes  int // processes whose namespaces could be read
	Namespaces int // distinct non-host namespace pairs seen
	New        int // pairs learnt by this scan
	Errors     int // processes that could not be read for another reason than exiting
}

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
// # Process cache and pid reuse
//
// The process cache is keyed by host pid; each entry carries the start time
// (stat field 22) and exe of the process it was read from, the comms seen
// for it and the uid its Owner was resolved for. A cache hit must not touch
// the filesystem, and the event does not carry the start time, so pid reuse
// is detected in two cheap ways instead of on every event:
//
//   - Comm check, on the event path. An event whose comm is not among the
//     entry's comms triggers a verification: /proc/<pid>/stat and exe are
//     read. A different start time means the pid was reused; a different exe
//     means the process called execve. Either way the entry is replaced by a
//     fresh read. Otherwise the comm was a thread's name (threads of one
//     process may have different comms) and it is remembered, up to 8 per
//     entry (then round-robin).
//   - Revalidation, off the event path. Revalidate re-reads the start time of
//     every cached pid and drops entries whose start time changed, and entries
//     of processes found gone by two consecutive calls (one grace period, so
//     that events still queued for an exited process are attributed).
//
// A pid reused by a process with the same comm between two Revalidate calls
// keeps the previous process's Workload until the next call; run Revalidate
// often compared with the pid wrap-around time (every few seconds).
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
	passwd   *passwdDB
	now      func() time.Time

	hostMu    sync.RWMutex
	hostNS    nsKey
	hostKnown bool

	mu    sync.Mutex // guards procs and the mutable fields of its entries
	procs *lru[uint32, *procEntry]

	ns     *nsIndex
	scanMu sync.Mutex // serialises ScanProc and Revalidate

	meta *metaResolver // nil without metadata sources
	cri  *criAPI       // closed by Close

	hits, misses, verifications, pidReuse     atomic.Uint64
	procGone, partialReads, nsFallbacks, none atomic.Uint64
	parentFallbacks                           atomic.Uint64
}

// maxComms is how many comms a process cache entry remembers.
const maxComms = 8

// procEntry is one process cache entry. startTicks, exe and statOK are
// immutable; the other fields are guarded by Enricher.mu.
type procEntry struct {
	startTicks uint64
	exe        string

	wl        *event.Workload
	uid       uint32
	comms     [maxComms]string
	ncomms    int
	nextComm  int // slot to overwrite once comms is full
	goneScans int // consecutive Revalidate calls that found the process gone
}

func (pe *procEntry) hasComm(c string) bool {
	for i := 0; i < pe.ncomms; i++ {
		if pe.comms[i] == c {
			return true
		}
	}
	return false
}

func (pe *procEntry) addComm(c string) {
	if pe.hasComm(c) {
		return
	}
	if pe.ncomms < maxComms {
		pe.comms[pe.ncomms] = c
		pe.ncomms++
		return
	}
	pe.comms[pe.nextComm] = c
	pe.nextComm = (pe.nextComm + 1) % maxComms
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
		procs:    newLRU[uint32, *procEntry](opts.CacheSize),
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
// A cache hit touches no file and does not allocate. A miss reads
// /proc/<HostPID> synchronously (see Enricher). Safe for concurrent use.
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

// revisit handles a cached entry that does not match ev's comm or uid.
func (e *Enricher) revisit(ev *event.Event, pe *procEntry, commOK bool) {
	pid := ev.HostPID
	if !commOK {
		e.verifications.Add(1)
		dir := procDir(e.procRoot, pid)
		st, err := readStat(dir)
		if err == errProcGone {
			e.dropProc(pid, pe)
			e.misses.Add(1)
			e.procGone.Add(1)
			e.fallback(ev)
			return
		}
		if err != nil || st.StartTicks != pe.startTicks {
			if err == nil {
				e.pidReuse.Add(1)
			}
			e.dropProc(pid, pe)
			e.miss(ev)
			return
		}
		exe, err := readExe(dir)
		if err != nil && isGone(err) {
			exe = pe.exe // exiting or a kernel thread: nothing says it changed
		}
		if exe != pe.exe {
			e.dropProc(pid, pe) // execve: same process, new image
			e.miss(ev)
			return
		}
	}
	e.mu.Lock()
	if !commOK {
		pe.addComm(ev.Comm)
	}
	wl, uid := pe.wl, pe.uid
	e.mu.Unlock()
	if uid != ev.UID {
		nw := *wl
		nw.Owner = e.passwd.lookup(ev.UID)
		wl = &nw
		e.mu.Lock()
		if cur, ok := e.procs.Peek(pid); ok && cur == pe {
			pe.wl, pe.uid = wl, ev.UID
		}
		e.mu.Unlock()
	}
	ev.Workload = e.withContainer(wl)
	e.hits.Add(1)
}

// dropProc removes pid's entry if it is still pe.
func (e *Enricher) dropProc(pid uint32, pe *procEntry) {
	e.mu.Lock()
	if cur, ok := e.procs.Peek(pid); ok && cur == pe {
		e.procs.Remove(pid)
	}
	e.mu.Unlock()
}

// miss reads /proc/<pid>, builds the Workload and caches it.
func (e *Enricher) miss(ev *event.Event) {
	e.misses.Add(1)
	pid := ev.HostPID
	pi, err := readProc(e.procRoot, pid)
	if err != nil {
		e.procGone.Add(1)
		e.fallback(ev)
		return
	}
	if pi.partial {
		e.partialReads.Add(1)
	}
	statOK := pi.stat.PID != 0
	wl := &event.Workload{
		ExePath: pi.exe,
		Args:    pi.args,
		Owner:   e.passwd.lookup(ev.UID),
	}
	switch {
	case pi.exe != "":
		wl.ExeName = filepath.Base(pi.exe)
	case ev.Comm != "":
		wl.ExeName = ev.Comm
	default:
		wl.ExeName = pi.stat.Comm
	}
	if statOK {
		wl.StartTime = ticksToTime(e.boot, pi.stat.StartTicks)
	}
	cg := pi.cg
	if !e.isHost(ev) {
		k := nsKey{ev.PidNS, ev.MntNS}
		var ent NSEntry
		var known bool
		if pi.cgOK {
			var isNew bool
			ent, isNew = e.ns.learn(k, cg, e.now(), 0)
			known = true
			if isNew {
				e.ns.fire(ent)
			}
		} else {
			ent, known = e.ns.lookup(k)
		}
		if !known && !pi.cgOK {
			// An exited process's cgroup says nothing: its parent's does,
			// when the parent shares its namespaces (a container's shell
			// that ran it).
			if pcg, ok := e.parentCgroup(ev); ok {
				ent = e.learnFromParent(k, pcg)
				known = true
			}
		}
		if known && cg.ContainerID == "" && ent.ContainerID != "" {
			cg = CgroupInfo{Path: ent.Cgroup, ContainerID: ent.ContainerID, Runtime: ent.Runtime, PodUID: ent.PodUID}
			e.nsFallbacks.Add(1)
		}
	}
	wl.ContainerID, wl.Runtime, wl.PodUID, wl.Cgroup = cg.ContainerID, cg.Runtime, cg.PodUID, cg.Path
	wl = e.withContainer(wl)
	ev.Workload = wl
	if !statOK || pi.stat.Exited() {
		return // without a start time the entry could not be validated; an exited process has no more events
	}
	pe := &procEntry{startTicks: pi.stat.StartTicks, exe: pi.exe, wl: wl, uid: ev.UID}
	pe.addComm(ev.Comm)
	pe.addComm(pi.stat.Comm)
	e.mu.Lock()
	e.procs.Put(pid, pe)
	e.mu.Unlock()
}

// fallback attributes an event whose process could not be read.
func (e *Enricher) fallback(ev *event.Event) {
	wl := &event.Workload{ExeName: ev.Comm, Owner: e.passwd.lookup(ev.UID)}
	if !e.isHost(ev) {
		k := nsKey{ev.PidNS, ev.MntNS}
		ent, ok := e.ns.lookup(k)
		if !ok {
			if pcg, pok := e.parentCgroup(ev); pok {
				ent, ok = e.learnFromParent(k, pcg), true
			}
		}
		if ok {
			wl.ContainerID, wl.Runtime, wl.PodUID, wl.Cgroup = ent.ContainerID, ent.Runtime, ent.PodUID, ent.Cgroup
			e.nsFallbacks.Add(1)
			ev.Workload = e.withContainer(wl)
			return
		}
	}
	e.none.Add(1)
	if wl.ExeName == "" && wl.Owner == "" {
		ev.Workload = nil
		return
	}
	ev.Workload = wl
}

// parentCgroup reads the cgroup of ev's parent process when the parent is
// alive and in ev's pid and mount namespaces: the container of a process
// that exited before it could be read.
func (e *Enricher) parentCgroup(ev *event.Event) (CgroupInfo, bool) {
	if ev.HostPPID == 0 {
		return CgroupInfo{}, false
	}
	dir := procDir(e.procRoot, ev.HostPPID)
	pidNS, mntNS, err := readNS(dir)
	if err != nil || pidNS != ev.PidNS || mntNS != ev.MntNS {
		return CgroupInfo{}, false
	}
	st, err := readStat(dir)
	if err != nil || st.Exited() {
		return CgroupInfo{}, false
	}
	b, err := os.ReadFile(dir + "/cgroup")
	if err != nil {
		return CgroupInfo{}, false
	}
	cg := ParseCgroup(b)
	return cg, cg.Path != "" && cg.Path != "/"
}

// learnFromParent indexes namespaces k as the parent's cgroup says.
func (e *Enricher) learnFromParent(k nsKey, cg CgroupInfo) NSEntry {
	e.parentFallbacks.Add(1)
	ent, isNew := e.ns.learn(k, cg, e.now(), 0)
	if isNew {
		e.ns.fire(ent)
	}
	return ent
}

// Revalidate checks every cached process against /proc/<pid>/stat: entries
// whose start time changed (pid reused) are dropped at once, entries whose
// process is gone at the second consecutive call that finds it gone. It
// returns the number of entries dropped. Call it periodically from a
// background goroutine; it does not hold the cache lock during I/O.
func (e *Enricher) Revalidate() int {
	e.scanMu.Lock()
	defer e.scanMu.Unlock()
	type item struct {
		pid uint32
		pe  *procEntry
	}
	e.mu.Lock()
	items := make([]item, 0, e.procs.Len())
	e.procs.Each(func(pid uint32, pe *procEntry) bool {
		items = append(items, item{pid, pe})
		return true
	})
	e.mu.Unlock()

	var drop []item
	var gone, alive []*procEntry
	for _, it := range items {
		st, err := readStat(procDir(e.procRoot, it.pid))
		switch {
		case err == errProcGone:
			gone = append(gone, it.pe)
		case err != nil:
			// Unreadable for another reason: keep the entry.
		case st.StartTicks != it.pe.startTicks:
			drop = append(drop, it)
			e.pidReuse.Add(1)
		default:
			alive = append(alive, it.pe)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, pe := range alive {
		pe.goneScans = 0
	}
	for _, pe := range gone {
		pe.goneScans++
	}
	for _, it := range items {
		if it.pe.goneScans >= 2 {
			drop = append(drop, it)
		}
	}
	n := 0
	for _, it := range drop {
		if cur, ok := e.procs.Peek(it.pid); ok && cur == it.pe {
			e.procs.Remove(it.pid)
			n++
		}
	}
	return n
}

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

// Stats returns the counters. Safe for concurrent use.
func (e *Enricher) Stats() Stats {
	e.mu.Lock()
	cached := e.procs.Len()
	e.mu.Unlock()
	st := Stats{
		Hits:          e.hits.Load(),
		Misses:        e.misses.Load(),
		Verifications: e.verifications.Load(),
		PidReuse:      e.pidReuse.Load(),
		ProcGone:      e.procGone.Load(),
		PartialReads:  e.partialReads.Load(),
		NSFallbacks:   e.nsFallbacks.Load(),
		NothingLearnt: e.none.Load(),
		CachedProcs:   cached,
		Namespaces:    e.ns.len(),

		ParentFallbacks: e.parentFallbacks.Load(),
	}
	if e.meta != nil {
		st.ContainersNamed = e.meta.found.Load()
		st.ContainersUnnamed = e.meta.notFound.Load()
		st.MetaSourceErrors = e.meta.failed.Load()
	}
	return st
}
