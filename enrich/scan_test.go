package enrich

import (
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/connwatch/connwatch/event"
)

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
