/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types connwatch's BPF program reads, declared by hand.
 *
 * Every struct carries preserve_access_index, so clang records each field
 * access as a CO-RE relocation and the loader (cilium/ebpf) resolves the real
 * offset against the running kernel's BTF (/sys/kernel/btf/vmlinux). Only the
 * names and types of the fields matter here, never their order or the members
 * left out, so this header is the same on every kernel and `make generate`
 * reproduces the same object everywhere. Field names are those of Linux 5.8+
 * (include/net/sock.h, include/linux/sched.h, include/linux/pid.h).
 */
#ifndef __CONNWATCH_VMLINUX_H__
#define __CONNWATCH_VMLINUX_H__

/* bpf_tracing.h picks the kernel's pt_regs field names when this is set. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef int pid_t;
enum { false = 0, true = 1 };

/* include/uapi/linux/bpf.h */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_HASH_OF_MAPS = 13,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

#define BPF_F_CURRENT_CPU 0xffffffffULL

/* map_flags: BPF_MAP_TYPE_LPM_TRIE requires BPF_F_NO_PREALLOC */
enum {
	BPF_F_NO_PREALLOC = 1,
};

/* BPF ring buffer: bpf_ringbuf_output() flags, bpf_ringbuf_query() queries */
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};
enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
};

#if defined(__TARGET_ARCH_arm64)
/* arch/arm64/include/uapi/asm/ptrace.h: the start of the kernel's pt_regs,
 * the kprobe context; bpf_tracing.h reads arguments through it. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
struct pt_regs {
	struct user_pt_regs user_regs;
} __attribute__((preserve_access_index));
#elif defined(__TARGET_ARCH_x86)
/* arch/x86/include/asm/ptrace.h: kprobe context */
struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
} __attribute__((preserve_access_index));
#else
#error "connwatch builds for __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

/* include/linux/ns_common.h */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct pid_namespace {
	unsigned int level;
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct mnt_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

/* include/linux/pid.h: numbers[level] is the pid in the task's own namespace */
struct upid {
	int nr;
	struct pid_namespace *ns;
} __attribute__((preserve_access_index));

struct pid {
	unsigned int level;
	struct upid numbers[1];
} __attribute__((preserve_access_index));

struct nsproxy {
	struct mnt_namespace *mnt_ns;
	struct pid_namespace *pid_ns_for_children;
} __attribute__((preserve_access_index));

/* include/linux/sched.h */
struct task_struct {
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	struct nsproxy *nsproxy;
	struct files_struct *files;
} __attribute__((preserve_access_index));

/* include/uapi/linux/in6.h */
struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be16 u6_addr16[8];
		__be32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

/* include/net/sock.h: struct proto's name is "TCP" or "TCPv6" for TCP sockets */
struct proto {
	char name[32];
} __attribute__((preserve_access_index));

/*
 * struct sock_common keeps these inside anonymous unions; CO-RE finds a field
 * by name through anonymous members, so they are declared flat here.
 */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct proto *skc_prot;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	int sk_err;
} __attribute__((preserve_access_index));

/* include/linux/net.h, fs.h, fdtable.h: accept()'s fd -> struct sock */
struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

struct file {
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

/* include/trace/events/syscalls.h: sys_exit_* tracepoint record */
struct trace_event_raw_sys_exit {
	unsigned short common_type;
	unsigned char common_flags;
	unsigned char common_preempt_count;
	int common_pid;
	long id;
	long ret;
};

/* include/net/inet_sock.h: inet_sport survives inet_put_port(), skc_num does not */
struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

/*
 * include/linux/tcp.h: what a closing connection carried. bytes_acked and
 * bytes_received (Linux 4.1+, RFC 4898 tcpEStatsAppHCThruOctetsAcked and
 * ...Received) count sequence space, so the client's SYN and each FIN
 * count 1; srtt_us is the smoothed RTT in µs << 3.
 */
struct tcp_sock {
	struct inet_sock inet_conn;
	__u32 rcv_nxt;
	__u32 snd_una;
	__u32 srtt_us;
	__u32 total_retrans;
	__u64 bytes_received;
	__u64 bytes_acked;
} __attribute__((preserve_access_index));

#endif /* __CONNWATCH_VMLINUX_H__ */
