//go:build linux

package test

// The capabilities the agent needs, and what it loses without each: the
// agent run as nobody with a chosen set of them.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// capability is one of the candidates for running the agent unprivileged.
type capability struct {
	name string
	bit  uintptr
}

// The agent's capability set in tracepoint mode, established on Linux 6.18
// by running it as uid 65534 with each candidate removed in turn:
//
//   - CAP_BPF (maps, programs) and CAP_PERFMON (tracing programs, the
//     system-wide perf events of the event buffer, tracepoint perf events)
//     are required: without either the agent exits 1 with one line naming
//     what it lacks.
//   - CAP_SYS_PTRACE lets it read /proc/<pid>/exe and /proc/<pid>/ns/* of
//     other users' processes: without it the agent runs, but events of
//     processes not its own lack process.executable_path, and its
//     namespace scans (container attribution, visibility rules) see no
//     process but its own.
//   - CAP_DAC_READ_SEARCH lets it look up the accept tracepoints in tracefs,
//     whose /sys/kernel/tracing is mode 0700: without it the agent runs,
//     warns "optional probe not attached" and reports no accepts.
//
// "Needed" means: the agent cannot start without it, or a documented
// feature (enrichment, accepts) is lost without it. Not needed here:
// CAP_SYS_RESOURCE (since 5.11 BPF memory is charged to the memory cgroup,
// not RLIMIT_MEMLOCK) and CAP_SYS_ADMIN (only to mount tracefs when none is
// mounted; with tracefs mounted but unreadable, mounting it again fails
// anyway).
var agentCaps = []capability{
	{"CAP_BPF", unix.CAP_BPF},
	{"CAP_PERFMON", unix.CAP_PERFMON},
	{"CAP_SYS_PTRACE", unix.CAP_SYS_PTRACE},
	{"CAP_DAC_READ_SEARCH", unix.CAP_DAC_READ_SEARCH},
}

// capSet reads a capability set ("CapEff", "CapBnd", ...) of a process
// from /proc/<pid>/status.
func capSet(pid int, name string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", name, pid)
}

// tracefsMounted reports whether a tracefs is mounted where the agent
// looks for one.
func tracefsMounted(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "tracefs" && (f[1] == "/sys/kernel/tracing" || f[1] == "/sys/kernel/debug/tracing") {
			return true
		}
	}
	return false
}

