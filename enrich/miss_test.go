package enrich

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/connwatch/connwatch/event"
)

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
