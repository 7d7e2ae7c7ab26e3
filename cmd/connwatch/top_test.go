package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
	"github.com/creack/pty"
)

// screen is a terminal emulator fed with what the agent writes to its
// pseudo-terminal, answering its queries as a terminal would: the test
// reads the screen a person would see, not the escape codes.
type screen struct {
	mu  sync.Mutex
	emu *vt.Emulator
}

func (s *screen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emu.String()
}

func (s *screen) altScreen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emu.IsAltScreen()
}

// startTop runs `connwatch top` on a 120x30 pseudo-terminal.
func startTop(t *testing.T) (*exec.Cmd, *os.File, *screen, *bytes.Buffer, chan struct{}) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "connwatch.yaml")
	if err := os.WriteFile(cfg, []byte("telemetry:\n  listen: \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := command(t, "top", "-attach", "tracepoint", "-c", cfg)
	cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 120, Rows: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); tty.Close() })
	scr := &screen{emu: vt.NewEmulator(120, 30)}
	done := make(chan struct{})
	go func() { // the agent's output onto the screen
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := tty.Read(buf)
			if n > 0 {
				scr.mu.Lock()
				scr.emu.Write(buf[:n])
				scr.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	go io.Copy(tty, scr.emu) // the terminal's answers to its queries
	return cmd, tty, scr, &stderr, done
}

// connwatch top shows the test's own workload with the rate of the
// connections it makes and accepts, and gives the terminal back when the
// user presses q.
func TestTopShowsWorkloadAndQuits(t *testing.T) {
	requireRoot(t)
	cmd, tty, scr, stderr, done := startTop(t)

	ln := acceptingListener(t)
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() { // 20 connections a second
		defer close(loadDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
				if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
					c.Close()
				}
			}
		}
	}()

	self, _ := os.Executable()
	name, pid := filepath.Base(self), strconv.Itoa(os.Getpid())
	var row []string
	deadline := time.Now().Add(20 * time.Second)
	for row == nil && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		for _, l := range strings.Split(scr.text(), "\n") {
			// WORKLOAD PID CONN/s FAIL/s ACC/s P50 P99 TOTAL TOP-PEER ×N
			f := strings.Fields(l)
			if len(f) >= 9 && strings.HasPrefix(name, strings.TrimSuffix(f[0], "…")) && f[1] == pid {
				if c, _ := strconv.ParseFloat(f[2], 64); c >= 5 { // a full second of load
					row = f
				}
			}
		}
	}
	close(stopLoad)
	<-loadDone
	if row == nil {
		t.Fatalf("no row for %s (pid %s) with its connect rate within 20s; screen:\n%s\nstderr:\n%s", name, pid, scr.text(), stderr.String())
	}
	conn, _ := strconv.ParseFloat(row[2], 64)
	fail, _ := strconv.ParseFloat(row[3], 64)
	acc, _ := strconv.ParseFloat(row[4], 64)
	if conn > 40 || fail != 0 || acc < 5 || acc > 40 {
		t.Errorf("row %q: want about 20 connects/s and accepts/s (made at 20/s), no failures", row)
	}
	if row[5] == "-" || row[8] != ln.Addr().String() {
		t.Errorf("row %q: want a p50 latency and the listener %s as top peer", row, ln.Addr())
	}
	if !strings.Contains(scr.text(), "connwatch top") || !strings.Contains(scr.text(), "WORKLOAD") {
		t.Errorf("no title or header:\n%s", scr.text())
	}
	if !scr.altScreen() {
		t.Error("the view is not on the alternate screen")
	}

	tty.Write([]byte("q"))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after q: %v, want exit 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after q; screen:\n%s", scr.text())
	}
	tty.Close()
	<-done
	if scr.altScreen() {
		t.Error("the terminal is left on the alternate screen")
	}
	if s := scr.text(); strings.Contains(s, "WORKLOAD") {
		t.Errorf("the view is still on the main screen:\n%s", s)
	}
	// The log held while the view was up is printed after it.
	if !strings.Contains(stderr.String(), "probes attached") {
		t.Errorf("stderr after exit:\n%s", stderr.String())
	}
}

// Without a terminal, top says so instead of drawing into a pipe.
func TestTopNeedsTerminal(t *testing.T) {
	var errb bytes.Buffer
	if code := run([]string{"top"}, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "needs a terminal") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}
