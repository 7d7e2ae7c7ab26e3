//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// connwatch's kernel side: the life of every TCP connection, in the wire
// format of KubeArmor's system monitor (a packed sys_context_t followed by
// typed arguments), sent through a perf event array.
//
// Events: TCP_CONNECT(_v6) 400/402 for an outgoing attempt, TCP_ACCEPT(_v6)
// 401/403 for a connection a local process accepts, and connwatch's own
// TCP_CONNECT_RESULT(_v6) 410/412 for the outcome of an attempt and
// TCP_CLOSE(_v6) 420/422 for the end of a connection that was reported
// established or accepted (its bytes, RTT and retransmits).
//
// Three attach modes produce the same events:
//   fentry      fentry/fexit tcp_connect, fexit inet_csk_accept;
//   kprobe      kprobe/kretprobe tcp_connect, kretprobe inet_csk_accept;
//   tracepoint  raw tracepoint sock/inet_sock_set_state for the attempt
//               (CLOSE->SYN_SENT runs in the connecting task, but before
//               inet_hash_connect() picks the source port, so the attempt
//               is sent with its result, when the socket leaves SYN_SENT,
//               as one TCP_CONNECT_AND_RESULT(_v6) 411/413 sample) and the
//               syscall tracepoints sys_exit_accept(4) for accepts.
// In every mode the outcome comes from inet_sock_set_state leaving
// SYN_SENT, which often runs in softirq: the attempt's context is kept per
// socket in conn_attempts until then. Likewise the close comes from the
// same tracepoint reaching TCP_CLOSE, in whatever task or softirq that
// happens: the connecting or accepting task's context is kept per socket
// in conns from the moment it was reported.

#include "headers/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

// ===== constants =====

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

// include/net/tcp_states.h
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

#define TASK_COMM_LEN 16
#define MAX_ARGS 6
#define MAX_BUFFER_SIZE 32768
#define MAX_STRING_SIZE 256
// Offsets into a staging buffer are masked with this so the verifier can
// bound every write: an element starting below half the buffer always fits.
#define BUF_MASK (MAX_BUFFER_SIZE / 2 - 1)

// Staging buffers, one of each per CPU. KubeArmor's DATA_BUF_TYPE holds the
// events built in the task's own context (attempts, accepts); the state
// change program, which runs in softirq as often as not, has its own, since
// it can interrupt a program of the other kind on the same CPU midway
// through an event (the kernel keeps a program from interrupting itself,
// not a tracepoint program from being interrupted by a BTF-typed one).
// KubeArmor's EXEC_BUF_TYPE and FILE_BUF_TYPE have no use here.
enum buf_types {
	DATA_BUF_TYPE = 0,
	STATE_BUF_TYPE = 1,
	MAX_BUFFERS = 2,
};

// Argument types (KubeArmor's values).
enum arg_types {
	NONE_T = 0,
	INT_T = 1,
	ULONG_T = 4, // 8 bytes; the value tracee and KubeArmor's numbering gives it
	STR_T = 10,
	STR_ARR_T = 11,
	SOCKADDR_T = 12,
	OPEN_FLAGS_T = 13,
	EXEC_FLAGS_T = 14,
	SOCK_DOM_T = 15,
	SOCK_TYPE_T = 16,
	FILE_TYPE_T = 17,
	UNLINKAT_FLAG_T = 19,
	PTRACE_REQ_T = 23,
	MOUNT_FLAG_T = 24,
	UMOUNT_FLAG_T = 25,
	// connwatch's own: the rest are KubeArmor's values.
	TCP_CLOSE_T = 40, // struct tcp_close_info, 32 bytes
	TCP_ISN_T = 41,   // u32: the client's initial sequence number
};

#define ENC_ARG_TYPE(n, type) ((u64)(type) << (8 * (n)))
#define ARG_TYPE0(type) ENC_ARG_TYPE(0, type)
#define ARG_TYPE1(type) ENC_ARG_TYPE(1, type)
#define ARG_TYPE2(type) ENC_ARG_TYPE(2, type)
#define ARG_TYPE3(type) ENC_ARG_TYPE(3, type)
#define ARG_TYPE4(type) ENC_ARG_TYPE(4, type)
#define ARG_TYPE5(type) ENC_ARG_TYPE(5, type)
#define DEC_ARG_TYPE(n, types) (((types) >> (8 * (n))) & 0xFF)

// Event IDs: 400-403 are KubeArmor's, 410-422 connwatch's.
enum event_ids {
	_TCP_CONNECT = 400,
	_TCP_ACCEPT = 401,
	_TCP_CONNECT_v6 = 402,
	_TCP_ACCEPT_v6 = 403,
	_TCP_CONNECT_RESULT = 410,
	_TCP_CONNECT_AND_RESULT = 411, // tracepoint mode: an attempt and its result in one sample
	_TCP_CONNECT_RESULT_v6 = 412,
	_TCP_CONNECT_AND_RESULT_v6 = 413,
	_TCP_CLOSE = 420, // a reported connection reached TCP_CLOSE
	_TCP_CLOSE_v6 = 422,
};

// Indexes of the `stats` counters (user space reads them as
// bpf.KernelStats).
enum stat_ids {
	STAT_ATTEMPTS_TRACKED = 0,   // attempts saved in conn_attempts
	STAT_RESULTS = 1,            // outcomes matched to a saved attempt
	STAT_RESULTS_UNTRACKED = 2,  // sockets leaving SYN_SENT with no saved attempt (evicted, or begun before load)
	STAT_PERF_ERRORS = 3,        // event writes that failed (perf buffer or ring buffer full)
	STAT_ACCEPTS = 4,            // accept events assembled
	STAT_DROPPED_VISIBILITY = 5, // events dropped by the visibility map
	STAT_DROPPED_AGENT = 6,      // events of the agent's own connections, left out (agent_tgid)
	STAT_CONNS_TRACKED = 7,      // reported connections saved in conns until they close
	STAT_CONNS_CLOSED = 8,       // of those, found again when they closed
	STAT_DROPPED_MONITOR = 9,    // events of processes the monitor switch leaves out
	STAT_DROPPED_FILTER = 10,    // events the configured filters leave out (filter_lists)
	STAT_MAX = 11,
};

