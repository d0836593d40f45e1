// SPDX-License-Identifier: GPL-2.0
// netatlas UDP flows: the kernel half (libbpf CO-RE; tp_btf tracepoints and cgroup sock_addr hooks).
//
// A flow is one 5-tuple seen from this host (local address/port, remote address/port, UDP) in one
// minute of the wall clock (bpf_ktime_get_ns() plus the offset user space writes to
// na_udp_config[CFG_CLOCK], divided by 60 s: user space's one-minute windows). Flows are kept in
// na_udp_flows keyed by 5-tuple and minute (a hash map whose size is the agent's cap on the flows of
// two minutes; a datagram of a flow that does not fit is counted in na_udp_counters[C_FLOWS_FULL]);
// user space deletes the minutes before the last one. Per datagram:
//   cgroup/sendmsg4|6, cgroup/recvmsg4|6   (unconnected sendto / recvfrom, process context) remember
//                                          the peer's address for the current thread (na_udp_peer)
//   tp_btf/sock_send_length, sock_recv_length (after the datagram went / came, same thread) count it
//                                          into its flow and its link; the peer is the remembered
//                                          one, or the socket's own for a connected socket
// A flow is inbound (its socket is a server's) when the socket bound its port itself
// (SOCK_BINDPORT_LOCK), or is unconnected and the flow began with a datagram in (a server bound to
// port 0, as tests do); any other flow is outbound (the socket sent first, from an ephemeral port).
// A flow that had datagrams in the previous minute continues (same owner and direction); any other
// is new. A request is a datagram from the side that starts (out for outbound, in for inbound); the
// first answer after it is a response, its time the time since the first unanswered request.
// What user space reads is na_udp_links, per minute and link (owner tgid, direction, the socket's
// bound address, the remote address, the server's port), per CPU (no lock): flows active in the
// minute (live) and new in it, payload bytes, datagrams, responses and their times. So 500 new flows
// a second cost user space a few entries a minute. Only sockets of one network namespace are counted
// (na_udp_config[CFG_NETNS], 0 = every namespace). UDP sockets that bind a port (cgroup/post_bind4|6)
// are kept in na_udp_bound until released (cgroup/sock_release): the UDP listeners.
// Build: scripts/build-bpf.sh (udp.bpf.o beside this).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_UDP 17
#define MSG_PEEK 2
#define MSG_ERRQUEUE 0x2000
#define SOCK_BINDPORT_LOCK 4

enum { F_BOUND = 1 };
enum { C_FLOWS_FULL = 0, C_NO_PEER = 1, C_LINKS_FULL = 2, C_NCOUNTERS = 3 };
enum { CFG_NETNS = 0, CFG_CLOCK = 1, CFG_N = 2 };
enum { DIR_OUTBOUND = 1, DIR_INBOUND = 2 };

struct flow_key {                  // 44 bytes, mirrored by netatlas/agent/udp.py
    __u8 laddr[16];
    __u8 raddr[16];
    __u16 lport;                   // host order
    __u16 rport;                   // host order
    __u16 family;
    __u16 pad;
    __u32 minute;
};

struct flow {                      // 16 bytes
    __u32 tgid;                    // the process that sent or received first
    __u32 flags;                   // F_*
    __u64 pending_ns;              // first unanswered request, 0 if none
};

struct link_key {                  // 48 bytes, mirrored by netatlas/agent/udp.py
    __u32 minute;
    __u32 tgid;
    __u16 family;
    __u16 port;                    // the server's: remote for outbound, local for inbound; host order
    __u8 direction;                // DIR_*
    __u8 pad[3];
    __u8 bind[16];                 // the local socket's own address (a wildcard when unbound)
    __u8 remote[16];
};

struct link_value {                // 72 bytes per CPU
    __u64 sent;                    // payload bytes
    __u64 received;
    __u64 rt_sum_us;
    __u32 flows_new;               // flows that began in the minute
    __u32 flows_live;              // flows with a datagram in the minute
    __u32 dgrams_out;
    __u32 dgrams_in;
    __u32 responses;
    __u32 rt_min_us;               // 0: none yet
    __u32 rt_max_us;
    __u32 pad;
    char comm[16];                 // the owner's name, for an owner gone before user space reads /proc
};

struct peer {                      // an unconnected send/receive's other end, for one thread
    __u64 cookie;
    __u8 addr[16];
    __u16 port;                    // host order
    __u16 family;
    __u32 pad;
};

