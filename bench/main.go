// Command bench measures connwatch on the machine it runs on and prints one
// table: kernel cost per connection, connection-rate overhead, loss at
// full speed, user-space throughput and memory, next to a bpftrace
// one-liner on the same tracepoint, each figure measured in the same run
// as its baseline. `make bench` builds and runs it (see bench/run.sh and
// BENCHMARKS.md). It needs root; all traffic is loopback.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/connwatch/connwatch/bpf"
)

type options struct {
	agent       string
	agentConfig string
	bpftrace    string
	workers     int
	kernelDur   time.Duration
	rateDur     time.Duration
	lossDur     time.Duration
	pipeDur     time.Duration
	idle        time.Duration
	maxConns    uint64
	dir         string
	cpuProfile  string
	memProfile  string
	wakeup      int
	transport   string
	rawState    bool
	only        string
	signals     string
	// sampledAgent: the agent under test samples successful connections
	// (export.sampling.ratio < 1), so warming up takes more than one.
	sampledAgent bool
	// agentLog names the agent's log file in dir (default: after its
	// output), so that runs repeated with one output keep theirs apart.
	agentLog string
}

var (
	restoreMu    sync.Mutex
	restoreStats func() error
)

func restore() {
	restoreMu.Lock()
	defer restoreMu.Unlock()
	if restoreStats != nil {
		if err := restoreStats(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: restoring kernel.bpf_stats_enabled:", err)
		}
		restoreStats = nil
	}
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "receiver":
			os.Exit(receiverMain())
		case "load":
			os.Exit(loadMain(os.Args[2:]))
		}
	}
	os.Exit(run())
}

func run() int {
	var o options
	flag.StringVar(&o.agent, "agent", "bin/connwatch", "the agent `binary` (make build)")
	flag.StringVar(&o.bpftrace, "bpftrace", "", "bpftrace `binary` (default: from PATH; empty and absent: the peer column is skipped)")
	flag.IntVar(&o.workers, "workers", 8, "load generator goroutines dialing 127.0.0.1")
	flag.DurationVar(&o.kernelDur, "kernel", 5*time.Second, "load per attach mode for the BPF time per connection")
	flag.DurationVar(&o.rateDur, "rate", 10*time.Second, "load per connection-rate run")
	flag.DurationVar(&o.lossDur, "loss", 30*time.Second, "load of the loss run (agent at full speed)")
	flag.DurationVar(&o.pipeDur, "pipeline", 5*time.Second, "end-to-end user-space run (each stage alone gets a fifth of it)")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "wait after the agent starts before its idle RSS is read")
	flag.Uint64Var(&o.maxConns, "max-conns", 5_000_000, "upper bound of connections per run")
	flag.StringVar(&o.dir, "dir", "", "`directory` for logs (default: a new one under $TMPDIR)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the end-to-end user-space run to `file`")
	flag.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile of the end-to-end user-space run to `file`")
	flag.IntVar(&o.wakeup, "wakeup", wakeupEvents, "WakeupEvents of the in-process probe of part 1 (the agent uses 64)")
	flag.StringVar(&o.transport, "transport", "auto", "transport of the in-process probe of part 1: auto, perf or ringbuf (the agent uses auto)")
	flag.BoolVar(&o.rawState, "raw-state-changes", false, "part 1: attach the raw tracepoint for state changes even where the BTF-typed one loads")
	flag.StringVar(&o.only, "only", "", "run only `part` kernel, rate, stdout, sampling, loss or pipeline (experiments; prints the full table with the rest empty)")
	flag.StringVar(&o.signals, "signals", "both", "signals of the end-to-end user-space run: both, traces or logs (experiments)")
	quick := flag.Bool("quick", false, "short runs (smoke test of the bench itself; figures are rough)")
	flag.Parse()
	if *quick {
		o.kernelDur, o.rateDur, o.lossDur, o.pipeDur, o.idle = 2*time.Second, 3*time.Second, 5*time.Second, 2*time.Second, time.Second
	}

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (BPF programs, kernel.bpf_stats_enabled); run `make bench` as root")
		return 1
	}
	if _, err := os.Stat(o.agent); err != nil {
		fmt.Fprintf(os.Stderr, "bench: agent binary %s: %v (run `make build`)\n", o.agent, err)
		return 1
	}
	if o.bpftrace == "" {
		if p, err := exec.LookPath("bpftrace"); err == nil {
			o.bpftrace = p
		}
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "connwatch-bench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		o.dir = d
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nbench: %v: stopping the agent, bpftrace and the receiver, restoring kernel.bpf_stats_enabled\n", s)
		killChildren()
		restore()
		os.Exit(130)
	}()
	defer killChildren()
	defer restore()

	res, err := measureAll(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	printReport(os.Stdout, o, res)
	if errs := res.errors(); len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d measurement(s) failed (logs in %s):\n", len(errs), o.dir)
		for _, e := range errs {
			fmt.Fprintln(os.Stderr, "  -", e)
		}
		return 1
	}
	return 0
}