#define ECONNABORTED 103

// Visibility scopes: the inner map of `visibility` is keyed by these.
enum scopes {
	_FILE_PROBE = 0,
	_PROCESS_PROBE = 1,
	_NETWORK_PROBE = 2,
	_CAPS_PROBE = 3,
};

// The visibility map's key of namespaces that have no entry of their own
// is {VISIBILITY_DEFAULT_NS, VISIBILITY_DEFAULT_NS} (KubeArmor's); user
// space reads it as bpf.DefaultKey.
enum visibility_keys {
	VISIBILITY_DEFAULT_NS = 0xc0ffee,
};

// monitor modes, see `monitor_mode` below.
enum monitor_modes {
	MONITOR_ALL = 0,
	MONITOR_HOST = 1,
	MONITOR_CONTAINERS = 2,
};

// Set from Go before load (bpf/load.go, configure):
//   MONITOR_ALL        host and namespaced processes, told apart;
//   MONITOR_HOST       the seed's MONITOR_HOST build: every process is
//                      reported as a host process (pid_id = mnt_id = 0);
//   MONITOR_CONTAINERS only processes outside the initial pid namespace.
volatile const enum monitor_modes monitor_mode = MONITOR_ALL;

// Never set from Go: a constant the verifier folds, there so that the
// object's BTF carries enum visibility_keys for bpf2go.
volatile const enum visibility_keys default_ns = VISIBILITY_DEFAULT_NS;

// Set from Go before load: the agent's own tgid, whose connections (to
// its collector, say) are left out; 0 reports them like any other.
volatile const u32 agent_tgid = 0;

// own_context reports a context of the agent itself (see agent_tgid).
#define own_context(c) (agent_tgid != 0 && (c)->host_pid == agent_tgid)

// Set from Go before load: true in tracepoint mode, where the attempt is
// saved by the CLOSE->SYN_SENT transition instead of tcp_connect's probe.
volatile const bool attempts_from_tracepoint = false;

// Set from Go before load: keep reported connections in conns and send
// TCP_CLOSE when they close. Off only to measure what that costs.
volatile const bool track_closes = true;

// Values of the filter maps (filter_peers, filter_ports, filter_comms):
// which lists hold an entry that matches.
enum filter_flags {
	FILTER_EXCLUDE = 1, // an exclude list
	FILTER_INCLUDE = 2, // an include list
};

// Bits of filter_lists.
enum filter_lists {
	FILTER_EXCLUDE_PEERS = 1 << 0,
	FILTER_EXCLUDE_PORTS = 1 << 1,
	FILTER_EXCLUDE_COMMS = 1 << 2,
	FILTER_INCLUDE_PEERS = 1 << 3,
	FILTER_INCLUDE_PORTS = 1 << 4,
	FILTER_INCLUDE_COMMS = 1 << 5,
	FILTER_EXCLUDE_FAILURES = 1 << 6, // failures that match an exclude entry are left out too
};

#define FILTER_PEERS (FILTER_EXCLUDE_PEERS | FILTER_INCLUDE_PEERS)
#define FILTER_PORTS (FILTER_EXCLUDE_PORTS | FILTER_INCLUDE_PORTS)
#define FILTER_COMMS (FILTER_EXCLUDE_COMMS | FILTER_INCLUDE_COMMS)

// Set from Go before load (bpf/load.go, from Options.Filters): which filter
// lists are non-empty, and FILTER_EXCLUDE_FAILURES. 0, the default, lets
// the verifier drop every filter lookup.
volatile const enum filter_lists filter_lists = 0;

// Never set from Go: there so that the object's BTF carries enum
// filter_flags for bpf2go (as default_ns does for visibility_keys).
volatile const enum filter_flags filter_flag_values = FILTER_EXCLUDE;

// Set at load: send events through sys_events_rb instead of sys_events.
volatile const bool use_ringbuf = false;

// With the ring buffer, an event wakes the reader only when the data waiting
// in the ring is at least this many bytes; otherwise the reader finds it at
// its next poll (bpf/reader.go polls every few milliseconds). A wakeup per
// event would cost several times the event itself. The fill level is
// looked at every RB_QUERY_EVERY events per CPU: bpf_ringbuf_query() reads
// the positions user space and the other CPUs write, and a query per event
// cost as much as the write.
volatile const u64 ringbuf_wakeup_bytes = 0;
#define RB_QUERY_EVERY 16

// ===== wire format =====

typedef struct __attribute__((__packed__)) sys_context {
	u64 ts; // bpf_ktime_get_ns(): CLOCK_MONOTONIC

	u32 pid_id; // pid namespace inum, 0 for the host
	u32 mnt_id; // mount namespace inum, 0 for the host

	u32 host_ppid;
	u32 host_pid;

	u32 ppid; // namespace-relative
	u32 pid;  // namespace-relative
	u32 uid;

	enum event_ids event_id; // 4 bytes
	u32 argnum;
	s64 retval;

	char comm[TASK_COMM_LEN];
} sys_context_t;

_Static_assert(sizeof(sys_context_t) == 68, "sys_context_t must be 68 bytes");

// Stack copies of the sockaddr a SOCKADDR_T argument carries, as the uapi
// lays them out (include/uapi/linux/in.h, in6.h).
struct sockaddr_in_t {
	u16 sin_family;
	__be16 sin_port;
	__be32 sin_addr;
	u8 zero[8];
};

struct sockaddr_in6_t {
	u16 sin6_family;
	__be16 sin6_port;
	__be32 sin6_flowinfo;
	u8 sin6_addr[16];
	u32 sin6_scope_id;
};

union sockaddr_t {
	u16 family;
	struct sockaddr_in_t v4;
	struct sockaddr_in6_t v6;
};

// The TCP_CLOSE_T argument: what the socket says as it reaches TCP_CLOSE.
struct tcp_close_info {
	u64 bytes_acked;    // sent and acknowledged (tcp_sock.bytes_acked)
	u64 bytes_received; // received in order (tcp_sock.bytes_received)
	u32 srtt_us;        // smoothed RTT, µs (tcp_sock.srtt_us >> 3)
	u32 total_retrans;  // segments retransmitted (tcp_sock.total_retrans)
	u32 isn;            // the client's initial sequence number
	u8 oldstate;        // the state left for TCP_CLOSE
	u8 side;            // SIDE_CLIENT or SIDE_SERVER
	u16 pad;
};

