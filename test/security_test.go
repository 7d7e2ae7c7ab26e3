//go:build linux

package test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// noTelemetry is a config without the metrics listener, so that agents of
// concurrent tests do not compete for its port.
const noTelemetry = "telemetry:\n  listen: \"\"\n"

// bpfIDs lists the BPF programs, links and maps a process holds file
// descriptors for, from the prog_id, link_id and map_id lines of
// /proc/<pid>/fdinfo/*. (A link's fdinfo names its program too.)
func bpfIDs(t *testing.T, pid int) (progs []ebpf.ProgramID, links []link.ID, maps []ebpf.MapID) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || (k != "prog_id" && k != "link_id" && k != "map_id") {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || seen[k+v] {
				continue
			}
			seen[k+v] = true
			switch k {
			case "prog_id":
				progs = append(progs, ebpf.ProgramID(n))
			case "link_id":
				links = append(links, link.ID(n))
			case "map_id":
				maps = append(maps, ebpf.MapID(n))
			}
		}
	}
	return progs, links, maps
}

// bpfAlive returns the objects of the lists that the kernel still has,
// each as "program 12" and so on. An object is gone when looking it up by
// ID fails with ENOENT.
func bpfAlive(t *testing.T, progs []ebpf.ProgramID, links []link.ID, maps []ebpf.MapID) []string {
	t.Helper()
	var alive []string
	check := func(what string, id uint32, err error, c interface{ Close() error }) {
		switch {
		case err == nil:
			c.Close()
			alive = append(alive, fmt.Sprintf("%s %d", what, id))
		case !errors.Is(err, os.ErrNotExist):
			t.Fatalf("looking up %s %d: %v", what, id, err)
		}
	}
	for _, id := range progs {
		p, err := ebpf.NewProgramFromID(id)
		check("program", uint32(id), err, p)
	}
	for _, id := range links {
		l, err := link.NewFromID(id)
		check("link", uint32(id), err, l)
	}
	for _, id := range maps {
		m, err := ebpf.NewMapFromID(id)
		check("map", uint32(id), err, m)
	}
	return alive
}

// An agent killed with SIGKILL runs no cleanup at all, so whatever it
// loaded must be owned by its file descriptors alone: once it is gone, the
// kernel frees every program, link and map it held, and nothing stays
// pinned in the BPF filesystem.
func TestAgentSIGKILLLeavesNothing(t *testing.T) {
	requireRoot(t)
	a := launchAgent(t, agentOpts{},
		"-format", "events", "-attach", string(attachMode(t)), "-c", writeTempConfig(t, noTelemetry))
	a.waitLog(t, "visibility map updated")

	progs, links, maps := bpfIDs(t, a.cmd.Process.Pid)
	if len(progs) == 0 || len(links) == 0 {
		t.Fatalf("the running agent holds programs %v and links %v; want some of each", progs, links)
	}
	if alive := bpfAlive(t, progs, links, maps); len(alive) != len(progs)+len(links)+len(maps) {
		t.Fatalf("before the kill, only %v of programs %v, links %v, maps %v exist", alive, progs, links, maps)
	}
	t.Logf("agent holds programs %v, links %v, maps %v", progs, links, maps)

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 5*time.Second)
	if ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("agent ended with %v, want killed by SIGKILL", a.cmd.ProcessState)
	}

	// The kernel frees them after an RCU grace period or from a work
	// queue: give it a few seconds.
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := bpfAlive(t, progs, links, maps)
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after SIGKILL the kernel still has %v", alive)
		}
		time.Sleep(50 * time.Millisecond)
	}

	err := filepath.WalkDir("/sys/fs/bpf", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // not mounted, or unreadable: nothing of ours there
		}
		if strings.Contains(strings.ToLower(d.Name()), "connwatch") {
			t.Errorf("pinned after SIGKILL: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// handshakes counts the TLS handshakes an otlptest receiver sees: those
// begun (a ClientHello arrived) and those whose certificates verified.
// Receiver.Rejected counts only requests failed by SetFailure; a handshake
// the server refuses never becomes a request, so it is counted here, as
// begun minus verified.
type handshakes struct{ begun, verified atomic.Int64 }

func (h *handshakes) rejected() int64 { return h.begun.Load() - h.verified.Load() }

// tlsReceiver starts an OTLP receiver serving TLS with a certificate from
// a fresh CA, requiring a client certificate signed by it with mtls.
func tlsReceiver(t *testing.T, mtls bool) (*otlptest.Receiver, *otlptest.Certs, *handshakes) {
	t.Helper()
	certs, err := otlptest.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hs := &handshakes{}
	cfg := certs.ServerTLS(mtls)
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		hs.begun.Add(1)
		return nil, nil // carry on with cfg
	}
	cfg.VerifyConnection = func(tls.ConnectionState) error {
		hs.verified.Add(1)
		return nil
	}
	return otlptest.Start(t, otlptest.WithTLS(cfg)), certs, hs
}

// otlpAgent runs the agent exporting to r with env and extra args.
func otlpAgent(t *testing.T, r *otlptest.Receiver, env []string, args ...string) *agentProc {
	t.Helper()
	requireRoot(t)
	env = append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, env...)
	args = append([]string{"-attach", string(attachMode(t)), "-c", writeTempConfig(t, noTelemetry)}, args...)
	a := launchAgent(t, agentOpts{env: env}, args...)
	a.waitLog(t, "visibility map updated")
	return a
}

