/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The parser shared by xdp_sensor and tc_sensor. Each parse_* checks its own bounds against the
 * end of the frame before reading, fills its part of the record and moves the cursor past its
 * header. A problem stops the walk with a status naming the layer; the record keeps what was
 * read before it. sensor/parse*.go is the Go twin of these files: change both together.
 *
 * The walk goes level by level: a link header (parse_link.h), an IP header (parse_ip.h), a
 * transport header (parse_l4.h), and, when that leads to a tunnel (parse_tunnel.h), the same
 * again for the packet inside. The outer packet is parsed inline; every step after it is a
 * global function, so that the verifier checks it once however many levels deep it runs and
 * however many ways lead to it. */
#ifndef CHAINS_PARSE_H
#define CHAINS_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include "record.h"
#include "config.h"

#define VLAN_MAX 4     /* VLAN tags walked (802.1Q, 802.1ad) */
#define IPV6_EXT_MAX 8 /* IPv6 extension headers walked */
#define TUNNEL_MAX 3   /* tunnels entered, one inside another */
#define GTP_EXT_MAX 4  /* GTP-U extension headers walked */
/* Steps of the walk after the outer packet's IP header: its IPv6 extension headers, its
 * tunnel, and for each tunnel's packet a link, an IP (two when the tunnel says only "IP"),
 * IPv6 extension headers and a tunnel header. */
#define TUNNEL_STEPS (2 + 5 * TUNNEL_MAX)
/* A tunnel's headers are parsed only below this offset (the bound lets the verifier add
 * offsets to packet pointers); a header beyond it is reported truncated. The outer packet's
 * headers always lie below it. */
#define OFF_MAX 0x7fff

#define ETH_P_8021AD_ 0x88A8
#define ETH_P_PPP_SES_ 0x8864
#define ETH_P_PPP_ 0x880B /* PPP frames: GRE (PPTP), and the capture link types PPP and PPP_HDLC */
#define ETH_P_TEB_ 0x6558 /* transparent Ethernet bridging */
#define ETH_P_ERSPAN_ 0x88BE
#define ETH_P_ERSPAN3_ 0x22EB
#define ETH_MIN_TYPE 0x0600 /* below: an 802.3 length */
#define PPP_IP 0x0021
#define PPP_IPV6 0x0057

#define IPPROTO_ICMPV6_ 58
#define IPPROTO_IPIP_ 4
#define IPPROTO_IPV6_ 41
#define IPPROTO_GRE_ 47
#define IPPROTO_AH_ 51

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_ESP 50
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60

/* What the next step of the walk parses. */
enum next_step {
	NEXT_DONE = 0,
	NEXT_ETH, /* an Ethernet header */
	NEXT_IP,  /* an IP header of either version (its first nibble says which) */
	NEXT_IP4,
	NEXT_IP6,
	NEXT_IP6_EXT, /* IPv6 extension headers, r->l4_proto the first */
	NEXT_L4,     /* the transport header of r->l4_proto */
	NEXT_TUNNEL, /* the tunnel the transport header leads to (r->l4_proto, r->dport) */
};

/* The walk's state between steps, on sense()'s stack. Positions are offsets from the start of
 * the frame: only offsets can cross into a global function. */
struct walk {
	__u32 off;           /* where the next step's header starts */
	__u32 len;           /* where this level's bytes end: the packet, or the tunnel's payload */
	__u32 ip_end;        /* declared end of the current IP packet (may lie past len) */
	__u32 payload_avail; /* payload bytes present (min(declared, len)) */
	__u32 l4_end;        /* declared end of a UDP tunnel's payload */
	__u8 next;           /* enum next_step */
	__u8 large;          /* payload looks like DNS, a TLS handshake, an HTTP head or a QUIC Initial */
	__u8 jumbo;          /* the IPv6 payload length is a jumbogram's */
	__u8 msg;            /* enum msg_kind: what the TCP payload starts */
};

/* What the payload after a whole TCP header starts (struct walk's msg), for bpf/follow.h. */
enum msg_kind {
	MSG_NONE = 0, /* no whole TCP header: the payload, if any, is not TCP's */
	MSG_DATA,     /* TCP payload that starts none of the below */
	MSG_TLS,      /* a TLS handshake or change_cipher_spec record */
	MSG_HTTP_REQ, /* an HTTP request head */
	MSG_HTTP_RESP,
};

/* One step's view of the frame: data..end is what the program may read directly. Positions
 * that are only compared, never dereferenced, are offsets: comparing them as packet pointers
 * against end would make the verifier forget the bounds already proven for pos. */
struct cursor {
	void *data;
	void *pos;
	void *end;
};

static __always_inline __u32 cur_off(struct cursor *c)
{
	return c->pos - c->data;
}