_Static_assert(sizeof(struct tcp_close_info) == 32, "tcp_close_info is 32 bytes");

// Which end of a connection a socket in conns is.
enum sides {
	SIDE_CLIENT = 0, // connected by a local task
	SIDE_SERVER = 1, // accepted by a local task
};

_Static_assert(sizeof(struct sockaddr_in_t) == 16, "sockaddr_in is 16 bytes");
_Static_assert(sizeof(struct sockaddr_in6_t) == 28, "sockaddr_in6 is 28 bytes");

// Pointers to the values of each argument slot, in argument order.
typedef struct args {
	u64 args[MAX_ARGS];
} args_t;

typedef struct buffers {
	u8 buf[MAX_BUFFER_SIZE];
} bufs_t;

// ===== maps =====

// Staging buffers: an event is assembled here, then copied out whole.
// Written and read only by the program running on that CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BUFFERS);
	__type(key, u32);
	__type(value, bufs_t);
} bufs SEC(".maps");

// Fill level of each staging buffer, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BUFFERS);
	__type(key, u32);
	__type(value, u32);
} bufs_offset SEC(".maps");

// Events to user space; the reader in bpf/reader.go drains one of them.
// sys_events is the design's perf event array, used on kernels without a
// BPF ring buffer (before 5.8). sys_events_rb carries the same bytes through
// one ring shared by all CPUs, which costs less per event than a perf
// write (no perf_output_begin/end per sample); its size is set at load.
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} sys_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} sys_events_rb SEC(".maps");

// Events each CPU wrote to sys_events_rb, for RB_QUERY_EVERY.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u32);
} rb_writes SEC(".maps");

struct outer_key {
	u32 pid_ns;
	u32 mnt_ns;
};

struct inner_visibility {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, enum scopes); // _FILE_PROBE .. _CAPS_PROBE
	__type(value, u32); // 1 = ignore, 0 = trace
};

// Visibility per namespace pair: {pid_ns, mnt_ns} -> scope -> ignore?
// Host processes use {0, 0}; namespaces with no entry of their own use
// {0xc0ffee, 0xc0ffee} when present. Inserted, replaced and deleted by user
// space only (config/ computes the entries); read by drop_syscall().
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 4096);
	__type(key, struct outer_key);
	__array(values, struct inner_visibility);
} visibility SEC(".maps");

// Kernel-side filters (Options.Filters), filled by user space after load
// and before the programs are attached, never changed after; read by
// filter_drops(). Each value is the OR of enum filter_flags of the lists
// an entry is in.
//
// filter_peers: peer (remote) addresses, IPv4 stored v4-mapped
// (::ffff:a.b.c.d, prefix length + 96). The longest matching prefix is
// the one found, so user space gives each prefix the flags of every
// prefix that contains it too.
struct filter_peer_key {
	u32 prefixlen;
	u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct filter_peer_key);
	__type(value, u8);
} filter_peers SEC(".maps");

// filter_ports: the connection's server port, host order.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, u16);
	__type(value, u8);
} filter_ports SEC(".maps");

// filter_comms: the task's comm, NUL-padded as bpf_get_current_comm()
// leaves it.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, char[TASK_COMM_LEN]);
	__type(value, u8);
} filter_comms SEC(".maps");

// An attempt whose outcome is not known yet.
struct conn_start {
	sys_context_t ctx; // the connecting task's, ts = attempt time
	s32 connect_ret;   // tcp_connect()'s return, when it failed
	u32 pad;
};

// Outgoing connections in SYN_SENT, keyed by struct sock. Inserted by the
// attempt (tcp_connect's probe, or CLOSE->SYN_SENT in tracepoint mode),
// deleted when the socket leaves SYN_SENT. LRU, so sockets that never
// resolve cannot fill it; its size is set from Go (Options.MaxPending) and
// evictions show up as STAT_RESULTS_UNTRACKED when such a socket closes.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, struct conn_start);
} conn_attempts SEC(".maps");

// kprobe mode: the socket tcp_connect's kprobe saw, per thread, for its
// kretprobe. Inserted by kprobe_tcp_connect, deleted by kretprobe_tcp_connect.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);   // pid_tgid
	__type(value, u64); // struct sock *
} connect_args SEC(".maps");

// A reported connection, until it closes.
struct conn_live {
	sys_context_t ctx; // the connecting or accepting task's; ts = established (client) or accepted (server)
	u8 side;           // SIDE_CLIENT or SIDE_SERVER
	u8 pad[7];
};

// Connections reported established (client) or accepted (server), keyed by
// struct sock: inserted by those events, deleted when the socket reaches
// TCP_CLOSE, which sends TCP_CLOSE. Listening sockets, failed attempts and
// connections visibility or the filters hid never enter. LRU, so
// connections left open cannot fill it; its size is set from Go
// (Options.MaxConnections) and user space counts what it forgot (tracked -
// closed - still present).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, u64);
	__type(value, struct conn_live);
} conns SEC(".maps");

// Counters, per CPU; only ever incremented by the programs, read by user
// space.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, enum stat_ids);
	__type(value, u64);
} stats SEC(".maps");