// hostSpan connects to a fresh listener and waits for the span of that
// connection (server.port is the listener's port).
func hostSpan(t *testing.T, r *otlptest.Receiver) otlptest.Span {
	t.Helper()
	ln := listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	lport := hostConnect(t, ln)
	spans, err := r.WaitSpans(exportTimeout, 1, func(s otlptest.Span) bool {
		return s.Attrs()["server.port"] == int64(port) && s.Attrs()["network.local.port"] == int64(lport)
	})
	if err != nil {
		t.Fatalf("span of a host connection to port %d: %v", port, err)
	}
	return spans[0]
}

// Over TLS, with only the CA to trust: the agent verifies the collector's
// certificate and delivers spans; a bearer token from
// OTEL_EXPORTER_OTLP_HEADERS reaches the collector percent-decoded and
// never appears in the agent's logs, even at debug level.
func TestAgentTLS(t *testing.T) {
	requireRoot(t)
	r, certs, hs := tlsReceiver(t, false)
	a := otlpAgent(t, r, []string{
		"OTEL_EXPORTER_OTLP_CERTIFICATE=" + certs.CAFile,
		"OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20s3cr3t-token",
	}, "-log-level", "debug")

	s := hostSpan(t, r)
	if s.Name != "tcp connect" || s.ResourceAttrs()["process.pid"] != int64(os.Getpid()) {
		t.Errorf("span %q with resource %v, want \"tcp connect\" of pid %d", s.Name, s.ResourceAttrs(), os.Getpid())
	}
	if hs.verified.Load() == 0 {
		t.Errorf("spans arrived but no TLS handshake was seen")
	}
	for i, md := range r.Headers() {
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cr3t-token" {
			t.Errorf("request %d: authorization %q, want [\"Bearer s3cr3t-token\"]", i, got)
		}
	}

	a.stop(t)
	if strings.Contains(a.stderr.String(), "s3cr3t") {
		t.Errorf("the agent logged the token:\n%s", a.stderr.String())
	}
}

// Mutual TLS: with a client certificate and key the agent's spans arrive;
// without them the collector refuses the handshake and receives nothing.
func TestAgentMTLS(t *testing.T) {
	requireRoot(t)
	t.Run("client certificate", func(t *testing.T) {
		r, certs, _ := tlsReceiver(t, true)
		a := otlpAgent(t, r, []string{
			"OTEL_EXPORTER_OTLP_CERTIFICATE=" + certs.CAFile,
			"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=" + certs.ClientCertFile,
			"OTEL_EXPORTER_OTLP_CLIENT_KEY=" + certs.ClientKeyFile,
		})
		hostSpan(t, r)
		a.stop(t)
	})
	t.Run("no client certificate", func(t *testing.T) {
		r, certs, hs := tlsReceiver(t, true)
		a := otlpAgent(t, r, []string{"OTEL_EXPORTER_OTLP_CERTIFICATE=" + certs.CAFile})
		ln := listen(t, "tcp4", "127.0.0.1:0")
		hostConnect(t, ln)
		// The exporter connects on its first export: wait for a
		// handshake, then give it a few seconds to (not) deliver.
		deadline := time.Now().Add(exportTimeout)
		for hs.begun.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the agent never tried to connect to the collector within %v", exportTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(3 * time.Second)
		if n, m := len(r.TraceRequests()), len(r.LogRequests()); n != 0 || m != 0 {
			t.Errorf("the collector received %d trace and %d log requests from a client without a certificate", n, m)
		}
		if hs.verified.Load() != 0 || hs.rejected() == 0 {
			t.Errorf("handshakes: %d begun, %d verified; want every one rejected", hs.begun.Load(), hs.verified.Load())
		}
		t.Logf("%d handshakes rejected", hs.rejected())
		a.stop(t)
	})
}

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