struct udp_listener {                  // a UDP socket that bound a port itself (bind()); 40 bytes
    __u32 tgid;
    __u16 family;
    __u16 port;                    // host order
    __u8 addr[16];
    char comm[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);            // socket cookie
    __type(value, struct udp_listener);
} na_udp_bound SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);          // the netns cookie of the observed namespace (0: every namespace)
} na_udp_netns_cookie SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);    // the cap: user space sets it before loading
    __type(key, struct flow_key);
    __type(value, struct flow);
} na_udp_flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 8192);     // links of the last minutes; user space sets it before loading
    __type(key, struct link_key);
    __type(value, struct link_value);
} na_udp_links SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);            // pid_tgid
    __type(value, struct peer);
} na_udp_peer SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, CFG_N);
    __type(key, __u32);
    __type(value, __u64);          // CFG_*: the network namespace's inode (0: all), the clock offset (ns)
} na_udp_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, C_NCOUNTERS);
    __type(key, __u32);
    __type(value, __u64);
} na_udp_counters SEC(".maps");

static __always_inline void count(__u32 which)
{
    __u64 *c = bpf_map_lookup_elem(&na_udp_counters, &which);
    if (c)
        *c += 1;
}

static __always_inline __u64 setting(__u32 which)
{
    __u64 *v = bpf_map_lookup_elem(&na_udp_config, &which);
    return v ? *v : 0;
}

// ---- cgroup hooks: the peer of an unconnected datagram ------------------------------------------
static __always_inline void remember_peer(struct bpf_sock_addr *ctx, int v6)
{
    if (ctx->protocol != IPPROTO_UDP)
        return;
    struct peer p = {};
    p.cookie = bpf_get_socket_cookie(ctx);
    p.port = bpf_ntohs((__u16)ctx->user_port);
    if (v6) {
        p.family = AF_INET6;
        __u32 *a = (__u32 *)p.addr;
        a[0] = ctx->user_ip6[0];
        a[1] = ctx->user_ip6[1];
        a[2] = ctx->user_ip6[2];
        a[3] = ctx->user_ip6[3];
    } else {
        p.family = AF_INET;
        *(__u32 *)p.addr = ctx->user_ip4;
    }
    __u64 id = bpf_get_current_pid_tgid();
    bpf_map_update_elem(&na_udp_peer, &id, &p, BPF_ANY);
}

SEC("cgroup/sendmsg4")
int on_sendmsg4(struct bpf_sock_addr *ctx) { remember_peer(ctx, 0); return 1; }

SEC("cgroup/sendmsg6")
int on_sendmsg6(struct bpf_sock_addr *ctx) { remember_peer(ctx, 1); return 1; }

SEC("cgroup/recvmsg4")
int on_recvmsg4(struct bpf_sock_addr *ctx) { remember_peer(ctx, 0); return 1; }

SEC("cgroup/recvmsg6")
int on_recvmsg6(struct bpf_sock_addr *ctx) { remember_peer(ctx, 1); return 1; }

// ---- cgroup sock hooks: UDP sockets that bound a port (the listeners), until they are released ----
static __always_inline int wanted_sock(struct bpf_sock *ctx)
{
    if (ctx->protocol != IPPROTO_UDP)
        return 0;
    __u32 zero = 0;
    __u64 *want = bpf_map_lookup_elem(&na_udp_netns_cookie, &zero);
    return !want || !*want || bpf_get_netns_cookie(ctx) == *want;
}

static __always_inline void bound(struct bpf_sock *ctx, int v6)
{
    if (!wanted_sock(ctx))
        return;
    struct udp_listener l = {};
    l.tgid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(l.comm, sizeof(l.comm));
    l.port = ctx->src_port;
    if (v6) {
        l.family = AF_INET6;
        __u32 *a = (__u32 *)l.addr;
        a[0] = ctx->src_ip6[0];
        a[1] = ctx->src_ip6[1];
        a[2] = ctx->src_ip6[2];
        a[3] = ctx->src_ip6[3];
    } else {
        l.family = AF_INET;
        *(__u32 *)l.addr = ctx->src_ip4;
    }
    __u64 cookie = bpf_get_socket_cookie(ctx);
    bpf_map_update_elem(&na_udp_bound, &cookie, &l, BPF_ANY);
}

SEC("cgroup/post_bind4")
int on_bind4(struct bpf_sock *ctx) { bound(ctx, 0); return 1; }

SEC("cgroup/post_bind6")
int on_bind6(struct bpf_sock *ctx) { bound(ctx, 1); return 1; }

SEC("cgroup/sock_release")
int on_release(struct bpf_sock *ctx)
{
    if (ctx->protocol == IPPROTO_UDP) {
        __u64 cookie = bpf_get_socket_cookie(ctx);
        bpf_map_delete_elem(&na_udp_bound, &cookie);
    }
    return 1;
}

