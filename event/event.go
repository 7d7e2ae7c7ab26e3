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
)

// Name returns the OpenTelemetry event name of an event ID.
func Name(id uint32) string {
	switch id {
	case TCPConnect, TCPConnectV6:
		return "connwatch.tcp.connect"
	case TCPAccept, TCPAcceptV6:
		return "connwatch.tcp.accept"
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
