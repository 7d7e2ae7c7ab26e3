package enrich

import (
	"os"
	"path/filepath"

	"github.com/connwatch/connwatch/event"
)

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
	pe := &procEntry{startTicks: pi.stat.StartTicks, comm: pi.stat.Comm, exe: pi.exe, wl: wl, uid: ev.UID}
	pe.addComm(pi.stat.Comm)
	pe.addComm(ev.Comm)
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
