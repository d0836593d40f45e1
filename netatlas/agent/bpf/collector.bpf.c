// SPDX-License-Identifier: GPL-2.0
// netatlas eBPF collector: the kernel half (libbpf CO-RE, tp_btf tracepoints only).
//
// What it does, per TCP socket of the agent's network namespace (na_config[0], 0 = every namespace):
//   CLOSE -> SYN_SENT        (connect(), process context)   remember the owner: the current tgid
//   SYN_RECV -> ESTABLISHED  (passive open, softirq)        remember it as inbound, owner unknown
//   SYN_SENT -> ESTABLISHED                                 mark it established
//   first send/recv in process context of an inbound one    its owner is the current tgid
//   any -> CLOSE             emit a close event: owner, addresses, final byte counts, rtt, segments
//   CLOSE -> LISTEN          (listen(), process context)    emit a listen event: owner and inode, so
//                            user space knows a new port is inbound before its first connection ends
// and, per process: exec (in the namespace) and exit of a thread-group leader as events.
// Sockets are keyed by the kernel's socket cookie, the same id sock_diag reports, so user space can
// join the `na_socks` map to its dumps. Build: scripts/build-bpf.sh (writes collector.bpf.o beside this).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

enum { ST_ESTABLISHED = 1, ST_SYN_SENT = 2, ST_SYN_RECV = 3, ST_CLOSE = 7, ST_LISTEN = 10 };
enum { F_OUTBOUND = 1, F_INBOUND = 2, F_ESTABLISHED = 4 };
enum { EV_CLOSE = 1, EV_EXEC = 2, EV_EXIT = 3, EV_LISTEN = 4 };
enum { C_SOCKS_FULL = 0, C_EVENTS_LOST = 1, C_NCOUNTERS = 2 };

struct sock_info {
    __u32 tgid;                 // 0: not known yet
    __u32 flags;                // F_*
    char comm[16];              // the owner's name, for an owner gone before user space reads /proc
};

struct na_close_event {            // EV_CLOSE; 104 bytes, layout mirrored by netatlas/agent/ebpf.py
    __u32 kind;
    __u32 tgid;
    __u64 cookie;
    __u64 bytes_acked;
    __u64 bytes_received;
    __u32 srtt_us;              // tcp_sock.srtt_us >> 3, as tcpi_rtt
    __u32 segs_in;
    __u32 segs_out;
    __u32 netns;
    __u16 family;
    __u16 sport;                // host order
    __u16 dport;                // host order
    __u8 oldstate;
    __u8 flags;
    __u8 saddr[16];
    __u8 daddr[16];
    char comm[16];
};

struct na_proc_event {             // EV_EXEC / EV_EXIT; 16 bytes
    __u32 kind;
    __u32 tgid;
    __u32 pid;
    __u32 pad;
};

struct na_listen_event {           // EV_LISTEN; 16 bytes
    __u32 kind;
    __u32 tgid;
    __u64 inode;                // of the listening socket's file
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 131072);
    __type(key, __u64);
    __type(value, struct sock_info);
} na_socks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);      // ~10,000 close events: 10 s at 1,000 a second
} na_events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} na_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, C_NCOUNTERS);
    __type(key, __u32);
    __type(value, __u64);
} na_counters SEC(".maps");

static __always_inline void count(__u32 which)
{
    __u64 *c = bpf_map_lookup_elem(&na_counters, &which);
    if (c)
        *c += 1;
}

static __always_inline __u32 wanted_netns(void)
{
    __u32 zero = 0;
    __u32 *ns = bpf_map_lookup_elem(&na_config, &zero);
    return ns ? *ns : 0;
}

static __always_inline int in_our_netns(const struct sock *sk)
{
    __u32 want = wanted_netns();
    if (!want)
        return 1;
    return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) == want;
}

static __always_inline void remember(__u64 cookie, int current, __u32 flags)
{
    struct sock_info *info = bpf_map_lookup_elem(&na_socks, &cookie);
    if (info) {
        info->flags |= flags;
        if (!info->tgid && current) {
            info->tgid = bpf_get_current_pid_tgid() >> 32;
            bpf_get_current_comm(info->comm, sizeof(info->comm));
        }
        return;
    }
    struct sock_info fresh = { .flags = flags };
    if (current) {
        fresh.tgid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
    }
    if (bpf_map_update_elem(&na_socks, &cookie, &fresh, BPF_NOEXIST) && bpf_map_lookup_elem(&na_socks, &cookie) == 0)
        count(C_SOCKS_FULL);
}

