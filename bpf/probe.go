//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Monitor selects which processes the kernel program reports; it is the
// seed's MONITOR_* build switch, set at load time.
type Monitor uint32

const (
	MonitorAll        Monitor = 0 // host and namespaced processes, told apart
	MonitorHost       Monitor = 1 // every process reported as a host process
	MonitorContainers Monitor = 2 // only processes outside the initial pid namespace
)

// Transport is how events leave the kernel.
type Transport string

const (
	// TransportAuto uses the ring buffer where the kernel has one (5.8+),
	// else the perf event array.
	TransportAuto Transport = "auto"
	// TransportPerf is the design's perf event array sys_events: one
	// buffer per CPU.
	TransportPerf Transport = "perf"
	// TransportRingbuf is one BPF ring buffer shared by all CPUs: the same
	// bytes per event at a lower cost per write.
	TransportRingbuf Transport = "ringbuf"
)

// Options configure Open.
type Options struct {
	Mode    Mode
	Monitor Monitor
	// Transport chooses perf event array or ring buffer; default auto.
	Transport Transport
	// PerCPUBuffer is the size in bytes of each CPU's perf buffer
	// (rounded up to pages). Default 256 KiB.
	PerCPUBuffer int
	// RingBuffer is the size in bytes of the ring buffer, a power of two
	// of at least a page. Default 1 MiB.
	RingBuffer int
	// WakeupEvents wakes the perf reader every that many samples instead
	// of on each one. Default 1. (The ring buffer's reader is woken only
	// when a quarter of the ring is filled.)
	WakeupEvents int
	// Poll is how often Read collects the events the kernel did not wake
	// it for: with the ring buffer, and with the perf buffer when
	// WakeupEvents > 1. It bounds how long an event waits. Default 10 ms.
	Poll time.Duration
	// RawStateChanges attaches the raw tracepoint for TCP state changes
	// (and the accept tracepoints that read the task through probe reads)
	// even where the kernel takes the BTF-typed one (tp_btf, whose direct
	// reads cost less). For tests and comparisons.
	RawStateChanges bool
	// AgentTGID, when not 0, is the process whose connections the kernel
	// program leaves out (counted as KernelStats.DroppedAgent): the agent
	// itself, so that its exports do not report themselves.
	AgentTGID uint32
	// MaxPending bounds the connection attempts tracked until their
	// outcome (the conn_attempts LRU). Default 16384.
	MaxPending uint32
	// MaxConnections bounds the reported connections tracked until they
	// close (the conns LRU): beyond it the least recently reported open
	// connection is forgotten and sends no close event
	// (KernelStats.ConnsForgotten). Default 65536.
	MaxConnections uint32
	// NoCloses leaves connections untracked, so no close event is sent:
	// for measuring what close tracking costs.
	NoCloses bool
}

// Probe is the loaded and attached kernel program and the reader of its
// events. Read must be called from one goroutine; Close may be called from
// any and unblocks Read.
type Probe struct {
	// mu guards coll against Close while the accessors (Map, Programs,
	// KernelStats, SetVisibility, ...) run on other goroutines.
	mu         sync.RWMutex
	finalStats KernelStats // read at Close, returned by KernelStats after it
	mode       Mode
	transport  Transport
	stateProg  string // the program attached to inet_sock_set_state
	btfErr     error  // why the BTF-typed one was not, if it was tried
	skipped    []Skipped
	warnings   []error
	coll       *ebpf.Collection
	links      []link.Link
	// innerVisibility creates the visibility map's inner maps.
	innerVisibility *ebpf.MapSpec
	reader          eventReader
}

// eventReader is the perf or the ring buffer reader.
type eventReader interface {
	ReadInto(*Record) error
	SetDeadline(time.Time)
	Flush() error
	Close() error
}

// ringReader reads the ring buffer into perf Records. The ring buffer
// never loses samples silently: a full ring fails the kernel's write,
// which it counts in KernelStats.PerfErrors.
type ringReader struct {
	*ringbuf.Reader
	rec ringbuf.Record
}

func (r *ringReader) ReadInto(rec *Record) error {
	r.rec.RawSample = rec.RawSample
	err := r.Reader.ReadInto(&r.rec)
	rec.RawSample, rec.LostSamples, rec.CPU, rec.Remaining = r.rec.RawSample, 0, 0, r.rec.Remaining
	return err
}

