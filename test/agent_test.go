//go:build linux

package test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The tests in this file run the connwatch command itself and read its
// stdout, as a user would. CONNWATCH_BIN names a prebuilt binary (the VM
// matrix passes one); otherwise it is built once with the go command.
var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func agentBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CONNWATCH_BIN"); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "connwatch-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "connwatch")
		out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/connwatch").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		skipOrFail(t, "no connwatch binary (set CONNWATCH_BIN): %v", buildErr)
	}
	return builtBin
}

// lockedBuffer collects the agent's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type agentProc struct {
	cmd    *exec.Cmd
	lines  chan map[string]any
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit error, once done
	nLines atomic.Int64  // stdout lines read

	// skipped holds the lines a waitLine passed over, oldest first, for
	// later waits: the agent reads the per-CPU perf rings in turn, so an
	// accept made on one CPU can be printed before the connect it answers
	// made on another.
	skipped []map[string]any
}

// maxSkipped bounds agentProc.skipped; the oldest lines go first.
const maxSkipped = 100000

func (a *agentProc) skip(m map[string]any) {
	if len(a.skipped) == maxSkipped {
		a.skipped = a.skipped[1:]
	}
	a.skipped = append(a.skipped, m)
}

// agentOpts say how launchAgent runs the agent.
type agentOpts struct {
	bin   string               // default: agentBinary(t)
	attr  *syscall.SysProcAttr // e.g. another user and ambient capabilities
	env   []string             // added to the environment
	ready bool                 // wait until it has written its first visibility map
	clean bool                 // at cleanup, SIGTERM must end it with status 0
}

// exited waits up to d for the agent to exit and returns its exit error;
// ok is false if it is still running.
func (a *agentProc) exited(d time.Duration) (err error, ok bool) {
	select {
	case <-a.done:
		return a.err, true
	case <-time.After(d):
		return nil, false
	}
}

// startAgent runs `connwatch -format events args...` (flat event lines on
// stdout) and waits until it has written its first visibility map.
func startAgent(t *testing.T, args ...string) *agentProc {
	t.Helper()
	return startAgentEnv(t, nil, append([]string{"-format", "events"}, args...)...)
}

// startAgentEnv runs `connwatch args...` with env added to the
// environment, waits until it is ready, and at the end stops it with
// SIGTERM, expecting exit status 0.
func startAgentEnv(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	requireRoot(t)
	if !hasConfig(args) {
		// The default telemetry port may be taken on a test machine.
		args = append(args, "-c", writeTempConfig(t, "telemetry:\n  listen: \"\"\n"))
	}
	if m := os.Getenv("CONNWATCH_ATTACH"); m != "" {
		args = append(args, "-attach", m)
	}
	return launchAgent(t, agentOpts{env: env, ready: true, clean: true}, args...)
}

