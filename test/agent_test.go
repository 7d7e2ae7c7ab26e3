//go:build linux

package test

// The tests in this file run the connwatch command itself (see
// agentproc_test.go) and read its stdout, as a user would: a container's
// connections attributed to it, and host visibility in the config file,
// reloaded on SIGHUP and when the file changes.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

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

// refusedConnect connects to a loopback port nothing listens on (see
// freePort) and returns that port: the kernel refuses the connection,
// unless the port was taken again meanwhile.
func refusedConnect(t *testing.T) int {
	t.Helper()
	port := freePort(t)
	if c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
	}
	return port
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

	closedPort := refusedConnect(t)
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