static __always_inline void fail(struct record *r, __u8 status, __u8 layer)
{
	if (r->status == STATUS_OK) {
		r->status = status;
		r->bad_layer = layer;
	}
}

/* Copies from the packet in words: packet loads may be unaligned (the verifier allows it unless
 * strict alignment is asked for), and __builtin_memcpy from a byte pointer copies byte by byte.
 * The destinations in struct record are aligned for the widths used. */
static __always_inline void copy2(void *dst, const void *src)
{
	*(__u16 *)dst = *(const __u16 *)src;
}

static __always_inline void copy4(void *dst, const void *src)
{
	*(__u32 *)dst = *(const __u32 *)src;
}

static __always_inline void copy16(void *dst, const void *src)
{
	copy4(dst, src);
	copy4(dst + 4, src + 4);
	copy4(dst + 8, src + 8);
	copy4(dst + 12, src + 12);
}

static __always_inline __u16 load_be16(const void *p)
{
	return bpf_ntohs(*(const __u16 *)p);
}

static __always_inline __u32 load_be32(const void *p)
{
	return bpf_ntohl(*(const __u32 *)p);
}

/* a + b, or the largest offset when that overflows (a jumbogram's declared end). */
static __always_inline __u32 add_sat(__u32 a, __u32 b)
{
	__u32 s = a + b;

	return s < a ? 0xffffffff : s;
}

/* The payload starts at c->pos and runs to min(declared end, end of this level); offsets. */
static __always_inline void set_payload(struct cursor *c, struct record *r, struct walk *w,
					__u32 declared_end)
{
	__u32 pos = cur_off(c);
	__u32 stop = declared_end;

	r->payload_off = pos;
	if (stop < pos)
		return;
	r->payload_len = stop - pos;
	if (stop > w->len)
		stop = w->len;
	if (stop > pos)
		w->payload_avail = stop - pos;
}

/* Stop the walk here: the rest of this level is the payload. */
static __always_inline void stop_here(struct cursor *c, struct record *r, struct walk *w,
				      __u32 declared_end)
{
	set_payload(c, r, w, declared_end);
	w->next = NEXT_DONE;
}

/* Continue the walk with step next at the cursor. */
static __always_inline void go_on(struct cursor *c, struct walk *w, __u8 next)
{
	w->off = cur_off(c);
	w->next = next;
}

#include "parse_link.h"
#include "parse_ip.h"
#include "parse_l4.h"
#include "parse_tunnel.h"

/* Where a transport header cut off by OFF_MAX went wrong. */
static __always_inline __u8 l4_layer(struct record *r)
{
	switch (r->l4_proto) {
	case IPPROTO_TCP:
		return LAYER_TCP;
	case IPPROTO_UDP:
		return LAYER_UDP;
	}
	return r->ip_version == 6 ? LAYER_IP6 : LAYER_IP4;
}

/* Forget how the cursor got where it is: every way through the link layer (tags, LLC, PPPoE)
 * and the IPv6 extension headers leaves pos with other verifier bounds, and what follows
 * would be verified once for each of them. Rebuilt from an opaque offset they look alike, and
 * the verifier prunes. A header past OFF_MAX ends the walk, truncated at layer (the outer
 * packet's headers always lie below). */
static __always_inline int forget_pos(struct cursor *c, struct record *r, struct walk *w,
				      __u32 off, __u8 layer)
{
	if (off > OFF_MAX) {
		fail(r, STATUS_TRUNCATED, layer);
		w->next = NEXT_DONE;
		return -1;
	}
	asm volatile("" : "+r"(off));
	off &= OFF_MAX;
	c->pos = c->data + off;
	return 0;
}

static __always_inline void cursor_init(struct cursor *c, void *ctx, int xdp)
{
	if (xdp) {
		c->data = (void *)(long)((struct xdp_md *)ctx)->data;
		c->end = (void *)(long)((struct xdp_md *)ctx)->data_end;
	} else {
		c->data = (void *)(long)((struct __sk_buff *)ctx)->data;
		c->end = (void *)(long)((struct __sk_buff *)ctx)->data_end;
	}
	c->pos = c->data;
}

/* An IP header and the transport header after it. */
static __always_inline void parse_ip4_l4(struct cursor *c, struct record *r, struct walk *w,
					 struct record_ext *x)
{
	parse_ipv4(c, r, w);
	if (w->next == NEXT_L4 && forget_pos(c, r, w, cur_off(c), l4_layer(r)) == 0)
		parse_l4(c, r, w);
}

static __always_inline void parse_ip6_l4(struct cursor *c, struct record *r, struct walk *w,
					 struct record_ext *x)
{
	parse_ipv6(c, r, w);
	if (w->next == NEXT_L4 && forget_pos(c, r, w, cur_off(c), l4_layer(r)) == 0)
		parse_l4(c, r, w);
}

