/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Tunnels: entering one, and the headers of GRE (with ERSPAN and PPTP), VXLAN, Geneve and GTP-U.
 * IP in IP has no header of its own. Part of parse.h; sensor/parse_tunnel.go is its Go twin.
 * Each parse_* returns 0 when it entered the tunnel and -1 when not: the walk then ends with the
 * tunnel as the outer packet's payload. */
#ifndef CHAINS_PARSE_TUNNEL_H
#define CHAINS_PARSE_TUNNEL_H

#define NET_BLOCK_OFF __builtin_offsetof(struct record, ip_version)
#define NET_BLOCK_LEN (sizeof(struct record) - NET_BLOCK_OFF)

#define GRE_CSUM 0x8000
#define GRE_ROUTING 0x4000
#define GRE_KEY 0x2000
#define GRE_SEQ 0x1000
#define GRE_ACK 0x0080 /* enhanced GRE */
#define GRE_VERSION 0x0007

/* Enter a tunnel whose payload, a header of step next, starts at off and is declared to end at
 * end. The first tunnel's endpoints, type and id go into the record; the network block is
 * cleared for the inner packet, whose payload the record will carry. A tunnel inside
 * TUNNEL_MAX others is not entered: unsupported, -1. */
static __always_inline int enter(struct record *r, struct walk *w, struct record_ext *x,
				 __u8 type, __u8 flags, __u32 id, __u32 off, __u32 end, __u8 next)
{
	if (r->tun_depth >= TUNNEL_MAX) {
		fail(r, STATUS_UNSUPPORTED, LAYER_TUNNEL);
		return -1;
	}
	if (r->tun_depth == 0) {
		r->tun_type = type;
		x->tun_id = id;
		if (r->ip_version == 6) {
			flags |= TUNF_IP6;
			copy16(x->tun_src, r->src_addr);
			copy16(x->tun_dst, r->dst_addr);
		} else {
			copy4(x->tun_src, r->src_addr);
			copy4(x->tun_dst, r->dst_addr);
		}
		x->tun_flags = flags;
	}
	x->tun_inner = type;
	r->tun_depth++;
	__builtin_memset((void *)r + NET_BLOCK_OFF, 0, NET_BLOCK_LEN);
	if (next == NEXT_IP4)
		r->eth_proto = ETH_P_IP;
	else if (next == NEXT_IP6)
		r->eth_proto = ETH_P_IPV6;
	r->payload_len = 0; /* payload_off stays within the frame until the inner packet's is set */
	w->payload_avail = 0;
	w->large = 0;
	w->msg = MSG_NONE;
	w->jumbo = 0;
	w->ip_end = 0;
	if (end < w->len)
		w->len = end;
	w->off = off;
	w->next = next;
	return 0;
}

/* GRE (RFC 2784, 2890: checksum, key and sequence number each optional), enhanced GRE (PPTP,
 * RFC 2637) and ERSPAN types I, II and III inside GRE. */
static __always_inline int parse_gre(struct cursor *c, struct record *r, struct walk *w,
					struct record_ext *x)
{
	__u8 *h = c->pos, *p;
	__u16 flags, proto;
	__u32 id = 0, hlen;
	__u8 tflags = 0, type = TUN_GRE, next, ft;
	int ppp;