// launchAgent runs the agent binary with args as o says. Its stdout lines
// arrive decoded on lines; at cleanup it is stopped (or killed) if still
// running.
func launchAgent(t *testing.T, o agentOpts, args ...string) *agentProc {
	t.Helper()
	if o.bin == "" {
		o.bin = agentBinary(t)
	}
	cmd := exec.Command(o.bin, args...)
	cmd.Env = append(append(os.Environ(), "CONNWATCH_ATTACH="), o.env...)
	cmd.SysProcAttr = o.attr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{cmd: cmd, lines: make(chan map[string]any, 4096), stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", o.bin, err)
	}
	stop := make(chan struct{})
	stdoutDone := make(chan struct{})
	go func() {
		<-stdoutDone // Wait closes stdout: read it all first
		a.err = cmd.Wait()
		close(a.done)
	}()
	go func() {
		defer close(stdoutDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			a.nLines.Add(1)
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("stdout line is not JSON: %q", sc.Text())
				continue
			}
			// After the test, lines are read and discarded so that the
			// agent never blocks on a full pipe.
			select {
			case a.lines <- m:
			case <-stop:
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		select {
		case <-a.done: // the test ended it
		default:
			if !o.clean {
				cmd.Process.Kill()
				<-a.done
				break
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err, ok := a.exited(15 * time.Second); !ok {
				cmd.Process.Kill()
				t.Errorf("agent did not stop within 15s of SIGTERM")
			} else if err != nil {
				t.Errorf("agent exit after SIGTERM: %v\n%s", err, a.stderr.String())
			}
		}
		if t.Failed() {
			t.Logf("agent stderr:\n%s", a.stderr.String())
		}
	})
	if o.ready {
		a.waitLog(t, "visibility map updated")
	}
	return a
}

// wait waits up to d for the agent to exit and returns its exit code.
func (a *agentProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	err, ok := a.exited(d)
	if !ok {
		t.Fatalf("agent still running after %v:\n%s", d, a.stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("waiting for the agent: %v", err)
	}
	return a.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and expects a clean exit, as a user stopping it would.
func (a *agentProc) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.wait(t, 15*time.Second); code != 0 {
		t.Errorf("agent exited %d after SIGTERM, want 0:\n%s", code, a.stderr.String())
	}
}

func (a *agentProc) waitLog(t *testing.T, substr string) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for !strings.Contains(a.stderr.String(), substr) {
		select {
		case <-a.done:
			if strings.Contains(a.stderr.String(), substr) {
				return
			}
			t.Fatalf("agent exited (%v) without logging %q:\n%s", a.err, substr, a.stderr.String())
		case <-deadline:
			t.Fatalf("agent never logged %q:\n%s", substr, a.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitLine returns the first line, skipped earlier or new, that matches.
func (a *agentProc) waitLine(t *testing.T, timeout time.Duration, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	for i, m := range a.skipped {
		if match(m) {
			a.skipped = append(a.skipped[:i], a.skipped[i+1:]...)
			return m
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case m := <-a.lines:
			if match(m) {
				return m
			}
			a.skip(m)
		case <-deadline:
			t.Fatalf("no line for %s within %v; agent stderr:\n%s", what, timeout, a.stderr.String())
		}
	}
}

func (a *agentProc) noLine(t *testing.T, d time.Duration, what string, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.After(d)
	for _, m := range a.skipped {
		if match(m) {
			t.Fatalf("unexpected line for %s: %v", what, m)
		}
	}
	for {
		select {
		case m := <-a.lines:
			if match(m) {
				t.Fatalf("unexpected line for %s: %v", what, m)
			}
			a.skip(m)
		case <-deadline:
			return
		}
	}
}

// num reads a JSON number field as an int.
func num(m map[string]any, k string) int {
	f, _ := m[k].(float64)
	return int(f)
}

// field reads a nested string field: field(m, "container", "id").
func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func randomContainerID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// cgroupRoots finds where a process can be put into a container-like
// cgroup: the cgroup v2 hierarchy (at /sys/fs/cgroup on a pure v2 host,
// /sys/fs/cgroup/unified on a hybrid one) and the v1 name=systemd
// hierarchy. v1 controller hierarchies (memory, ...) are left alone.
func cgroupRoots(t *testing.T) []string {
	t.Helper()
	var roots []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup"}
	}
	for _, r := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err == nil {
			roots = append(roots, r)
		}
	}
	if len(roots) == 0 {
		skipOrFail(t, "no cgroup v2 or name=systemd hierarchy to create a container cgroup in")
	}
	return roots
}

// intoContainerCgroup moves pid into system.slice/docker-<id>.scope of every
// hierarchy cgroupRoots finds, and takes it out and removes the cgroups
// when the test ends.
func intoContainerCgroup(t *testing.T, id string, pid int) {
	t.Helper()
	for _, root := range cgroupRoots(t) {
		slice := filepath.Join(root, "system.slice")
		createdSlice := false
		if _, err := os.Stat(slice); errors.Is(err, os.ErrNotExist) {
			createdSlice = true
		}
		dir := filepath.Join(slice, "docker-"+id+".scope")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			skipOrFail(t, "creating cgroup %s: %v", dir, err)
		}
		t.Cleanup(func() {
			// Move whatever is left back to the root so the cgroup
			// can go.
			if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, p := range strings.Fields(string(b)) {
					os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(p), 0)
				}
			}
			if err := os.Remove(dir); err != nil {
				t.Logf("removing %s: %v", dir, err)
			}
			if createdSlice {
				os.Remove(slice)
			}
		})
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			skipOrFail(t, "moving %d into %s: %v", pid, dir, err)
		}
	}
}

// A process in its own namespaces and in a docker-like cgroup is reported
// with the container ID, its executable and command line and its namespace
// inums; a process that exits right after connecting is still attributed,
// by its namespaces.
func TestAgentAttributesContainer(t *testing.T) {
	requireRoot(t)
	id := randomContainerID(t)
	child := startNamespacedChild(t, func(pid int) { intoContainerCgroup(t, id, pid) })
	a := startAgent(t)
	self, _ := os.Executable()

	child.connect(t, false)
	m := a.waitLine(t, eventTimeout, "the container process's connect", func(m map[string]any) bool {
		return num(m, "host_pid") == child.ConnPID && m["event"] == "connwatch.tcp.connect"
	})
	if got := field(m, "container", "id"); got != id {
		t.Errorf("container.id %v, want %s", got, id)
	}
	if got := field(m, "container", "runtime"); got != "docker" {
		t.Errorf("container.runtime %v, want docker", got)
	}
	if got := field(m, "process", "executable_path"); got != self {
		t.Errorf("process.executable_path %v, want %s", got, self)
	}
	args, _ := field(m, "process", "args").([]any)
	if len(args) != 2 || args[0] != self || args[1] != "-test.run=^$" {
		t.Errorf("process.args %v, want [%s -test.run=^$]", args, self)
	}
	if num(m, "pid_ns") != int(child.PidNS) || num(m, "mnt_ns") != int(child.MntNS) || num(m, "pid") != 1 {
		t.Errorf("pid_ns %v mnt_ns %v pid %v, want %d %d 1", m["pid_ns"], m["mnt_ns"], m["pid"], child.PidNS, child.MntNS)
	}

	child.connect(t, true)
	m = a.waitLine(t, eventTimeout, "the short-lived process's connect", func(m map[string]any) bool {
		return num(m, "host_pid") == child.ConnPID && m["event"] == "connwatch.tcp.connect"
	})
	if got := field(m, "container", "id"); got != id {
		t.Errorf("short-lived process: container.id %v, want %s (from its namespaces)", got, id)
	}
	if num(m, "pid_ns") != int(child.PidNS) {
		t.Errorf("short-lived process: pid_ns %v, want %d", m["pid_ns"], child.PidNS)
	}
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename, as editors do, so the agent never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// hostConnect connects to ln and returns the local port.
func hostConnect(t *testing.T, ln net.Listener) int {
	t.Helper()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.TCPAddr).Port
}

