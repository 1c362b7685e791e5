/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Cursor parsers shared by xdp_sensor and tc_sensor. Each parse_* checks its own bounds against
 * the end of the frame before reading, fills its part of the record and moves the cursor past its
 * header. A problem stops the walk with a status naming the layer; the record keeps what was
 * read before it. sensor/parse.go is the Go twin of this file: change both together. */
#ifndef CHAINS_PARSE_H
#define CHAINS_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include "record.h"

#define VLAN_MAX 2    /* VLAN tags walked (802.1Q, 802.1ad) */
#define IPV6_EXT_MAX 8 /* IPv6 extension headers walked */

#define ETH_P_8021AD_ 0x88A8
#define ETH_P_PPP_SES_ 0x8864
#define PPP_IP 0x0021
#define PPP_IPV6 0x0057

#define IPPROTO_ICMPV6_ 58

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_ESP 50
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60

/* The walk over one frame. data..end is what the program may read directly. Positions that
 * are only compared, never dereferenced, are kept as offsets from data: comparing them as packet
 * pointers against end would make the verifier forget the bounds already proven for pos. */
struct cursor {
	void *data;
	void *pos;
	void *end;
	__u32 len;    /* the whole packet: headers must lie before end, the payload before len
		       * (tc_sensor copies it with bpf_skb_load_bytes, past the linear part) */
	__u32 ip_end; /* offset of the declared end of the IP packet (may lie past len) */
};

static __always_inline __u32 cur_off(struct cursor *c)
{
	return c->pos - c->data;
}

/* What the emitter needs beyond the record: how many payload bytes to copy at most. */
struct walk_result {
	__u32 payload_avail; /* payload bytes present in the frame (min(declared, captured)) */
	__u8 large;          /* payload looks like DNS, a TLS handshake or an HTTP head */
};

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

/* The payload starts at c->pos and runs to min(declared end, end of frame); offsets. */
static __always_inline void set_payload(struct cursor *c, struct record *r,
					struct walk_result *w, __u32 declared_end)
{
	__u32 pos = cur_off(c);
	__u32 stop = declared_end;

	r->payload_off = pos;
	if (stop < pos)
		return;
	r->payload_len = stop - pos;
	if (stop > c->len)
		stop = c->len;
	if (stop > pos)
		w->payload_avail = stop - pos;
}

/* Every way through the IPv6 extension headers leaves pos with other verifier bounds, and the
 * transport parser would be verified once for each of them. Rebuild pos from an opaque offset
 * so that they all look alike and the verifier prunes. The offset is below 32 KiB (eight
 * extension headers of at most 2 KiB each); the mask only shows that to the verifier. */
static __always_inline void forget_pos(struct cursor *c)
{
	__u32 off = cur_off(c);

	asm volatile("" : "+r"(off));
	off &= 0x7fff;
	c->pos = c->data + off;
}

static __always_inline int is_dns_port(__u16 port)
{
	return port == 53 || port == 5353 || port == 5355;
}

/* A TLS handshake record (content type 22, major version 3) or an HTTP method or status line. */
static __always_inline int payload_is_large(struct cursor *c)
{
	__u8 *b = c->pos;
	__u32 w;

	if (c->pos + 4 > c->end)
		return 0;
	if (b[0] == 0x16 && b[1] == 0x03)
		return 1;
	w = load_be32(b);
	switch (w) {
	case 0x47455420: /* "GET " */
	case 0x504f5354: /* "POST" */
	case 0x48454144: /* "HEAD" */
	case 0x50555420: /* "PUT " */
	case 0x44454c45: /* "DELE"TE */
	case 0x4f505449: /* "OPTI"ONS */
	case 0x50415443: /* "PATC"H */
	case 0x434f4e4e: /* "CONN"ECT */
	case 0x54524143: /* "TRAC"E */
	case 0x48545450: /* "HTTP"/1.1 200 */
		return 1;
	}
	return 0;
}

