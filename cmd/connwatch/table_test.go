package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyAgent is the agent running on a real pseudo-terminal, as `make run`
// in a terminal runs it.
type ptyAgent struct {
	stderr bytes.Buffer
	mu     sync.Mutex
	lines  []string
	done   chan struct{}
}

func startOnPTY(t *testing.T, env []string, cols uint16, args ...string) (*ptyAgent, func()) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "connwatch.yaml")
	if err := os.WriteFile(cfg, []byte("telemetry:\n  listen: \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := command(t, append(args, "-c", cfg)...)
	cmd.Env = append(cmd.Env, "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=")
	cmd.Env = append(cmd.Env, env...)
	a := &ptyAgent{done: make(chan struct{})}
	cmd.Stderr = &a.stderr // the log stays off the terminal, for the test to read
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: cols, Rows: 50})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(tty)
		for sc.Scan() { // ends with EIO once the agent has exited
			a.mu.Lock()
			a.lines = append(a.lines, strings.TrimRight(sc.Text(), "\r"))
			a.mu.Unlock()
		}
	}()
	stop := func() {
		t.Helper()
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("after SIGTERM: %v, want exit 0; stderr:\n%s", err, a.stderr.String())
		}
		tty.Close()
		<-a.done
	}
	t.Cleanup(func() { cmd.Process.Kill(); tty.Close() })
	return a, stop
}

// waitRow makes connections with dial until a printed line satisfies
// match, and returns it.
func (a *ptyAgent) waitRow(t *testing.T, dial func(), match func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		dial()
		time.Sleep(300 * time.Millisecond)
		a.mu.Lock()
		for _, l := range a.lines {
			if match(l) {
				a.mu.Unlock()
				return l
			}
		}
		a.mu.Unlock()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t.Fatalf("no such row within 15s; the terminal showed:\n%s", strings.Join(a.lines, "\n"))
	return ""
}

// On a terminal the agent prints a table: a header, then a row per
// connection with its pid, addresses and outcome; a refused connection's
// row says refused, in red when the terminal has colour.
func TestRunTableOnTerminal(t *testing.T) {
	requireRoot(t)
	a, stop := startOnPTY(t, []string{"TERM=xterm-256color", "NO_COLOR="}, 160, "-attach", "tracepoint")

	ln := acceptingListener(t)
	open, closed := ln.Addr().String(), closedPort(t)
	pid := strconv.Itoa(os.Getpid())

	row := a.waitRow(t, func() {
		if c, err := net.Dial("tcp4", open); err == nil {
			c.Close()
		}
	}, func(l string) bool {
		f := strings.Fields(l)
		return len(f) >= 8 && f[1] == pid && f[3] == "out" && f[5] == open
	})
	f := strings.Fields(row)
	if f[6] != "established" || !strings.HasSuffix(f[7], "s") || f[8] != "-" || !strings.HasPrefix(f[4], "127.0.0.1:") {
		t.Errorf("established row %q", row)
	}
	if _, err := time.Parse("15:04:05.000", f[0]); err != nil {
		t.Errorf("row %q: TIME %v", row, err)
	}
	// The listener's side: an accept row with the same addresses swapped.
	a.waitRow(t, func() {}, func(l string) bool {
		f := strings.Fields(l)
		return len(f) >= 7 && f[1] == pid && f[3] == "in" && f[4] == open && f[6] == "accepted"
	})

	refused := a.waitRow(t, func() {
		if c, err := net.Dial("tcp4", closed); err == nil {
			c.Close()
		}
	}, func(l string) bool {
		return strings.Contains(l, " "+closed+" ") && strings.Contains(l, " "+pid+" ")
	})
	if !strings.Contains(refused, "\x1b[31mrefused\x1b[0m") {
		t.Errorf("refused row %q: want outcome refused, in red", refused)
	}
	stop()

	a.mu.Lock()
	defer a.mu.Unlock()
	header := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(a.lines[0], "\x1b[1m", ""), "\x1b[0m", ""))
	if strings.Join(header, " ") != "TIME PID COMM DIR LOCAL REMOTE OUTCOME LATENCY CONTAINER" {
		t.Errorf("first line %q is not the header", a.lines[0])
	}
	for _, l := range a.lines {
		if strings.HasPrefix(l, "{") {
			t.Errorf("JSON on the terminal: %q", l)
		}
		if n := len([]rune(strings.NewReplacer("\x1b[31m", "", "\x1b[0m", "", "\x1b[1m", "").Replace(l))); n > 160 {
			t.Errorf("line of %d columns on a 160-column terminal: %q", n, l)
		}
	}
}

// NO_COLOR and a narrow terminal: no escape codes, and the columns that
// do not fit are left out.
func TestRunTableNoColorNarrow(t *testing.T) {
	requireRoot(t)
	a, stop := startOnPTY(t, []string{"TERM=xterm", "NO_COLOR=1"}, 80, "-attach", "tracepoint")
	closed := closedPort(t)
	row := a.waitRow(t, func() {
		if c, err := net.Dial("tcp4", closed); err == nil {
			c.Close()
		}
	}, func(l string) bool { return strings.Contains(l, " "+closed+" ") })
	if f := strings.Fields(row); len(f) != 6 || f[4] != "refused" {
		t.Errorf("row %q: want TIME PID COMM REMOTE OUTCOME LATENCY with outcome refused", row)
	}
	stop()
	for _, l := range a.lines {
		if strings.Contains(l, "\x1b") {
			t.Errorf("escape code with NO_COLOR set: %q", l)
		}
	}
}

// acceptingListener listens on 127.0.0.1 and accepts (and closes) every
// connection until the test ends.
func acceptingListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// closedPort is a 127.0.0.1 address nothing listens on: a connect to it
// is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