static __always_inline void count(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

// ===== reading kernel memory =====

// READ(btf, src, field) reads src->field. Where src is a BTF-typed pointer
// (a tp_btf argument, bpf_get_current_task_btf() and what hangs off them)
// the load is direct, as in C; elsewhere it goes through
// bpf_probe_read_kernel, which costs about four times as much. btf is a
// constant at every call site, so only one branch is compiled.
#define READ(btf, src, field) ((btf) ? (src)->field : BPF_CORE_READ(src, field))

// ===== context =====

static __always_inline struct pid *task_pid_struct(struct task_struct *task, bool btf)
{
	return READ(btf, task, thread_pid);
}

// The tgid of task as pid namespace `ns` (at depth `level`) sees it, or 0
// when task is not visible there (like getppid() for a parent outside the
// namespace). struct pid's numbers[i] is the pid in the namespace at depth i.
static __always_inline u32 task_tgid_in(struct task_struct *task, unsigned int level,
					struct pid_namespace *ns, bool btf)
{
	struct pid *pid = task_pid_struct(READ(btf, task, group_leader), btf);
	if (READ(btf, pid, level) < level)
		return 0;
	if (BPF_CORE_READ(pid, numbers[level].ns) != ns)
		return 0;
	return BPF_CORE_READ(pid, numbers[level].nr);
}

// init_context fills context from the current task. btf: read the task
// through bpf_get_current_task_btf() (Linux 5.11+, programs that may).
static __always_inline u32 init_context(sys_context_t *context, bool btf)
{
	struct task_struct *task = btf ? bpf_get_current_task_btf() :
					 (struct task_struct *)bpf_get_current_task();
	u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *parent = READ(btf, task, real_parent);

	context->ts = bpf_ktime_get_ns();
	context->host_pid = pid_tgid >> 32;
	context->host_ppid = READ(btf, parent, tgid);

	struct pid *pid = task_pid_struct(task, btf);
	unsigned int level = READ(btf, pid, level);

	// A task whose pid lives at level 0 is in the initial pid namespace:
	// its namespace tgid equals its host tgid, which is the seed's test.
	if (monitor_mode == MONITOR_HOST || level == 0) {
		context->pid_id = 0;
		context->mnt_id = 0;
		context->ppid = context->host_ppid;
		context->pid = context->host_pid;
	} else {
		// The task's own pid namespace is the one its pid was allocated
		// in (numbers[level].ns); nsproxy->pid_ns_for_children is the
		// namespace its children will get and differs after unshare().
		// (numbers[level] has a variable offset: always a probe read.)
		struct pid_namespace *pidns = BPF_CORE_READ(pid, numbers[level].ns);
		context->pid_id = BPF_CORE_READ(pidns, ns.inum);
		context->mnt_id = btf ? task->nsproxy->mnt_ns->ns.inum :
					BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
		context->ppid = task_tgid_in(parent, level, pidns, btf);
		context->pid = task_tgid_in(task, level, pidns, btf);
	}

	context->uid = bpf_get_current_uid_gid();
	bpf_get_current_comm(&context->comm, sizeof(context->comm));
	return 0;
}

// skip_task tells whether monitor_mode leaves this context out entirely.
static __always_inline bool skip_context(sys_context_t *context)
{
	return monitor_mode == MONITOR_CONTAINERS && context->pid_id == 0 &&
	       context->mnt_id == 0;
}

// ===== visibility =====

// drop_syscall reports whether the namespaces of context have `scope` switched
// off. The seed's drop_syscall reads the current task's namespaces; the
// context's are used here because outcome transitions run in softirq.
static __always_inline bool drop_syscall(sys_context_t *context, u32 scope)
{
	struct outer_key key = {
		.pid_ns = context->pid_id,
		.mnt_ns = context->mnt_id,
	};

	void *inner = bpf_map_lookup_elem(&visibility, &key);
	if (!inner && !(key.pid_ns == 0 && key.mnt_ns == 0)) {
		key.pid_ns = default_ns;
		key.mnt_ns = default_ns;
		inner = bpf_map_lookup_elem(&visibility, &key);
	}
	if (!inner)
		return false;

	u32 *ignore = bpf_map_lookup_elem(inner, &scope);
	return ignore && *ignore == 1;
}

// ===== filters =====

// filter_drops reports whether the configured filters (filter_lists and
// the filter maps) leave out an event about sk in context. The peer is
// the remote end; the server port is the remote port of a connecting end
// and the local port of an accepted one (server). A match in an exclude
// list leaves an event out; a non-empty include list leaves out what it
// does not match. A failure (retval < 0) is left out only by an exclude
// match, and only with FILTER_EXCLUDE_FAILURES: include lists never hide
// one. The lookups read what the event reports: skc_daddr/skc_v6_daddr,
// skc_dport, inet_sport (see fill_sockaddrs) and the context's comm.
static __always_inline bool filter_drops(struct sock *sk, sys_context_t *context, bool server, bool btf)
{
	if (!filter_lists)
		return false;
	bool failure = context->retval < 0;
	if (failure && !(filter_lists & FILTER_EXCLUDE_FAILURES))
		return false;

	u8 peer = 0, port = 0, comm = 0;
	u8 *v;
	if (filter_lists & FILTER_PEERS) {
		struct filter_peer_key key = {.prefixlen = 128};
		u16 family = READ(btf, sk, __sk_common.skc_family);
		if (family == AF_INET) {
			u32 *w = (u32 *)key.addr;
			w[2] = bpf_htonl(0x0000ffff);
			w[3] = READ(btf, sk, __sk_common.skc_daddr);
		} else if (btf) {
			__builtin_memcpy(key.addr, &sk->__sk_common.skc_v6_daddr, 16);
		} else {
			BPF_CORE_READ_INTO(&key.addr, sk, __sk_common.skc_v6_daddr);
		}
		v = bpf_map_lookup_elem(&filter_peers, &key);
		if (v)
			peer = *v;
	}
	if (filter_lists & FILTER_PORTS) {
		u16 p = server ? bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport)) :
				 bpf_ntohs(READ(btf, sk, __sk_common.skc_dport));
		v = bpf_map_lookup_elem(&filter_ports, &p);
		if (v)
			port = *v;
	}
	if (filter_lists & FILTER_COMMS) {
		v = bpf_map_lookup_elem(&filter_comms, context->comm);
		if (v)
			comm = *v;
	}

	if ((peer | port | comm) & FILTER_EXCLUDE)
		return true;
	if (failure)
		return false;
	return ((filter_lists & FILTER_INCLUDE_PEERS) && !(peer & FILTER_INCLUDE)) ||
	       ((filter_lists & FILTER_INCLUDE_PORTS) && !(port & FILTER_INCLUDE)) ||
	       ((filter_lists & FILTER_INCLUDE_COMMS) && !(comm & FILTER_INCLUDE));
}

// ===== staging buffers =====

static __always_inline bufs_t *get_buf(u32 idx)
{
	return bpf_map_lookup_elem(&bufs, &idx);
}