	if (c->pos + 4 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
		return -1;
	}
	flags = load_be16(h);
	proto = load_be16(h + 2);
	if ((flags & GRE_ROUTING) || (flags & GRE_VERSION) > 1)
		return -1; /* RFC 1701 source routes, unknown versions: not entered */
	p = c->pos + 4;
	if (flags & GRE_CSUM)
		p += 4; /* checksum and reserved */
	if (flags & GRE_KEY) {
		if ((void *)(p + 4) > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
			return -1;
		}
		id = load_be32(p);
		tflags |= TUNF_KEY;
		p += 4;
	}
	if (flags & GRE_SEQ) {
		tflags |= TUNF_SEQ;
		p += 4;
	}
	if (flags & GRE_VERSION) {
		/* PPTP: the key is the payload length and the call id; an ack number may follow. */
		if (proto != ETH_P_PPP_ || !(flags & GRE_KEY))
			return -1;
		if (flags & GRE_ACK)
			p += 4;
		id &= 0xffff;
		type = TUN_PPTP;
	}
	if ((void *)p > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
		return -1;
	}
	c->pos = p;
	h = c->pos;
	switch (proto) {
	case ETH_P_IP:
		next = NEXT_IP4;
		break;
	case ETH_P_IPV6:
		next = NEXT_IP6;
		break;
	case ETH_P_TEB_:
		next = NEXT_ETH;
		tflags |= TUNF_ETH;
		break;
	case ETH_P_ERSPAN_:
		next = NEXT_ETH;
		tflags |= TUNF_ETH;
		if (!(flags & GRE_SEQ)) {
			type = TUN_ERSPAN1; /* no ERSPAN header: the mirrored frame follows */
			break;
		}
		type = TUN_ERSPAN2;
		if (c->pos + 8 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
			return -1;
		}
		if ((h[0] >> 4) != 1) {
			fail(r, STATUS_MALFORMED, LAYER_TUNNEL);
			return -1;
		}
		id = load_be16(h + 2) & 0x3ff; /* session id */
		c->pos += 8;
		break;
	case ETH_P_ERSPAN3_:
		type = TUN_ERSPAN3;
		if (c->pos + 12 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
			return -1;
		}
		if ((h[0] >> 4) != 2) {
			fail(r, STATUS_MALFORMED, LAYER_TUNNEL);
			return -1;
		}
		id = load_be16(h + 2) & 0x3ff;
		ft = (h[10] >> 2) & 0x1f; /* frame type: 0 Ethernet, 2 IP */
		hlen = (h[11] & 1) ? 20 : 12; /* O: an 8-byte platform-specific subheader */
		if (ft == 0) {
			next = NEXT_ETH;
			tflags |= TUNF_ETH;
		} else if (ft == 2) {
			next = NEXT_IP;
		} else {
			return -1;
		}
		c->pos += hlen;
		break;
	case ETH_P_PPP_: /* PPTP */
		ppp = parse_ppp(c, r);
		if (ppp <= 0)
			return -1;
		next = ppp == ETH_P_IP ? NEXT_IP4 : NEXT_IP6;
		break;
	default:
		return -1;
	}
	return enter(r, w, x, type, tflags, id, cur_off(c), w->ip_end, next);
}

/* VXLAN (RFC 7348): 8 bytes, the VNI in the middle; an Ethernet frame follows. */
static __always_inline int parse_vxlan(struct cursor *c, struct record *r, struct walk *w, struct record_ext *x,
				       __u32 end)
{
	__u8 *h = c->pos;

	if (c->pos + 8 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
		return -1;
	}
	return enter(r, w, x, TUN_VXLAN, TUNF_ETH, load_be32(h + 4) >> 8, cur_off(c) + 8, end,
		     NEXT_ETH);
}

/* Geneve (RFC 8926): 8 bytes and options; the protocol type is an ethertype. */
static __always_inline int parse_geneve(struct cursor *c, struct record *r, struct walk *w, struct record_ext *x,
					__u32 end)
{
	__u8 *h = c->pos;
	__u32 hlen;
	__u8 next, flags = 0;

	if (c->pos + 8 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
		return -1;
	}
	if (h[0] >> 6) {
		fail(r, STATUS_MALFORMED, LAYER_TUNNEL); /* only version 0 exists */
		return -1;
	}
	hlen = 8 + (h[0] & 0x3f) * 4;
	if (cur_off(c) + hlen > end) {
		fail(r, STATUS_MALFORMED, LAYER_TUNNEL);
		return -1;
	}
	switch (load_be16(h + 2)) {
	case ETH_P_TEB_:
		next = NEXT_ETH;
		flags = TUNF_ETH;
		break;
	case ETH_P_IP:
		next = NEXT_IP4;
		break;
	case ETH_P_IPV6:
		next = NEXT_IP6;
		break;
	default:
		return -1;
	}
	return enter(r, w, x, TUN_GENEVE, flags, load_be32(h + 4) >> 8, cur_off(c) + hlen, end, next);
}

