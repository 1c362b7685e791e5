/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Which process: the owner of the local socket a packet leaves from or arrives at.
 *
 * Hooks on the sockets themselves (their entry points are in sensor.c) learn who owns each
 * socket of the sensor's network namespace, in the context of the process that creates,
 * binds, connects, sends on or receives from it:
 *   cgroup/sock_create, cgroup/post_bind4/6, cgroup/connect4/6, cgroup/sendmsg4/6 (attached to
 *   the cgroup v2 root, so every socket passes them), and the tracepoints sock_send_length and
 *   sock_recv_length (every send and receive: how a socket accepted from a listener, or opened
 *   before the sensor started, gets its owner: the first process to use it; a bound UDP one,
 *   a server's, also its port);
 * and forget it when it closes: cgroup/sock_release, and for TCP the state change to
 * TCP_CLOSE (tracepoint inet_sock_set_state), which comes after the last FIN and ACK.
 *
 * owner_sock maps the socket cookie to its owner: tc_sensor has the skb's socket and looks it
 * up. xdp_sensor has no socket: owner_flow maps a flow's 5-tuple (as on the wire) to the
 * socket cookie, learned by tc_sensor from the socket's outgoing packets and by the send and
 * receive hooks from a connected socket's addresses; owner_bound maps a bound UDP port (and
 * address) to its socket, for datagrams from peers the socket has not sent to yet. An ingress
 * packet is named only when its flow or port leads to a socket still open.
 *
 * Not named ("no process"): forwarded traffic and the kernel's own packets (no local socket);
 * an inbound connection's packets until a process first reads from or writes to the accepted
 * socket (its handshake and first data: the listener's owner is not the accepting process);
 * a socket opened before the sensor started until its process next reads from or writes to it;
 * ingress to a UDP port two sockets share (SO_REUSEPORT) or to a dual-stack IPv6 socket from
 * IPv4 before it answered; later IP fragments and ICMP other than echo replies on ingress;
 * sockets of other network namespaces (a container's own), and sockets evicted from a full
 * table. Every table is an LRU hash; the counters say what was added and removed, and so
 * what the LRU evicted. */
#ifndef CHAINS_OWNER_H
#define CHAINS_OWNER_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "record.h"
#include "maps.h"
#include "filter.h"

#define AF_INET_ 2
#define AF_INET6_ 10
#define TCP_CLOSE_ 7
#define PF_KTHREAD_ 0x00200000
#define IPPROTO_ICMPV6__ 58

/* Set from Go before load (spec.Variables["owner_cfg"]). */
struct owner_config {
	__u8 on;           /* the hooks are attached: name the owner of each packet */
	__u8 filter;       /* --pid, --comm or --cgroup: only packets of a matching owner pass */
	__u8 cgroup_level; /* cgroup_id's depth below the cgroup v2 root (the root is 0) */
	__u8 pad;
	__u32 pid;         /* --pid: its thread group id, 0 for any */
	__u64 netns;       /* cookie of the sensor's network namespace: others' sockets are not kept */
	__u64 cgroup_id;   /* --cgroup: the cgroup v2 id of PATH (it or a cgroup below it), 0 any */
	char comm[16];     /* --comm: the command name, "" for any */
};

volatile const struct owner_config owner_cfg = {};

/* A flow as the wire shows it, seen from the local end. */
struct owner_flow_key {
	__u8 local[16];  /* IPv4 in the first 4 bytes */
	__u8 remote[16];
	__u16 lport;     /* TCP, UDP; ICMP and ICMPv6 echo: the identifier */
	__u16 rport;     /* ICMP: 0 */
	__u8 proto;
	__u8 version;    /* 4 or 6; 0: no flow */
	__u16 pad;
};

/* A bound UDP socket: the address it was bound to (zero: any) and its port. */
struct owner_bound_key {
	__u8 addr[16];
	__u16 port;
	__u8 proto;
	__u8 version; /* 0: none */
};

/* owner_sock's value. */
struct sock_owner {
	struct record_owner o;
	struct owner_flow_key flow;   /* the flow last learned for the socket, deleted with it */
	struct owner_bound_key bound; /* its owner_bound entry, released with it */
	__u8 match;                   /* o passes the --pid/--comm/--cgroup filter */
	__u8 pad[3];
};

/* owner_bound's value: the socket bound there, 0 while more than one is (n). */
struct owner_bound {
	__u64 cookie;
	__u32 n;
	__u32 pad;
};

/* The sizes are defaults; sensor.Load sets them (--max-sockets, --max-owner-flows). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* socket cookie */
	__type(value, struct sock_owner);
} owner_sock SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct owner_flow_key);
	__type(value, __u64); /* socket cookie */
} owner_flow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct owner_bound_key);
	__type(value, struct owner_bound);
} owner_bound SEC(".maps");