static __always_inline void parse_tcp(struct cursor *c, struct record *r, struct walk_result *w)
{
	__u8 *h = c->pos;
	__u32 hlen;

	if (c->pos + 20 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_TCP);
		return;
	}
	r->sport = load_be16(h);
	r->dport = load_be16(h + 2);
	r->seq = load_be32(h + 4);
	r->ack = load_be32(h + 8);
	r->tcp_flags = h[13];
	r->window = load_be16(h + 14);
	hlen = (h[12] >> 4) * 4;
	r->l4_hdr_len = hlen;
	if (hlen < 20) {
		fail(r, STATUS_MALFORMED, LAYER_TCP);
		return;
	}
	if (c->pos + hlen > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_TCP);
		return;
	}
	if (cur_off(c) + hlen > c->ip_end) {
		fail(r, STATUS_MALFORMED, LAYER_TCP);
		return;
	}
	c->pos += hlen;
	set_payload(c, r, w, c->ip_end);
	w->large = is_dns_port(r->sport) || is_dns_port(r->dport) || payload_is_large(c);
}

static __always_inline void parse_udp(struct cursor *c, struct record *r, struct walk_result *w)
{
	__u8 *h = c->pos;
	__u16 len;

	if (c->pos + 8 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_UDP);
		return;
	}
	r->sport = load_be16(h);
	r->dport = load_be16(h + 2);
	len = load_be16(h + 4);
	r->udp_len = len;
	r->l4_hdr_len = 8;
	if (len < 8) {
		fail(r, STATUS_MALFORMED, LAYER_UDP);
		return;
	}
	if (cur_off(c) + len > c->ip_end) {
		/* UDP claims more than IP carries: the payload is what IP carries. */
		fail(r, STATUS_MALFORMED, LAYER_UDP);
		c->pos += 8;
		set_payload(c, r, w, c->ip_end);
	} else {
		c->pos += 8;
		set_payload(c, r, w, cur_off(c) - 8 + len);
	}
	w->large = is_dns_port(r->sport) || is_dns_port(r->dport);
}

static __always_inline void parse_icmp(struct cursor *c, struct record *r, struct walk_result *w,
				       __u8 layer)
{
	__u8 *h = c->pos;
	__u8 type;

	if (c->pos + 2 > c->end) {
		fail(r, STATUS_TRUNCATED, layer);
		return;
	}
	type = h[0];
	r->icmp_type = type;
	r->icmp_code = h[1];
	if (c->pos + 8 > c->end) {
		fail(r, STATUS_TRUNCATED, layer);
		return;
	}
	r->l4_hdr_len = 8;
	if ((layer == LAYER_ICMP && (type == 0 || type == 8)) ||
	    (layer == LAYER_ICMP6 && (type == 128 || type == 129))) {
		r->icmp_id = load_be16(h + 4);
		r->icmp_seq = load_be16(h + 6);
	}
	c->pos += 8;
	set_payload(c, r, w, c->ip_end);
}

/* Transport, for the first fragment (or an unfragmented packet) only. */
static __always_inline void parse_l4(struct cursor *c, struct record *r, struct walk_result *w)
{
	switch (r->l4_proto) {
	case IPPROTO_TCP:
		parse_tcp(c, r, w);
		break;
	case IPPROTO_UDP:
		parse_udp(c, r, w);
		break;
	case IPPROTO_ICMP:
		if (r->ip_version == 4)
			parse_icmp(c, r, w, LAYER_ICMP);
		else
			set_payload(c, r, w, c->ip_end);
		break;
	case IPPROTO_ICMPV6_:
		if (r->ip_version == 6)
			parse_icmp(c, r, w, LAYER_ICMP6);
		else
			set_payload(c, r, w, c->ip_end);
		break;
	default:
		set_payload(c, r, w, c->ip_end);
	}
}

