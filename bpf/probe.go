//go:build linux

// The probe's parts, by concern: probe.go opens and closes it (Options,
// Open, the accessors), load.go loads the object through its generated
// bindings, attach.go says where each mode's programs attach, reader.go
// reads the events, stats.go the kernel's counters, visibility.go
// fills the visibility map and filters.go the filter maps.

package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
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
	// Filters leave connections out in the kernel (counted as
	// KernelStats.DroppedFilter); none by default.
	Filters Filters
}

// withDefaults fills the zero fields of opts and resolves TransportAuto.
func (opts Options) withDefaults() (Options, error) {
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
	t, err := ParseTransport(string(opts.Transport))
	if err != nil {
		return opts, err
	}
	switch t {
	case TransportAuto:
		t = TransportPerf
		if features.HaveMapType(ebpf.RingBuf) == nil {
			t = TransportRingbuf
		}
	case TransportRingbuf:
		if err := features.HaveMapType(ebpf.RingBuf); err != nil {
			return opts, fmt.Errorf("transport ringbuf: %w", err)
		}
	}
	opts.Transport = t
	return opts, nil
}

// Probe is the loaded and attached kernel program and the reader of its
// events. Read must be called from one goroutine; Close may be called from
// any and unblocks Read.
type Probe struct {
	// mu guards objs against Close while the accessors (Programs,
	// KernelStats, SetVisibility, ...) run on other goroutines.
	mu         sync.RWMutex
	finalStats KernelStats // read at Close, returned by KernelStats after it
	mode       Mode
	transport  Transport
	btfErr     error // why the BTF-typed programs were not used, if they were tried
	skipped    []Skipped
	objs       *loaded
	reader     eventReader
}

// Open loads the program, attaches it in the requested mode (falling back as
// ModeAuto allows) and opens the event reader.
func Open(opts Options) (*Probe, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
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
	if p.reader, err = newReader(&p.objs.maps, opts); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// load loads the objects mode needs and attaches them, with the BTF-typed
// programs where the kernel takes them, else the raw ones. On failure
// nothing of it stays loaded.
func (p *Probe) load(m Mode, opts Options) error {
	p.btfErr = nil
	if !opts.RawStateChanges {
		l, err := loadAttach(m, true, opts)
		if err == nil {
			p.objs = l
			return nil
		}
		p.btfErr = err
	}
	l, err := loadAttach(m, false, opts)
	if err != nil {
		return err
	}
	p.objs = l
	return nil
}

// Warnings lists the optional programs that could not be attached (the
// accept side, when the kernel lacks its attach point).
func (p *Probe) Warnings() []error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.objs == nil {
		return nil
	}
	return p.objs.warnings
}

// Fallbacks says, for each program a fallback replaced, why: fentry's
// accept side, where its fexit program does not load, comes from the accept
// syscalls' tracepoints. Nothing is lost.
func (p *Probe) Fallbacks() []error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.objs == nil {
		return nil
	}
	return p.objs.fallbacks
}

// Mode is the attach mode in use.
func (p *Probe) Mode() Mode { return p.mode }

// StateChanges names the program attached to sock/inet_sock_set_state
// (tp_btf_inet_sock_set_state or tp_inet_sock_set_state) and, for the raw
// one, why the BTF-typed one is not used (nil if it was not tried).
func (p *Probe) StateChanges() (prog string, whyNotBTF error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.objs == nil {
		return "", p.btfErr
	}
	return p.objs.stateProg, p.btfErr
}

// Transport is how events leave the kernel: perf or ringbuf.
func (p *Probe) Transport() Transport { return p.transport }

// Skipped lists the modes ModeAuto passed over and why.
func (p *Probe) Skipped() []Skipped { return p.skipped }

// Programs returns the loaded programs by name; none after Close.
func (p *Probe) Programs() map[string]*ebpf.Program {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.objs == nil {
		return nil
	}
	return p.objs.programs
}

// ErrProbeClosed is returned by the accessors after Close.
var ErrProbeClosed = errors.New("probe closed")

// Close detaches the programs and frees the maps and the reader. It may be
// called more than once and from any goroutine.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.objs != nil {
		p.finalStats, _ = p.kernelStats()
	}
	var errs []error
	if p.reader != nil {
		if err := p.reader.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if p.objs != nil {
		for _, l := range p.objs.links {
			errs = append(errs, l.Close())
		}
		p.objs.links = nil
		p.objs.close()
		p.objs = nil
	}
	return errors.Join(errs...)
}

var _ io.Closer = (*Probe)(nil)
