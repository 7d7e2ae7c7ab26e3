package enrich

import (
	"os"
	"testing"

	"github.com/connwatch/connwatch/event"
)

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
		wantStats Stats // compared on Hits, Misses, Verifications, PidReuse, Execs
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
			wantStats: Stats{Hits: 0, Misses: 2, Verifications: 1, Execs: 1},
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
			got := Stats{Hits: st.Hits, Misses: st.Misses, Verifications: st.Verifications, PidReuse: st.PidReuse, Execs: st.Execs}
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

// A process that calls execve keeps its pid and start time: the event's
// comm is what tells the cache that its entry describes the old program.
// The next event carries the new program's Workload, and the one after is
// a cache hit again.
func TestExecUnderCachedPid(t *testing.T) {
	const pid = 3200
	tests := []struct {
		name       string
		before     fakeProc
		after      fakeProc
		wantBefore event.Workload
		want       event.Workload
	}{
		{
			name:   "other executable and comm (a shell script's exec)",
			before: fakeProc{pid: pid, ppid: 1, comm: "sh", exe: "/usr/bin/dash", args: []string{"/bin/sh", "run.sh"}, startTicks: 500},
			after:  fakeProc{pid: pid, ppid: 1, comm: "curl", exe: "/usr/bin/curl", args: []string{"curl", "http://10.0.0.1/"}, startTicks: 500},
			wantBefore: event.Workload{ExePath: "/usr/bin/dash", ExeName: "dash", Args: []string{"/bin/sh", "run.sh"}, Owner: "root",
				StartTime: startAt(500)},
			want: event.Workload{ExePath: "/usr/bin/curl", ExeName: "curl", Args: []string{"curl", "http://10.0.0.1/"}, Owner: "root",
				StartTime: startAt(500)},
		},
		{
			name:   "same executable, other comm (a busybox applet)",
			before: fakeProc{pid: pid, ppid: 1, comm: "sh", exe: "/bin/busybox", args: []string{"sh", "-c", "exec nc 10.0.0.1 80"}, startTicks: 500},
			after:  fakeProc{pid: pid, ppid: 1, comm: "nc", exe: "/bin/busybox", args: []string{"nc", "10.0.0.1", "80"}, startTicks: 500},
			wantBefore: event.Workload{ExePath: "/bin/busybox", ExeName: "busybox", Args: []string{"sh", "-c", "exec nc 10.0.0.1 80"},
				Owner: "root", StartTime: startAt(500)},
			want: event.Workload{ExePath: "/bin/busybox", ExeName: "busybox", Args: []string{"nc", "10.0.0.1", "80"}, Owner: "root",
				StartTime: startAt(500)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newFakeProc(t)
			writeProc(t, root, tt.before)
			e := newTestEnricher(t, root)
			ev := event.Event{HostPID: pid, Comm: tt.before.comm}
			e.Enrich(&ev)
			checkWorkload(t, ev.Workload, tt.wantBefore)
			old := ev.Workload

			writeProc(t, root, tt.after)
			ev = event.Event{HostPID: pid, Comm: tt.after.comm}
			e.Enrich(&ev)
			checkWorkload(t, ev.Workload, tt.want)
			if st := e.Stats(); st.Execs != 1 || st.Verifications != 1 || st.Misses != 2 || st.PidReuse != 0 {
				t.Errorf("Stats = %+v, want 1 exec found by 1 verification, 2 misses", st)
			}
			// The old program's comm is not a thread of the new one.
			again := event.Event{HostPID: pid, Comm: tt.after.comm}
			e.Enrich(&again)
			if again.Workload != ev.Workload || again.Workload == old {
				t.Errorf("event after the exec: Workload %+v, want the new cached one", again.Workload)
			}
			if st := e.Stats(); st.Hits != 1 {
				t.Errorf("event after the exec: Hits = %d, want 1", st.Hits)
			}
		})
	}
}

// An execve into a program whose comm the entry already knew (as a thread's)
// cannot be seen on the event path; Revalidate finds it from the comm in
// stat, and the next event reads the new program.
func TestRevalidateFindsExec(t *testing.T) {
	const pid = 3300
	root := newFakeProc(t)
	writeProc(t, root, fakeProc{pid: pid, comm: "app", exe: "/srv/app", args: []string{"/srv/app"}, startTicks: 70})
	e := newTestEnricher(t, root)
	for _, comm := range []string{"app", "helper"} { // "helper": a thread's comm
		ev := event.Event{HostPID: pid, Comm: comm}
		e.Enrich(&ev)
	}
	writeProc(t, root, fakeProc{pid: pid, comm: "helper", exe: "/srv/helper", args: []string{"/srv/helper", "-x"}, startTicks: 70})
	ev := event.Event{HostPID: pid, Comm: "helper"}
	e.Enrich(&ev)
	if ev.Workload.ExePath != "/srv/app" {
		t.Fatalf("before Revalidate: %+v, want the cached /srv/app", ev.Workload)
	}
	if n := e.Revalidate(); n != 1 {
		t.Fatalf("Revalidate dropped %d entries, want 1", n)
	}
	e.Enrich(&ev)
	checkWorkload(t, ev.Workload, event.Workload{ExePath: "/srv/helper", ExeName: "helper", Args: []string{"/srv/helper", "-x"},
		Owner: "root", StartTime: startAt(70)})
	if st := e.Stats(); st.Execs != 1 || st.PidReuse != 0 {
		t.Errorf("Stats = %+v, want 1 exec, no pid reuse", st)
	}
	// Unchanged processes are kept.
	if n := e.Revalidate(); n != 0 {
		t.Errorf("second Revalidate dropped %d entries, want 0", n)
	}
}
