package enrich

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/connwatch/connwatch/event"
)

// checkWorkload fails t unless got equals want field by field.
func checkWorkload(t *testing.T, got *event.Workload, want event.Workload) {
	t.Helper()
	if got == nil {
		t.Fatalf("Workload = nil, want %+v", want)
	}
	g := *got
	if !g.StartTime.Equal(want.StartTime) {
		t.Errorf("StartTime = %v, want %v", g.StartTime, want.StartTime)
	}
	g.StartTime, want.StartTime = time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("Workload\n got %#v\nwant %#v", g, want)
	}
}

// entriesWithoutTime returns es with LastSeen cleared.
func entriesWithoutTime(es []NSEntry) []NSEntry {
	out := make([]NSEntry, len(es))
	for i, e := range es {
		e.LastSeen = time.Time{}
		out[i] = e
	}
	return out
}

// Expected content of the static tree's namespace index.
var staticNamespaces = []NSEntry{
	{PidNS: 4026532601, MntNS: 4026532600, ContainerID: dockerWebID, Runtime: "docker",
		Cgroup: "/system.slice/docker-" + dockerWebID + ".scope"},
	{PidNS: 4026532711, MntNS: 4026532710, ContainerID: k8sAPIID, Runtime: "containerd", PodUID: k8sAPIPodUID,
		Cgroup: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d3c1a52_0b6e_4f8a_9c21_5e4d3b2a1f09.slice/cri-containerd-" + k8sAPIID + ".scope"},
	{PidNS: 4026532811, MntNS: 4026532810, ContainerID: crioEnvoyID, Runtime: "cri-o", PodUID: envoyPodUID,
		Cgroup: "/kubepods/besteffort/pod" + envoyPodUID + "/crio-" + crioEnvoyID},
}

func TestEnrichStaticTree(t *testing.T) {
	e := newTestEnricher(t, "testdata/proc")
	if p, m, ok := e.HostNamespaces(); !ok || p != hostPidNS || m != hostMntNS {
		t.Fatalf("HostNamespaces() = %d, %d, %v", p, m, ok)
	}
	tests := []struct {
		name string
		ev   event.Event
		want event.Workload
	}{
		{"host process, zero namespaces",
			event.Event{HostPID: 812, Comm: "curl", UID: 1000},
			event.Workload{ExePath: "/usr/bin/curl", ExeName: "curl", Args: []string{"curl", "-sS", "https://example.com/"},
				Owner: "alice", StartTime: startAt(123456), Cgroup: "/user.slice/user-1000.slice/session-2.scope"}},
		{"host init, host namespaces spelled out",
			event.Event{HostPID: 1, Comm: "systemd", PidNS: hostPidNS, MntNS: hostMntNS},
			event.Workload{ExePath: "/usr/lib/systemd/systemd", ExeName: "systemd", Args: []string{"/sbin/init", "splash"},
				Owner: "root", StartTime: startAt(4), Cgroup: "/init.scope"}},
		{"docker, deleted exe",
			event.Event{HostPID: 4242, PID: 1, Comm: "python3", UID: 0, PidNS: 4026532601, MntNS: 4026532600},
			event.Workload{ExePath: "/usr/local/bin/python3.12", ExeName: "python3.12", Args: []string{"python3", "-m", "http.server", "8080"},
				Owner: "root", StartTime: startAt(220050), ContainerID: dockerWebID, Runtime: "docker",
				Cgroup: "/system.slice/docker-" + dockerWebID + ".scope"}},
		{"kubernetes containerd, uid without passwd entry",
			event.Event{HostPID: 5150, PID: 7, Comm: "server", UID: 65532, PidNS: 4026532711, MntNS: 4026532710},
			event.Workload{ExePath: "/app/server", ExeName: "server", Args: []string{"/app/server", "--listen=:8080", "--log-level=info"},
				StartTime: startAt(330077), ContainerID: k8sAPIID, Runtime: "containerd", PodUID: k8sAPIPodUID,
				Cgroup: staticNamespaces[1].Cgroup}},
		{"kubernetes cri-o cgroup v1, comm with parens",
			event.Event{HostPID: 6060, PID: 1, Comm: "envoy) (main", UID: 101, PidNS: 4026532811, MntNS: 4026532810},
			event.Workload{ExePath: "/usr/local/bin/envoy", ExeName: "envoy", Args: []string{"envoy", "-c", "/etc/envoy/envoy.yaml"},
				Owner: "nginx", StartTime: startAt(440123), ContainerID: crioEnvoyID, Runtime: "cri-o", PodUID: envoyPodUID,
				Cgroup: staticNamespaces[2].Cgroup}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.ev
			e.Enrich(&ev)
			checkWorkload(t, ev.Workload, tt.want)
			first := ev.Workload
			ev.Workload = nil
			e.Enrich(&ev)
			if ev.Workload != first {
				t.Errorf("second Enrich returned another Workload")
			}
		})
	}
	st := e.Stats()
	if st.Misses != 5 || st.Hits != 5 || st.PartialReads != 0 || st.ProcGone != 0 || st.CachedProcs != 5 {
		t.Errorf("Stats = %+v", st)
	}
	if got := entriesWithoutTime(e.Namespaces()); !reflect.DeepEqual(got, staticNamespaces) {
		t.Errorf("Namespaces learnt from enrichment\n got %+v\nwant %+v", got, staticNamespaces)
	}
}

