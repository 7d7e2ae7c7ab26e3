//go:build linux

package test

// The connections of the outage tests (outage_test.go): a listener that
// accepts and closes at once, a dialer paced to a rate, and that dialer
// run in namespaces of its own so that the agent can be told to trace it
// alone.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ogListener listens on a free loopback port and accepts and closes every
// connection at once, so that the tests' thousands of connections hold no
// file descriptors.
func ogListener(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		skipOrFail(t, "cannot listen on loopback: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// EMFILE and the like: keep accepting.
				time.Sleep(time.Millisecond)
				continue
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// ogConn is one connection a test made: its local port and the time just
// before the dial and just after it returned.
type ogConn struct {
	port   int
	t0, t1 time.Time
}

// ogDialed is what a paced dial did.
type ogDialed struct {
	conns    []ogConn
	errs     int
	firstErr error
	elapsed  time.Duration
}

func (d ogDialed) rate() float64 {
	if d.elapsed <= 0 {
		return 0
	}
	return float64(len(d.conns)) / d.elapsed.Seconds()
}

// ogDial makes connections to addr at rate per second, spread evenly:
// connection j is begun at start + j/rate by worker j mod workers (a
// worker that falls behind dials at once). It makes n connections, or,
// with n 0, as many as fit in d. Each connection is closed at once.
func ogDial(addr string, rate float64, workers int, d time.Duration, n int) ogDialed {
	if n == 0 {
		n = int(rate * d.Seconds())
	}
	var (
		mu  sync.Mutex
		out ogDialed
		wg  sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var mine []ogConn
			var errs int
			var firstErr error
			for j := w; j < n; j += workers {
				at := start.Add(time.Duration(float64(j) / rate * float64(time.Second)))
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				t0 := time.Now()
				c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				mine = append(mine, ogConn{port: c.LocalAddr().(*net.TCPAddr).Port, t0: t0, t1: time.Now()})
				c.Close()
			}
			mu.Lock()
			out.conns = append(out.conns, mine...)
			out.errs += errs
			if out.firstErr == nil {
				out.firstErr = firstErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	sort.Slice(out.conns, func(i, j int) bool { return out.conns[i].t0.Before(out.conns[j].t0) })
	return out
}

// ogChildEnv makes the test binary run ogChildMain: a dialer and its
// listener in new pid, mount and network namespaces.
const ogChildEnv = "CONNWATCH_OUTAGE_DIALER"

func init() {
	if os.Getenv(ogChildEnv) == "1" {
		os.Exit(ogChildMain())
	}
}

// ogChildMain brings lo up, listens on 127.0.0.1 (accepting and closing
// every connection), says "ready PORT", then for each line "dial RATE
// WORKERS DURATION_NS N" on stdin makes those connections to its
// listener and writes "conn PORT T0 T1" for each (Unix ns) and "done
// ERRORS ELAPSED_NS FIRST_ERROR". It exits when stdin closes.
func ogChildMain() int {
	ln, ok := loListener("outage dialer")
	if !ok {
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(time.Millisecond)
				continue
			}
			c.Close()
		}
	}()
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	fmt.Fprintf(out, "ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var rate float64
		var workers, n int
		var d int64
		if _, err := fmt.Sscanf(in.Text(), "dial %g %d %d %d", &rate, &workers, &d, &n); err != nil {
			fmt.Fprintf(os.Stderr, "outage dialer: bad command %q: %v\n", in.Text(), err)
			return 1
		}
		res := ogDial(ln.Addr().String(), rate, workers, time.Duration(d), n)
		for _, c := range res.conns {
			fmt.Fprintf(out, "conn %d %d %d\n", c.port, c.t0.UnixNano(), c.t1.UnixNano())
		}
		first := ""
		if res.firstErr != nil {
			first = res.firstErr.Error()
		}
		fmt.Fprintf(out, "done %d %d %q\n", res.errs, res.elapsed.Nanoseconds(), first)
		out.Flush()
	}
	return 0
}

// ogNS is a dialer in namespaces of its own (see ogChildMain): the agent
// is told to trace those namespaces only, so that the connections of
// whatever else runs on the machine (a benchmark, other tests) neither
// reach the collector nor fill the queue.
type ogNS struct {
	stdin        io.WriteCloser
	out          *bufio.Scanner
	lport        int
	pidNS, mntNS uint32
}

func ogStartNS(t *testing.T) *ogNS {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), ogChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		skipOrFail(t, "cannot create pid+mount+net namespaces: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	n := &ogNS{stdin: stdin, out: bufio.NewScanner(stdout)}
	n.out.Buffer(make([]byte, 64<<10), 1<<20)
	if !n.out.Scan() {
		t.Fatalf("namespaced dialer exited before it was ready: %v", n.out.Err())
	}
	if _, err := fmt.Sscanf(n.out.Text(), "ready %d", &n.lport); err != nil {
		t.Fatalf("namespaced dialer said %q", n.out.Text())
	}
	n.pidNS = nsInode(t, cmd.Process.Pid, "pid")
	n.mntNS = nsInode(t, cmd.Process.Pid, "mnt")
	return n
}

// visibility is the config that traces the dialer's namespaces only.
func (n *ogNS) visibility() string {
	return fmt.Sprintf("visibility:\n  host: []\n  default: []\n  rules:\n    - match: {pid_ns: %d, mnt_ns: %d}\n      scopes: [network]\n",
		n.pidNS, n.mntNS)
}

// dial is ogDial run by the namespaced dialer against its own listener.
func (n *ogNS) dial(t *testing.T, rate float64, workers int, d time.Duration, count int) ogDialed {
	t.Helper()
	if _, err := fmt.Fprintf(n.stdin, "dial %g %d %d %d\n", rate, workers, d.Nanoseconds(), count); err != nil {
		t.Fatalf("namespaced dialer: %v", err)
	}
	var res ogDialed
	for n.out.Scan() {
		line := n.out.Text()
		switch {
		case strings.HasPrefix(line, "conn "):
			var c ogConn
			var t0, t1 int64
			if _, err := fmt.Sscanf(line, "conn %d %d %d", &c.port, &t0, &t1); err != nil {
				t.Fatalf("namespaced dialer said %q: %v", line, err)
			}
			c.t0, c.t1 = time.Unix(0, t0), time.Unix(0, t1)
			res.conns = append(res.conns, c)
		case strings.HasPrefix(line, "done "):
			var elapsed int64
			var first string
			if _, err := fmt.Sscanf(line, "done %d %d %q", &res.errs, &elapsed, &first); err != nil {
				t.Fatalf("namespaced dialer said %q: %v", line, err)
			}
			res.elapsed = time.Duration(elapsed)
			if first != "" {
				res.firstErr = errors.New(first)
			}
			return res
		default:
			t.Fatalf("namespaced dialer said %q", line)
		}
	}
	t.Fatalf("namespaced dialer exited: %v", n.out.Err())
	return res
}