// polling reads so that no event waits longer than every for a wakeup
// the kernel does not send: a read that finds the buffers empty waits
// until the next deadline, which then moves on by every.
type polling struct {
	eventReader
	every time.Duration
}

func (r polling) ReadInto(rec *Record) error {
	for {
		err := r.eventReader.ReadInto(rec)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		r.SetDeadline(time.Now().Add(r.every))
	}
}

// attachment is one program of a mode and how it attaches. A required
// one that fails fails the mode; an optional one is skipped with a
// warning (see Probe.Warnings).
type attachment struct {
	prog     string
	required bool
	attach   func(*ebpf.Program) (link.Link, error)
}

func tracing(p *ebpf.Program) (link.Link, error) {
	return link.AttachTracing(link.TracingOptions{Program: p})
}

func kprobe(symbol string) func(*ebpf.Program) (link.Link, error) {
	return func(p *ebpf.Program) (link.Link, error) {
		if err := kprobesAvailable(); err != nil {
			return nil, err
		}
		return link.Kprobe(symbol, p, nil)
	}
}

func kretprobe(symbol string) func(*ebpf.Program) (link.Link, error) {
	return func(p *ebpf.Program) (link.Link, error) {
		if err := kprobesAvailable(); err != nil {
			return nil, err
		}
		return link.Kretprobe(symbol, p, nil)
	}
}

func rawTracepoint(name string) func(*ebpf.Program) (link.Link, error) {
	return func(p *ebpf.Program) (link.Link, error) {
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: p})
	}
}

func tracepoint(group, name string) func(*ebpf.Program) (link.Link, error) {
	return func(p *ebpf.Program) (link.Link, error) {
		if err := ensureTracefs(); err != nil {
			return nil, err
		}
		return link.Tracepoint(group, name, p, nil)
	}
}

// outcomes is attached in every mode: it reports how each attempt ended.
// Where the kernel takes them, the programs of btfTwins are attached
// instead of theirs: the same code, reading the socket (a BTF-typed
// tracepoint's argument) and the current task (bpf_get_current_task_btf)
// directly instead of through bpf_probe_read_kernel.
var (
	outcomes    = attachment{"tp_inet_sock_set_state", true, rawTracepoint("inet_sock_set_state")}
	outcomesBTF = attachment{"tp_btf_inet_sock_set_state", true, tracing}
	btfTwins    = map[string]attachment{
		outcomes.prog:         outcomesBTF,
		"tp_sys_exit_accept4": {"tp_sys_exit_accept4_btf", false, tracepoint("syscalls", "sys_exit_accept4")},
		"tp_sys_exit_accept":  {"tp_sys_exit_accept_btf", false, tracepoint("syscalls", "sys_exit_accept")},
	}
)

// withBTFTwins returns atts with the programs that have a BTF twin
// replaced by it.
func withBTFTwins(atts []attachment) []attachment {
	out := make([]attachment, len(atts))
	for i, a := range atts {
		if twin, ok := btfTwins[a.prog]; ok {
			a = twin
		}
		out[i] = a
	}
	return out
}

var modePrograms = map[Mode][]attachment{
	ModeFentry: {
		{"fentry_tcp_connect", true, tracing},
		{"fexit_tcp_connect", true, tracing},
		outcomes,
		{"fexit_inet_csk_accept", false, tracing},
	},
	ModeKprobe: {
		{"kprobe_tcp_connect", true, kprobe("tcp_connect")},
		{"kretprobe_tcp_connect", true, kretprobe("tcp_connect")},
		outcomes,
		{"kretprobe_inet_csk_accept", false, kretprobe("inet_csk_accept")},
	},
	ModeTracepoint: {
		outcomes,
		{"tp_sys_exit_accept4", false, tracepoint("syscalls", "sys_exit_accept4")},
		{"tp_sys_exit_accept", false, tracepoint("syscalls", "sys_exit_accept")},
	},
}

// kprobesAvailable reports ErrNotSupported when the kernel has neither the
// kprobe PMU nor tracefs kprobe_events, i.e. CONFIG_KPROBES is unset.
func kprobesAvailable() error {
	for _, p := range []string{
		"/sys/bus/event_source/devices/kprobe/type",
		"/sys/kernel/tracing/kprobe_events",
		"/sys/kernel/debug/tracing/kprobe_events",
	} {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
	}
	return &Unsupported{Reason: "this kernel has no kprobes (CONFIG_KPROBES is off)",
		Err: fmt.Errorf("no kprobe PMU, no kprobe_events in tracefs: %w", ebpf.ErrNotSupported)}
}