// The agent runs as nobody with CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and
// CAP_DAC_READ_SEARCH as its only capabilities (see agentCaps for why
// each), reports connections and accepts, and enriches a root-owned
// process; without each of them it either refuses to start with one line
// saying what is missing, or runs with the documented loss.
func TestAgentReducedCapabilities(t *testing.T) {
	requireRoot(t)
	const nobody = 65534
	bnd, err := capSet(os.Getpid(), "CapBnd")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range agentCaps {
		if bnd&(1<<c.bit) == 0 {
			skipOrFail(t, "%s is not in this process's bounding set (kernel before 5.8, or a restricted container)", c.name)
		}
	}
	withAccepts := tracefsMounted(t)
	if !withAccepts {
		t.Log("no tracefs mounted: mounting one needs CAP_SYS_ADMIN, so accepts are not checked")
	}

	// The binary and config must be readable by nobody: t.TempDir's
	// parent is private to root.
	dir, err := os.MkdirTemp("", "connwatch-caps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, cfg := filepath.Join(dir, "connwatch"), filepath.Join(dir, "connwatch.yaml")
	data, err := os.ReadFile(agentBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{bin, data, 0o755}, {cfg, []byte(noTelemetry), 0o644}} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	// run starts the agent as nobody with every capability of agentCaps
	// but the one named without.
	run := func(t *testing.T, without string) *agentProc {
		var ambient []uintptr
		var want uint64
		for _, c := range agentCaps {
			if c.name != without {
				ambient = append(ambient, c.bit)
				want |= 1 << c.bit
			}
		}
		a := launchAgent(t, agentOpts{bin: bin, attr: &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: nobody, Gid: nobody},
			AmbientCaps: ambient,
		}}, "-format", "events", "-attach", "tracepoint", "-c", cfg)
		// Check what it really runs with, unless it has already exited.
		got, err := capSet(a.cmd.Process.Pid, "CapEff")
		if err == nil && got != want {
			t.Fatalf("agent runs with CapEff %#x, want %#x", got, want)
		}
		return a
	}
	// connectLine connects to a listener and returns the agent's line for
	// the attempt (the test process, root, connects).
	connectLine := func(t *testing.T, a *agentProc) (m map[string]any, port, lport int) {
		ln := listen(t, "tcp4", "127.0.0.1:0")
		port = ln.Addr().(*net.TCPAddr).Port
		lport = hostConnect(t, ln)
		m = a.waitLine(t, eventTimeout, "the test's connect", func(m map[string]any) bool {
			return m["event"] == "connwatch.tcp.connect" && num(m, "remote_port") == port && num(m, "host_pid") == os.Getpid()
		})
		return m, port, lport
	}
	isAccept := func(port, lport int) func(map[string]any) bool {
		return func(m map[string]any) bool {
			return m["event"] == "connwatch.tcp.accept" && num(m, "local_port") == port && num(m, "remote_port") == lport
		}
	}

	t.Run("all", func(t *testing.T) {
		a := run(t, "")
		a.waitLog(t, "probes attached")
		a.waitLog(t, "visibility map updated")
		m, port, lport := connectLine(t, a)
		if got := field(m, "process", "executable_path"); got != self {
			t.Errorf("process.executable_path %v, want %s (root's /proc/<pid>/exe read as nobody)", got, self)
		}
		if withAccepts {
			if strings.Contains(a.stderr.String(), "optional probe not attached") {
				t.Errorf("accept probes not attached with the full set:\n%s", a.stderr.String())
			}
			a.waitLine(t, eventTimeout, "the listener's accept", isAccept(port, lport))
		}
		a.stop(t)
	})

	for _, c := range agentCaps[:2] {
		t.Run("without "+c.name, func(t *testing.T) {
			a := run(t, c.name)
			if code := a.wait(t, 15*time.Second); code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, a.stderr.String())
			}
			out := strings.TrimSpace(a.stderr.String())
			if strings.Count(out, "\n") != 0 || !strings.Contains(out, "needs root") || !strings.Contains(out, "lacks "+c.name) {
				t.Errorf("stderr should be one line saying root (or %s) is needed, got:\n%s", c.name, out)
			}
			if n := a.nLines.Load(); n != 0 {
				t.Errorf("%d lines on stdout, want none", n)
			}
		})
	}

	t.Run("without CAP_SYS_PTRACE", func(t *testing.T) {
		a := run(t, "CAP_SYS_PTRACE")
		a.waitLog(t, "visibility map updated")
		m, _, _ := connectLine(t, a)
		if got := field(m, "process", "executable_path"); got != nil {
			t.Errorf("process.executable_path %v without CAP_SYS_PTRACE: the candidate is not needed", got)
		}
		if got := field(m, "process", "executable_name"); got != filepath.Base(self) {
			t.Errorf("process.executable_name %v, want %s: enrichment should degrade, not vanish", got, filepath.Base(self))
		}
		a.stop(t)
	})

	t.Run("without CAP_DAC_READ_SEARCH", func(t *testing.T) {
		if !withAccepts {
			t.Skip("no tracefs mounted: the accept probes need CAP_SYS_ADMIN to mount one, whatever CAP_DAC_READ_SEARCH")
		}
		a := run(t, "CAP_DAC_READ_SEARCH")
		a.waitLog(t, "visibility map updated")
		warned := map[string]bool{}
		for _, line := range strings.Split(a.stderr.String(), "\n") {
			for _, p := range []string{"tp_sys_exit_accept4", "tp_sys_exit_accept"} {
				// (p, or its twin with direct task reads, p_btf)
				if strings.Contains(line, "optional probe not attached") &&
					(strings.Contains(line, "attaching "+p+":") || strings.Contains(line, "attaching "+p+"_btf:")) {
					warned[p] = true
				}
			}
		}
		if !warned["tp_sys_exit_accept4"] || !warned["tp_sys_exit_accept"] {
			t.Errorf("no warning that the accept probes are not attached without CAP_DAC_READ_SEARCH:\n%s", a.stderr.String())
		}
		m, port, lport := connectLine(t, a)
		if got := field(m, "process", "executable_path"); got != self {
			t.Errorf("process.executable_path %v, want %s", got, self)
		}
		a.noLine(t, time.Second, "an accept without the accept probes", isAccept(port, lport))
		a.stop(t)
	})
}