// set_buf_off writes through the per-CPU array's value pointer: cheaper
// than a map update helper call.
static __always_inline void set_buf_off(u32 idx, u32 off)
{
	u32 *p = bpf_map_lookup_elem(&bufs_offset, &idx);
	if (p)
		*p = off;
}

static __always_inline u32 *get_buf_off(u32 idx)
{
	return bpf_map_lookup_elem(&bufs_offset, &idx);
}

static __always_inline int get_arg_num(u64 types)
{
	int n = 0;

#pragma unroll
	for (int i = 0; i < MAX_ARGS; i++) {
		if (DEC_ARG_TYPE(i, types) != NONE_T)
			n++;
	}
	return n;
}

static __always_inline void save_context_to_buffer(bufs_t *bufs_p, sys_context_t *context)
{
	__builtin_memcpy(&bufs_p->buf[0], context, sizeof(sys_context_t));
}

// save_to_submit_buf appends `type` and then `size` bytes from ptr, which
// points to the program's own stack (every non-string argument value is
// built there), so a plain copy does: no helper call.
static __always_inline int save_to_submit_buf(u32 buf, bufs_t *bufs_p, void *ptr, u32 size, u8 type)
{
	u32 *off = get_buf_off(buf);
	if (!off)
		return 0;

	// size is a constant at every (inlined) call site.
	u32 pos = *off;
	if (pos >= BUF_MASK)
		return 0;

	bufs_p->buf[pos & BUF_MASK] = type;
	pos++;
	__builtin_memcpy(&bufs_p->buf[pos & BUF_MASK], ptr, size);
	*off = pos + size;
	return size;
}

// save_str_to_buf appends STR_T, the string's size including its NUL (s32),
// then the string.
static __always_inline int save_str_to_buf(u32 buf, bufs_t *bufs_p, const char *ptr)
{
	u32 *off = get_buf_off(buf);
	if (!off)
		return 0;

	u32 pos = *off;
	if (pos >= BUF_MASK - sizeof(s32))
		return 0;

	bufs_p->buf[pos & BUF_MASK] = STR_T;
	pos++;
	u32 str_pos = pos + sizeof(s32);
	s32 sz = bpf_probe_read_kernel_str(&bufs_p->buf[str_pos & BUF_MASK], MAX_STRING_SIZE, ptr);
	if (sz <= 0)
		return 0;

	__builtin_memcpy(&bufs_p->buf[pos & BUF_MASK], &sz, sizeof(sz));
	*off = str_pos + sz;
	return sz;
}

// save_args_to_buffer appends each argument slot that `types` declares,
// reading its value through the pointer in args.
static __always_inline int save_args_to_buffer(u32 buf, bufs_t *bufs_p, u64 types, args_t *args)
{
#pragma unroll
	for (int i = 0; i < MAX_ARGS; i++) {
		u8 type = DEC_ARG_TYPE(i, types);
		void *ptr = (void *)args->args[i];

		switch (type) {
		case NONE_T:
			break;
		case STR_T:
			save_str_to_buf(buf, bufs_p, ptr);
			break;
		case SOCKADDR_T: {
			u16 family = *(u16 *)ptr;
			if (family == AF_INET)
				save_to_submit_buf(buf, bufs_p, ptr, sizeof(struct sockaddr_in_t), SOCKADDR_T);
			else if (family == AF_INET6)
				save_to_submit_buf(buf, bufs_p, ptr, sizeof(struct sockaddr_in6_t), SOCKADDR_T);
			else
				save_to_submit_buf(buf, bufs_p, ptr, sizeof(u16), SOCKADDR_T);
			break;
		}
		case ULONG_T:
			save_to_submit_buf(buf, bufs_p, ptr, sizeof(u64), ULONG_T);
			break;
		case TCP_CLOSE_T:
			save_to_submit_buf(buf, bufs_p, ptr, sizeof(struct tcp_close_info), TCP_CLOSE_T);
			break;
		default: // INT_T and the flag types: 4 bytes
			save_to_submit_buf(buf, bufs_p, ptr, sizeof(int), type);
			break;
		}
	}
	return 0;
}

static __always_inline int events_perf_submit(void *ctx, u32 buf)
{
	bufs_t *bufs_p = get_buf(buf);
	if (!bufs_p)
		return -1;

	u32 *off = get_buf_off(buf);
	if (!off)
		return -1;

	u32 size = *off & (MAX_BUFFER_SIZE - 1);
	if (size == 0)
		return -1;
	long err;
	if (use_ringbuf) {
		u64 flags = BPF_RB_NO_WAKEUP;
		u32 zero = 0;
		u32 *writes = bpf_map_lookup_elem(&rb_writes, &zero);
		if (writes && ((*writes)++ & (RB_QUERY_EVERY - 1)) == 0 &&
		    bpf_ringbuf_query(&sys_events_rb, BPF_RB_AVAIL_DATA) >= ringbuf_wakeup_bytes)
			flags = BPF_RB_FORCE_WAKEUP;
		err = bpf_ringbuf_output(&sys_events_rb, bufs_p->buf, size, flags);
	} else {
		err = bpf_perf_event_output(ctx, &sys_events, BPF_F_CURRENT_CPU, bufs_p->buf, size);
	}
	if (err)
		count(STAT_PERF_ERRORS);
	return err;
}

// ===== addresses =====

