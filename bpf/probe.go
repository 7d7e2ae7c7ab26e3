//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/rlimit"
)

// Monitor selects which processes the kernel program reports; it is the
// seed's MONITOR_* build switch, set at load time.
type Monitor uint32

const (
	MonitorAll        Monitor = 0 // host and namespaced processes, told apart
	MonitorHost       Monitor = 1 // every process reported as a host process
	MonitorContainers Monitor = 2 // only processes outside the initial pid namespace
)

// Options configure Open.
type Options struct {
	Mode    Mode
	Monitor Monitor
	// PerCPUBuffer is the size in bytes of each CPU's perf buffer
	// (rounded up to pages). Default 256 KiB.
	PerCPUBuffer int
	// WakeupEvents wakes the reader every that many samples instead of
	// on each one; Flush delivers a partial batch. Default 1.
	WakeupEvents int
}

// Probe is the loaded and attached kernel program and the reader of its
// events. Read must be called from one goroutine; Close may be called from
// any and unblocks Read.
type Probe struct {
	mode    Mode
	skipped []Skipped
	coll    *ebpf.Collection
	links   []link.Link
	reader  *perf.Reader
}

// programs per mode: the program name in the object and how it attaches.
type attachment struct {
	prog   string
	attach func(*ebpf.Program) (link.Link, error)
}

var modePrograms = map[Mode][]attachment{
	ModeKprobe: {{"kprobe_tcp_connect", func(p *ebpf.Program) (link.Link, error) {
		if err := kprobesAvailable(); err != nil {
			return nil, err
		}
		return link.Kprobe("tcp_connect", p, nil)
	}}},
	ModeTracepoint: {{"tp_inet_sock_set_state", func(p *ebpf.Program) (link.Link, error) {
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "inet_sock_set_state", Program: p})
	}}},
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
	return fmt.Errorf("kprobes unavailable on this kernel (no kprobe PMU, no kprobe_events; CONFIG_KPROBES unset?): %w", ebpf.ErrNotSupported)
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
	if opts.WakeupEvents <= 0 {
		opts.WakeupEvents = 1
	}

	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the memlock limit: %w", err)
	}

	p := &Probe{}
	mode, skipped, err := selectMode(opts.Mode, func(m Mode) error { return p.load(m, opts.Monitor) })
	p.skipped = skipped
	if err != nil {
		p.Close()
		return nil, err
	}
	p.mode = mode

	rd, err := perf.NewReaderWithOptions(p.coll.Maps["sys_events"], opts.PerCPUBuffer,
		perf.ReaderOptions{WakeupEvents: opts.WakeupEvents})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("opening perf reader: %w", err)
	}
	p.reader = rd
	return p, nil
}

// load loads the objects mode needs and attaches them. On failure nothing of
// it stays loaded.
func (p *Probe) load(m Mode, monitor Monitor) error {
	atts, ok := modePrograms[m]
	if !ok {
		return fmt.Errorf("unknown attach mode %q", m)
	}

	spec, err := loadConnwatch()
	if err != nil {
		return fmt.Errorf("loading BPF object: %w", err)
	}
	if err := spec.Variables["monitor_mode"].Set(uint32(monitor)); err != nil {
		return fmt.Errorf("setting monitor_mode: %w", err)
	}
	// Load only this mode's programs: a kernel without kprobes may refuse
	// the others.
	keep := map[string]bool{}
	for _, a := range atts {
		keep[a.prog] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("loading %s programs: %w (verifier log: %+v)", m, err, verr)
		}
		return fmt.Errorf("loading %s programs: %w", m, err)
	}

	var links []link.Link
	for _, a := range atts {
		l, err := a.attach(coll.Programs[a.prog])
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			coll.Close()
			return fmt.Errorf("attaching %s: %w", a.prog, err)
		}
		links = append(links, l)
	}
	p.coll, p.links = coll, links
	return nil
}

// Mode is the attach mode in use.
func (p *Probe) Mode() Mode { return p.mode }

// Skipped lists the modes ModeAuto passed over and why.
func (p *Probe) Skipped() []Skipped { return p.skipped }

// Map returns one of the program's maps by its name in connwatch.c
// ("visibility", "conn_attempts", ...), or nil.
func (p *Probe) Map(name string) *ebpf.Map { return p.coll.Maps[name] }

// Programs returns the loaded programs by name.
func (p *Probe) Programs() map[string]*ebpf.Program { return p.coll.Programs }

// Record is one read from the perf buffer: a sample, or a count of samples
// the kernel lost on a CPU because the buffer was full.
type Record = perf.Record

// ErrClosed is returned by Read after Close.
var ErrClosed = perf.ErrClosed

// Read blocks until the next record. rec's buffer is reused; RawSample is only
// valid until the next Read. After Flush, Read returns what is buffered and
// then ErrFlushed.
func (p *Probe) Read(rec *Record) error { return p.reader.ReadInto(rec) }

// ErrFlushed is returned by Read once the records pending at Flush are read.
var ErrFlushed = perf.ErrFlushed

// Flush makes a blocked Read return the records already in the buffers, for
// when WakeupEvents batches them.
func (p *Probe) Flush() error { return p.reader.Flush() }

// Close detaches the programs and frees the maps and the reader.
func (p *Probe) Close() error {
	var errs []error
	if p.reader != nil {
		errs = append(errs, p.reader.Close())
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