static __always_inline void parse_ipv4(struct cursor *c, struct record *r, struct walk_result *w)
{
	__u8 *h = c->pos;
	__u32 hlen;
	__u16 frag;

	if (c->pos + 20 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_IP4);
		return;
	}
	r->ip_version = h[0] >> 4;
	if (r->ip_version != 4) {
		fail(r, STATUS_MALFORMED, LAYER_IP4);
		return;
	}
	r->tos = h[1];
	r->ip_len = load_be16(h + 2);
	r->ip_id = load_be16(h + 4);
	frag = load_be16(h + 6);
	r->frag_off = frag & 0x1fff;
	if (frag & 0x4000)
		r->ip_flags |= IPF_DF;
	if (frag & 0x2000)
		r->ip_flags |= IPF_MF;
	if (frag & 0x3fff)
		r->ip_flags |= IPF_FRAGMENT;
	r->ttl = h[8];
	r->l4_proto = h[9];
	copy4(r->src_addr, h + 12);
	copy4(r->dst_addr, h + 16);

	hlen = (h[0] & 0x0f) * 4;
	if (hlen < 20 || r->ip_len < hlen) {
		fail(r, STATUS_MALFORMED, LAYER_IP4);
		return;
	}
	if (c->pos + hlen > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_IP4);
		return;
	}
	c->ip_end = cur_off(c) + r->ip_len;
	if (c->ip_end > c->len)
		fail(r, STATUS_TRUNCATED, LAYER_IP4);
	c->pos += hlen;
	if (r->frag_off)
		set_payload(c, r, w, c->ip_end);
	else
		parse_l4(c, r, w);
}

static __always_inline int is_ext_header(__u8 next)
{
	return next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_FRAGMENT ||
	       next == NEXTHDR_DEST || next == NEXTHDR_AUTH;
}

static __always_inline void parse_ipv6(struct cursor *c, struct record *r, struct walk_result *w)
{
	__u8 *h = c->pos;
	__u8 next;
	int i;

	if (c->pos + 40 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_IP6);
		return;
	}
	r->ip_version = h[0] >> 4;
	if (r->ip_version != 6) {
		fail(r, STATUS_MALFORMED, LAYER_IP6);
		return;
	}
	r->tos = (load_be16(h) >> 4) & 0xff;
	r->flow_label = load_be32(h) & 0xfffff;
	r->ip_len = load_be16(h + 4);
	next = h[6];
	r->l4_proto = next;
	r->ttl = h[7];
	copy16(r->src_addr, h + 8);
	copy16(r->dst_addr, h + 24);
	if (r->ip_len == 0) {
		/* Jumbograms are not parsed: a zero payload length is an error here. */
		fail(r, STATUS_MALFORMED, LAYER_IP6);
		return;
	}
	c->pos += 40;
	c->ip_end = cur_off(c) + r->ip_len;
	if (c->ip_end > c->len)
		fail(r, STATUS_TRUNCATED, LAYER_IP6);

	for (i = 0; i < IPV6_EXT_MAX && is_ext_header(next); i++) {
		__u8 *e = c->pos;
		__u32 elen;

		if (c->pos + 8 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_IP6_EXT);
			return;
		}
		switch (next) {
		case NEXTHDR_HOP:
			r->ext_mask |= EXT_HOP;
			elen = (e[1] + 1) * 8;
			break;
		case NEXTHDR_ROUTING:
			r->ext_mask |= EXT_ROUTING;
			elen = (e[1] + 1) * 8;
			break;
		case NEXTHDR_DEST:
			r->ext_mask |= EXT_DSTOPTS;
			elen = (e[1] + 1) * 8;
			break;
		case NEXTHDR_AUTH:
			r->ext_mask |= EXT_AH;
			elen = (e[1] + 2) * 4;
			break;
		default: /* NEXTHDR_FRAGMENT */
			r->ext_mask |= EXT_FRAGMENT;
			elen = 8;
			r->frag_off = load_be16(e + 2) >> 3;
			if (e[3] & 1)
				r->ip_flags |= IPF_MF;
			if (r->frag_off || (e[3] & 1))
				r->ip_flags |= IPF_FRAGMENT;
			r->ip_id = load_be32(e + 4);
			break;
		}
		/* The three ways of computing elen leave three verifier states per header, and
		 * 3^IPV6_EXT_MAX of them in all. Forget how elen was computed: every header length
		 * is a multiple of 4 below 4096, so the mask changes nothing and the states merge. */
		asm volatile("" : "+r"(elen));
		elen &= 0xffc;
		next = e[0];
		r->l4_proto = next;
		if (cur_off(c) + elen > c->ip_end) {
			fail(r, STATUS_MALFORMED, LAYER_IP6_EXT);
			return;
		}
		if (c->pos + elen > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_IP6_EXT);
			return;
		}
		c->pos += elen;
		if (r->frag_off) {
			/* A later fragment: what follows is the middle of the datagram. */
			set_payload(c, r, w, c->ip_end);
			return;
		}
	}
	if (is_ext_header(next)) {
		fail(r, STATUS_UNSUPPORTED, LAYER_IP6_EXT);
		return;
	}
	forget_pos(c);
	if (next == NEXTHDR_ESP) {
		/* Encrypted from here on: the ESP header and data are the payload. */
		r->ext_mask |= EXT_ESP;
		set_payload(c, r, w, c->ip_end);
		return;
	}
	parse_l4(c, r, w);
}