// ensureTracefs mounts tracefs at /sys/kernel/tracing when no tracefs is
// mounted: classic tracepoints are found by their id there.
func ensureTracefs() error {
	for _, p := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		_, err := os.Stat(p)
		if err == nil {
			return nil
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("tracefs is mounted but %s is not readable (CAP_DAC_READ_SEARCH missing?): %w", p, err)
		}
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: %w", err)
	}
	return nil
}

// canLoadTracepoints reports whether this process may load a (trivial) raw
// tracepoint program, which tells a lack of privilege apart from a kernel
// that refuses one program type.
func canLoadTracepoints() bool {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.RawTracepoint,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		return false
	}
	prog.Close()
	return true
}

// notSupported marks the errors that mean "this kernel cannot do that" as
// ebpf.ErrNotSupported, so ModeAuto falls back on them: trampolines
// missing (ENOTSUPP 524, EOPNOTSUPP) or an attach point the kernel lacks.
func notSupported(err error) error {
	if err == nil || errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.Errno(524)) {
		return fmt.Errorf("%w (%w)", ebpf.ErrNotSupported, err)
	}
	return err
}

// Open loads the program, attaches it in the requested mode (falling back as
// ModeAuto allows) and opens the perf reader.
func Open(opts Options) (*Probe, error) {
	if opts.Mode == "" {
		opts.Mode = ModeAuto
	}
	if opts.PerCPUBuffer <= 0 {
		opts.PerCPUBuffer = 256 << 10
	}
	if opts.RingBuffer <= 0 {
		opts.RingBuffer = 1 << 20
	}
	if opts.Poll <= 0 {
		opts.Poll = 10 * time.Millisecond
	}
	if opts.WakeupEvents <= 0 {
		opts.WakeupEvents = 1
	}
	switch opts.Transport {
	case "", TransportAuto:
		opts.Transport = TransportPerf
		if features.HaveMapType(ebpf.RingBuf) == nil {
			opts.Transport = TransportRingbuf
		}
	case TransportPerf:
	case TransportRingbuf:
		if err := features.HaveMapType(ebpf.RingBuf); err != nil {
			return nil, fmt.Errorf("transport ringbuf: %w", err)
		}
	default:
		return nil, fmt.Errorf("unknown transport %q (want auto, perf or ringbuf)", opts.Transport)
	}

	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the memlock limit: %w", err)
	}

	p := &Probe{}
	mode, skipped, err := selectMode(opts.Mode, func(m Mode) error { return p.load(m, opts) })
	p.skipped = skipped
	if err != nil {
		p.Close()
		return nil, err
	}
	p.mode, p.transport = mode, opts.Transport

	var rd eventReader
	if opts.Transport == TransportRingbuf {
		r, err := ringbuf.NewReader(p.coll.Maps["sys_events_rb"])
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("opening ring buffer reader: %w", err)
		}
		rd = &ringReader{Reader: r}
	} else {
		r, err := perf.NewReaderWithOptions(p.coll.Maps["sys_events"], opts.PerCPUBuffer,
			perf.ReaderOptions{WakeupEvents: opts.WakeupEvents})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("opening perf reader: %w", err)
		}
		rd = r
	}
	if opts.Transport == TransportRingbuf || opts.WakeupEvents > 1 {
		rd.SetDeadline(time.Now().Add(opts.Poll))
		rd = polling{rd, opts.Poll}
	}
	p.reader = rd
	return p, nil
}

// load loads the objects mode needs and attaches them, with the BTF-typed
// state-change program where the kernel takes it, else the raw one. On
// failure nothing of it stays loaded.
func (p *Probe) load(m Mode, opts Options) error {
	atts, ok := modePrograms[m]
	if !ok {
		return fmt.Errorf("unknown attach mode %q", m)
	}
	p.btfErr = nil
	if !opts.RawStateChanges {
		err := p.loadAttach(m, withBTFTwins(atts), opts)
		if err == nil {
			p.stateProg = outcomesBTF.prog
			return nil
		}
		p.btfErr = err
	}
	if err := p.loadAttach(m, atts, opts); err != nil {
		return err
	}
	p.stateProg = outcomes.prog
	return nil
}