// TestEnrichLayouts runs one process per container layout through Enrich
// and ScanProc.
func TestEnrichLayouts(t *testing.T) {
	tests := []struct {
		name                    string
		cgroup                  string
		containerID, rt, podUID string
		wantPath                string
	}{
		{"docker systemd", "0::/system.slice/docker-" + idA + ".scope\n", idA, "docker", "", "/system.slice/docker-" + idA + ".scope"},
		{"docker cgroupfs v1", "4:memory:/docker/" + idB + "\n1:name=systemd:/docker/" + idB + "\n0::/\n", idB, "docker", "", "/docker/" + idB},
		{"cri-containerd systemd",
			"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnderscore + ".slice/cri-containerd-" + idC + ".scope\n",
			idC, "containerd", uidDashed,
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidUnderscore + ".slice/cri-containerd-" + idC + ".scope"},
		{"kubepods cgroupfs bare id", "0::/kubepods/burstable/pod" + uidDashed + "/" + idD + "\n", idD, "", uidDashed,
			"/kubepods/burstable/pod" + uidDashed + "/" + idD},
		{"cri-o", "0::/kubepods.slice/kubepods-pod" + uidUnderscore + ".slice/crio-" + idA + ".scope\n", idA, "cri-o", uidDashed,
			"/kubepods.slice/kubepods-pod" + uidUnderscore + ".slice/crio-" + idA + ".scope"},
		{"podman", "0::/machine.slice/libpod-" + idB + ".scope/container\n", idB, "podman", "",
			"/machine.slice/libpod-" + idB + ".scope/container"},
		{"conmon, own namespaces but no container", "0::/machine.slice/libpod-conmon-" + idB + ".scope\n", "", "", "",
			"/machine.slice/libpod-conmon-" + idB + ".scope"},
	}
	root := newFakeProc(t)
	e := newTestEnricher(t, root)
	var wantNS []NSEntry
	for i, tt := range tests {
		p := fakeProc{pid: uint32(2000 + i), ppid: 1, comm: "app", exe: "/srv/app", args: []string{"/srv/app", "-i", fmt.Sprint(i)},
			startTicks: uint64(5000 + i), pidNS: uint32(4026540000 + 2*i), mntNS: uint32(4026540001 + 2*i), cgroup: tt.cgroup}
		writeProc(t, root, p)
		wantNS = append(wantNS, NSEntry{PidNS: p.pidNS, MntNS: p.mntNS, ContainerID: tt.containerID, Runtime: tt.rt,
			PodUID: tt.podUID, Cgroup: tt.wantPath})
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := event.Event{HostPID: uint32(2000 + i), Comm: "app", UID: 0,
				PidNS: uint32(4026540000 + 2*i), MntNS: uint32(4026540001 + 2*i)}
			e.Enrich(&ev)
			checkWorkload(t, ev.Workload, event.Workload{ExePath: "/srv/app", ExeName: "app",
				Args: []string{"/srv/app", "-i", fmt.Sprint(i)}, Owner: "root", StartTime: startAt(uint64(5000 + i)),
				ContainerID: tt.containerID, Runtime: tt.rt, PodUID: tt.podUID, Cgroup: tt.wantPath})
		})
	}
	if got := entriesWithoutTime(e.Namespaces()); !reflect.DeepEqual(got, wantNS) {
		t.Errorf("Namespaces from Enrich\n got %+v\nwant %+v", got, wantNS)
	}

	// A fresh Enricher learns the same from a scan.
	e2 := newTestEnricher(t, root)
	res, err := e2.ScanProc()
	if err != nil {
		t.Fatal(err)
	}
	if res.New != len(tests) || res.Processes != len(tests)+1 {
		t.Errorf("ScanProc = %+v", res)
	}
	if got := entriesWithoutTime(e2.Namespaces()); !reflect.DeepEqual(got, wantNS) {
		t.Errorf("Namespaces from ScanProc\n got %+v\nwant %+v", got, wantNS)
	}
}

