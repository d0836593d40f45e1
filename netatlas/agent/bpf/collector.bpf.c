// SPDX-License-Identifier: GPL-2.0
// netatlas eBPF collector: the kernel half (libbpf CO-RE, tp_btf tracepoints only).
//
// What it does, per TCP socket of the agent's network namespace (na_config[0], 0 = every namespace):
//   CLOSE -> SYN_SENT        (connect(), process context)   remember the owner: the current tgid
//   SYN_RECV -> ESTABLISHED  (passive open, softirq)        remember it as inbound, owner unknown
//   SYN_SENT -> ESTABLISHED                                 mark it established
//   first send/recv in process context of an inbound one    its owner is the current tgid
//   every send/recv (sock_send_length / sock_recv_length)  request/response exchanges:
//                            an exchange is delimited by the change of direction of the data; its
//                            response time runs from the last byte of the request (out for an outbound
//                            socket, in for an inbound one) to the last byte of the response, and is
//                            counted when the next request starts or the socket closes
//   any -> CLOSE             the socket's payload bytes (tcp_sock's data bytes sent less those sent
//                            again, and received less the peer's FIN: no SYN, FIN or retransmission)
//                            and exchanges, then either
//                            - into its link's counters in na_links (in-kernel aggregation, when user
//                              space turned it on: na_config[CFG_AGGREGATE]) if no user-space dump can
//                              have seen the socket: it was made in the current dump generation
//                              (na_config[CFG_GEN], which user space moves on just before each dump,
//                              and leaves the sockets of the current generation out of the dump). A
//                              link is (minute, owner tgid, direction, local and remote address, the
//                              server's port); its counters are per CPU (no lock), summed by user space.
//                              So a host opening 1,000 short connections a second costs user space
//                              a few map entries a minute, not 1,000 events a second;
//                            - or a close event: owner, addresses, the same counters, rtt (a socket a
//                              dump saw, one made before the collector loaded, or a link that did not
//                              fit in na_links: never lost)
//   CLOSE -> LISTEN          (listen(), process context)    emit a listen event: owner and inode, so
//                            user space knows a new port is inbound before its first connection ends
// and, per process: exec (in the namespace) and exit of a thread-group leader as events.
// Sockets are keyed by the kernel's socket cookie, the same id sock_diag reports, so user space can
// join the `na_socks` map to its dumps. The minute of a link, and of the response-time min/max kept per
// socket, is the wall clock's: bpf_ktime_get_ns() plus the offset user space writes to na_config[CFG_CLOCK]
// (CLOCK_REALTIME - CLOCK_MONOTONIC), divided by 60 s, as user space cuts its one-minute windows. Build: scripts/build-bpf.sh (writes collector.bpf.o beside this).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define RCV_SHUTDOWN 1

enum { ST_ESTABLISHED = 1, ST_SYN_SENT = 2, ST_SYN_RECV = 3, ST_CLOSE = 7, ST_LISTEN = 10 };
enum { F_OUTBOUND = 1, F_INBOUND = 2, F_ESTABLISHED = 4 };
enum { EV_CLOSE = 1, EV_EXEC = 2, EV_EXIT = 3, EV_LISTEN = 4 };
enum { C_SOCKS_FULL = 0, C_EVENTS_LOST = 1, C_LINKS_FULL = 2, C_NCOUNTERS = 3 };
enum { CFG_NETNS = 0, CFG_CLOCK = 1, CFG_GEN = 2, CFG_AGGREGATE = 3, CFG_N = 4 };
enum { DIR_OUTBOUND = 1, DIR_INBOUND = 2 };