// fill_sockaddrs writes the socket's remote and local ends. The unions are
// zeroed first so no stack bytes leak into the event.
static __always_inline void fill_sockaddrs(struct sock *sk, union sockaddr_t *remote, union sockaddr_t *local,
					   bool btf)
{
	__builtin_memset(remote, 0, sizeof(*remote));
	__builtin_memset(local, 0, sizeof(*local));

	u16 family = READ(btf, sk, __sk_common.skc_family);
	__be16 dport = READ(btf, sk, __sk_common.skc_dport);
	// inet_sport, not skc_num: a refused connect reaches CLOSE after
	// inet_put_port() has zeroed skc_num.
	// (A probe read even with btf: the verifier types sk as struct sock
	// and refuses the larger struct inet_sock behind it.)
	__be16 sport = BPF_CORE_READ((struct inet_sock *)sk, inet_sport);

	if (family == AF_INET) {
		remote->v4.sin_family = AF_INET;
		remote->v4.sin_port = dport;
		remote->v4.sin_addr = READ(btf, sk, __sk_common.skc_daddr);
		local->v4.sin_family = AF_INET;
		local->v4.sin_port = sport;
		local->v4.sin_addr = READ(btf, sk, __sk_common.skc_rcv_saddr);
	} else if (family == AF_INET6) {
		remote->v6.sin6_family = AF_INET6;
		remote->v6.sin6_port = dport;
		if (btf)
			__builtin_memcpy(&remote->v6.sin6_addr, &sk->__sk_common.skc_v6_daddr, 16);
		else
			BPF_CORE_READ_INTO(&remote->v6.sin6_addr, sk, __sk_common.skc_v6_daddr);
		local->v6.sin6_family = AF_INET6;
		local->v6.sin6_port = sport;
		// A v4-mapped connect on an AF_INET6 socket goes through
		// tcp_v4_connect(); skc_v6_rcv_saddr is only filled after it
		// returns, so build the mapped local address from the v4 one.
		u32 *w = (u32 *)remote->v6.sin6_addr;
		if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff)) {
			u32 *lw = (u32 *)local->v6.sin6_addr;
			lw[2] = bpf_htonl(0x0000ffff);
			lw[3] = READ(btf, sk, __sk_common.skc_rcv_saddr);
		} else {
			if (btf)
				__builtin_memcpy(&local->v6.sin6_addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
			else
				BPF_CORE_READ_INTO(&local->v6.sin6_addr, sk, __sk_common.skc_v6_rcv_saddr);
		}
	} else {
		remote->family = family;
		local->family = family;
	}
}

// ===== events =====

// tcp_sk_of is sk as a struct tcp_sock. btf: sk is a BTF-typed pointer,
// and bpf_skc_to_tcp_sock() (Linux 5.9+, tracing programs) returns one the
// program may read directly; without, the fields are probe-read.
static __always_inline struct tcp_sock *tcp_sk_of(struct sock *sk, bool btf)
{
	return btf ? bpf_skc_to_tcp_sock(sk) : (struct tcp_sock *)sk;
}

// client_isn is the initial sequence number of a connection this task
// connected: snd_una - bytes_acked, since bytes_acked counts every byte of
// sequence space acknowledged, the SYN included.
static __always_inline u32 client_isn(struct sock *sk, bool btf)
{
	struct tcp_sock *tp = tcp_sk_of(sk, btf);
	if (!tp)
		return 0;
	return READ(btf, tp, snd_una) - (u32)READ(btf, tp, bytes_acked);
}

// server_isn is the client's initial sequence number as the accepted end
// knows it: rcv_nxt starts at ISN + 1 and bytes_received counts the
// sequence space received since (a FIN included).
static __always_inline u32 server_isn(struct sock *sk, bool btf)
{
	struct tcp_sock *tp = tcp_sk_of(sk, btf);
	if (!tp)
		return 0;
	return READ(btf, tp, rcv_nxt) - 1 - (u32)READ(btf, tp, bytes_received);
}

// submit_sock_event assembles and sends one event about sk with the given
// context: the protocol name, the remote and the local address, when
// start_ts is not 0 the attempt's timestamp, and when with_isn the client's
// initial sequence number (which user space derives the connection's trace
// IDs from). A close event (info set) carries the addresses, the
// established timestamp and info instead. Only successful events are
// subject to visibility: failures always reach user space, unless the
// configured filters exclude them (filter_drops). It returns whether the
// event passed visibility and the filters (and so was sent, or counted in
// STAT_PERF_ERRORS).
static __always_inline bool submit_sock_event(void *ctx, u32 buf, struct sock *sk, sys_context_t *context,
					      u32 id_v4, u32 id_v6, u64 start_ts, bool with_isn, u32 isn,
					      struct tcp_close_info *info, bool btf)
{
	if (skip_context(context)) {
		count(STAT_DROPPED_MONITOR);
		return false;
	}
	// A close follows its connection: visibility was decided when the
	// connection was reported (an entry in conns says it was).
	if (!info && context->retval >= 0 && drop_syscall(context, _NETWORK_PROBE)) {
		count(STAT_DROPPED_VISIBILITY);
		return false;
	}
	// So do the filters. A combined attempt and result (tracepoint mode)
	// is only built when its attempt passed them (set_state), and then
	// its result passes too, whatever its outcome.
	if (!info && id_v4 != _TCP_CONNECT_AND_RESULT && filter_drops(sk, context, id_v4 == _TCP_ACCEPT, btf)) {
		count(STAT_DROPPED_FILTER);
		return false;
	}

	bufs_t *bufs_p = get_buf(buf);
	if (!bufs_p)
		return false;

	union sockaddr_t remote, local;
	fill_sockaddrs(sk, &remote, &local, btf);

	args_t args = {};
	u64 types;
	u64 isn64 = isn; // the TCP_ISN_T value: its low 4 bytes
	if (info) {
		types = ARG_TYPE0(SOCKADDR_T) | ARG_TYPE1(SOCKADDR_T) | ARG_TYPE2(ULONG_T) | ARG_TYPE3(TCP_CLOSE_T);
		args.args[0] = (u64)&remote;
		args.args[1] = (u64)&local;
		args.args[2] = (u64)&start_ts;
		args.args[3] = (u64)info;
	} else {
		struct proto *prot = READ(btf, sk, __sk_common.skc_prot);
		types = ARG_TYPE0(STR_T) | ARG_TYPE1(SOCKADDR_T) | ARG_TYPE2(SOCKADDR_T);
		args.args[0] = (u64)&prot->name;
		args.args[1] = (u64)&remote;
		args.args[2] = (u64)&local;
		// Slots 3 and 4 always point to 8 readable bytes: older
		// verifiers (6.1) lose the link between a bit of `types` and
		// the branch that set its pointer, and check every pairing.
		args.args[3] = (u64)&isn64;
		args.args[4] = (u64)&isn64;
		if (start_ts) {
			types |= ARG_TYPE3(ULONG_T);
			args.args[3] = (u64)&start_ts;
			if (with_isn)
				types |= ARG_TYPE4(TCP_ISN_T);
		} else if (with_isn) {
			types |= ARG_TYPE3(TCP_ISN_T);
		}
	}
	u16 family = READ(btf, sk, __sk_common.skc_family);

