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

// execScript connects from bash itself (/dev/tcp) to the port of its
// first argument, says so, waits for a line on stdin and then execs its
// second argument, the test binary, as a hostNetChild: under the same pid,
// it connects where the next line of stdin says, reports it and lives on
// until stdin closes.
const execScript = `exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
echo "bash connected $$"
read -r _ || exit 1
export ` + childEnv + `=` + childHostNet + `
exec "$2" -test.run='^$'
`

// A process that execs another program keeps its pid but not its old
// executable: after bash execs the test binary, the next connection of that
// pid carries the new process.executable.name and path, and a service.name
// that follows them.
func TestEnrichExecUnderSamePid(t *testing.T) {
	requireRoot(t)
	bash, err := exec.LookPath("bash")
	if err != nil {
		skipOrFail(t, "bash is needed for its /dev/tcp connections: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := startOtelAgent(t, "telemetry: {listen: \"\"}\n")
	ln := listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port

	script := filepath.Join(t.TempDir(), "connect-then-exec.sh")
	if err := os.WriteFile(script, []byte(execScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, script, strconv.Itoa(port), self)
	cmd.Stderr = os.Stderr
	stdin, out := startPiped(t, cmd)
	pid := cmd.Process.Pid
	var said int
	if !out.Scan() {
		t.Fatalf("the script exited before connecting: %v", out.Err())
	}
	if _, err := fmt.Sscanf(out.Text(), "bash connected %d", &said); err != nil || said != pid {
		t.Fatalf("the script said %q, want \"bash connected %d\"", out.Text(), pid)
	}
	clientSpan := func(lport int) func(map[string]any) bool {
		return func(m map[string]any) bool {
			attrs := attributesOf(m)
			return m["type"] == "span" && m["kind"] == "client" && resourceOf(m)["process.pid"] == float64(pid) &&
				attrs["server.port"] == float64(port) && (lport == 0 || attrs["network.local.port"] == float64(lport))
		}
	}
	before := resourceOf(a.waitLine(t, exportTimeout, "bash's connection", clientSpan(0)))
	if before["process.executable.name"] != "bash" || before["service.name"] != "bash" {
		t.Fatalf("before the exec: resource %v, want process.executable.name and service.name bash", before)
	}

	if _, err := fmt.Fprintf(stdin, "exec\ndial %s\n", ln.Addr()); err != nil {
		t.Fatal(err)
	}
	if !out.Scan() {
		t.Fatalf("the exec'd test binary exited before connecting: %v", out.Err())
	}
	var ok string
	var lport, rport, connPID int
	if _, err := fmt.Sscan(out.Text(), &ok, &lport, &rport, &connPID); err != nil || ok != "connected" || connPID != pid {
		t.Fatalf("the exec'd test binary said %q, want \"connected <ports> %d\"", out.Text(), pid)
	}
	after := resourceOf(a.waitLine(t, exportTimeout, "the exec'd program's connection", clientSpan(lport)))
	for k, want := range map[string]any{
		"process.pid":             float64(pid),
		"process.executable.name": filepath.Base(self),
		"process.executable.path": self,
		"service.name":            filepath.Base(self),
	} {
		if after[k] != want {
			t.Errorf("after the exec: %s = %v, want %v", k, after[k], want)
		}
	}
}