// TestCacheHitTouchesNoFiles warms the cache, then moves the procfs tree
// away: Enrich must still return the cached Workloads, without allocating.
func TestCacheHitTouchesNoFiles(t *testing.T) {
	root := copyTree(t, "testdata/proc")
	e := newTestEnricher(t, root)
	events := []event.Event{
		{HostPID: 812, Comm: "curl", UID: 1000},
		{HostPID: 4242, Comm: "python3", PidNS: 4026532601, MntNS: 4026532600},
		{HostPID: 5150, Comm: "server", UID: 65532, PidNS: 4026532711, MntNS: 4026532710},
		{HostPID: 6060, Comm: "envoy) (main", UID: 101, PidNS: 4026532811, MntNS: 4026532810},
	}
	warm := make([]*event.Workload, len(events))
	for i := range events {
		e.Enrich(&events[i])
		warm[i] = events[i].Workload
		if warm[i] == nil || warm[i].ExePath == "" {
			t.Fatalf("warming %d: %+v", events[i].HostPID, warm[i])
		}
	}
	if err := os.Rename(root, root+".gone"); err != nil {
		t.Fatal(err)
	}
	before := e.Stats()
	for i := range events {
		events[i].Workload = nil
		e.Enrich(&events[i])
		if events[i].Workload != warm[i] {
			t.Errorf("pid %d: Workload %+v, want the cached %+v", events[i].HostPID, events[i].Workload, warm[i])
		}
	}
	after := e.Stats()
	if after.Hits-before.Hits != uint64(len(events)) || after.Misses != before.Misses || after.ProcGone != 0 {
		t.Errorf("Stats before %+v after %+v", before, after)
	}
	ev := events[1]
	if allocs := testing.AllocsPerRun(1000, func() { e.Enrich(&ev) }); allocs != 0 {
		t.Errorf("cache hit allocates %.1f times", allocs)
	}
}

