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

	// connwatch's own: a connection reported established (410/412) or
	// accepted (401/403) reached TCP_CLOSE. The context is the connecting
	// or accepting task's, saved when it was reported; Retval is 0 or the
	// socket's error (-ECONNRESET, -ETIMEDOUT, ...); StartKernelTime is
	// when it was established (client) or accepted (server) and
	// KernelTime the close; Close has the rest.
	TCPClose   uint32 = 420
	TCPCloseV6 uint32 = 422
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
	case TCPClose, TCPCloseV6:
		return "connwatch.tcp.close"
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
	// (CLOCK_MONOTONIC ns), for a close the time the connection was
	// established or accepted; 0 otherwise. Start is its wall-clock time.
	StartKernelTime uint64
	Start           time.Time

	// ISN is the client's initial sequence number of the connection, which
	// both of its ends know (results, accepts and closes carry it; HasISN
	// says it was in the sample). With the two addresses it names the
	// connection: see otel's trace IDs.
	ISN    uint32
	HasISN bool

	// Close is what a close event (420/422) reports; zero otherwise.
	Close Close

	// Workload is filled by enrichment; nil before that or when nothing
	// could be learnt.
	Workload *Workload
}

// Close is the kernel's account of a connection as its socket reached
// TCP_CLOSE (struct tcp_sock). Byte counts are sequence space: the
// client's SYN and each acknowledged or received FIN count 1.
type Close struct {
	BytesSent     uint64 // acknowledged by the peer (tcp_sock.bytes_acked)
	BytesReceived uint64 // received in order (tcp_sock.bytes_received)
	RTTMicros     uint32 // smoothed round-trip time, µs (srtt_us >> 3)
	Retransmits   uint32 // segments retransmitted (total_retrans)
	OldState      uint8  // TCP state left for TCP_CLOSE (include/net/tcp_states.h)
	Server        bool   // the accepted end; false for the connected end
}

// TCP states of Close.OldState (include/net/tcp_states.h).
const (
	StateEstablished = 1
	StateSynRecv     = 3
	StateCloseWait   = 8
)

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
	// Container is what the container runtime says of ContainerID (names,
	// image, pod); nil until it is known, which may be after the first
	// events of a container.
	Container *ContainerMeta
}

// ContainerMeta is a container runtime's metadata of one container. A zero
// field means unknown. Values are shared and immutable once published.
type ContainerMeta struct {
	Name      string   // container name: Docker's (without the leading /), else the Kubernetes container name
	ImageName string   // image reference without tag or digest, e.g. "docker.io/library/nginx"
	ImageTags []string // e.g. ["1.27"]
	// Service is the workload's own name for itself: the pod's
	// app.kubernetes.io/name label or the compose service label.
	Service        string
	ComposeProject string // com.docker.compose.project
	PodName        string // k8s.pod.name
	PodNamespace   string // k8s.namespace.name
	PodUID         string // k8s.pod.uid, dashed
	K8sContainer   string // k8s.container.name
	Source         string // where it was read: "docker config.v2.json", "docker API", "OCI bundle", "CRI API"
}

// IsConnect reports an outgoing connection attempt (400/402).
func (e *Event) IsConnect() bool { return e.EventID == TCPConnect || e.EventID == TCPConnectV6 }

// IsAccept reports a connection accepted by a local process (401/403).
func (e *Event) IsAccept() bool { return e.EventID == TCPAccept || e.EventID == TCPAcceptV6 }

// IsResult reports the outcome of an outgoing connection (410/412).
func (e *Event) IsResult() bool {
	return e.EventID == TCPConnectResult || e.EventID == TCPConnectResultV6
}

// IsClose reports the end of a reported connection (420/422).
func (e *Event) IsClose() bool { return e.EventID == TCPClose || e.EventID == TCPCloseV6 }

// Inbound reports an event of the accepted end of a connection: an accept,
// or the close of an accepted connection.
func (e *Event) Inbound() bool { return e.IsAccept() || (e.IsClose() && e.Close.Server) }

// Direction is "outbound" for connects, their results and the close of a
// connected socket, "inbound" for accepts and the close of an accepted one.
func (e *Event) Direction() string {
	if e.Inbound() {
		return "inbound"
	}
	return "outbound"
}

// Lifetime is, for a close, the time from established (or accepted) to
// closed; 0 otherwise.
func (e *Event) Lifetime() time.Duration {
	if !e.IsClose() || e.StartKernelTime == 0 || e.KernelTime < e.StartKernelTime {
		return 0
	}
	return time.Duration(e.KernelTime - e.StartKernelTime)
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
	attempt.ISN, attempt.HasISN = 0, false // the ISN is the result's (kprobe and fentry attempts carry their own)
	e.EventID = resultID
	return attempt, true
}
