//go:build linux

package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The tests in this file hold the agent to what the README promises of
// enrichment, reading its `-format otel` JSON lines (resources as flat
// maps) as a user would.

// startOtelAgent runs the agent with config content, writing log records
// and spans to stdout as JSON lines whatever OTEL_EXPORTER_OTLP_* the
// environment sets.
func startOtelAgent(t *testing.T, config string) *agentProc {
	t.Helper()
	noOTLP := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="}
	return startAgentEnv(t, noOTLP, "-format", "otel", "-c", writeTempConfig(t, config))
}

// resourceOf returns the resource map of a JSON line.
func resourceOf(m map[string]any) map[string]any {
	res, _ := m["resource"].(map[string]any)
	return res
}

// attributesOf returns the attribute map of a JSON line.
func attributesOf(m map[string]any) map[string]any {
	attrs, _ := m["attributes"].(map[string]any)
	return attrs
}

// ownLine matches the JSON lines of type typ (log or span) for this
// process's connection from local port lport.
func ownLine(typ string, lport int) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["type"] == typ && resourceOf(m)["process.pid"] == float64(os.Getpid()) &&
			attributesOf(m)["network.local.port"] == float64(lport)
	}
}

// process.owner is the user name of the connecting process's uid, read from
// enrich.passwd (default /etc/passwd); `enrich: {passwd: ""}` turns owner
// names off: neither the span nor the log record of a connection has
// process.owner, while process.user.id stays.
func TestEnrichOwnerFollowsPasswdSetting(t *testing.T) {
	requireRoot(t)
	me, err := user.LookupId(strconv.Itoa(os.Getuid()))
	if err != nil {
		t.Fatalf("looking up this test's user: %v", err)
	}
	for _, tc := range []struct {
		name, config, wantOwner string // "": no process.owner
	}{
		{"default", "telemetry: {listen: \"\"}\n", me.Username},
		{"passwd off", "enrich: {passwd: \"\"}\ntelemetry: {listen: \"\"}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startOtelAgent(t, tc.config)
			ln := listen(t, "tcp4", "127.0.0.1:0")
			lport := hostConnect(t, ln)
			for _, typ := range []string{"log", "span"} {
				m := a.waitLine(t, exportTimeout, "the "+typ+" of this test's connection", ownLine(typ, lport))
				res := resourceOf(m)
				owner, has := res["process.owner"]
				switch {
				case tc.wantOwner == "" && has:
					t.Errorf("%s: process.owner %v, want none with config %q", typ, owner, tc.config)
				case tc.wantOwner != "" && owner != tc.wantOwner:
					t.Errorf("%s: process.owner %v, want %q", typ, owner, tc.wantOwner)
				}
				if res["process.user.id"] != float64(os.Getuid()) {
					t.Errorf("%s: process.user.id %v, want %d", typ, res["process.user.id"], os.Getuid())
				}
			}
		})
	}
}

// startPiped starts cmd with a pipe to its stdin and a scanner of its
// stdout, and kills and reaps it when the test ends.
func startPiped(t *testing.T, cmd *exec.Cmd) (io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return stdin, bufio.NewScanner(stdout)
}

// A process that execs another program keeps its pid but not its old
// executable: after the test binary, run as a hostNetChild that has
// connected once, execs a copy of itself under another name, the next
// connection of that pid carries the new process.executable.name and path,
// and a service.name that follows them. (A copy, so that the guests of make
// vmtest, which have no shell but busybox, run it too.)
func TestEnrichExecUnderSamePid(t *testing.T) {
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "connwatch-exec")
	copyExecutable(t, self, other)
	a := startOtelAgent(t, "telemetry: {listen: \"\"}\n")
	ln := listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port

	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+childHostNet)
	cmd.Stderr = os.Stderr
	stdin, out := startPiped(t, cmd)
	pid := cmd.Process.Pid
	dial := func(who string) int {
		t.Helper()
		if _, err := fmt.Fprintf(stdin, "dial %s\n", ln.Addr()); err != nil {
			t.Fatal(err)
		}
		if !out.Scan() {
			t.Fatalf("%s exited before connecting: %v", who, out.Err())
		}
		var ok string
		var lport, rport, connPID int
		if _, err := fmt.Sscan(out.Text(), &ok, &lport, &rport, &connPID); err != nil || ok != "connected" || connPID != pid {
			t.Fatalf("%s said %q, want \"connected <ports> %d\"", who, out.Text(), pid)
		}
		return lport
	}
	clientSpan := func(lport int) func(map[string]any) bool {
		return func(m map[string]any) bool {
			attrs := attributesOf(m)
			return m["type"] == "span" && m["kind"] == "client" && resourceOf(m)["process.pid"] == float64(pid) &&
				attrs["server.port"] == float64(port) && (lport == 0 || attrs["network.local.port"] == float64(lport))
		}
	}
	first := dial("the test binary")
	before := resourceOf(a.waitLine(t, exportTimeout, "the first program's connection", clientSpan(first)))
	if before["process.executable.name"] != filepath.Base(self) || before["service.name"] != filepath.Base(self) {
		t.Fatalf("before the exec: resource %v, want process.executable.name and service.name %s", before, filepath.Base(self))
	}

	if _, err := fmt.Fprintf(stdin, "exec %s\n", other); err != nil {
		t.Fatal(err)
	}
	waitExe(t, pid, other)
	lport := dial("the exec'd copy")
	after := resourceOf(a.waitLine(t, exportTimeout, "the exec'd program's connection", clientSpan(lport)))
	for k, want := range map[string]any{
		"process.pid":             float64(pid),
		"process.executable.name": filepath.Base(other),
		"process.executable.path": other,
		"service.name":            filepath.Base(other),
	} {
		if after[k] != want {
			t.Errorf("after the exec: %s = %v, want %v", k, after[k], want)
		}
	}
}

// copyExecutable copies the program at src to dst, executable.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// waitExe waits until /proc shows pid running the program at path.
func waitExe(t *testing.T, pid int, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && exe == path {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d runs %q (%v) 10 s after the exec, not %s", pid, exe, err, path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
