package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the bench started (the agent, bpftrace, the OTLP
// receiver). It dies with the bench (PR_SET_PDEATHSIG) and is stopped by
// the bench's cleanup otherwise.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *lineLog // stderr (and stdout unless redirected), line by line
	done chan struct{}
	err  error
}

var (
	childrenMu sync.Mutex
	children   = map[*child]bool{}
)

// startChild starts cmd; its stderr goes to a lineLog kept in memory and
// copied to logPath. When cmd.Stdout is nil it goes there too.
func startChild(name string, cmd *exec.Cmd, logPath string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, out: &lineLog{file: f}, done: make(chan struct{})}
	cmd.Stderr = c.out
	if cmd.Stdout == nil {
		cmd.Stdout = c.out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, cmd.Path, err)
	}
	childrenMu.Lock()
	children[c] = true
	childrenMu.Unlock()
	go func() {
		c.err = cmd.Wait()
		f.Close()
		childrenMu.Lock()
		delete(children, c)
		childrenMu.Unlock()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// alive returns an error once the process has exited.
func (c *child) alive() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s exited (%v); its output:\n%s", c.name, c.err, indent(c.out.tail(20)))
	default:
		return nil
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after timeout.
func (c *child) stop(timeout time.Duration) error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	syscall.Kill(-c.pid(), syscall.SIGTERM)
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM: killed", c.name, timeout)
	}
}

// childPids lists the running children.
func childPids() []int {
	childrenMu.Lock()
	defer childrenMu.Unlock()
	var pids []int
	for c := range children {
		pids = append(pids, c.pid())
	}
	return pids
}

// killChildren kills every child still running (cleanup on error or
// signal).
func killChildren() {
	childrenMu.Lock()
	var cs []*child
	for c := range children {
		cs = append(cs, c)
	}
	childrenMu.Unlock()
	for _, c := range cs {
		c.stop(3 * time.Second)
	}
}

// lineLog collects a process's output as lines.
type lineLog struct {
	mu      sync.Mutex
	file    *os.File
	partial []byte
	lines   []string
}

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.file.Write(b)
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

func (l *lineLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *lineLog) tail(n int) string {
	lines := l.snapshot()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitLine waits for a line containing substr.
func (l *lineLog) waitLine(substr string, timeout time.Duration, alive func() error) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range l.snapshot() {
			if strings.Contains(line, substr) {
				return line, nil
			}
		}
		if err := alive(); err != nil {
			return "", err
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no %q line within %s", substr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// slogFields parses the key=value pairs of a log/slog text line.
var slogField = regexp.MustCompile(`([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|\S*)`)

func slogFields(line string) map[string]string {
	m := map[string]string{}
	for _, f := range slogField.FindAllStringSubmatch(line, -1) {
		v := f[2]
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		m[f[1]] = v
	}
	return m
}

// agentLog is what the agent's stderr says about a run.
type agentLog struct {
	Mode          string            // attach mode ("probes attached")
	LostSamples   uint64            // sum of "kernel lost samples" lost=
	LostWarnings  int               // number of such lines
	Counters      map[string]string // "counters at exit", nil if absent
	Warnings      []string          // other WARN/ERROR lines
	AcceptSkipped bool              // an optional (accept) probe was not attached
}

func parseAgentLog(lines []string) agentLog {
	var a agentLog
	for _, line := range lines {
		f := slogFields(line)
		switch f["msg"] {
		case "probes attached":
			a.Mode = f["mode"]
		case "kernel lost samples: perf buffer full":
			n, _ := strconv.ParseUint(f["lost"], 10, 64)
			a.LostSamples += n
			a.LostWarnings++
		case "counters at exit":
			a.Counters = f
		case "optional probe not attached":
			a.AcceptSkipped = true
			a.Warnings = append(a.Warnings, line)
		default:
			if strings.Contains(f["msg"], "lost") && f["lost"] != "" {
				n, _ := strconv.ParseUint(f["lost"], 10, 64)
				a.LostSamples += n
				a.LostWarnings++
			} else if f["level"] == "WARN" || f["level"] == "ERROR" {
				a.Warnings = append(a.Warnings, line)
			}
		}
	}
	return a
}

func (a agentLog) counter(name string) (uint64, bool) {
	v, ok := a.Counters[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// memStatus is a process's resident memory, from /proc/PID/status.
type memStatus struct {
	RSS, HWM uint64 // bytes
}

func readMem(pid int) (memStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStatus{}, err
	}
	defer f.Close()
	var m memStatus
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		default:
			continue
		}
		fs := strings.Fields(v)
		if len(fs) >= 1 {
			kb, _ := strconv.ParseUint(fs[0], 10, 64)
			*dst = kb << 10
		}
	}
	return m, sc.Err()
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime is the user+system CPU time of a process (all its threads).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

func parseStatCPU(b []byte) (time.Duration, error) {
	// comm may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat")
	}
	fs := strings.Fields(string(b[i+1:]))
	// fs[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fs) < 13 {
		return 0, fmt.Errorf("malformed stat")
	}
	u, err1 := strconv.ParseUint(fs[11], 10, 64)
	s, err2 := strconv.ParseUint(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat")
	}
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// cpuMeter measures the CPU a process used over an interval, in cores.
type cpuMeter struct {
	pid   int
	t0    time.Time
	cpu0  time.Duration
	valid bool
}

func startCPU(pid int) cpuMeter {
	c, err := cpuTime(pid)
	return cpuMeter{pid: pid, t0: time.Now(), cpu0: c, valid: err == nil}
}

// cores is the CPU used since start divided by the wall time.
func (m cpuMeter) cores() float64 {
	c, err := cpuTime(m.pid)
	if err != nil || !m.valid {
		return -1
	}
	return (c - m.cpu0).Seconds() / time.Since(m.t0).Seconds()
}

var _ io.Writer = (*lineLog)(nil)