struct sock_info {                 // 72 bytes, mirrored by ebpf.py's SockInfo
    __u32 tgid;                 // 0: not known yet
    __u32 flags;                // F_*
    char comm[16];              // the owner's name, for an owner gone before user space reads /proc
    __u64 req_end_ns;           // the last byte of the current request (0: none yet)
    __u64 resp_end_ns;          // the last byte of its response so far (0: no response yet)
    __u64 rt_sum_us;            // response times of the exchanges completed, summed
    __u32 responses;            // exchanges completed
    __u32 rt_min_us;            // min and max over the exchanges completed in window rt_epoch
    __u32 rt_max_us;
    __u32 rt_epoch;             // the minute they belong to
    __u32 gen;                  // na_config[CFG_GEN] when the socket was made
    __u32 pad;
};

struct link_key {                  // 48 bytes, mirrored by ebpf.py's LINK_KEY
    __u32 minute;
    __u32 tgid;                 // 0: an accepted socket its process never read or wrote (its listener's)
    __u16 family;
    __u16 port;                 // the server's port (remote for outbound, local for inbound), host order
    __u8 direction;             // DIR_*
    __u8 pad[3];
    __u8 local[16];
    __u8 remote[16];
};

struct link_value {                // 64 bytes per CPU, mirrored by ebpf.py's LINK_VALUE
    __u64 sent;                 // payload bytes
    __u64 received;
    __u64 rt_sum_us;
    __u32 established;          // connections made and ended in the minute (each also terminated)
    __u32 failed;               // outbound connects that failed
    __u32 responses;
    __u32 rt_min_us;            // 0: none yet
    __u32 rt_max_us;
    __u32 pad;
    char comm[16];              // the owner's name, for an owner gone before user space reads /proc
};

struct na_close_event {            // EV_CLOSE; 128 bytes, layout mirrored by netatlas/agent/ebpf.py
    __u32 kind;
    __u32 tgid;
    __u64 cookie;
    __u64 bytes_acked;          // payload bytes sent: data bytes sent less retransmitted
    __u64 bytes_received;       // payload bytes received: data bytes received less the peer's FIN
    __u64 rt_sum_us;
    __u32 responses;
    __u32 rt_min_us;
    __u32 rt_max_us;
    __u32 rt_epoch;
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

struct na_proc_event {             // EV_EXIT; 16 bytes
    __u32 kind;
    __u32 tgid;
    __u32 pid;
    __u32 pad;
};

#define EXEC_PATH 256
#define EXEC_ARGS 512
struct na_exec_event {             // EV_EXEC; 784 bytes: the program and its arguments at exec time,
    __u32 kind;                    // so a process gone before user space reads /proc keeps its identity
    __u32 tgid;
    __u32 pid;
    __u32 args_len;             // bytes of args used (NUL-separated, as /proc/PID/cmdline)
    char path[EXEC_PATH];       // the file exec'd (bprm->filename)
    char args[EXEC_ARGS];
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
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 16384);        // links of the last minutes; user space sets it before loading
    __type(key, struct link_key);
    __type(value, struct link_value);
} na_links SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);      // ~10,000 close events: 10 s at 1,000 a second
} na_events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, CFG_N);        // CFG_*: the network namespace's inode (0: all), the clock offset
    __type(key, __u32);                // (ns), the dump generation, in-kernel aggregation on (1) or off
    __type(value, __u64);
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

static __always_inline __u64 setting(__u32 which)
{
    __u64 *v = bpf_map_lookup_elem(&na_config, &which);
    return v ? *v : 0;
}

static __always_inline __u32 wanted_netns(void)
{
    return setting(CFG_NETNS);
}

// the wall clock's minute (user space's one-minute windows)
static __always_inline __u32 current_epoch(void)
{
    return (bpf_ktime_get_ns() + setting(CFG_CLOCK)) / 60000000000ULL;
}