// results holds every measurement of one run.
type results struct {
	started  time.Time
	loadavg  string
	empty    kernelCost
	emptyErr error
	modes    []modeResult
	baseA    loadResult
	baseB    loadResult
	agent    rateRun
	agentLog agentLog
	events   rateRun // the agent with -format events: no OpenTelemetry
	stdout   rateRun // the agent without an endpoint: OTel JSON lines on stdout
	sampling samplingResult
	peer     rateRun
	loss     lossRun
	pipe     pipelineResult
	pipeErr  error
	elapsed  time.Duration
}

func (r *results) errors() (errs []error) {
	defer func() {
		kept := errs[:0]
		for _, e := range errs {
			if !errors.Is(e, errSkipped) {
				kept = append(kept, e)
			}
		}
		errs = kept
	}()
	if r.emptyErr != nil {
		errs = append(errs, fmt.Errorf("empty-program baseline: %w", r.emptyErr))
	}
	for _, m := range r.modes {
		if m.Err != nil {
			errs = append(errs, fmt.Errorf("kernel cost, %s mode: %w", m.Mode, m.Err))
		}
	}
	if r.agent.Err != nil {
		errs = append(errs, fmt.Errorf("connection rate with the agent: %w", r.agent.Err))
	}
	if r.events.Err != nil {
		errs = append(errs, fmt.Errorf("connection rate with the agent (-format events): %w", r.events.Err))
	}
	if r.stdout.Err != nil {
		errs = append(errs, fmt.Errorf("connection rate with the agent (OTel JSON lines on stdout): %w", r.stdout.Err))
	}
	if r.sampling.Err != nil {
		errs = append(errs, fmt.Errorf("connection rate with sampling: %w", r.sampling.Err))
	}
	if r.loss.Err != nil {
		errs = append(errs, fmt.Errorf("loss run: %w", r.loss.Err))
	}
	if r.pipeErr != nil {
		errs = append(errs, fmt.Errorf("user-space pipeline: %w", r.pipeErr))
	}
	return errs
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func measureAll(o options) (*results, error) {
	res := &results{started: time.Now()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			res.loadavg = strings.Join(f[:3], " ")
		}
	}
	var err error
	if o.agentConfig, err = agentConfig(o); err != nil {
		return nil, err
	}
	r, err := enableBPFStats()
	if err != nil {
		return nil, err
	}
	restoreMu.Lock()
	restoreStats = r
	restoreMu.Unlock()

	rcv, err := startReceiver(o.dir)
	if err != nil {
		return nil, err
	}
	defer rcv.close()
	srv, err := startServer()
	if err != nil {
		return nil, err
	}
	defer srv.close()
	progress("logs in %s; load: %d workers dialing 127.0.0.1:%d", o.dir, o.workers, srv.port)

	want := func(part string) bool { return o.only == "" || o.only == part }

	// 1. Kernel cost, in process, per attach mode, after the floor.
	if want("kernel") {
		waitQuiet()
		progress("1/5 kernel cost: empty program on inet_sock_set_state (%s)", o.kernelDur)
		res.empty, res.emptyErr = emptyCost(srv, o)
		for _, m := range []bpf.Mode{bpf.ModeFentry, bpf.ModeKprobe, bpf.ModeTracepoint} {
			progress("1/5 kernel cost: connwatch in %s mode", m)
			mr := kernelCostOfMode(srv, o, m, false)
			res.modes = append(res.modes, mr)
			if mr.Err == nil && mr.Unsupported == nil {
				progress("1/5 kernel cost: connwatch in %s mode, close tracking off", m)
				res.modes = append(res.modes, kernelCostOfMode(srv, o, m, true))
			}
		}
	} else {
		res.emptyErr = errSkipped
	}

	// 2. Connection rate: without, with the agent, with bpftrace, without.
	if want("rate") {
		waitQuiet()
		progress("2/5 connection rate without an observer (%s)", o.rateDur)
		res.baseA = srv.observed(nil, o.workers, o.rateDur, o.maxConns)
		progress("2/5 connection rate with the agent exporting OTLP (%s)", o.rateDur)
		res.agent, res.agentLog = agentRateRun(srv, rcv, outOTLP, o)
		progress("2/5 connection rate with the agent printing -format events to /dev/null (%s)", o.rateDur)
		res.events, _ = agentRateRun(srv, nil, outEvents, o)
		progress("2/5 connection rate with the agent printing OTel JSON lines to /dev/null, no endpoint (%s)", o.rateDur)
		res.stdout, _ = agentRateRun(srv, nil, outStdout, o)
		progress("2/5 connection rate with bpftrace (%s)", o.rateDur)
		res.peer = bpftraceRateRun(srv, o)
		progress("2/5 connection rate without an observer, again (%s)", o.rateDur)
		res.baseB = srv.observed(nil, o.workers, o.rateDur, o.maxConns)
	} else if want("stdout") {
		waitQuiet()
		progress("2/5 connection rate without an observer (%s)", o.rateDur)
		res.baseA = srv.observed(nil, o.workers, o.rateDur, o.maxConns)
		progress("2/5 connection rate with the agent printing OTel JSON lines to /dev/null, no endpoint (%s)", o.rateDur)
		res.stdout, _ = agentRateRun(srv, nil, outStdout, o)
		res.baseB = res.baseA
		res.agent.Err, res.events.Err, res.peer.Err = errSkipped, errSkipped, errSkipped
	} else {
		res.agent.Err, res.events.Err, res.stdout.Err, res.peer.Err = errSkipped, errSkipped, errSkipped, errSkipped
	}

	// 2b. What OTLP costs with export.sampling.ratio 0.01.
	if want("sampling") {
		waitQuiet()
		res.sampling = samplingRuns(srv, rcv, o)
	} else {
		res.sampling.Err = errSkipped
	}

	// 3 and 5. Loss and memory over a long run at full speed.
	if want("loss") {
		waitQuiet()
		progress("3/5 loss and RSS: agent idle %s, then flat out for %s", o.idle, o.lossDur)
		res.loss = agentLossRun(srv, rcv, o)
	} else {
		res.loss.Err = errSkipped
	}

	// 4. User space on one core.
	if want("pipeline") {
		progress("4/5 user-space pipeline on one core (%s end to end)", o.pipeDur)
		res.pipe, res.pipeErr = runPipeline(rcv, o)
	} else {
		res.pipeErr = errSkipped
	}

	restore()
	res.elapsed = time.Since(res.started)
	progress("5/5 done in %s", res.elapsed.Round(time.Second))
	return res, nil
}