// ---- tracepoints: one datagram ---------------------------------------------------------------------
static __always_inline void datagram(struct sock *sk, int ret, int out)
{
    if (ret < 0 || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP)
        return;
    __u32 want = setting(CFG_NETNS);
    if (want && BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != want)
        return;
    __u64 id = bpf_get_current_pid_tgid();
    __u64 cookie = bpf_get_socket_cookie(sk);
    struct flow_key key = {};
    key.family = BPF_CORE_READ(sk, __sk_common.skc_family);
    key.lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
    if (key.family == AF_INET6)
        BPF_CORE_READ_INTO(&key.laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
    else
        BPF_CORE_READ_INTO((__u32 *)key.laddr, sk, __sk_common.skc_rcv_saddr);
    struct peer *p = bpf_map_lookup_elem(&na_udp_peer, &id);
    int unconnected = p && p->cookie == cookie;
    if (unconnected) {        // an unconnected datagram: its peer from the cgroup hook
        if (p->family == AF_INET && key.family == AF_INET6) {   // IPv4 peer of an IPv6 socket: mapped
            __builtin_memset(key.raddr, 0, 16);
            key.raddr[10] = 0xff;
            key.raddr[11] = 0xff;
            __builtin_memcpy(key.raddr + 12, p->addr, 4);
        } else {
            __builtin_memcpy(key.raddr, p->addr, 16);
        }
        key.rport = p->port;
        bpf_map_delete_elem(&na_udp_peer, &id);
    } else {                               // a connected socket: its peer is the socket's
        key.rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
        if (!key.rport) {
            count(C_NO_PEER);
            return;
        }
        if (key.family == AF_INET6)
            BPF_CORE_READ_INTO(&key.raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
        else
            BPF_CORE_READ_INTO((__u32 *)key.raddr, sk, __sk_common.skc_daddr);
    }
    __u64 now = bpf_ktime_get_ns();
    key.minute = (now + setting(CFG_CLOCK)) / 60000000000ULL;
    int created = 0, fresh_flow = 0;
    struct flow *f = bpf_map_lookup_elem(&na_udp_flows, &key);
    if (!f) {
        struct flow fresh = {};
        struct flow_key before = key;
        before.minute -= 1;
        struct flow *prev = bpf_map_lookup_elem(&na_udp_flows, &before);
        if (prev) {                        // it had datagrams in the previous minute: it continues
            fresh.tgid = prev->tgid;
            fresh.flags = prev->flags;
            fresh.pending_ns = prev->pending_ns;
        } else {
            fresh.tgid = id >> 32;
            // a server: its port bound by itself, or an unconnected socket whose flow began with a datagram in
            if ((BPF_CORE_READ(sk, sk_userlocks) & SOCK_BINDPORT_LOCK) || (unconnected && !out))
                fresh.flags = F_BOUND;
            fresh_flow = 1;
        }
        if (bpf_map_update_elem(&na_udp_flows, &key, &fresh, BPF_NOEXIST) == 0)
            created = 1;                   // else another CPU made it meanwhile, or the map is full
        f = bpf_map_lookup_elem(&na_udp_flows, &key);
        if (!f) {
            count(C_FLOWS_FULL);
            return;
        }
    }
    struct link_key lk = {};
    lk.minute = key.minute;
    lk.tgid = f->tgid;
    lk.family = key.family;
    int inbound = (f->flags & F_BOUND) != 0;
    lk.direction = inbound ? DIR_INBOUND : DIR_OUTBOUND;
    lk.port = inbound ? key.lport : key.rport;
    __builtin_memcpy(lk.bind, key.laddr, 16);
    __builtin_memcpy(lk.remote, key.raddr, 16);
    struct link_value *v = bpf_map_lookup_elem(&na_udp_links, &lk);
    if (!v) {
        struct link_value zero = {};
        bpf_get_current_comm(zero.comm, sizeof(zero.comm));
        bpf_map_update_elem(&na_udp_links, &lk, &zero, BPF_NOEXIST);
        v = bpf_map_lookup_elem(&na_udp_links, &lk);
        if (!v) {
            count(C_LINKS_FULL);
            return;
        }
    }
    if (created) {
        v->flows_live += 1;
        if (fresh_flow)
            v->flows_new += 1;
    }
    int request = inbound ? !out : out;
    if (out) {
        v->sent += ret;
        v->dgrams_out += 1;
    } else {
        v->received += ret;
        v->dgrams_in += 1;
    }
    if (request) {
        if (!f->pending_ns)
            f->pending_ns = now;
    } else if (f->pending_ns) {
        __u32 us = (now - f->pending_ns) / 1000;
        f->pending_ns = 0;
        v->responses += 1;
        v->rt_sum_us += us;
        if (!v->rt_min_us || us < v->rt_min_us)
            v->rt_min_us = us ? us : 1;
        if (us > v->rt_max_us)
            v->rt_max_us = us;
    }
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_udp_send, struct sock *sk, int ret, int flags)
{
    datagram(sk, ret, 1);
    return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_udp_recv, struct sock *sk, int ret, int flags)
{
    if (!(flags & (MSG_PEEK | MSG_ERRQUEUE)))     // a peek is read again; the error queue is no datagram
        datagram(sk, ret, 0);
    return 0;
}