// an exchange ends: its response time into the socket's sums, min and max (of the current window)
static __always_inline void exchange_done(struct sock_info *info)
{
    if (!info->req_end_ns || !info->resp_end_ns || info->resp_end_ns < info->req_end_ns)
        return;
    __u32 us = (info->resp_end_ns - info->req_end_ns) / 1000;
    __u32 epoch = current_epoch();
    info->responses += 1;
    info->rt_sum_us += us;
    if (info->rt_epoch != epoch || info->rt_max_us == 0 && info->rt_min_us == 0) {
        info->rt_epoch = epoch;
        info->rt_min_us = info->rt_max_us = us ? us : 1;
    } else {
        if (us < info->rt_min_us)
            info->rt_min_us = us ? us : 1;
        if (us > info->rt_max_us)
            info->rt_max_us = us;
    }
    info->resp_end_ns = 0;
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
    struct sock_info fresh = { .flags = flags, .gen = setting(CFG_GEN) };
    if (current) {
        fresh.tgid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
    }
    if (bpf_map_update_elem(&na_socks, &cookie, &fresh, BPF_NOEXIST) && bpf_map_lookup_elem(&na_socks, &cookie) == 0)
        count(C_SOCKS_FULL);
}

// a socket no dump saw ends: into its link's counters (1), or 0 when it has to be a close event
static __always_inline int aggregate(struct sock *sk, struct sock_info *info, __u64 sent, __u64 received)
{
    if (!setting(CFG_AGGREGATE) || info->gen != (__u32)setting(CFG_GEN))
        return 0;
    struct link_key k = {};
    k.minute = current_epoch();
    k.tgid = info->tgid;
    k.family = BPF_CORE_READ(sk, __sk_common.skc_family);
    int inbound = (info->flags & F_INBOUND) != 0;
    k.direction = inbound ? DIR_INBOUND : DIR_OUTBOUND;
    k.port = inbound ? bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport))
                     : bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    if (k.family == AF_INET6) {
        BPF_CORE_READ_INTO(&k.local, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
        BPF_CORE_READ_INTO(&k.remote, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
    } else {
        BPF_CORE_READ_INTO((__u32 *)k.local, sk, __sk_common.skc_rcv_saddr);
        BPF_CORE_READ_INTO((__u32 *)k.remote, sk, __sk_common.skc_daddr);
    }
    struct link_value *v = bpf_map_lookup_elem(&na_links, &k);
    if (!v) {
        struct link_value fresh = {};
        __builtin_memcpy(fresh.comm, info->comm, 16);
        bpf_map_update_elem(&na_links, &k, &fresh, BPF_NOEXIST);
        v = bpf_map_lookup_elem(&na_links, &k);
        if (!v) {                             // full: this one goes as a close event
            count(C_LINKS_FULL);
            return 0;
        }
    }
    if (!inbound && !(info->flags & F_ESTABLISHED)) {
        v->failed += 1;
        return 1;
    }
    v->established += 1;
    v->sent += sent;
    v->received += received;
    if (info->responses) {
        __u32 lo = info->rt_min_us, hi = info->rt_max_us;
        if (info->rt_epoch != k.minute)       // its min/max are another minute's: the mean stands for them
            lo = hi = info->rt_sum_us / info->responses;
        v->responses += info->responses;
        v->rt_sum_us += info->rt_sum_us;
        if (!v->rt_min_us || lo < v->rt_min_us)
            v->rt_min_us = lo ? lo : 1;
        if (hi > v->rt_max_us)
            v->rt_max_us = hi;
    }
    return 1;
}

static __always_inline void on_close(struct sock *sk, __u64 cookie, int oldstate)
{
    struct sock_info *info = bpf_map_lookup_elem(&na_socks, &cookie);
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    // tcp_sock's data bytes (no SYN or FIN), retransmissions once; the peer's FIN is counted in
    // bytes_received (Linux >= 4.19 for bytes_sent / bytes_retrans, as CO-RE relocates them)
    int fin = (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_shutdown) & RCV_SHUTDOWN) != 0;
    __u64 sent = BPF_CORE_READ(tp, bytes_sent) - BPF_CORE_READ(tp, bytes_retrans);
    __u64 received = BPF_CORE_READ(tp, bytes_received);
    if (fin && received)
        received -= 1;
    if (info) {
        // data that arrived but was not read yet (the peer's FIN can end the socket before the
        // application reads the last response): the response of an outbound socket is in
        __u32 unread = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
        if (unread > (__u32)fin && unread < (1U << 30) && info->req_end_ns && !(info->flags & F_INBOUND))
            info->resp_end_ns = bpf_ktime_get_ns();
        exchange_done(info);                  // the response in progress ends with the socket
        if (aggregate(sk, info, sent, received)) {
            bpf_map_delete_elem(&na_socks, &cookie);
            return;
        }
    }
    struct na_close_event *e = bpf_ringbuf_reserve(&na_events, sizeof(*e), 0);
    if (!e) {
        count(C_EVENTS_LOST);
        if (info)
            bpf_map_delete_elem(&na_socks, &cookie);
        return;
    }
    e->kind = EV_CLOSE;
    e->tgid = info ? info->tgid : 0;
    e->flags = info ? info->flags : 0;
    __builtin_memset(e->comm, 0, 16);
    if (info)
        __builtin_memcpy(e->comm, info->comm, 16);
    e->cookie = cookie;
    e->bytes_acked = sent;
    e->bytes_received = received;
    if (info) {
        e->rt_sum_us = info->rt_sum_us;
        e->responses = info->responses;
        e->rt_min_us = info->rt_min_us;
        e->rt_max_us = info->rt_max_us;
        e->rt_epoch = info->rt_epoch;
    } else {                                  // open before we were loaded, or the map was full
        e->rt_sum_us = 0;
        e->responses = e->rt_min_us = e->rt_max_us = e->rt_epoch = 0;
    }
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
        on_close(sk, cookie, oldstate);
    return 0;
}

