//go:build linux

package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

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
	DroppedFilter     uint64 // events the configured filters left out in the kernel (Options.Filters)
	ConnsTracked      uint64 // reported connections saved until they close
	ConnsClosed       uint64 // of those, found again when they closed (a close event each, unless visibility hid it)
	// ConnsOpen is how many tracked connections the conns map holds now,
	// and ConnsForgotten how many it evicted while still open
	// (ConnsTracked - ConnsClosed - ConnsOpen): their close went
	// unreported.
	ConnsOpen      uint64
	ConnsForgotten uint64
}

// counter is the KernelStats field each kernel counter adds to.
func (ks *KernelStats) counter(id connwatchStatIds) *uint64 {
	switch id {
	case connwatchStatIdsSTAT_ATTEMPTS_TRACKED:
		return &ks.AttemptsTracked
	case connwatchStatIdsSTAT_RESULTS:
		return &ks.Results
	case connwatchStatIdsSTAT_RESULTS_UNTRACKED:
		return &ks.ResultsUntracked
	case connwatchStatIdsSTAT_PERF_ERRORS:
		return &ks.PerfErrors
	case connwatchStatIdsSTAT_ACCEPTS:
		return &ks.Accepts
	case connwatchStatIdsSTAT_DROPPED_VISIBILITY:
		return &ks.DroppedVisibility
	case connwatchStatIdsSTAT_DROPPED_AGENT:
		return &ks.DroppedAgent
	case connwatchStatIdsSTAT_CONNS_TRACKED:
		return &ks.ConnsTracked
	case connwatchStatIdsSTAT_CONNS_CLOSED:
		return &ks.ConnsClosed
	case connwatchStatIdsSTAT_DROPPED_MONITOR:
		return &ks.DroppedMonitor
	case connwatchStatIdsSTAT_DROPPED_FILTER:
		return &ks.DroppedFilter
	}
	return nil
}

// KernelStats reads the kernel program's counters; after Close, their
// values at Close.
func (p *Probe) KernelStats() (KernelStats, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.objs == nil {
		return p.finalStats, nil
	}
	return p.kernelStats()
}

func (p *Probe) kernelStats() (KernelStats, error) {
	var ks KernelStats
	for id := connwatchStatIds(0); id < connwatchStatIdsSTAT_MAX; id++ {
		f := ks.counter(id)
		if f == nil {
			return ks, fmt.Errorf("kernel counter %d has no KernelStats field", id)
		}
		var perCPU []uint64
		if err := p.objs.maps.Stats.Lookup(id, &perCPU); err != nil {
			return ks, fmt.Errorf("reading stats[%d]: %w", id, err)
		}
		for _, v := range perCPU {
			*f += v
		}
	}
	// One syscall per entry: about a millisecond per thousand open
	// connections.
	n, err := countEntries(p.objs.maps.Conns)
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

func countEntries(m *ebpf.Map) (int, error) {
	var n int
	var key, value []byte
	it := m.Iterate()
	for it.Next(&key, &value) {
		n++
	}
	return n, it.Err()
}
