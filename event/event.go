// Package event defines a decoded kernel event, the one type every stage of
// connwatch's data path shares: bpf/ produces it, enrich/ adds the workload
// behind it, otel/ turns it into log records and spans.
package event

import (
	"net/netip"
	"time"
)

// Event IDs. 400–403 are KubeArmor's system monitor IDs.
const (
	TCPConnect   uint32 = 400 // outgoing IPv4 connection attempt
	TCPAccept    uint32 = 401 // connection accepted by a local process, IPv4
	TCPConnectV6 uint32 = 402 // outgoing IPv6 connection attempt
	TCPAcceptV6  uint32 = 403 // connection accepted by a local process, IPv6

	// connwatch's own: the outcome of an outgoing connection, sent when
	// the socket leaves SYN_SENT. The context is the connecting task's,
	// saved at the attempt; Retval is 0 or -errno; StartKernelTime is the
	// attempt's timestamp and KernelTime the outcome's.
	TCPConnectResult   uint32 = 410
	TCPConnectResultV6 uint32 = 412

	// Wire only: in tracepoint mode the kernel sends an attempt and its
	// result as one sample; SplitAttempt turns it into the two events.
	TCPConnectAndResult   uint32 = 411
	TCPConnectAndResultV6 uint32 = 413
)

// Name returns the OpenTelemetry event name of an event ID.
func Name(id uint32) string {
	switch id {
	case TCPConnect, TCPConnectV6:
		return "connwatch.tcp.connect"
	case TCPAccept, TCPAcceptV6:
		return "connwatch.tcp.accept"
	case TCPConnectResult, TCPConnectResultV6:
		return "connwatch.tcp.connect.result"
	}
	return "connwatch.unknown"
}

// Event is one decoded sample of the kernel program: the sys_context_t
// header followed by its typed arguments.
//
// Events are values; Workload, once set, is shared and must not be mutated.
type Event struct {
	// KernelTime is sys_context_t.ts: CLOCK_MONOTONIC nanoseconds
	// (bpf_ktime_get_ns), not Unix time.
	KernelTime uint64
	// Time is KernelTime converted to wall-clock time (see Clock).
	Time time.Time

	PidNS    uint32 // pid namespace inum; 0 for a host process
	MntNS    uint32 // mount namespace inum; 0 for a host process
	HostPPID uint32 // parent's tgid in the initial pid namespace
	HostPID  uint32 // tgid in the initial pid namespace
	PPID     uint32 // parent's tgid as seen from the process's own pid namespace
	PID      uint32 // tgid as seen from the process's own pid namespace
	UID      uint32
	EventID  uint32
	ArgNum   uint32
	Retval   int64
	Comm     string

	// Protocol is the kernel's name of the socket's protocol (struct
	// proto.name): "TCP" or "TCPv6".
	Protocol string
	// Remote and Local are the connection's two ends. Invalid when the
	// sample carried no address or an address family connwatch does not
	// decode (see RemoteFamily).
	Remote netip.AddrPort
	Local  netip.AddrPort
	// RemoteFamily is the address family of the remote sockaddr argument
	// (AF_INET 2, AF_INET6 10), kept so that an unknown family is visible.
	RemoteFamily uint16

	// StartKernelTime is, for a connect result, the attempt's timestamp
	// (CLOCK_MONOTONIC ns); 0 otherwise. Start is its wall-clock time.
	StartKernelTime uint64
	Start           time.Time

	// Workload is filled by enrichment; nil before that or when nothing
	// could be learnt.
	Workload *Workload
}

// Host reports whether the event came from a process in the initial pid
// namespace.
func (e *Event) Host() bool { return e.PidNS == 0 && e.MntNS == 0 }

// Workload is what enrichment learnt about the process and container behind
// an event. A zero field means unknown. Values are shared between events and
// are immutable once published.
type Workload struct {
	ExePath     string    // /proc/<pid>/exe target
	ExeName     string    // base name of ExePath, else comm
	Args        []string  // /proc/<pid>/cmdline split at NULs
	Owner       string    // user name of the event's uid
	StartTime   time.Time // process start time, wall clock
	ContainerID string    // full container ID (64 hex for docker/containerd/cri-o/podman)
	Runtime     string    // "docker", "containerd", "cri-o", "podman", ...
	PodUID      string    // Kubernetes pod UID, dashed form
	Cgroup      string    // the process's cgroup path (v2 path, else name=systemd)
}

// IsConnect reports an outgoing connection attempt (400/402).
func (e *Event) IsConnect() bool { return e.EventID == TCPConnect || e.EventID == TCPConnectV6 }

// IsAccept reports a connection accepted by a local process (401/403).
func (e *Event) IsAccept() bool { return e.EventID == TCPAccept || e.EventID == TCPAcceptV6 }

// IsResult reports the outcome of an outgoing connection (410/412).
func (e *Event) IsResult() bool {
	return e.EventID == TCPConnectResult || e.EventID == TCPConnectResultV6
}

// Direction is "outbound" for connects and their results, "inbound" for
// accepts.
func (e *Event) Direction() string {
	if e.IsAccept() {
		return "inbound"
	}
	return "outbound"
}

// Duration is, for a connect result, the time from the attempt to its
// outcome; 0 otherwise.
func (e *Event) Duration() time.Duration {
	if !e.IsResult() || e.StartKernelTime == 0 || e.KernelTime < e.StartKernelTime {
		return 0
	}
	return time.Duration(e.KernelTime - e.StartKernelTime)
}

// SplitAttempt turns a combined attempt-and-result sample (411/413) into
// its two events: it rewrites e into the result (410/412) and returns the
// attempt (400/402) as the kernel would have sent it at tcp_connect. For
// any other event it returns false and leaves e alone. Call it after the
// timestamps are converted; Workload is shared.
func (e *Event) SplitAttempt() (Event, bool) {
	var attemptID, resultID uint32
	switch e.EventID {
	case TCPConnectAndResult:
		attemptID, resultID = TCPConnect, TCPConnectResult
	case TCPConnectAndResultV6:
		attemptID, resultID = TCPConnectV6, TCPConnectResultV6
	default:
		return Event{}, false
	}
	attempt := *e
	attempt.EventID = attemptID
	attempt.ArgNum = 3 // protocol, remote, local
	attempt.Retval = 0
	attempt.KernelTime, attempt.Time = e.StartKernelTime, e.Start
	attempt.StartKernelTime, attempt.Start = 0, time.Time{}
	e.EventID = resultID
	return attempt, true
}
