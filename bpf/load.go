//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// objectSpec parses the embedded object once; each load works on a Copy.
var objectSpec = sync.OnceValues(loadConnwatch)

// newSpecs returns a fresh copy of the object's spec and its generated
// bindings, which point into that copy.
func newSpecs() (*ebpf.CollectionSpec, *connwatchSpecs, error) {
	base, err := objectSpec()
	if err != nil {
		return nil, nil, fmt.Errorf("loading BPF object: %w", err)
	}
	spec := base.Copy()
	var s connwatchSpecs
	if err := spec.Assign(&s); err != nil {
		return nil, nil, fmt.Errorf("binding BPF object: %w", err)
	}
	return spec, &s, nil
}

// monitorModes are the kernel's values of each Monitor.
var monitorModes = map[Monitor]connwatchMonitorModes{
	"":                connwatchMonitorModesMONITOR_ALL,
	MonitorAll:        connwatchMonitorModesMONITOR_ALL,
	MonitorHost:       connwatchMonitorModesMONITOR_HOST,
	MonitorContainers: connwatchMonitorModesMONITOR_CONTAINERS,
}

// configure sets the load-time constants and map sizes of opts in spec.
func configure(s *connwatchSpecs, m Mode, opts Options) error {
	mon, ok := monitorModes[opts.Monitor]
	if !ok {
		_, err := ParseMonitor(string(opts.Monitor))
		return err
	}
	ring := opts.Transport == TransportRingbuf
	for _, v := range []struct {
		spec  *ebpf.VariableSpec
		value any
	}{
		{s.MonitorMode, mon},
		{s.AgentTgid, opts.AgentTGID},
		{s.AttemptsFromTracepoint, m == ModeTracepoint},
		{s.TrackCloses, !opts.NoCloses},
		{s.UseRingbuf, ring},
		{s.RingbufWakeupBytes, uint64(opts.RingBuffer / 4)},
		{s.FilterLists, opts.Filters.lists()},
	} {
		if err := v.spec.Set(v.value); err != nil {
			return fmt.Errorf("setting %s: %w", v.spec.Name, err)
		}
	}
	if ring {
		if n := opts.RingBuffer; n < os.Getpagesize() || n&(n-1) != 0 {
			return fmt.Errorf("ring buffer size %d is not a power of two of at least a page", n)
		}
		s.SysEventsRb.MaxEntries = uint32(opts.RingBuffer)
	} else {
		// The ring buffer is never written (the verifier drops the
		// branch, use_ringbuf being a constant): a one-entry array
		// stands in for it, which also loads on kernels without ring
		// buffers.
		*s.SysEventsRb = ebpf.MapSpec{Name: s.SysEventsRb.Name, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	}
	if opts.MaxPending > 0 {
		s.ConnAttempts.MaxEntries = opts.MaxPending
	}
	if opts.MaxConnections > 0 {
		s.Conns.MaxEntries = opts.MaxConnections
	}
	return nil
}

// loaded is what loadAttach leaves: the maps, the mode's programs by
// name, and their links.
type loaded struct {
	maps     connwatchMaps
	programs map[string]*ebpf.Program
	links    []link.Link
	warnings []error
	// fallbacks are why programs with a fallback were replaced by it.
	fallbacks []error
	// innerVisibility creates the visibility map's inner maps.
	innerVisibility *ebpf.MapSpec
	stateProg       string // the program attached to inet_sock_set_state
}

func (l *loaded) close() {
	for _, k := range l.links {
		k.Close()
	}
	for _, p := range l.programs {
		p.Close()
	}
	l.maps.Close()
}

// loadAttach loads the maps and the programs of mode m (or, with btf,
// their BTF twins) and attaches them. Where the kernel refuses to load an
// optional program that has a fallback (fentry's accept side before
// bpf_get_func_ret), the fallback's programs are loaded instead and the
// refusal is a warning. On failure nothing of it stays loaded.
func loadAttach(m Mode, btf bool, opts Options) (*loaded, error) {
	atts, ok := modePrograms[m]
	if !ok {
		return nil, fmt.Errorf("unknown attach mode %q", m)
	}
	l, err := loadAttachSet(m, atts, btf, opts)
	var lerr *loadFailure
	if err == nil || !errors.As(err, &lerr) {
		return l, err
	}
	alt, changed := withFallbacks(atts)
	if !changed {
		return nil, err
	}
	l, altErr := loadAttachSet(m, alt, btf, opts)
	if altErr != nil {
		// What stops the mode now is no longer the program the
		// fallback replaces.
		return nil, altErr
	}
	l.fallbacks = append(l.fallbacks, err)
	return l, nil
}

// loadFailure is the kernel refusing to load a program set (as opposed
// to attaching it).
type loadFailure struct{ err error }

func (e *loadFailure) Error() string { return e.err.Error() }
func (e *loadFailure) Unwrap() error { return e.err }

// loadAttachSet loads the maps and the programs of atts (or, with btf,
// their BTF twins) and attaches them.
func loadAttachSet(m Mode, atts []attachment, btf bool, opts Options) (*loaded, error) {
	spec, s, err := newSpecs()
	if err != nil {
		return nil, err
	}
	if err := configure(s, m, opts); err != nil {
		return nil, err
	}
	filters, err := opts.Filters.entries()
	if err != nil {
		return nil, err
	}
	if btf {
		atts = withBTFTwins(atts, &s.connwatchProgramSpecs)
	}
	// Load only this mode's programs: a kernel without kprobes or
	// trampolines refuses the others.
	keep := map[*ebpf.ProgramSpec]bool{}
	for _, a := range atts {
		keep[a.prog(&s.connwatchProgramSpecs)] = true
	}
	for name, ps := range spec.Programs {
		if !keep[ps] {
			delete(spec.Programs, name)
		}
	}

	l := &loaded{innerVisibility: s.Visibility.InnerMap.Copy(), programs: map[string]*ebpf.Program{}}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{})
	if err != nil {
		return nil, &loadFailure{loadError(m, err)}
	}
	defer coll.Close() // whatever Assign and the program moves below did not take
	if err := coll.Assign(&l.maps); err != nil {
		return nil, fmt.Errorf("binding %s maps: %w", m, err)
	}
	// Before any program is attached: no event passes unfiltered.
	if err := filters.fill(&l.maps); err != nil {
		l.maps.Close()
		return nil, err
	}
	for _, a := range atts {
		name := a.prog(&s.connwatchProgramSpecs).Name
		l.programs[name] = coll.DetachProgram(name)
	}
	for _, a := range atts {
		ps := a.prog(&s.connwatchProgramSpecs)
		if a.Kind == KindRawTracepoint || a.Kind == KindTPBTF {
			l.stateProg = ps.Name
		}
		lk, err := a.Attach(l.programs[ps.Name])
		if err != nil {
			err = fmt.Errorf("attaching %s: %w", ps.Name, notSupported(err))
			if a.Optional {
				l.warnings = append(l.warnings, err)
				continue
			}
			l.close()
			return nil, err
		}
		l.links = append(l.links, lk)
	}
	return l, nil
}

// loadError explains why the kernel refused mode m's programs.
func loadError(m Mode, err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Errorf("loading %s programs: %w (verifier log: %+v)", m, err, verr)
	}
	if m == ModeFentry && errors.Is(err, unix.EPERM) && CanLoadTrivial() {
		// Privileged enough for BPF, yet the kernel refuses tracing
		// programs: lockdown or no trampolines. The library's hint about
		// MEMLOCK in err is a false lead here: it is for the Reason to
		// say what is going on.
		return &Unsupported{Reason: "the kernel refuses fentry/fexit programs although BPF is permitted (lockdown, or no BPF trampolines)",
			Err: fmt.Errorf("loading %s programs: %w (%w)", m, ebpf.ErrNotSupported, err)}
	}
	return fmt.Errorf("loading %s programs: %w", m, notSupported(err))
}