// loadAttach loads the programs of atts and attaches them.
func (p *Probe) loadAttach(m Mode, atts []attachment, opts Options) error {
	spec, err := loadConnwatch()
	if err != nil {
		return fmt.Errorf("loading BPF object: %w", err)
	}
	if err := spec.Variables["monitor_mode"].Set(uint32(opts.Monitor)); err != nil {
		return fmt.Errorf("setting monitor_mode: %w", err)
	}
	if err := spec.Variables["agent_tgid"].Set(opts.AgentTGID); err != nil {
		return fmt.Errorf("setting agent_tgid: %w", err)
	}
	if err := spec.Variables["attempts_from_tracepoint"].Set(m == ModeTracepoint); err != nil {
		return fmt.Errorf("setting attempts_from_tracepoint: %w", err)
	}
	if err := spec.Variables["track_closes"].Set(!opts.NoCloses); err != nil {
		return fmt.Errorf("setting track_closes: %w", err)
	}
	ring := opts.Transport == TransportRingbuf
	if err := spec.Variables["use_ringbuf"].Set(ring); err != nil {
		return fmt.Errorf("setting use_ringbuf: %w", err)
	}
	if err := spec.Variables["ringbuf_wakeup_bytes"].Set(uint64(opts.RingBuffer / 4)); err != nil {
		return fmt.Errorf("setting ringbuf_wakeup_bytes: %w", err)
	}
	if ring {
		if n := opts.RingBuffer; n < os.Getpagesize() || n&(n-1) != 0 {
			return fmt.Errorf("ring buffer size %d is not a power of two of at least a page", n)
		}
		spec.Maps["sys_events_rb"].MaxEntries = uint32(opts.RingBuffer)
	} else {
		// The ring buffer is never written (the verifier drops the
		// branch, use_ringbuf being a constant): a one-entry array
		// stands in for it, which also loads on kernels without ring
		// buffers.
		spec.Maps["sys_events_rb"] = &ebpf.MapSpec{Name: "sys_events_rb", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	}
	if opts.MaxPending > 0 {
		spec.Maps["conn_attempts"].MaxEntries = opts.MaxPending
	}
	if opts.MaxConnections > 0 {
		spec.Maps["conns"].MaxEntries = opts.MaxConnections
	}
	// Load only this mode's programs: a kernel without kprobes or
	// trampolines refuses the others.
	keep := map[string]bool{}
	for _, a := range atts {
		keep[a.prog] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}

	inner := spec.Maps["visibility"].InnerMap.Copy()
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("loading %s programs: %w (verifier log: %+v)", m, err, verr)
		}
		if m == ModeFentry && errors.Is(err, unix.EPERM) && canLoadTracepoints() {
			// Privileged enough for BPF, yet the kernel refuses
			// tracing programs: lockdown or no trampolines.
			// The library's hint about MEMLOCK in err is a false lead
			// here: it is for the Reason to say what is going on.
			return &Unsupported{Reason: "the kernel refuses fentry/fexit programs although BPF is permitted (lockdown, or no BPF trampolines)",
				Err: fmt.Errorf("loading %s programs: %w (%w)", m, ebpf.ErrNotSupported, err)}
		}
		return fmt.Errorf("loading %s programs: %w", m, notSupported(err))
	}

	var links []link.Link
	var warnings []error
	for _, a := range atts {
		l, err := a.attach(coll.Programs[a.prog])
		if err != nil {
			err = fmt.Errorf("attaching %s: %w", a.prog, notSupported(err))
			if !a.required {
				warnings = append(warnings, err)
				continue
			}
			for _, l := range links {
				l.Close()
			}
			coll.Close()
			return err
		}
		links = append(links, l)
	}
	p.coll, p.links, p.warnings, p.innerVisibility = coll, links, warnings, inner
	return nil
}

// Warnings lists the optional programs that could not be attached (the
// accept side, when the kernel lacks its attach point).
func (p *Probe) Warnings() []error { return p.warnings }

