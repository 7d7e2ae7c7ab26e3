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

func TestScanProcAndPrune(t *testing.T) {
	root := copyTree(t, "testdata/proc")
	e := newTestEnricher(t, root)
	var mu sync.Mutex
	var fired []NSEntry
	e.OnNewNamespace(func(n NSEntry) {
		mu.Lock()
		fired = append(fired, n)
		mu.Unlock()
	})

	if got := e.PruneNamespaces(); got != nil {
		t.Fatalf("PruneNamespaces before any scan = %v", got)
	}
	res, err := e.ScanProc()
	if err != nil {
		t.Fatal(err)
	}
	if want := (ScanResult{Processes: 5, Namespaces: 3, New: 3}); res != want {
		t.Errorf("ScanProc = %+v, want %+v", res, want)
	}
	if got := entriesWithoutTime(e.Namespaces()); !reflect.DeepEqual(got, staticNamespaces) {
		t.Errorf("Namespaces\n got %+v\nwant %+v", got, staticNamespaces)
	}
	sortEntries(fired)
	if got := entriesWithoutTime(fired); !reflect.DeepEqual(got, staticNamespaces) {
		t.Errorf("hooks fired for\n %+v\nwant %+v", got, staticNamespaces)
	}
	for _, n := range e.Namespaces() {
		if n.LastSeen.IsZero() {
			t.Errorf("entry %d/%d has no LastSeen", n.PidNS, n.MntNS)
		}
	}

	// A second scan learns nothing new and fires nothing.
	if res, _ := e.ScanProc(); res.New != 0 || res.Namespaces != 3 || len(fired) != 3 {
		t.Errorf("second ScanProc = %+v, hooks fired %d times", res, len(fired))
	}
	if got := e.PruneNamespaces(); len(got) != 0 {
		t.Errorf("PruneNamespaces with every namespace alive = %+v", got)
	}

	// The docker container exits; a new container appears and is seen by
	// Enrich after the scan.
	removeProc(t, root, 4242)
	if _, err := e.ScanProc(); err != nil {
		t.Fatal(err)
	}
	writeProc(t, root, fakeProc{pid: 7100, comm: "redis-server", exe: "/usr/local/bin/redis-server",
		args: []string{"redis-server", "*:6379"}, startTicks: 900000, pidNS: 4026533001, mntNS: 4026533000,
		cgroup: "0::/system.slice/docker-" + idA + ".scope\n"})
	ev := event.Event{HostPID: 7100, Comm: "redis-server", PidNS: 4026533001, MntNS: 4026533000}
	e.Enrich(&ev)
	if len(fired) != 4 || fired[3].ContainerID != idA {
		t.Errorf("hook not fired for the namespace learnt by Enrich: %+v", fired)
	}
	gone := e.PruneNamespaces()
	if got := entriesWithoutTime(gone); !reflect.DeepEqual(got, staticNamespaces[:1]) {
		t.Errorf("PruneNamespaces = %+v, want the docker container's entry", got)
	}
	want := append([]NSEntry{}, staticNamespaces[1:]...)
	want = append(want, NSEntry{PidNS: 4026533001, MntNS: 4026533000, ContainerID: idA, Runtime: "docker",
		Cgroup: "/system.slice/docker-" + idA + ".scope"})
	if got := entriesWithoutTime(e.Namespaces()); !reflect.DeepEqual(got, want) {
		t.Errorf("Namespaces after prune\n got %+v\nwant %+v", got, want)
	}

	// Once the new container has exited too, the next scan drops it.
	removeProc(t, root, 7100)
	e.ScanProc()
	if gone := e.PruneNamespaces(); len(gone) != 1 || gone[0].ContainerID != idA {
		t.Errorf("PruneNamespaces = %+v, want the redis container", gone)
	}
	if st := e.Stats(); st.Namespaces != 2 {
		t.Errorf("Stats.Namespaces = %d, want 2", st.Namespaces)
	}
}

