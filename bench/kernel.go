package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

const bpfStatsSysctl = "/proc/sys/kernel/bpf_stats_enabled"

// enableBPFStats sets kernel.bpf_stats_enabled=1 and returns a function
// that restores the previous value.
func enableBPFStats() (restore func() error, err error) {
	old, err := os.ReadFile(bpfStatsSysctl)
	if err != nil {
		return nil, fmt.Errorf("reading kernel.bpf_stats_enabled: %w", err)
	}
	if err := os.WriteFile(bpfStatsSysctl, []byte("1\n"), 0o644); err != nil {
		return nil, fmt.Errorf("sysctl kernel.bpf_stats_enabled=1: %w", err)
	}
	prev := strings.TrimSpace(string(old))
	return func() error {
		return os.WriteFile(bpfStatsSysctl, []byte(prev+"\n"), 0o644)
	}, nil
}

// progStat is a program's cumulative run time and run count.
type progStat struct {
	Name    string
	Runtime time.Duration
	Runs    uint64
}

// progSet is a set of loaded programs (ours, bpftrace's) whose statistics
// are read together.
type progSet struct {
	names []string
	progs []*ebpf.Program
	owned bool // the programs were opened by ID and must be closed
}

func progSetOf(m map[string]*ebpf.Program) *progSet {
	ps := &progSet{}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ps.names = append(ps.names, n)
		ps.progs = append(ps.progs, m[n])
	}
	return ps
}

func (ps *progSet) stats() ([]progStat, error) {
	out := make([]progStat, len(ps.progs))
	for i, p := range ps.progs {
		s, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("program %s: reading run time: %w", ps.names[i], err)
		}
		out[i] = progStat{Name: ps.names[i], Runtime: s.Runtime, Runs: s.RunCount}
	}
	return out, nil
}

// ids are the kernel's IDs of the programs.
func (ps *progSet) ids() map[ebpf.ProgramID]bool {
	m := map[ebpf.ProgramID]bool{}
	if ps == nil {
		return m
	}
	for _, p := range ps.progs {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				m[id] = true
			}
		}
	}
	return m
}

func (ps *progSet) close() {
	if ps == nil || !ps.owned {
		return
	}
	for _, p := range ps.progs {
		p.Close()
	}
}

// kernelCost is the BPF time a set of programs spent over a run of the
// load generator.
type kernelCost struct {
	Conns    uint64
	Runtime  time.Duration
	Runs     uint64
	Programs []progStat // per program, deltas
}

func (k kernelCost) NsPerConn() float64 {
	return per(float64(k.Runtime.Nanoseconds()), float64(k.Conns))
}

func (k kernelCost) RunsPerConn() float64 { return per(float64(k.Runs), float64(k.Conns)) }

func (k kernelCost) NsPerRun() float64 {
	return per(float64(k.Runtime.Nanoseconds()), float64(k.Runs))
}

// per is n / d, or 0 when nothing was counted (d is 0).
func per(n, d float64) float64 {
	if d == 0 {
		return 0
	}
	return n / d
}

func costBetween(before, after []progStat, conns uint64) kernelCost {
	k := kernelCost{Conns: conns}
	for i := range after {
		d := progStat{Name: after[i].Name, Runtime: after[i].Runtime - before[i].Runtime, Runs: after[i].Runs - before[i].Runs}
		k.Runtime += d.Runtime
		k.Runs += d.Runs
		k.Programs = append(k.Programs, d)
	}
	return k
}

// programIDs lists the IDs of every BPF program loaded on the machine.
func programIDs() (map[ebpf.ProgramID]bool, error) {
	ids := map[ebpf.ProgramID]bool{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing BPF programs: %w", err)
		}
		ids[next] = true
		id = next
	}
}

// programsOf opens the BPF programs process pid holds file descriptors
// of (/proc/PID/fdinfo "prog_id:"), so that the programs of another
// process loading at the same time are not mistaken for its own.
func programsOf(pid int) (*progSet, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[ebpf.ProgramID]bool{}
	ps := &progSet{owned: true}
	for _, e := range ents {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || target != "anon_inode:bpf-prog" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			v, ok := strings.CutPrefix(line, "prog_id:")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || seen[ebpf.ProgramID(n)] {
				continue
			}
			id := ebpf.ProgramID(n)
			seen[id] = true
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue
			}
			name := fmt.Sprintf("id %d", id)
			if pi, err := p.Info(); err == nil && pi.Name != "" {
				name = fmt.Sprintf("%s (id %d, %s)", pi.Name, id, pi.Type)
			}
			ps.names = append(ps.names, name)
			ps.progs = append(ps.progs, p)
		}
	}
	return ps, nil
}