/* Minimal kernel types for the tracepoints, relocated against the kernel's BTF (CO-RE). */
struct net___owner {
	__u64 net_cookie;
} __attribute__((preserve_access_index));

struct in6_addr___owner {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

struct sock_common___owner {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct {
		struct net___owner *net;
	} skc_net;
	struct in6_addr___owner skc_v6_daddr;
	struct in6_addr___owner skc_v6_rcv_saddr;
	struct {
		__s64 counter;
	} skc_cookie;
} __attribute__((preserve_access_index));

struct sock___owner {
	struct sock_common___owner __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct task_struct___owner {
	unsigned int flags;
	struct task_struct___owner *group_leader;
	char comm[16];
} __attribute__((preserve_access_index));

static __always_inline int comm_eq(const char *a, const volatile char *b)
{
	return *(const __u64 *)a == *(const volatile __u64 *)b &&
	       *(const __u64 *)(a + 8) == *(const volatile __u64 *)(b + 8);
}

/* The current process as an owner, and whether it passes the owner filter. The command name
 * is the process's (its thread group leader's), not the thread's: dig sends from a thread
 * named isc-net-0000. */
static __always_inline __u8 owner_current(struct record_owner *o)
{
	struct task_struct___owner *task = (struct task_struct___owner *)bpf_get_current_task();
	struct task_struct___owner *leader = BPF_CORE_READ(task, group_leader);

	o->pid = bpf_get_current_pid_tgid() >> 32;
	o->uid = (__u32)bpf_get_current_uid_gid();
	o->cgroup_id = bpf_get_current_cgroup_id();
	if (!leader || bpf_core_read_str(o->comm, sizeof(o->comm), &leader->comm) < 0)
		bpf_get_current_comm(o->comm, sizeof(o->comm));
	if (!owner_cfg.filter)
		return 1;
	if (owner_cfg.pid && o->pid != owner_cfg.pid)
		return 0;
	if (owner_cfg.comm[0] && !comm_eq(o->comm, owner_cfg.comm))
		return 0;
	if (owner_cfg.cgroup_id &&
	    bpf_get_current_ancestor_cgroup_id(owner_cfg.cgroup_level) != owner_cfg.cgroup_id)
		return 0;
	return 1;
}

/* The socket's entry, made for the current process when it has none yet. */
static __always_inline struct sock_owner *owner_add(__u64 cookie)
{
	struct sock_owner *v, n = {};

	if (!cookie)
		return 0;
	v = bpf_map_lookup_elem(&owner_sock, &cookie);
	if (v)
		return v;
	n.match = owner_current(&n.o);
	if (bpf_map_update_elem(&owner_sock, &cookie, &n, BPF_NOEXIST) == 0)
		count(CNT_OWNER_SOCK_ADDED);
	return bpf_map_lookup_elem(&owner_sock, &cookie);
}

static __always_inline int flow_eq(const struct owner_flow_key *a, const struct owner_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

/* Point flow k at the socket, unless it is the flow learned last for it. */
static __always_inline void owner_learn(struct sock_owner *v, __u64 cookie, struct owner_flow_key *k)
{
	__u64 *c;

	if (flow_eq(&v->flow, k))
		return;
	c = bpf_map_lookup_elem(&owner_flow, k);
	if (c)
		*c = cookie;
	else if (bpf_map_update_elem(&owner_flow, k, &cookie, BPF_NOEXIST) == 0)
		count(CNT_OWNER_FLOW_ADDED);
	v->flow = *k;
}

/* Delete the socket's entry, its last flow and its bound port. */
static __always_inline void owner_forget(__u64 cookie)
{
	struct sock_owner *v;
	struct owner_bound *b;
	__u64 *c;

	if (!cookie)
		return;
	v = bpf_map_lookup_elem(&owner_sock, &cookie);
	if (!v)
		return;
	if (v->flow.version) {
		c = bpf_map_lookup_elem(&owner_flow, &v->flow);
		if (c && *c == cookie && bpf_map_delete_elem(&owner_flow, &v->flow) == 0)
			count(CNT_OWNER_FLOW_REMOVED);
	}
	if (v->bound.version) {
		b = bpf_map_lookup_elem(&owner_bound, &v->bound);
		if (b && b->n > 1)
			__sync_fetch_and_add(&b->n, -1);
		else if (b && bpf_map_delete_elem(&owner_bound, &v->bound) == 0)
			count(CNT_OWNER_BOUND_REMOVED);
	}
	if (bpf_map_delete_elem(&owner_sock, &cookie) == 0)
		count(CNT_OWNER_SOCK_REMOVED);
}

/* Hook bodies (the SEC programs in sensor.c call them). */

/* cgroup/sock_create, cgroup/connect4/6, cgroup/sendmsg4/6. */
static __always_inline void owner_hook_sock(void *ctx)
{
	if (bpf_get_netns_cookie(ctx) == owner_cfg.netns)
		owner_add(bpf_get_socket_cookie(ctx));
}

/* Note socket v's bound UDP address and port k in owner_bound (once per socket). */
static __always_inline void owner_bind(struct sock_owner *v, __u64 cookie, struct owner_bound_key *k)
{
	struct owner_bound *b, n = { .n = 1 };

	if (v->bound.version)
		return;
	b = bpf_map_lookup_elem(&owner_bound, k);
	if (b) {
		if (b->cookie && !bpf_map_lookup_elem(&owner_sock, &b->cookie)) {
			b->cookie = cookie; /* the socket before it is gone */
			b->n = 1;
		} else {
			b->cookie = 0; /* two live sockets on one port: which gets a datagram is not known */
			__sync_fetch_and_add(&b->n, 1);
		}
	} else {
		n.cookie = cookie;
		if (bpf_map_update_elem(&owner_bound, k, &n, BPF_NOEXIST) == 0)
			count(CNT_OWNER_BOUND_ADDED);
	}
	v->bound = *k;
}

/* cgroup/post_bind4/6: a UDP socket bound to a port receives from peers it never sent to. */
static __always_inline void owner_hook_bind(struct bpf_sock *sk, int v6)
{
	struct owner_bound_key k = {};
	struct sock_owner *v;
	__u64 cookie;

	if (bpf_get_netns_cookie(sk) != owner_cfg.netns)
		return;
	cookie = bpf_get_socket_cookie(sk);
	v = owner_add(cookie);
	if (!v || sk->protocol != IPPROTO_UDP || v->bound.version || !sk->src_port)
		return;
	if (v6) {
		/* The context's fields are read a word at a time. */
		((__u32 *)k.addr)[0] = sk->src_ip6[0];
		((__u32 *)k.addr)[1] = sk->src_ip6[1];
		((__u32 *)k.addr)[2] = sk->src_ip6[2];
		((__u32 *)k.addr)[3] = sk->src_ip6[3];
		k.version = 6;
	} else {
		*(__u32 *)k.addr = sk->src_ip4;
		k.version = 4;
	}
	k.port = sk->src_port;
	k.proto = IPPROTO_UDP;
	owner_bind(v, cookie, &k);
}

/* cgroup/sock_release: a TCP socket that is not closed yet goes at TCP_CLOSE (its FIN and the
 * peer's last ACK are still to come), every other socket now. */
static __always_inline void owner_hook_release(struct bpf_sock *sk)
{
	if (sk->protocol == IPPROTO_TCP && sk->state != TCP_CLOSE_)
		return;
	owner_forget(bpf_get_socket_cookie(sk));
}

/* tp_btf/inet_sock_set_state: a TCP socket reaching TCP_CLOSE. */
static __always_inline void owner_hook_state(struct sock___owner *sk, int newstate)
{
	if (newstate == TCP_CLOSE_)
		owner_forget(sk->__sk_common.skc_cookie.counter);
}

/* The bound address and port of UDP socket sk (the I/O hooks' view of it) for owner_bind. */
static __always_inline void owner_bind_io(struct sock_owner *v, __u64 cookie, struct sock___owner *sk, __u16 family)
{
	struct owner_bound_key b = {};

	if (family == AF_INET6_) {
		bpf_probe_read_kernel(b.addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		b.version = 6;
	} else {
		*(__u32 *)b.addr = sk->__sk_common.skc_rcv_saddr;
		b.version = 4;
	}
	b.port = sk->__sk_common.skc_num; /* host order, as the records' ports */
	b.proto = IPPROTO_UDP;
	owner_bind(v, cookie, &b);
}

/* tp_btf/sock_send_length and sock_recv_length: a socket without an owner yet gets the
 * process that uses it (an accepted connection, a socket older than the sensor), and a
 * connected one its flow. */
static __always_inline void owner_hook_io(struct sock___owner *sk)
{
	struct task_struct___owner *task;
	struct owner_flow_key k = {};
	struct sock_owner *v;
	__u16 family;
	__u64 cookie;

	family = sk->__sk_common.skc_family;
	if (family != AF_INET_ && family != AF_INET6_)
		return;
	if (sk->__sk_common.skc_net.net->net_cookie != owner_cfg.netns)
		return;
	task = (struct task_struct___owner *)bpf_get_current_task_btf();
	if (task->flags & PF_KTHREAD_)
		return; /* a kernel socket */
	cookie = bpf_get_socket_cookie(sk);
	if (!cookie || bpf_map_lookup_elem(&owner_sock, &cookie))
		return;
	v = owner_add(cookie);
	if (!v)
		return;
	if (!sk->__sk_common.skc_dport) {
		/* Not connected: its flows are learned as it sends; a bound UDP socket older than the
		 * sensor (a server's) also receives from peers it never sent to: its port, as at
		 * post_bind. */
		if (sk->sk_protocol == IPPROTO_UDP && sk->__sk_common.skc_num)
			owner_bind_io(v, cookie, sk, family);
		return;
	}
	k.proto = sk->sk_protocol;
	if (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP)
		return;
	k.lport = sk->__sk_common.skc_num;
	k.rport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET6_) {
		bpf_probe_read_kernel(k.local, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(k.remote, 16, &sk->__sk_common.skc_v6_daddr);
		k.version = 6;
		/* A dual-stack socket talking IPv4 (::ffff:a.b.c.d): the wire shows IPv4. */
		if (((__u64 *)k.remote)[0] != 0 || ((__u32 *)k.remote)[2] != bpf_htonl(0xffff))
			goto learn;
		__builtin_memset(&k, 0, 32);
	}
	*(__u32 *)k.local = sk->__sk_common.skc_rcv_saddr;
	*(__u32 *)k.remote = sk->__sk_common.skc_daddr;
	k.version = 4;
learn:
	owner_learn(v, cookie, &k);
}

/* The flow of record r seen from the local end (the destination on ingress, the source on
 * egress); 0 when it has none: not IP, no ports (a later fragment, a header cut short), ICMP
 * other than echo (ingress: the reply; egress: the request). */
static __always_inline int owner_flow_of(struct record *r, struct owner_flow_key *k, int out)
{
	__u8 t = r->icmp_type;

	if (r->ip_version != 4 && r->ip_version != 6)
		return 0;
	switch (r->l4_proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		if (!r->l4_hdr_len)
			return 0;
		k->lport = out ? r->sport : r->dport;
		k->rport = out ? r->dport : r->sport;
		break;
	case IPPROTO_ICMP:
		if (!r->l4_hdr_len || t != (out ? 8 : 0))
			return 0;
		k->lport = r->sport;
		break;
	case IPPROTO_ICMPV6__:
		if (!r->l4_hdr_len || t != (out ? 128 : 129))
			return 0;
		k->lport = r->sport;
		break;
	default:
		return 0;
	}
	__builtin_memcpy(k->local, out ? r->src_addr : r->dst_addr, 16);
	__builtin_memcpy(k->remote, out ? r->dst_addr : r->src_addr, 16);
	k->proto = r->l4_proto;
	k->version = r->ip_version;
	return 1;
}

/* Name v's owner in the record: 1 when it passes the owner filter, else 2. */
static __always_inline int owner_take(struct record *r, struct record_owner *o, struct sock_owner *v)
{
	*o = v->o;
	r->dir |= DIRF_OWNER;
	return v->match ? 1 : 2;
}

/* xdp_sensor: the owner of the ingress packet r (0: none). Global: verified once. */
__attribute__((noinline)) int owner_in(struct record *r, struct record_owner *o)
{
	struct owner_bound_key b = {};
	struct owner_flow_key k = {};
	struct owner_bound *e;
	struct sock_owner *v;
	__u64 *c;

	if (!r || !o || !owner_flow_of(r, &k, 0))
		return 0;
	c = bpf_map_lookup_elem(&owner_flow, &k);
	if (c) {
		v = bpf_map_lookup_elem(&owner_sock, c);
		if (v)
			return owner_take(r, o, v);
		count(CNT_OWNER_STALE);
	}
	if (k.proto != IPPROTO_UDP)
		return 0;
	__builtin_memcpy(b.addr, k.local, 16);
	b.port = k.lport;
	b.proto = IPPROTO_UDP;
	b.version = k.version;
	e = bpf_map_lookup_elem(&owner_bound, &b);
	if (!e) {
		__builtin_memset(b.addr, 0, 16);
		e = bpf_map_lookup_elem(&owner_bound, &b);
	}
	if (!e)
		return 0;
	if (!e->cookie) {
		count(CNT_OWNER_AMBIGUOUS);
		return 0;
	}
	v = bpf_map_lookup_elem(&owner_sock, &e->cookie);
	if (v)
		return owner_take(r, o, v);
	count(CNT_OWNER_STALE);
	return 0;
}

/* tc_sensor: the owner of the skb's socket (0: none), and the flow learned for ingress. */
__attribute__((noinline)) int owner_out(struct __sk_buff *skb, struct record *r, struct record_owner *o)
{
	struct owner_flow_key k = {};
	struct sock_owner *v;
	__u64 cookie;

	if (!skb || !r || !o)
		return 0;
	cookie = bpf_get_socket_cookie(skb);
	if (!cookie)
		return 0;
	v = bpf_map_lookup_elem(&owner_sock, &cookie);
	if (!v)
		return 0;
	if (owner_flow_of(r, &k, 1))
		owner_learn(v, cookie, &k);
	return owner_take(r, o, v);
}

/* After the walk: name the owner (when attribution is on), and apply the owner filter. A
 * packet it rejects is counted as filtered out, as the filter expression's are. */
static __always_inline int owner_pass(void *ctx, int xdp, struct record *r, struct record_owner *o)
{
	int ret;

	if (!owner_cfg.on)
		return 1;
	ret = xdp ? owner_in(r, o) : owner_out(ctx, r, o);
	if (!owner_cfg.filter || ret == 1)
		return 1;
	count(xdp ? CNT_XDP_FILTERED : CNT_TC_FILTERED);
	count_filtered(r->ifindex);
	return 0;
}

#endif
