/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4 (with AH) and IPv6 (with its extension headers and jumbograms). Part of parse.h;
 * sensor/parse_ip.go is its Go twin. */
#ifndef CHAINS_PARSE_IP_H
#define CHAINS_PARSE_IP_H

/* IPv4, and an AH header after it. The transport header is the next step, for the first
 * fragment (or an unfragmented packet) only. */
static __always_inline void parse_ipv4(struct cursor *c, struct record *r, struct walk *w)
{
	__u8 *h = c->pos;
	__u32 hlen, alen;
	__u16 frag;
	int either = w->next == NEXT_IP;

	w->next = NEXT_DONE;
	if (either) {
		/* A tunnel that says only "IP": the version nibble decides. */
		if (c->pos + 1 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_IP4);
			return;
		}
		if ((h[0] >> 4) == 6) {
			r->eth_proto = ETH_P_IPV6;
			go_on(c, w, NEXT_IP6);
			return;
		}
		r->eth_proto = ETH_P_IP;
	}
	if (c->pos + 20 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_IP4);
		return;
	}
	if ((h[0] >> 4) != 4) {
		fail(r, STATUS_MALFORMED, LAYER_IP4); /* ip_version stays 0: no IP header */
		return;
	}
	r->ip_version = 4;
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
	w->ip_end = cur_off(c) + r->ip_len;
	if (w->ip_end > w->len)
		fail(r, STATUS_TRUNCATED, LAYER_IP4);
	c->pos += hlen;
	if (r->frag_off) {
		/* A later fragment: what follows is the middle of the datagram. */
		stop_here(c, r, w, w->ip_end);
		return;
	}
	if (r->l4_proto == IPPROTO_AH_) {
		/* RFC 4302: the header's length is in 4-byte words, less 2. */
		h = c->pos;
		if (c->pos + 8 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_IP4);
			return;
		}
		r->ext_mask |= EXT_AH;
		r->l4_proto = h[0];
		alen = (h[1] + 2) * 4;
		if (cur_off(c) + alen > w->ip_end) {
			fail(r, STATUS_MALFORMED, LAYER_IP4);
			return;
		}
		if (c->pos + alen > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_IP4);
			return;
		}
		c->pos += alen;
	}
	go_on(c, w, NEXT_L4);
}

static __always_inline int is_ext_header(__u8 next)
{
	return next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_FRAGMENT ||
	       next == NEXTHDR_DEST || next == NEXTHDR_AUTH;
}

/* What follows the IPv6 header and its extension headers: ESP, or the transport header as
 * the next step. */
static __always_inline void ipv6_upper(struct cursor *c, struct record *r, struct walk *w,
				       __u8 next)
{
	if (next == NEXTHDR_ESP) {
		/* Encrypted from here on: the ESP header and data are the payload. */
		r->ext_mask |= EXT_ESP;
		stop_here(c, r, w, w->ip_end);
		return;
	}
	go_on(c, w, NEXT_L4);
}

/* The IPv6 header. Extension headers are the next step (their walk costs the verifier most:
 * a step is verified once, the outer packet's headers once for every way through the link
 * layer), else the transport header. */
static __always_inline void parse_ipv6(struct cursor *c, struct record *r, struct walk *w)
{
	__u8 *h = c->pos;
	__u32 plen;
	__u8 next;

	w->next = NEXT_DONE;
	if (c->pos + 40 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_IP6);
		return;
	}
	if ((h[0] >> 4) != 6) {
		fail(r, STATUS_MALFORMED, LAYER_IP6);
		return;
	}
	r->ip_version = 6;
	r->tos = (load_be16(h) >> 4) & 0xff;
	r->flow_label = load_be32(h) & 0xfffff;
	plen = load_be16(h + 4);
	r->ip_len = plen;
	next = h[6];
	r->l4_proto = next;
	r->ttl = h[7];
	copy16(r->src_addr, h + 8);
	copy16(r->dst_addr, h + 24);
	if (plen == 0) {
		/* A jumbogram (RFC 2675) has its length, above 65535, in a jumbo payload option,
		 * which must then be the first option of a hop-by-hop header (its alignment,
		 * 4n+2, puts it there). Without one, a payload length of 0 is an error. */
		if (next != NEXTHDR_HOP) {
			fail(r, STATUS_MALFORMED, LAYER_IP6);
			return;
		}
		if (c->pos + 48 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_IP6);
			return;
		}
		if (h[42] != 0xc2 || h[43] != 4) {
			fail(r, STATUS_MALFORMED, LAYER_IP6);
			return;
		}
		plen = load_be32(h + 44);
		if (plen <= 0xffff) {
			fail(r, STATUS_MALFORMED, LAYER_IP6);
			return;
		}
		w->jumbo = 1;
	}
	c->pos += 40;
	w->ip_end = add_sat(cur_off(c), plen);
	if (w->ip_end > w->len)
		fail(r, STATUS_TRUNCATED, LAYER_IP6);
	if (is_ext_header(next))
		go_on(c, w, NEXT_IP6_EXT);
	else
		ipv6_upper(c, r, w, next);
}

/* The IPv6 extension headers, then what follows them. */
static __always_inline void parse_ipv6_ext(struct cursor *c, struct record *r, struct walk *w)
{
	__u8 next = r->l4_proto;
	int i;

	w->next = NEXT_DONE;
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
		if (cur_off(c) + elen > w->ip_end) {
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
			stop_here(c, r, w, w->ip_end);
			return;
		}
	}
	if (is_ext_header(next)) {
		fail(r, STATUS_UNSUPPORTED, LAYER_IP6_EXT);
		return;
	}
	ipv6_upper(c, r, w, next);
}

#endif
