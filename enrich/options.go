package enrich

import "log/slog"

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
	// NoOwners leaves Owner empty without reading any passwd file, whatever
	// PasswdPath says (the config's `enrich.passwd: ""`).
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
	// Execs counts cache entries found to describe the program a process
	// ran before an execve (same start time, other comm or executable), by
	// a verification or Revalidate.
	Execs uint64
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
		Execs:         e.execs.Load(),
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