var (
	errNoMeasure = errors.New("not measured")
	errSkipped   = errors.New("skipped (-only)")
)

// quietBudget bounds the time the bench waits, in all, for other tracing
// programs (another agent, a test run) to go away before a part.
var quietBudget = 60 * time.Second

// waitQuiet waits, within what is left of quietBudget, until no tracing
// BPF program but the bench's own is loaded; what remains is reported as
// a disturbance.
func waitQuiet() {
	announced := false
	for len(foreignTracing(nil)) > 0 && quietBudget > 0 {
		if !announced {
			progress("other tracing BPF programs are loaded (another agent or test?): waiting up to %s for them to go", quietBudget.Round(time.Second))
			announced = true
		}
		time.Sleep(500 * time.Millisecond)
		quietBudget -= 500 * time.Millisecond
	}
}

// loadMain runs the load generator alone (`bench load -d 10s`), e.g.
// while profiling an agent started by hand.
func loadMain(args []string) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	d := fs.Duration("d", 10*time.Second, "duration")
	workers := fs.Int("workers", 8, "goroutines dialing 127.0.0.1")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	srv, err := startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench load:", err)
		return 1
	}
	defer srv.close()
	r := srv.run(*workers, *d, 50_000_000)
	fmt.Printf("%d connections in %s: %.0f/s, %d errors\n", r.Conns, r.Elapsed.Round(time.Millisecond), r.Rate(), r.Errors)
	return 0
}