// KernelStats are the kernel program's counters, summed over CPUs.
type KernelStats struct {
	AttemptsTracked   uint64 // attempts saved until their outcome
	Results           uint64 // outcomes matched to a saved attempt
	ResultsUntracked  uint64 // sockets leaving SYN_SENT with no saved attempt (evicted from the LRU, or begun before load)
	PerfErrors        uint64 // samples the kernel could not write (perf or ring buffer full)
	Accepts           uint64 // accept events assembled
	DroppedVisibility uint64 // events the visibility map dropped in the kernel
	DroppedMonitor    uint64 // events of processes the monitor switch leaves out (Options.Monitor)
	DroppedAgent      uint64 // events of the agent's own connections left out (Options.AgentTGID)
	ConnsTracked      uint64 // reported connections saved until they close
	ConnsClosed       uint64 // of those, found again when they closed (a close event each, unless visibility hid it)
	// ConnsOpen is how many tracked connections the conns map holds now,
	// and ConnsForgotten how many it evicted while still open
	// (ConnsTracked - ConnsClosed - ConnsOpen): their close went
	// unreported.
	ConnsOpen      uint64
	ConnsForgotten uint64
}

// KernelStats reads the kernel program's counters; after Close, their
// values at Close.
func (p *Probe) KernelStats() (KernelStats, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.coll == nil {
		return p.finalStats, nil
	}
	return p.kernelStats()
}

func (p *Probe) kernelStats() (KernelStats, error) {
	var ks KernelStats
	m := p.coll.Maps["stats"]
	fields := []*uint64{&ks.AttemptsTracked, &ks.Results, &ks.ResultsUntracked, &ks.PerfErrors, &ks.Accepts, &ks.DroppedVisibility, &ks.DroppedAgent,
		&ks.ConnsTracked, &ks.ConnsClosed, &ks.DroppedMonitor}
	for i, f := range fields {
		var perCPU []uint64
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return ks, fmt.Errorf("reading stats[%d]: %w", i, err)
		}
		for _, v := range perCPU {
			*f += v
		}
	}
	// One syscall per entry: about a millisecond per thousand open
	// connections.
	n, err := countEntries(p.coll.Maps["conns"])
	if err != nil {
		return ks, fmt.Errorf("counting conns: %w", err)
	}
	ks.ConnsOpen = uint64(n)
	// The counters and the walk are not one snapshot: a connection
	// tracked or closed meanwhile must not make the difference negative.
	if gone := ks.ConnsClosed + ks.ConnsOpen; ks.ConnsTracked > gone {
		ks.ConnsForgotten = ks.ConnsTracked - gone
	}
	return ks, nil
}

// Mode is the attach mode in use.
func (p *Probe) Mode() Mode { return p.mode }

// StateChanges names the program attached to sock/inet_sock_set_state
// (tp_btf_inet_sock_set_state or tp_inet_sock_set_state) and, for the raw
// one, why the BTF-typed one is not used (nil if it was not tried).
func (p *Probe) StateChanges() (prog string, whyNotBTF error) { return p.stateProg, p.btfErr }

// Transport is how events leave the kernel: perf or ringbuf.
func (p *Probe) Transport() Transport { return p.transport }

// Skipped lists the modes ModeAuto passed over and why.
func (p *Probe) Skipped() []Skipped { return p.skipped }

// Programs returns the loaded programs by name; none after Close.
func (p *Probe) Programs() map[string]*ebpf.Program {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.coll == nil {
		return nil
	}
	return p.coll.Programs
}

// ErrProbeClosed is returned by the accessors after Close.
var ErrProbeClosed = errors.New("probe closed")

// Record is one read from the perf or ring buffer: a sample, or (perf
// buffer only) a count of samples the kernel lost on a CPU because the
// buffer was full.
type Record = perf.Record

// ErrClosed is returned by Read after Close.
var ErrClosed = perf.ErrClosed

// Read blocks until the next record. rec's buffer is reused; RawSample is only
// valid until the next Read. After Flush, Read returns what is buffered and
// then ErrFlushed.
func (p *Probe) Read(rec *Record) error { return p.reader.ReadInto(rec) }

// ErrFlushed is returned by Read once the records pending at Flush are read.
var ErrFlushed = perf.ErrFlushed

// Flush makes a blocked Read return the records already in the buffers
// and then ErrFlushed. (Read collects them every Options.Poll anyway.)
func (p *Probe) Flush() error { return p.reader.Flush() }

// Close detaches the programs and frees the maps and the reader. It may be
// called more than once and from any goroutine.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.coll != nil {
		p.finalStats, _ = p.kernelStats()
	}
	var errs []error
	if p.reader != nil {
		if err := p.reader.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
	return errors.Join(errs...)
}

var _ io.Closer = (*Probe)(nil)