// foreignTracing lists the tracing programs (kprobe, tracepoint, raw
// tracepoint, fentry) loaded on the machine whose IDs are not in own:
// another agent or test run on the machine disturbs every figure.
func foreignTracing(own map[ebpf.ProgramID]bool) []string {
	ids, err := programIDs()
	if err != nil {
		return nil
	}
	var out []string
	for id := range ids {
		if own[id] {
			continue
		}
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			continue
		}
		switch info.Type {
		case ebpf.Kprobe, ebpf.TracePoint, ebpf.RawTracepoint, ebpf.Tracing, ebpf.PerfEvent:
			out = append(out, fmt.Sprintf("%s (id %d, %s)", info.Name, id, info.Type))
		}
	}
	sort.Strings(out)
	return out
}

// waitProgramsOf waits until process pid holds at least one program, then
// a little longer for the rest of a multi-program load.
func waitProgramsOf(pid int, timeout time.Duration, alive func() error) (*progSet, error) {
	deadline := time.Now().Add(timeout)
	for {
		ps, err := programsOf(pid)
		if err == nil && len(ps.progs) > 0 {
			ps.close()
			time.Sleep(500 * time.Millisecond)
			return programsOf(pid)
		}
		ps.close()
		if err := alive(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no BPF program appeared within %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// emptyProgram attaches a program that only returns 0 to the raw
// tracepoint connwatch uses: the floor of any program there.
func emptyProgram() (*progSet, func(), error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "bench_empty",
		Type:         ebpf.RawTracepoint,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return nil, nil, fmt.Errorf("loading the empty program: %w", err)
	}
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "inet_sock_set_state", Program: prog})
	if err != nil {
		prog.Close()
		return nil, nil, fmt.Errorf("attaching the empty program to inet_sock_set_state: %w", err)
	}
	ps := &progSet{names: []string{"empty raw_tp"}, progs: []*ebpf.Program{prog}}
	return ps, func() { l.Close(); prog.Close() }, nil
}

// disturbances collects the foreign tracing programs seen around the
// runs.
var disturbances = struct {
	sync.Mutex
	seen map[string]bool
}{seen: map[string]bool{}}

func observeForeign(own map[ebpf.ProgramID]bool) {
	names := foreignTracing(own)
	disturbances.Lock()
	for _, n := range names {
		disturbances.seen[n] = true
	}
	disturbances.Unlock()
}

func foreignSeen() []string {
	disturbances.Lock()
	defer disturbances.Unlock()
	var out []string
	for n := range disturbances.seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// observed runs the load generator, noting the tracing programs other
// than own loaded before and after, and the CPU that processes other
// than the bench's used meanwhile.
func (s *server) observed(own *progSet, workers int, d time.Duration, maxConns uint64) loadResult {
	ids := own.ids()
	observeForeign(ids)
	om := startOthers()
	r := s.run(workers, d, maxConns)
	om.stop()
	observeForeign(ids)
	return r
}

// othersMeter measures the CPU that processes other than the bench and
// its children use over an interval.
type othersMeter struct {
	pids  []int
	ours0 []time.Duration
	sys0  time.Duration
	t0    time.Time
	err   error
}

func startOthers() *othersMeter {
	m := &othersMeter{pids: append(childPids(), os.Getpid())}
	m.ours0 = make([]time.Duration, len(m.pids))
	for i, p := range m.pids {
		m.ours0[i], _ = cpuTime(p)
	}
	m.sys0, m.err = readSysBusy()
	m.t0 = time.Now()
	return m
}

// stop returns the cores the others used (-1: unknown) and records them
// in othersMax.
func (m *othersMeter) stop() float64 {
	el := time.Since(m.t0)
	sys1, err := readSysBusy()
	if err != nil || m.err != nil {
		return -1
	}
	others := sys1 - m.sys0
	for i, p := range m.pids {
		if c, err := cpuTime(p); err == nil {
			others -= c - m.ours0[i]
		}
	}
	c := max(others.Seconds()/el.Seconds(), 0)
	if c > othersMax.Load().(float64) {
		othersMax.Store(c)
	}
	return c
}

// othersMax is the most CPU (cores) processes other than the bench and
// its children used during one load run.
var othersMax atomic.Value

func init() { othersMax.Store(0.0) }

// readSysBusy is the CPU time all CPUs spent in user and system mode
// (/proc/stat, irq and softirq left out: they are charged to no process).
func readSysBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat")
	}
	var ticks uint64
	for _, i := range []int{1, 2, 3} { // user, nice, system
		v, _ := strconv.ParseUint(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