/* GTPv1-U: 8 bytes with the TEID; with any of E, S, PN set 4 more (sequence number, N-PDU
 * number, next extension type); then extension headers, each its length in 4-byte words
 * first and the next one's type last. Only a T-PDU (message type 255) carries a packet. */
static __always_inline int parse_gtpu(struct cursor *c, struct record *r, struct walk *w, struct record_ext *x,
				      __u32 end)
{
	__u8 *h = c->pos, *p, *q;
	__u32 gend, elen;
	__u8 nt = 0;
	int i;

	if (c->pos + 8 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
		return -1;
	}
	if ((h[0] >> 5) != 1 || !(h[0] & 0x10)) {
		fail(r, STATUS_MALFORMED, LAYER_TUNNEL); /* not version 1, or GTP' */
		return -1;
	}
	if (h[1] != 0xff)
		return -1; /* signalling: echo, error indication, end marker */
	gend = cur_off(c) + 8 + load_be16(h + 2);
	if (gend > end)
		gend = end; /* the inner packet will say it is cut short */
	p = c->pos + 8;
	if (h[0] & 0x07) {
		if (c->pos + 12 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
			return -1;
		}
		if (h[0] & 0x04)
			nt = h[11];
		p = c->pos + 12;
	}
	for (i = 0; i < GTP_EXT_MAX && nt; i++) {
		if ((void *)(p + 1) > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
			return -1;
		}
		elen = p[0] * 4;
		if (!elen) {
			fail(r, STATUS_MALFORMED, LAYER_TUNNEL);
			return -1;
		}
		/* A multiple of 4 from 4 to 1020: the mask changes nothing, the states merge. */
		asm volatile("" : "+r"(elen));
		elen &= 0x3fc;
		q = p + elen - 1;
		if ((void *)(q + 1) > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_TUNNEL);
			return -1;
		}
		nt = q[0];
		p += elen;
	}
	if (nt) {
		fail(r, STATUS_UNSUPPORTED, LAYER_TUNNEL);
		return -1;
	}
	c->pos = p;
	if (cur_off(c) >= gend) {
		if (cur_off(c) > gend)
			fail(r, STATUS_MALFORMED, LAYER_TUNNEL);
		return -1; /* no packet inside */
	}
	return enter(r, w, x, TUN_GTPU, 0, load_be32(h + 4), cur_off(c), gend, NEXT_IP);
}

/* A UDP tunnel, known by its destination port; its payload ends at end. */
static __always_inline int parse_udp_tunnel(struct cursor *c, struct record *r, struct walk *w, struct record_ext *x,
					    __u32 end)
{
	switch (r->dport) {
	case PORT_VXLAN:
	case PORT_VXLAN_LINUX:
		return parse_vxlan(c, r, w, x, end);
	case PORT_GENEVE:
		return parse_geneve(c, r, w, x, end);
	case PORT_GTPU:
		return parse_gtpu(c, r, w, x, end);
	}
	return -1;
}

/* The tunnel the transport step found at the cursor: enter it, or end the walk with it as the
 * payload (a UDP tunnel's payload is already set: the UDP payload). */
static __always_inline void parse_tunnel(struct cursor *c, struct record *r, struct walk *w,
					struct record_ext *x)
{
	void *start = c->pos;

	w->next = NEXT_DONE;
	switch (r->l4_proto) {
	case IPPROTO_UDP:
		parse_udp_tunnel(c, r, w, x, w->l4_end);
		return;
	case IPPROTO_IPIP_:
		if (enter(r, w, x, TUN_IPIP, 0, 0, cur_off(c), w->ip_end, NEXT_IP4) == 0)
			return;
		break;
	case IPPROTO_IPV6_:
		if (enter(r, w, x, TUN_IP6, 0, 0, cur_off(c), w->ip_end, NEXT_IP6) == 0)
			return;
		break;
	case IPPROTO_GRE_:
		if (parse_gre(c, r, w, x) == 0)
			return;
		c->pos = start;
		break;
	}
	stop_here(c, r, w, w->ip_end);
}

#endif
