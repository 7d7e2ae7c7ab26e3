//go:build linux

package test

// The connwatch command as the tests run it: started, its stdout read as
// JSON lines and its stderr kept, waited for and stopped as a user would.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// CONNWATCH_BIN names a prebuilt binary (the VM matrix passes one);
// otherwise agentBinary builds it once with the go command.
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

	skipped passedOver[map[string]any] // the lines a waitLine passed over
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
	if m, ok := a.skipped.take(match); ok {
		return m
	}
	deadline := time.After(timeout)
	for {
		select {
		case m := <-a.lines:
			if match(m) {
				return m
			}
			a.skipped.add(m)
		case <-deadline:
			t.Fatalf("no line for %s within %v; agent stderr:\n%s", what, timeout, a.stderr.String())
		}
	}
}

func (a *agentProc) noLine(t *testing.T, d time.Duration, what string, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.After(d)
	if m, ok := a.skipped.find(match); ok {
		t.Fatalf("unexpected line for %s: %v", what, m)
	}
	for {
		select {
		case m := <-a.lines:
			if match(m) {
				t.Fatalf("unexpected line for %s: %v", what, m)
			}
			a.skipped.add(m)
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

func hasConfig(args []string) bool {
	for _, a := range args {
		if a == "-c" || a == "--config" || a == "-config" {
			return true
		}
	}
	return false
}