static __always_inline void parse_ip6ext_l4(struct cursor *c, struct record *r, struct walk *w,
					    struct record_ext *x)
{
	parse_ipv6_ext(c, r, w);
	if (w->next == NEXT_L4 && forget_pos(c, r, w, cur_off(c), l4_layer(r)) == 0)
		parse_l4(c, r, w);
}

/* The steps after the outer packet's link and IP headers, as global functions of each
 * program (the context's type differs): the verifier checks each once. They return 0; a NULL
 * argument (which the verifier must assume possible) does nothing. */
#define STEP(NAME, CTX, XDP, LAYER, BODY)                                                   \
	__attribute__((noinline)) int NAME(CTX *ctx, struct record *r, struct walk *w,      \
					   struct record_ext *x)                            \
	{                                                                                   \
		struct cursor c;                                                            \
		if (!r || !w || !x)                                                         \
			return 0;                                                           \
		cursor_init(&c, ctx, XDP);                                                  \
		if (forget_pos(&c, r, w, w->off, LAYER) == 0)                               \
			BODY(&c, r, w, x);                                                  \
		return 0;                                                                   \
	}

STEP(step_link_xdp, struct xdp_md, 1, LAYER_ETH, parse_link)
STEP(step_ip4_xdp, struct xdp_md, 1, LAYER_IP4, parse_ip4_l4)
STEP(step_ip6_xdp, struct xdp_md, 1, LAYER_IP6, parse_ip6_l4)
STEP(step_ip6ext_xdp, struct xdp_md, 1, LAYER_IP6_EXT, parse_ip6ext_l4)
STEP(step_tunnel_xdp, struct xdp_md, 1, LAYER_TUNNEL, parse_tunnel)
STEP(step_link_tc, struct __sk_buff, 0, LAYER_ETH, parse_link)
STEP(step_ip4_tc, struct __sk_buff, 0, LAYER_IP4, parse_ip4_l4)
STEP(step_ip6_tc, struct __sk_buff, 0, LAYER_IP6, parse_ip6_l4)
STEP(step_ip6ext_tc, struct __sk_buff, 0, LAYER_IP6_EXT, parse_ip6ext_l4)
STEP(step_tunnel_tc, struct __sk_buff, 0, LAYER_TUNNEL, parse_tunnel)

/* Walk one frame into r, which must be zeroed, and x, its extension, which need not be (it is
 * cleared before use); w->len is the packet's length. The outer
 * packet's link, IP and transport headers are parsed inline, so that most packets cost no
 * call; IPv6 extension headers (whose walk costs the verifier most) and whatever a tunnel
 * carries are walked one step at a time. */
static __always_inline void walk(void *ctx, int xdp, struct record *r, struct walk *w,
				 struct record_ext *x)
{
	struct cursor c;
	int i;

	cursor_init(&c, ctx, xdp);
	parse_link(&c, r, w, x);
	if (w->next == NEXT_IP4 && forget_pos(&c, r, w, cur_off(&c), LAYER_IP4) == 0)
		parse_ip4_l4(&c, r, w, x);
	else if (w->next == NEXT_IP6 && forget_pos(&c, r, w, cur_off(&c), LAYER_IP6) == 0)
		parse_ip6_l4(&c, r, w, x);
	/* x is cleared only now, for a packet that goes on (the steps may fill it), unless a
	 * third tag did it: most packets never pay for it. */
	if (w->next != NEXT_DONE && r->vlan_count <= 2)
		__builtin_memset(x, 0, sizeof(*x));
	for (i = 0; i < TUNNEL_STEPS; i++) {
		switch (w->next) {
		case NEXT_ETH:
			if (xdp)
				step_link_xdp(ctx, r, w, x);
			else
				step_link_tc(ctx, r, w, x);
			break;
		case NEXT_IP:
		case NEXT_IP4:
			if (xdp)
				step_ip4_xdp(ctx, r, w, x);
			else
				step_ip4_tc(ctx, r, w, x);
			break;
		case NEXT_IP6:
			if (xdp)
				step_ip6_xdp(ctx, r, w, x);
			else
				step_ip6_tc(ctx, r, w, x);
			break;
		case NEXT_IP6_EXT:
			if (xdp)
				step_ip6ext_xdp(ctx, r, w, x);
			else
				step_ip6ext_tc(ctx, r, w, x);
			break;
		case NEXT_TUNNEL:
			if (xdp)
				step_tunnel_xdp(ctx, r, w, x);
			else
				step_tunnel_tc(ctx, r, w, x);
			break;
		default:
			return;
		}
	}
}

#endif
