package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connwatch/connwatch/config"
)

// mainEnv makes the test binary run main(), so the tests exercise the real
// command.
const mainEnv = "CONNWATCH_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) != "" {
		os.Args = append([]string{"connwatch"}, strings.Fields(os.Getenv(mainEnv))[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "privileged test: needs root to load BPF programs"
		if os.Getenv("CONNWATCH_REQUIRE_PRIVILEGED") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// command runs the test binary as `connwatch args...`.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), mainEnv+"=connwatch "+strings.Join(args, " "))
	return cmd
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out.String(), "connwatch ") {
		t.Errorf("version printed %q", out.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var errb bytes.Buffer
	if code := run([]string{"frobnicate"}, io.Discard, &errb); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Errorf("stderr %q", errb.String())
	}
}

func TestBadAttachMode(t *testing.T) {
	var errb bytes.Buffer
	if code := run([]string{"-attach", "uprobe"}, io.Discard, &errb); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), `unknown attach mode "uprobe"`) {
		t.Errorf("stderr %q", errb.String())
	}
}

// Without privileges the agent says so in one line and exits 1.
func TestNotRoot(t *testing.T) {
	requireRoot(t) // to drop to another user
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The go test binary lives in a private directory; copy it where an
	// unprivileged user can run it.
	dir, err := os.MkdirTemp("", "connwatch-nonroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "connwatch")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{mainEnv + "=connwatch run"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("run as nobody: %v, want exit status 1; stderr %q", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "needs root") {
		t.Errorf("stderr should be one line saying root is needed, got %q", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", stdout.String())
	}
}

// started is the command running with its stdout decoded line by line.
type started struct {
	cmd    *exec.Cmd
	lines  chan map[string]any
	stderr *bytes.Buffer // read it only after the command has exited
}

// start runs `connwatch args...` with env added and decodes its stdout.
func start(t *testing.T, env []string, args ...string) *started {
	t.Helper()
	return startWithConfig(t, "", env, args...)
}

// startWithConfig is start with more config (YAML) in the file it runs
// with.
func startWithConfig(t *testing.T, config string, env []string, args ...string) *started {
	t.Helper()
	// The default telemetry port may be taken on a test machine.
	cfg := filepath.Join(t.TempDir(), "connwatch.yaml")
	if err := os.WriteFile(cfg, []byte("telemetry:\n  listen: \"\"\n"+config), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := command(t, append(args, "-c", cfg)...)
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &started{cmd: cmd, lines: make(chan map[string]any, 256), stderr: &bytes.Buffer{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("stdout line is not JSON: %q", sc.Text())
				continue
			}
			s.lines <- m
		}
		close(s.lines)
	}()
	return s
}

// connectUntil connects to ln until match accepts a line or timeout passes.
func (s *started) connectUntil(t *testing.T, ln net.Listener, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
			c.Close()
		}
		wait := time.After(300 * time.Millisecond)
	read:
		for {
			select {
			case m := <-s.lines:
				if match(m) {
					return m
				}
			case <-wait:
				break read
			}
		}
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	t.Fatalf("no matching line within %v; stderr:\n%s", timeout, s.stderr.String())
	return nil
}

// stop sends SIGTERM and expects exit status 0.
func (s *started) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0; stderr:\n%s", err, s.stderr.String())
	}
}

// The agent prints a JSON line for a connection made while it runs and
// exits 0 on SIGTERM.
func TestRunPrintsConnections(t *testing.T) {
	requireRoot(t)
	s := start(t, nil, "-attach", "tracepoint", "-format", "events")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := float64(ln.Addr().(*net.TCPAddr).Port)
	got := s.connectUntil(t, ln, 10*time.Second, func(m map[string]any) bool {
		return m["remote_port"] == port && m["host_pid"] == float64(os.Getpid()) && m["event"] == "connwatch.tcp.connect"
	})
	for k, want := range map[string]any{
		"event": "connwatch.tcp.connect", "event_id": 400.0, "protocol": "TCP",
		"remote_addr": "127.0.0.1", "local_addr": "127.0.0.1", "mode": "tracepoint",
		"pid_ns": 0.0, "mnt_ns": 0.0, "uid": float64(os.Getuid()),
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if ts, err := time.Parse(time.RFC3339Nano, got["time"].(string)); err != nil || time.Since(ts) > time.Minute || time.Since(ts) < -time.Minute {
		t.Errorf("time %v is not a current RFC 3339 time (%v)", got["time"], err)
	}
	s.stop(t)
	if !strings.Contains(s.stderr.String(), "probes attached") || !strings.Contains(s.stderr.String(), "mode=tracepoint") {
		t.Errorf("the chosen mode is not logged at start:\n%s", s.stderr.String())
	}
}

// By default, with no OTLP endpoint, stdout carries the OpenTelemetry log
// records and spans as JSON lines, under the workload's resource.
func TestRunPrintsOTelLines(t *testing.T) {
	requireRoot(t)
	s := start(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := float64(ln.Addr().(*net.TCPAddr).Port)
	span := s.connectUntil(t, ln, 15*time.Second, func(m map[string]any) bool {
		res, _ := m["resource"].(map[string]any)
		attrs, _ := m["attributes"].(map[string]any)
		return m["type"] == "span" && m["kind"] == "client" && res["process.pid"] == float64(os.Getpid()) && attrs["server.port"] == port
	})
	if span["name"] != "tcp connect" || span["status"] == "error" {
		t.Errorf("span %v", span)
	}
	s.stop(t)
}

// enrich.passwd: "" turns owner names off: the resource has no
// process.owner, but still the uid.
func TestRunPasswdOff(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		config    string
		wantOwner bool
	}{{"", true}, {"enrich:\n  passwd: \"\"\n", false}} {
		s := startWithConfig(t, tc.config, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="})
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := float64(ln.Addr().(*net.TCPAddr).Port)
		span := s.connectUntil(t, ln, 15*time.Second, func(m map[string]any) bool {
			res, _ := m["resource"].(map[string]any)
			attrs, _ := m["attributes"].(map[string]any)
			return m["type"] == "span" && res["process.pid"] == float64(os.Getpid()) && attrs["server.port"] == port
		})
		ln.Close()
		res := span["resource"].(map[string]any)
		_, hasOwner := res["process.owner"]
		if hasOwner != tc.wantOwner || res["process.user.id"] != float64(os.Getuid()) {
			t.Errorf("config %q: resource %v; want process.owner present %v and process.user.id", tc.config, res, tc.wantOwner)
		}
		s.stop(t)
	}
}

// An empty config file is accepted as all defaults, and the log says so;
// a file with settings is not remarked on.
func TestLoadConfigEmptyFile(t *testing.T) {
	dir := t.TempDir()
	empty, set := filepath.Join(dir, "empty.yaml"), filepath.Join(dir, "set.yaml")
	os.WriteFile(empty, nil, 0o644)
	os.WriteFile(set, []byte("monitor: host\n"), 0o644)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg, err := loadConfig(empty, "", log)
	if err != nil || cfg.Monitor != config.Default().Monitor {
		t.Fatalf("empty file: %+v, %v", cfg, err)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="config file is empty: every setting has its default" file=`+empty) {
		t.Errorf("log %q does not say the file is empty", logs.String())
	}
	logs.Reset()
	if cfg, err := loadConfig(set, "", log); err != nil || cfg.Monitor != "host" || logs.Len() != 0 {
		t.Errorf("file with settings: %+v, %v, log %q", cfg, err, logs.String())
	}
}