static __always_inline void parse_arp(struct cursor *c, struct record *r, struct walk_result *w)
{
	__u8 *h = c->pos;
	__u32 len;

	if (c->pos + 8 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_ARP);
		return;
	}
	r->arp_op = load_be16(h + 6);
	len = 8 + 2 * (h[4] + h[5]);
	/* The whole ARP message is the payload, whatever its address sizes. */
	set_payload(c, r, w, cur_off(c) + len);
	if (c->pos + len > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_ARP);
		return;
	}
	if (load_be16(h + 2) != ETH_P_IP || h[4] != 6 || h[5] != 4) {
		fail(r, STATUS_UNSUPPORTED, LAYER_ARP);
		return;
	}
	if (c->pos + 28 > c->end) /* the same bound as len, in a form the verifier can use */
		return;
	copy4(r->src_addr, h + 14);
	copy4(r->dst_addr, h + 24);
}

/* Walk one Ethernet frame into r. r must be zeroed. */
static __always_inline void parse_frame(struct cursor *c, struct record *r, struct walk_result *w)
{
	__u8 *h = c->pos;
	__u16 proto;
	int i;

	if (c->pos + ETH_HLEN > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_ETH);
		return;
	}
	copy4(r->dst_mac, h); /* dst_mac is 8-aligned, src_mac 2-aligned */
	copy2(r->dst_mac + 4, h + 4);
	copy2(r->src_mac, h + 6);
	copy2(r->src_mac + 2, h + 8);
	copy2(r->src_mac + 4, h + 10);
	proto = load_be16(h + 12);
	c->pos += ETH_HLEN;

	for (i = 0; i < VLAN_MAX; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD_)
			break;
		h = c->pos;
		if (c->pos + 4 > c->end) {
			r->eth_proto = proto;
			fail(r, STATUS_TRUNCATED, LAYER_VLAN);
			return;
		}
		r->vlan_tci[i] = load_be16(h);
		r->vlan_count++;
		proto = load_be16(h + 2);
		c->pos += 4;
	}
	r->eth_proto = proto;
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD_) {
		fail(r, STATUS_UNSUPPORTED, LAYER_VLAN);
		return;
	}
	if (proto == ETH_P_PPP_SES_) {
		h = c->pos;
		if (c->pos + 8 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_PPPOE);
			return;
		}
		switch (load_be16(h + 6)) {
		case PPP_IP:
			proto = ETH_P_IP;
			break;
		case PPP_IPV6:
			proto = ETH_P_IPV6;
			break;
		default:
			/* Discovery-like or LCP traffic inside the session: record the session frame. */
			c->pos += 6;
			set_payload(c, r, w, c->len);
			return;
		}
		c->pos += 8;
		r->eth_proto = proto;
	}

	switch (proto) {
	case ETH_P_IP:
		parse_ipv4(c, r, w);
		break;
	case ETH_P_IPV6:
		parse_ipv6(c, r, w);
		break;
	case ETH_P_ARP:
		parse_arp(c, r, w);
		break;
	default:
		set_payload(c, r, w, c->len);
	}
}

#endif