func TestScanProcWithoutHostNamespaces(t *testing.T) {
	root := copyTree(t, "testdata/proc")
	if err := os.RemoveAll(filepath.Join(root, "1", "ns")); err != nil {
		t.Fatal(err)
	}
	e := newTestEnricher(t, root)
	if _, _, ok := e.HostNamespaces(); ok {
		t.Fatal("HostNamespaces known without /proc/1/ns")
	}
	if _, err := e.ScanProc(); err == nil {
		t.Fatal("ScanProc without host namespaces: no error")
	}
	if len(e.Namespaces()) != 0 {
		t.Fatal("ScanProc indexed namespaces it cannot classify")
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

func TestPidReuse(t *testing.T) {
	const pid = 3100
	orig := fakeProc{pid: pid, ppid: 1, comm: "worker", exe: "/usr/bin/worker", args: []string{"worker", "--queue=a"},
		startTicks: 1000, pidNS: 4026550001, mntNS: 4026550000, cgroup: "0::/system.slice/docker-" + idA + ".scope\n"}
	origWL := event.Workload{ExePath: "/usr/bin/worker", ExeName: "worker", Args: []string{"worker", "--queue=a"}, Owner: "root",
		StartTime: startAt(1000), ContainerID: idA, Runtime: "docker", Cgroup: "/system.slice/docker-" + idA + ".scope"}
	tests := []struct {
		name      string
		next      *fakeProc // the tree after the first event; nil: unchanged
		ev        event.Event
		revalid   bool // call Revalidate before the second event
		same      bool // the second event gets the first Workload
		want      event.Workload
		wantStats Stats // compared on Hits, Misses, Verifications, PidReuse
	}{
		{
			name: "reused pid, other comm",
			next: &fakeProc{pid: pid, ppid: 1, comm: "curl", exe: "/usr/bin/curl", args: []string{"curl", "http://10.0.0.1/"},
				startTicks: 2000, cgroup: "0::/user.slice/user-1000.slice/session-2.scope\n"},
			ev: event.Event{HostPID: pid, Comm: "curl", UID: 1000},
			want: event.Workload{ExePath: "/usr/bin/curl", ExeName: "curl", Args: []string{"curl", "http://10.0.0.1/"}, Owner: "alice",
				StartTime: startAt(2000), Cgroup: "/user.slice/user-1000.slice/session-2.scope"},
			wantStats: Stats{Hits: 0, Misses: 2, Verifications: 1, PidReuse: 1},
		},
		{
			name: "execve: same start time, other exe",
			next: &fakeProc{pid: pid, ppid: 1, comm: "sh", exe: "/bin/sh", args: []string{"sh", "-c", "true"}, startTicks: 1000,
				pidNS: 4026550001, mntNS: 4026550000, cgroup: orig.cgroup},
			ev: event.Event{HostPID: pid, Comm: "sh", PidNS: 4026550001, MntNS: 4026550000},
			want: event.Workload{ExePath: "/bin/sh", ExeName: "sh", Args: []string{"sh", "-c", "true"}, Owner: "root",
				StartTime: startAt(1000), ContainerID: idA, Runtime: "docker", Cgroup: "/system.slice/docker-" + idA + ".scope"},
			wantStats: Stats{Hits: 0, Misses: 2, Verifications: 1, PidReuse: 0},
		},
		{
			name:      "thread with its own comm",
			ev:        event.Event{HostPID: pid, Comm: "worker-io-3", PidNS: 4026550001, MntNS: 4026550000},
			same:      true,
			want:      origWL,
			wantStats: Stats{Hits: 1, Misses: 1, Verifications: 1},
		},
		{
			name: "reused pid, same comm, found by Revalidate",
			next: &fakeProc{pid: pid, ppid: 1, comm: "worker", exe: "/usr/bin/worker", args: []string{"worker", "--queue=b"},
				startTicks: 3000, pidNS: 4026550001, mntNS: 4026550000, cgroup: orig.cgroup},
			ev:      event.Event{HostPID: pid, Comm: "worker", PidNS: 4026550001, MntNS: 4026550000},
			revalid: true,
			want: event.Workload{ExePath: "/usr/bin/worker", ExeName: "worker", Args: []string{"worker", "--queue=b"}, Owner: "root",
				StartTime: startAt(3000), ContainerID: idA, Runtime: "docker", Cgroup: "/system.slice/docker-" + idA + ".scope"},
			wantStats: Stats{Hits: 0, Misses: 2, PidReuse: 1},
		},
		{
			name: "uid changed: new owner, nothing re-read",
			ev:   event.Event{HostPID: pid, Comm: "worker", UID: 1000, PidNS: 4026550001, MntNS: 4026550000},
			want: func() event.Workload { w := origWL; w.Owner = "alice"; return w }(),
			// Hits, not a miss: /proc is not read again.
			wantStats: Stats{Hits: 1, Misses: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newFakeProc(t)
			writeProc(t, root, orig)
			e := newTestEnricher(t, root)
			ev1 := event.Event{HostPID: pid, Comm: "worker", PidNS: 4026550001, MntNS: 4026550000}
			e.Enrich(&ev1)
			checkWorkload(t, ev1.Workload, origWL)
			if tt.next != nil {
				writeProc(t, root, *tt.next)
			}
			if tt.revalid {
				// Without revalidation the same comm is served from the cache.
				ev := tt.ev
				e.Enrich(&ev)
				if ev.Workload != ev1.Workload {
					t.Fatalf("before Revalidate: %+v, want the cached Workload", ev.Workload)
				}
				if n := e.Revalidate(); n != 1 {
					t.Fatalf("Revalidate dropped %d entries, want 1", n)
				}
				tt.wantStats.Hits++
			}
			ev := tt.ev
			e.Enrich(&ev)
			checkWorkload(t, ev.Workload, tt.want)
			if (ev.Workload == ev1.Workload) != tt.same {
				t.Errorf("same Workload = %v, want %v", ev.Workload == ev1.Workload, tt.same)
			}
			st := e.Stats()
			got := Stats{Hits: st.Hits, Misses: st.Misses, Verifications: st.Verifications, PidReuse: st.PidReuse}
			if got != tt.wantStats {
				t.Errorf("Stats = %+v, want %+v", got, tt.wantStats)
			}
			// The second process's Workload is now cached.
			ev.Workload = nil
			e.Enrich(&ev)
			checkWorkload(t, ev.Workload, tt.want)
			if e.Stats().Hits != st.Hits+1 {
				t.Errorf("third event was not a cache hit")
			}
		})
	}
}

func TestThreadCommRemembered(t *testing.T) {
	root := newFakeProc(t)
	writeProc(t, root, fakeProc{pid: 40, comm: "java", exe: "/usr/lib/jvm/bin/java", args: []string{"java", "-jar", "app.jar"}, startTicks: 77})
	e := newTestEnricher(t, root)
	ev := event.Event{HostPID: 40, Comm: "java"}
	e.Enrich(&ev)
	wl := ev.Workload
	threads := []string{"http-nio-8080-e", "C2 CompilerThre", "pool-1-thread-1"}
	for _, c := range threads {
		ev := event.Event{HostPID: 40, Comm: c}
		e.Enrich(&ev)
		if ev.Workload != wl {
			t.Fatalf("thread %q got another Workload", c)
		}
	}
	// Every comm is known now: no more file access.
	if err := os.Rename(root, root+".gone"); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(threads, "java") {
		ev := event.Event{HostPID: 40, Comm: c}
		e.Enrich(&ev)
		if ev.Workload != wl {
			t.Fatalf("thread %q not served from the cache", c)
		}
	}
	if st := e.Stats(); st.Verifications != 3 || st.Misses != 1 || st.Hits != 3+4 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestExitedProcess(t *testing.T) {
	root := copyTree(t, "testdata/proc")
	e := newTestEnricher(t, root)
	if _, err := e.ScanProc(); err != nil {
		t.Fatal(err)
	}
	// A cached process that exited is still attributed from the cache
	// (events queued before its exit), until two Revalidate calls found it
	// gone.
	cached := event.Event{HostPID: 812, Comm: "curl", UID: 1000}
	e.Enrich(&cached)
	wl := cached.Workload
	removeProc(t, root, 812)
	removeProc(t, root, 4242)
	if n := e.Revalidate(); n != 0 {
		t.Fatalf("first Revalidate after exit dropped %d", n)
	}
	cached.Workload = nil
	if e.Enrich(&cached); cached.Workload != wl {
		t.Fatalf("exited cached process: %+v, want the cached Workload", cached.Workload)
	}
	if n := e.Revalidate(); n != 1 {
		t.Fatalf("second Revalidate dropped %d, want 1", n)
	}

	tests := []struct {
		name string
		ev   event.Event
		want *event.Workload
		// counters moved by this event
		gone, nsFallback, nothing uint64
	}{
		{"container process gone, namespace indexed",
			event.Event{HostPID: 4243, Comm: "gunicorn", UID: 0, PidNS: 4026532601, MntNS: 4026532600},
			&event.Workload{ExeName: "gunicorn", Owner: "root", ContainerID: dockerWebID, Runtime: "docker",
				Cgroup: "/system.slice/docker-" + dockerWebID + ".scope"},
			1, 1, 0},
		{"container process gone, namespace unknown",
			event.Event{HostPID: 9999, Comm: "wget", UID: 1000, PidNS: 4026539999, MntNS: 4026539998},
			&event.Workload{ExeName: "wget", Owner: "alice"},
			1, 0, 1},
		{"host process gone",
			event.Event{HostPID: 812, Comm: "curl", UID: 1000},
			&event.Workload{ExeName: "curl", Owner: "alice"},
			1, 0, 1},
		{"host process gone, host namespaces spelled out, not taken from the index",
			event.Event{HostPID: 9998, Comm: "ssh", UID: 4242, PidNS: hostPidNS, MntNS: hostMntNS},
			&event.Workload{ExeName: "ssh"},
			1, 0, 1},
		{"no pid, no comm, unknown uid",
			event.Event{UID: 4242},
			nil,
			0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.Stats()
			ev := tt.ev
			e.Enrich(&ev)
			if tt.want == nil {
				if ev.Workload != nil {
					t.Errorf("Workload = %+v, want nil", ev.Workload)
				}
			} else {
				checkWorkload(t, ev.Workload, *tt.want)
			}
			after := e.Stats()
			if d := after.ProcGone - before.ProcGone; d != tt.gone {
				t.Errorf("ProcGone moved by %d, want %d", d, tt.gone)
			}
			if d := after.NSFallbacks - before.NSFallbacks; d != tt.nsFallback {
				t.Errorf("NSFallbacks moved by %d, want %d", d, tt.nsFallback)
			}
			if d := after.NothingLearnt - before.NothingLearnt; d != tt.nothing {
				t.Errorf("NothingLearnt moved by %d, want %d", d, tt.nothing)
			}
			if after.Misses != before.Misses+1 || after.Hits != before.Hits {
				t.Errorf("not counted as exactly one miss: before %+v after %+v", before, after)
			}
		})
	}
}

func TestUnreadableFiles(t *testing.T) {
	const (
		pidNS = 4026560001
		mntNS = 4026560000
	)
	dockerCG := "0::/system.slice/docker-" + idC + ".scope\n"
	base := fakeProc{pid: 500, ppid: 1, comm: "svc", exe: "/opt/svc/bin/svc", args: []string{"svc", "-v"}, startTicks: 8080,
		pidNS: pidNS, mntNS: mntNS, cgroup: dockerCG}
	full := event.Workload{ExePath: "/opt/svc/bin/svc", ExeName: "svc", Args: []string{"svc", "-v"}, Owner: "root",
		StartTime: startAt(8080), ContainerID: idC, Runtime: "docker", Cgroup: "/system.slice/docker-" + idC + ".scope"}
	with := func(f func(*event.Workload)) event.Workload { w := full; f(&w); return w }
	tests := []struct {
		name    string
		adjust  func(p *fakeProc)              // before the tree is written
		after   func(t *testing.T, dir string) // on the written /proc/500
		known   bool                           // namespace indexed beforehand (by a sibling process)
		want    event.Workload
		partial bool
		cached  bool
	}{
		{"everything readable", nil, nil, false, full, false, true},
		{"exe missing (kernel thread, or exiting)",
			func(p *fakeProc) { p.exe = "" }, nil, false,
			with(func(w *event.Workload) { w.ExePath, w.ExeName = "", "svc-ev" }), true, true},
		{"exe not a link",
			func(p *fakeProc) { p.exe = "" },
			func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "exe"), "") }, false,
			with(func(w *event.Workload) { w.ExePath, w.ExeName = "", "svc-ev" }), true, true},
		{"cmdline missing",
			func(p *fakeProc) { p.noCmdline = true }, nil, false,
			with(func(w *event.Workload) { w.Args = nil }), true, true},
		{"cmdline unreadable",
			func(p *fakeProc) { p.noCmdline = true },
			func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "cmdline"), 0o755); err != nil {
					t.Fatal(err)
				}
			}, false,
			with(func(w *event.Workload) { w.Args = nil }), true, true},
		{"cmdline empty (zombie)",
			func(p *fakeProc) { p.args = nil }, nil, false,
			with(func(w *event.Workload) { w.Args = nil }), false, true},
		{"cgroup missing, namespace unknown",
			func(p *fakeProc) { p.cgroup = "" }, nil, false,
			with(func(w *event.Workload) { w.ContainerID, w.Runtime, w.Cgroup = "", "", "" }), true, true},
		{"cgroup missing, namespace indexed",
			func(p *fakeProc) { p.cgroup = "" }, nil, true,
			full, true, true},
		{"stat malformed: no start time, not cached",
			nil,
			func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "stat"), "500 (svc) S 1") }, false,
			with(func(w *event.Workload) { w.StartTime = time.Time{} }), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newFakeProc(t)
			p := base
			if tt.adjust != nil {
				tt.adjust(&p)
			}
			writeProc(t, root, p)
			if tt.after != nil {
				tt.after(t, filepath.Join(root, "500"))
			}
			if tt.known {
				writeProc(t, root, fakeProc{pid: 501, comm: "sidecar", exe: "/sidecar", startTicks: 1, pidNS: pidNS, mntNS: mntNS, cgroup: dockerCG})
			}
			e := newTestEnricher(t, root)
			if tt.known {
				if _, err := e.ScanProc(); err != nil {
					t.Fatal(err)
				}
			}
			ev := event.Event{HostPID: 500, Comm: "svc-ev", PidNS: pidNS, MntNS: mntNS}
			e.Enrich(&ev)
			checkWorkload(t, ev.Workload, tt.want)
			st := e.Stats()
			if (st.PartialReads == 1) != tt.partial || st.ProcGone != 0 {
				t.Errorf("PartialReads = %d, ProcGone = %d; want partial %v", st.PartialReads, st.ProcGone, tt.partial)
			}
			if (st.CachedProcs == 1) != tt.cached {
				t.Errorf("CachedProcs = %d, want cached %v", st.CachedProcs, tt.cached)
			}
		})
	}
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files regardless of their mode")
	}
	root := newFakeProc(t)
	writeProc(t, root, fakeProc{pid: 600, comm: "secret", exe: "/usr/bin/secret", args: []string{"secret", "--token=x"}, startTicks: 9,
		cgroup: "0::/system.slice/secret.service\n"})
	for _, f := range []string{"cmdline", "cgroup"} {
		if err := os.Chmod(filepath.Join(root, "600", f), 0); err != nil {
			t.Fatal(err)
		}
	}
	e := newTestEnricher(t, root)
	ev := event.Event{HostPID: 600, Comm: "secret"}
	e.Enrich(&ev)
	checkWorkload(t, ev.Workload, event.Workload{ExePath: "/usr/bin/secret", ExeName: "secret", Owner: "root", StartTime: startAt(9)})
	if st := e.Stats(); st.PartialReads != 1 {
		t.Errorf("PartialReads = %d, want 1", st.PartialReads)
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	os.Remove(name)
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
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
