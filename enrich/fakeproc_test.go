package enrich

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Static tree under testdata/proc (btime 1700000000, host namespaces
// pid:[4026531836] mnt:[4026531841]):
//
//	1     systemd  host init
//	812   curl     host process, uid 1000 session scope
//	4242  python3  docker container, cgroup v2, exe "(deleted)"
//	5150  server   Kubernetes pod on containerd, systemd driver, cgroup v2
//	6060  envoy    Kubernetes pod on cri-o, cgroupfs driver, cgroup v1; comm "envoy) (main"
const (
	testBoot     = 1700000000
	hostPidNS    = 4026531836
	hostMntNS    = 4026531841
	dockerWebID  = "f31f384749f9115acf01fcf82f5a966b59dcc0a4cbd7c9740888c0bf32aa2bbb"
	k8sAPIID     = "9c272824d47d4d2b21d6c14598d96fa2a5c820097687c2cd9fa75a0ecc8ed11a"
	crioEnvoyID  = "6f940771d4fabb0cfa23412e5d5a89ce26bea7dfec8a59aee6985db8b4c7d92a"
	k8sAPIPodUID = "7d3c1a52-0b6e-4f8a-9c21-5e4d3b2a1f09"
	envoyPodUID  = "0f4b9c1e-2d3a-4b5c-8d6e-7f8091a2b3c4"
)

// copyTree copies the directory src, symlinks included, to a fresh
// temporary directory and returns the copy's path.
func copyTree(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "proc")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, b, 0o644)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// fakeProc describes one process of a generated procfs tree.
type fakeProc struct {
	pid        uint32
	ppid       uint32
	comm       string
	exe        string // "" leaves exe out, as for a kernel thread
	args       []string
	startTicks uint64
	pidNS      uint32 // 0: the host's
	mntNS      uint32 // 0: the host's
	cgroup     string // content of the cgroup file; "" leaves it out
	noCmdline  bool
}

// newFakeProc creates a procfs tree holding a stat file with btime testBoot
// and a host init (pid 1), and returns its root.
func newFakeProc(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "proc")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("cpu  1 2 3 4 5 6 7 0 0 0\nctxt 1000\nbtime %d\nprocesses 99\n", testBoot)
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	writeProc(t, root, fakeProc{pid: 1, comm: "systemd", exe: "/usr/lib/systemd/systemd",
		args: []string{"/sbin/init"}, startTicks: 4, cgroup: "0::/init.scope\n"})
	return root
}

// writeProc writes (or rewrites) /proc/<pid> for p under root.
func writeProc(t testing.TB, root string, p fakeProc) {
	t.Helper()
	if err := writeProcErr(root, p); err != nil {
		t.Fatal(err)
	}
}

// writeProcErr is writeProc for goroutines other than the test's.
func writeProcErr(root string, p fakeProc) error {
	dir := filepath.Join(root, fmt.Sprint(p.pid))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine(p.pid, p.comm, p.ppid, p.startTicks)), 0o644); err != nil {
		return err
	}
	if !p.noCmdline {
		var cmd string
		if len(p.args) > 0 {
			cmd = strings.Join(p.args, "\x00") + "\x00"
		}
		if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmd), 0o644); err != nil {
			return err
		}
	}
	if p.cgroup != "" {
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(p.cgroup), 0o644); err != nil {
			return err
		}
	}
	if p.exe != "" {
		if err := os.Symlink(p.exe, filepath.Join(dir, "exe")); err != nil {
			return err
		}
	}
	pidNS, mntNS := p.pidNS, p.mntNS
	if pidNS == 0 {
		pidNS = hostPidNS
	}
	if mntNS == 0 {
		mntNS = hostMntNS
	}
	if err := os.Symlink(fmt.Sprintf("pid:[%d]", pidNS), filepath.Join(dir, "ns", "pid")); err != nil {
		return err
	}
	return os.Symlink(fmt.Sprintf("mnt:[%d]", mntNS), filepath.Join(dir, "ns", "mnt"))
}

// removeProc deletes /proc/<pid>, as when the process exits.
func removeProc(t testing.TB, root string, pid uint32) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(root, fmt.Sprint(pid))); err != nil {
		t.Fatal(err)
	}
}

// statLine renders a /proc/<pid>/stat line with the real field layout.
func statLine(pid uint32, comm string, ppid uint32, start uint64) string {
	return fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 1520 0 3 0 12 7 0 0 20 0 4 0 %d 23859200 2321 "+
		"18446744073709551615 94251863834624 94251864098165 140731603458480 0 0 0 0 4096 16387 0 0 0 17 1 0 0 0 0 0 "+
		"94251864199440 94251864212992 94251885518848 140731603462811 140731603462830 140731603462830 140731603468267 0\n",
		pid, comm, ppid, pid, pid, start)
}

// startAt is the wall-clock start time of a process started ticks clock
// ticks after testBoot.
func startAt(ticks uint64) time.Time {
	return time.Unix(testBoot, 0).Add(time.Duration(ticks) * 10 * time.Millisecond)
}

// newTestEnricher returns an Enricher over root using testdata/passwd.
func newTestEnricher(t testing.TB, root string, opts ...func(*Options)) *Enricher {
	t.Helper()
	o := Options{ProcRoot: root, PasswdPath: "testdata/passwd"}
	for _, f := range opts {
		f(&o)
	}
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