func TestOptions(t *testing.T) {
	if _, err := New(Options{ProcRoot: t.TempDir()}); err == nil {
		t.Error("New over a directory that is not a procfs: no error")
	}
	root := newFakeProc(t)
	for i := range 5 {
		writeProc(t, root, fakeProc{pid: uint32(100 + i), comm: "p", exe: "/p", startTicks: 1,
			pidNS: uint32(4026570000 + i), mntNS: 4026570100, cgroup: "0::/docker/" + idA + "\n"})
	}
	e := newTestEnricher(t, root, func(o *Options) {
		o.CacheSize = 2
		o.NSCacheSize = 3
		o.PasswdPath = filepath.Join(t.TempDir(), "no-passwd")
	})
	for i := range 5 {
		ev := event.Event{HostPID: uint32(100 + i), Comm: "p", PidNS: uint32(4026570000 + i), MntNS: 4026570100}
		e.Enrich(&ev)
		if ev.Workload == nil || ev.Workload.Owner != "" || ev.Workload.ContainerID != idA {
			t.Fatalf("Workload = %+v", ev.Workload)
		}
	}
	if st := e.Stats(); st.CachedProcs != 2 || st.Namespaces != 3 {
		t.Errorf("CachedProcs = %d, Namespaces = %d; want the bounds 2 and 3", st.CachedProcs, st.Namespaces)
	}
	// The least recently used were evicted.
	ns := e.Namespaces()
	if len(ns) != 3 || ns[0].PidNS != 4026570002 {
		t.Errorf("Namespaces = %+v", ns)
	}
}

// TestConcurrentUse exercises Enrich against ScanProc, Revalidate and the
// snapshots while processes come and go; run with -race.
func TestConcurrentUse(t *testing.T) {
	root := copyTree(t, "testdata/proc")
	e := newTestEnricher(t, root)
	var hookCalls sync.Map
	e.OnNewNamespace(func(n NSEntry) { hookCalls.Store(n.PidNS, n) })
	evs := []event.Event{
		{HostPID: 812, Comm: "curl", UID: 1000},
		{HostPID: 4242, Comm: "python3", PidNS: 4026532601, MntNS: 4026532600},
		{HostPID: 5150, Comm: "server", PidNS: 4026532711, MntNS: 4026532710},
		{HostPID: 6060, Comm: "envoy) (main", UID: 101, PidNS: 4026532811, MntNS: 4026532810},
		{HostPID: 7000, Comm: "churn", PidNS: 4026580001, MntNS: 4026580000},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // background maintenance
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			e.ScanProc()
			e.PruneNamespaces()
			e.Revalidate()
			_ = e.Namespaces()
			_ = e.Stats()
		}
	}()
	go func() { // a process that keeps being replaced
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := writeProcErr(root, fakeProc{pid: 7000, comm: "churn", exe: "/bin/churn", startTicks: uint64(i),
				pidNS: 4026580001, mntNS: 4026580000, cgroup: "0::/docker/" + idB + "\n"})
			if err == nil {
				err = os.RemoveAll(filepath.Join(root, "7000"))
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// The event path.
	for i := range 20000 {
		ev := evs[i%len(evs)]
		if i%7 == 0 {
			ev.Comm = "thread-" + fmt.Sprint(i%11)
		}
		e.Enrich(&ev)
		if ev.Workload == nil {
			t.Errorf("event %d: nil Workload", i)
			break
		}
	}
	close(stop)
	wg.Wait()
	if st := e.Stats(); st.Hits+st.Misses != 20000 || st.Hits == 0 {
		t.Errorf("Stats = %+v", st)
	}
	if _, ok := hookCalls.Load(uint32(4026532601)); !ok {
		t.Error("hook not called for the docker container")
	}
}

// NoOwners (the config's `enrich.passwd: ""`): no owner name, even for a
// uid the passwd file would name.
func TestNoOwners(t *testing.T) {
	root := copyTree(t, "testdata/proc")
	named := newTestEnricher(t, root)
	ev := event.Event{HostPID: 812, Comm: "curl", UID: 1000}
	named.Enrich(&ev)
	if ev.Workload == nil || ev.Workload.Owner != "alice" {
		t.Fatalf("with the passwd file: %+v, want owner alice", ev.Workload)
	}
	off := newTestEnricher(t, root, func(o *Options) { o.NoOwners = true })
	for _, ev := range []event.Event{{HostPID: 812, Comm: "curl", UID: 1000}, {HostPID: 99999, Comm: "gone", UID: 0}} {
		off.Enrich(&ev)
		if ev.Workload == nil || ev.Workload.Owner != "" {
			t.Errorf("NoOwners, pid %d: %+v, want no owner", ev.HostPID, ev.Workload)
		}
	}
}