#define MSG_PEEK 2

// data moved by the application: its owner (the first one, for an accepted socket) and the
// exchanges (``out``: the application wrote, else it read)
static __always_inline void data(struct sock *sk, int ret, int out)
{
    if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
        return;
    __u64 cookie = bpf_get_socket_cookie(sk);
    struct sock_info *info = bpf_map_lookup_elem(&na_socks, &cookie);
    if (!info)
        return;
    if (!info->tgid) {
        info->tgid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(info->comm, sizeof(info->comm));
    }
    if (ret <= 0)
        return;
    __u64 now = bpf_ktime_get_ns();
    // the request goes out from an outbound socket, comes in to an inbound one
    int request = (info->flags & F_INBOUND) ? !out : out;
    if (request) {
        if (info->resp_end_ns)
            exchange_done(info);              // the direction turned: the last exchange is over
        info->req_end_ns = now;
    } else if (info->req_end_ns) {
        info->resp_end_ns = now;
    }
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
    if (flags & MSG_PEEK)
        ret = 0;                              // a peek reads nothing away
    data(sk, ret, 0);
    return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
    data(sk, ret, 1);
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
    struct na_exec_event *e = bpf_ringbuf_reserve(&na_events, sizeof(*e), 0);
    if (!e) {
        count(C_EVENTS_LOST);
        return 0;
    }
    e->kind = EV_EXEC;
    e->tgid = BPF_CORE_READ(p, tgid);
    e->pid = BPF_CORE_READ(p, pid);
    e->args_len = 0;
    e->path[0] = 0;
    bpf_probe_read_kernel_str(e->path, sizeof(e->path), BPF_CORE_READ(bprm, filename));
    // the new program's arguments, just written to its stack by execve (current is the new task)
    unsigned long start = BPF_CORE_READ(p, mm, arg_start), end = BPF_CORE_READ(p, mm, arg_end);
    unsigned long len = end > start ? end - start : 0;
    if (len > EXEC_ARGS)
        len = EXEC_ARGS;
    if (len && bpf_probe_read_user(e->args, len & (EXEC_ARGS - 1) ? len & (EXEC_ARGS - 1) : EXEC_ARGS,
                                   (const void *)start) == 0)
        e->args_len = len;
    bpf_ringbuf_submit(e, 0);
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