static __always_inline void emit_close(struct sock *sk, __u64 cookie, int oldstate)
{
    struct na_close_event *e = bpf_ringbuf_reserve(&na_events, sizeof(*e), 0);
    if (!e) {
        count(C_EVENTS_LOST);
        bpf_map_delete_elem(&na_socks, &cookie);
        return;
    }
    struct sock_info *info = bpf_map_lookup_elem(&na_socks, &cookie);
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    e->kind = EV_CLOSE;
    e->tgid = info ? info->tgid : 0;
    e->flags = info ? info->flags : 0;
    __builtin_memset(e->comm, 0, 16);
    if (info)
        __builtin_memcpy(e->comm, info->comm, 16);
    e->cookie = cookie;
    e->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
    e->bytes_received = BPF_CORE_READ(tp, bytes_received);
    e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
    e->segs_in = BPF_CORE_READ(tp, segs_in);
    e->segs_out = BPF_CORE_READ(tp, segs_out);
    e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
    e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    e->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
    e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    e->oldstate = oldstate;
    __builtin_memset(e->saddr, 0, 16);
    __builtin_memset(e->daddr, 0, 16);
    if (e->family == AF_INET6) {
        BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
        BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
    } else {
        BPF_CORE_READ_INTO((__u32 *)e->saddr, sk, __sk_common.skc_rcv_saddr);
        BPF_CORE_READ_INTO((__u32 *)e->daddr, sk, __sk_common.skc_daddr);
    }
    bpf_ringbuf_submit(e, 0);
    if (info)
        bpf_map_delete_elem(&na_socks, &cookie);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
    if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP || !in_our_netns(sk))
        return 0;
    if (newstate == ST_LISTEN) {
        struct na_listen_event *e = bpf_ringbuf_reserve(&na_events, sizeof(*e), 0);
        if (!e) {
            count(C_EVENTS_LOST);
            return 0;
        }
        e->kind = EV_LISTEN;
        e->tgid = bpf_get_current_pid_tgid() >> 32;
        e->inode = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
        bpf_ringbuf_submit(e, 0);
        return 0;
    }
    if (oldstate == ST_LISTEN)
        return 0;
    __u64 cookie = bpf_get_socket_cookie(sk);
    if (newstate == ST_SYN_SENT)
        remember(cookie, 1, F_OUTBOUND);
    else if (newstate == ST_ESTABLISHED && oldstate == ST_SYN_RECV)
        remember(cookie, 0, F_INBOUND | F_ESTABLISHED);
    else if (newstate == ST_ESTABLISHED)
        remember(cookie, 0, F_ESTABLISHED);
    else if (newstate == ST_CLOSE)
        emit_close(sk, cookie, oldstate);
    return 0;
}

static __always_inline void claim(struct sock *sk)
{
    if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
        return;
    __u64 cookie = bpf_get_socket_cookie(sk);
    struct sock_info *info = bpf_map_lookup_elem(&na_socks, &cookie);
    if (info && !info->tgid) {
        info->tgid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(info->comm, sizeof(info->comm));
    }
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
    claim(sk);
    return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
    claim(sk);
    return 0;
}

static __always_inline void emit_proc(__u32 kind, __u32 tgid, __u32 pid)
{
    struct na_proc_event *e = bpf_ringbuf_reserve(&na_events, sizeof(*e), 0);
    if (!e) {
        count(C_EVENTS_LOST);
        return;
    }
    e->kind = kind;
    e->tgid = tgid;
    e->pid = pid;
    e->pad = 0;
    bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
    __u32 want = wanted_netns();
    if (want && BPF_CORE_READ(p, nsproxy, net_ns, ns.inum) != want)
        return 0;
    emit_proc(EV_EXEC, BPF_CORE_READ(p, tgid), BPF_CORE_READ(p, pid));
    return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
    __u32 pid = BPF_CORE_READ(p, pid), tgid = BPF_CORE_READ(p, tgid);
    if (pid == tgid)
        emit_proc(EV_EXIT, tgid, pid);
    return 0;
}
