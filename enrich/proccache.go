package enrich

import "github.com/connwatch/connwatch/event"

// maxComms is how many comms a process cache entry remembers.
const maxComms = 8

// procEntry is one process cache entry. startTicks, comm and exe are
// immutable; the other fields are guarded by Enricher.mu.
type procEntry struct {
	startTicks uint64
	comm       string // the process's own (stat's) when it was read
	exe        string

	wl        *event.Workload
	uid       uint32
	comms     [maxComms]string // comm, the first event's and then its threads'
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

// revisit handles a cached entry that does not match ev's comm or uid. A
// comm the entry has not seen is verified against /proc/<pid>/stat and
// exe: another process (start time) or another program (comm, exe) under
// the pid is read afresh; a thread's own comm is remembered. A uid the
// entry was not resolved for gets its owner name, nothing else re-read.
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
		if st.Comm != pe.comm || exe != pe.exe {
			// execve: same process, new image (or a renamed main thread,
			// which a fresh read describes as well).
			e.execs.Add(1)
			e.dropProc(pid, pe)
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

// Revalidate checks every cached process against /proc/<pid>/stat: entries
// whose start time changed (pid reused) or whose comm changed (execve) are
// dropped at once, entries whose process is gone at the second consecutive
// call that finds it gone. It returns the number of entries dropped. The
// agent calls it periodically from a background goroutine; it does not
// hold the cache lock during I/O.
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
		case st.Comm != it.pe.comm:
			drop = append(drop, it)
			e.execs.Add(1)
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