// Host visibility off in the config: the kernel sends nothing for host
// connections (the agent has no filter of its own, so no line means the
// perf reader got nothing), failures still come through, a container kept
// on by ID is seen; SIGHUP with host visibility back on brings host
// connections back, and a broken file on reload changes nothing.
func TestAgentVisibilityConfigAndReload(t *testing.T) {
	requireRoot(t)
	id := randomContainerID(t)
	child := startNamespacedChild(t, func(pid int) { intoContainerCgroup(t, id, pid) })

	path := filepath.Join(t.TempDir(), "connwatch.yaml")
	hidden := fmt.Sprintf(`visibility:
  host: []
  default: []
  rules:
    - match: {container_id: "%s*"}
      scopes: [network]
telemetry:
  listen: ""
`, id[:12])
	writeConfig(t, path, hidden)
	a := startAgent(t, "-c", path)

	ln := listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	lport := hostConnect(t, ln)
	a.noLine(t, time.Second, "a host connection while host visibility is off", func(m map[string]any) bool {
		return num(m, "local_port") == lport || num(m, "remote_port") == lport
	})

	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	if c, err := net.Dial("tcp4", closed.Addr().String()); err == nil {
		c.Close()
	}
	a.waitLine(t, eventTimeout, "the refused host connection's result", func(m map[string]any) bool {
		return num(m, "remote_port") == closedPort && m["outcome"] == "refused"
	})

	child.connect(t, false)
	a.waitLine(t, eventTimeout, "the container's connect, kept on by its rule", func(m map[string]any) bool {
		return num(m, "host_pid") == child.ConnPID && field(m, "container", "id") == id
	})

	writeConfig(t, path, strings.Replace(hidden, "host: []", "host: [network]", 1))
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitLog(t, "config reloaded")
	lport = hostConnect(t, ln)
	a.waitLine(t, eventTimeout, "a host connection after the reload", func(m map[string]any) bool {
		return num(m, "local_port") == lport && num(m, "remote_port") == port
	})

	writeConfig(t, path, "visibility:\n  host: [netwrk]\n")
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.waitLog(t, "config reload failed")
	if !strings.Contains(a.stderr.String(), "connwatch.yaml:2:10") {
		t.Errorf("the reload error does not point at the line and column:\n%s", a.stderr.String())
	}
	lport = hostConnect(t, ln)
	a.waitLine(t, eventTimeout, "a host connection after a failed reload", func(m map[string]any) bool {
		return num(m, "local_port") == lport && num(m, "remote_port") == port
	})
}

// Editing the config file is enough: the agent notices the change without a
// signal.
func TestAgentReloadOnFileChange(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "connwatch.yaml")
	writeConfig(t, path, "visibility:\n  host: []\ntelemetry:\n  listen: \"\"\n")
	a := startAgent(t, "-c", path)
	ln := listen(t, "tcp4", "127.0.0.1:0")
	lport := hostConnect(t, ln)
	a.noLine(t, 500*time.Millisecond, "a host connection while host visibility is off", func(m map[string]any) bool {
		return num(m, "local_port") == lport
	})

	writeConfig(t, path, "visibility:\n  host: [network]\ntelemetry:\n  listen: \"\"\n")
	a.waitLog(t, `msg="config reloaded" trigger="file changed"`)
	lport = hostConnect(t, ln)
	a.waitLine(t, eventTimeout, "a host connection after the file changed", func(m map[string]any) bool {
		return num(m, "local_port") == lport
	})
}

func hasConfig(args []string) bool {
	for _, a := range args {
		if a == "-c" || a == "--config" || a == "-config" {
			return true
		}
	}
	return false
}