	context->event_id = family == AF_INET6 ? id_v6 : id_v4;
	context->argnum = get_arg_num(types);

	set_buf_off(buf, sizeof(sys_context_t));
	save_context_to_buffer(bufs_p, context);
	save_args_to_buffer(buf, bufs_p, types, &args);
	events_perf_submit(ctx, buf);
	return true;
}

// track_conn remembers a reported connection until it closes.
static __always_inline void track_conn(struct sock *sk, sys_context_t *context, u8 side)
{
	if (!track_closes)
		return;
	u64 key = (u64)sk;
	struct conn_live live = {};
	__builtin_memcpy(&live.ctx, context, sizeof(live.ctx));
	live.side = side;
	bpf_map_update_elem(&conns, &key, &live, BPF_ANY);
	count(STAT_CONNS_TRACKED);
}

// save_attempt starts tracking an outgoing connection in the current task.
static __always_inline void save_attempt(struct sock *sk, bool btf)
{
	u64 key = (u64)sk;
	struct conn_start start = {};
	init_context(&start.ctx, btf);
	bpf_map_update_elem(&conn_attempts, &key, &start, BPF_ANY);
	count(STAT_ATTEMPTS_TRACKED);
}

// connect_returned sends the attempt event once tcp_connect() has returned
// `ret` (fexit/kretprobe), with the context saved at its entry, and the
// client's ISN: tcp_connect_init() set snd_una to the ISN and bytes_acked
// is still 0, so client_isn() reads it already.
static __always_inline int connect_returned(void *ctx, struct sock *sk, int ret)
{
	u64 key = (u64)sk;
	struct conn_start *start = bpf_map_lookup_elem(&conn_attempts, &key);
	if (!start)
		return 0;
	if (ret < 0)
		start->connect_ret = ret;

	if (own_context(&start->ctx))
		return 0;
	sys_context_t context;
	__builtin_memcpy(&context, &start->ctx, sizeof(context));
	context.retval = ret;
	submit_sock_event(ctx, DATA_BUF_TYPE, sk, &context, _TCP_CONNECT, _TCP_CONNECT_v6, 0, true, client_isn(sk, false),
			  NULL, false);
	return 0;
}

// accepted sends an accept event for newsk (read through probe reads) in
// the accepting task (read directly when task_btf).
static __always_inline int accepted(void *ctx, struct sock *newsk, bool task_btf)
{
	if (!newsk)
		return 0;
	if (BPF_CORE_READ(newsk, sk_protocol) != IPPROTO_TCP)
		return 0;
	u16 family = BPF_CORE_READ(newsk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;

	if (agent_tgid != 0 && (u32)(bpf_get_current_pid_tgid() >> 32) == agent_tgid) {
		count(STAT_DROPPED_AGENT);
		return 0;
	}
	sys_context_t context = {};
	init_context(&context, task_btf);
	count(STAT_ACCEPTS);
	if (submit_sock_event(ctx, DATA_BUF_TYPE, newsk, &context, _TCP_ACCEPT, _TCP_ACCEPT_v6, 0, true,
			      server_isn(newsk, false), NULL, false) &&
	    BPF_CORE_READ(newsk, __sk_common.skc_state) != TCP_CLOSE)
		track_conn(newsk, &context, SIDE_SERVER);
	return 0;
}

// --- fentry mode ---

SEC("fentry/tcp_connect")
int BPF_PROG(fentry_tcp_connect, struct sock *sk)
{
	save_attempt(sk, false);
	return 0;
}

SEC("fexit/tcp_connect")
int BPF_PROG(fexit_tcp_connect, struct sock *sk, int ret)
{
	return connect_returned(ctx, sk, ret);
}

// inet_csk_accept's arguments differ between kernels (6.10 folded flags,
// err and kern into struct proto_accept_arg); only its return value, the
// new socket, is used, and bpf_get_func_ret() reads it whatever they are.
SEC("fexit/inet_csk_accept")
int fexit_inet_csk_accept(u64 *ctx)
{
	u64 ret = 0;
	if (bpf_get_func_ret(ctx, &ret))
		return 0;
	return accepted(ctx, (struct sock *)ret, false);
}

// --- kprobe mode (the seed's) ---

// tcp_connect(struct sock *sk) runs in the connecting task after the route
// and the source port are chosen (net/ipv4/tcp_output.c).
SEC("kprobe/tcp_connect")
int BPF_KPROBE(kprobe_tcp_connect, struct sock *sk)
{
	u64 tid = bpf_get_current_pid_tgid();
	u64 skp = (u64)sk;
	save_attempt(sk, false);
	bpf_map_update_elem(&connect_args, &tid, &skp, BPF_ANY);
	return 0;
}

// The seed reads PT_REGS_RC at entry, which is not a return value; the
// kretprobe reads the real one.
SEC("kretprobe/tcp_connect")
int BPF_KRETPROBE(kretprobe_tcp_connect, int ret)
{
	u64 tid = bpf_get_current_pid_tgid();
	u64 *skp = bpf_map_lookup_elem(&connect_args, &tid);
	if (!skp)
		return 0;
	struct sock *sk = (struct sock *)*skp;
	bpf_map_delete_elem(&connect_args, &tid);
	return connect_returned(ctx, sk, ret);
}

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(kretprobe_inet_csk_accept, struct sock *newsk)
{
	return accepted(ctx, newsk, false);
}

// --- tracepoint mode, and outcomes in every mode ---

// closed sends TCP_CLOSE for a reported connection whose socket reaches
// TCP_CLOSE from oldstate, with the context saved when it was reported.
// A socket conns does not hold costs one lookup.
static __always_inline int closed(void *ctx, struct sock *sk, int oldstate, bool btf)
{
	u64 key = (u64)sk;
	struct conn_live *live = bpf_map_lookup_elem(&conns, &key);
	if (!live)
		return 0;
	sys_context_t context;
	__builtin_memcpy(&context, &live->ctx, sizeof(context));
	u8 side = live->side;
	bpf_map_delete_elem(&conns, &key);
	count(STAT_CONNS_CLOSED);

	struct tcp_sock *tp = tcp_sk_of(sk, btf);
	if (!tp)
		return 0;
	struct tcp_close_info info = {};
	info.bytes_acked = READ(btf, tp, bytes_acked);
	info.bytes_received = READ(btf, tp, bytes_received);
	info.srtt_us = READ(btf, tp, srtt_us) >> 3;
	info.total_retrans = READ(btf, tp, total_retrans);
	info.isn = side == SIDE_CLIENT ? client_isn(sk, btf) : server_isn(sk, btf);
	info.oldstate = oldstate;
	info.side = side;

	// sk_err is set by a reset received (ECONNRESET, EPIPE) or a timeout
	// (ETIMEDOUT) before tcp_done(); an orderly close leaves it 0.
	int err = READ(btf, sk, sk_err);
	context.retval = err ? -err : 0;
	u64 start_ts = context.ts;
	context.ts = bpf_ktime_get_ns();
	submit_sock_event(ctx, STATE_BUF_TYPE, sk, &context, _TCP_CLOSE, _TCP_CLOSE_v6, start_ts, false, 0, &info, btf);
	return 0;
}

// set_state handles sock/inet_sock_set_state, TP_PROTO(const struct sock
// *sk, const int oldstate, const int newstate) (include/trace/events/sock.h):
// the attempt in tracepoint mode, the outcome and the close in every mode.
// btf: sk and the current task are read directly (the tp_btf program).
static __always_inline int set_state(void *ctx, struct sock *sk, int oldstate, int newstate, bool btf)
{
	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		// In the connecting task (tcp_v4_connect/tcp_v6_connect).
		if (attempts_from_tracepoint && READ(btf, sk, sk_protocol) == IPPROTO_TCP)
			save_attempt(sk, btf);
		return 0;
	}
	if (newstate == TCP_CLOSE && oldstate != TCP_SYN_SENT)
		return track_closes ? closed(ctx, sk, oldstate, btf) : 0;

	// SYN_SENT -> SYN_RECV is a simultaneous open: not an outcome yet.
	if (oldstate != TCP_SYN_SENT || newstate == TCP_SYN_RECV)
		return 0;
	if (READ(btf, sk, sk_protocol) != IPPROTO_TCP)
		return 0;

	// Leaving SYN_SENT: established, or closed by an error or by the user.
	u64 key = (u64)sk;
	struct conn_start *start = bpf_map_lookup_elem(&conn_attempts, &key);
	if (!start) {
		count(STAT_RESULTS_UNTRACKED);
		return 0;
	}

	sys_context_t context;
	__builtin_memcpy(&context, &start->ctx, sizeof(context));
	s32 connect_ret = start->connect_ret;
	bpf_map_delete_elem(&conn_attempts, &key);
	if (own_context(&context)) {
		// Tracked like any attempt so that its result is not counted
		// as untracked; reported by neither event.
		count(STAT_DROPPED_AGENT);
		return 0;
	}
	count(STAT_RESULTS);

	u64 start_ts = context.ts;
	u32 id_v4 = _TCP_CONNECT_RESULT, id_v6 = _TCP_CONNECT_RESULT_v6;
	if (attempts_from_tracepoint) {
		// The attempt goes out with its result, as one sample that user
		// space splits in two (event.SplitAttempt): a perf write saved
		// per connection. If visibility or the filters hide the
		// attempt, the result goes alone (and only if it is a failure
		// they let through).
		context.retval = 0;
		if (skip_context(&context)) {
			count(STAT_DROPPED_MONITOR);
		} else if (drop_syscall(&context, _NETWORK_PROBE)) {
			count(STAT_DROPPED_VISIBILITY);
		} else if (filter_drops(sk, &context, false, btf)) {
			count(STAT_DROPPED_FILTER);
		} else {
			id_v4 = _TCP_CONNECT_AND_RESULT;
			id_v6 = _TCP_CONNECT_AND_RESULT_v6;
		}
	}

	bool established = newstate == TCP_ESTABLISHED;
	if (established) {
		context.retval = 0;
	} else {
		// tcp_reset(), tcp_write_err() and tcp_v4_err() set sk_err
		// before tcp_done() moves the socket to CLOSE; a close() by the
		// user leaves it 0.
		int err = READ(btf, sk, sk_err);
		if (err)
			context.retval = -err;
		else if (connect_ret < 0)
			context.retval = connect_ret;
		else
			context.retval = -ECONNABORTED;
	}
	context.ts = bpf_ktime_get_ns();
	if (submit_sock_event(ctx, STATE_BUF_TYPE, sk, &context, id_v4, id_v6, start_ts, true, client_isn(sk, btf), NULL,
			      btf) &&
	    established)
		track_conn(sk, &context, SIDE_CLIENT);
	return 0;
}

// The BTF-typed tracepoint (Linux 5.5+; with bpf_get_current_task_btf,
// 5.11+): the same work with direct reads. bpf/load.go loads it where the
// kernel accepts it, else the raw tracepoint below.
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_btf_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	return set_state(ctx, sk, oldstate, newstate, true);
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(tp_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	return set_state(ctx, sk, oldstate, newstate, false);
}

// accept(2)/accept4(2) return: the new fd's socket, in the accepting task.
// btf: the task and its file table are read directly (Linux 5.11+); the
// file behind the fd and its socket always through probe reads (the fd
// array is indexed by a variable).
static __always_inline int accept_exit(struct trace_event_raw_sys_exit *ctx, bool btf)
{
	long fd = ctx->ret;
	if (fd < 0)
		return 0;

	struct task_struct *task = btf ? bpf_get_current_task_btf() :
					 (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = btf ? task->files->fdt : BPF_CORE_READ(task, files, fdt);
	if (fd >= READ(btf, fdt, max_fds))
		return 0;
	struct file **fds = READ(btf, fdt, fd);
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	if (!file)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	return accepted(ctx, BPF_CORE_READ(sock, sk), btf);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_sys_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx, false);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_sys_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx, false);
}

// The same with direct reads of the task, attached with the BTF-typed
// state-change program (bpf/attach.go, btfTwin).
SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_sys_exit_accept4_btf(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx, true);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_sys_exit_accept_btf(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx, true);
}
