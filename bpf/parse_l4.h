/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The transport layer: TCP, UDP, ICMP, ICMPv6, and the IP protocols that are tunnels. Part of
 * parse.h; sensor/parse_l4.go is its Go twin. */
#ifndef CHAINS_PARSE_L4_H
#define CHAINS_PARSE_L4_H

#define PORT_VXLAN 4789
#define PORT_VXLAN_LINUX 8472 /* the Linux kernel's default before IANA assigned 4789 */
#define PORT_GENEVE 6081
#define PORT_GTPU 2152

static __always_inline int is_tunnel_port(__u16 port)
{
	return port == PORT_VXLAN || port == PORT_VXLAN_LINUX || port == PORT_GENEVE ||
	       port == PORT_GTPU;
}

static __always_inline int is_dns_port(__u16 port)
{
	return port == 53 || port == 5353 || port == 5355;
}

/* The message a TCP payload starts: a TLS handshake record (content type 22, major version 3)
 * or change_cipher_spec record (20: the second ClientHello after a HelloRetryRequest follows
 * one), an HTTP method or status line. */
static __always_inline __u8 payload_kind(struct cursor *c)
{
	__u8 *b = c->pos;
	__u32 w;

	if (c->pos + 4 > c->end)
		return MSG_DATA;
	if ((b[0] == 0x16 || b[0] == 0x14) && b[1] == 0x03)
		return MSG_TLS;
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
		return MSG_HTTP_REQ;
	case 0x48545450: /* "HTTP"/1.1 200 */
		return MSG_HTTP_RESP;
	}
	return MSG_DATA;
}

#define QUIC_V1 0x00000001
#define QUIC_V2 0x6b3343cf

/* A QUIC Initial packet (RFC 9000 17.2.2, RFC 9369 3.2): a long header with the fixed bit, of
 * version 1 (Initial: type 0) or 2 (type 1), on any port. */
static __always_inline int payload_is_quic_initial(struct cursor *c)
{
	__u8 *b = c->pos;
	__u32 v;

	if (c->pos + 5 > c->end || (b[0] & 0xc0) != 0xc0)
		return 0;
	v = (__u32)b[1] << 24 | (__u32)b[2] << 16 | (__u32)b[3] << 8 | b[4];
	return (v == QUIC_V1 && ((b[0] >> 4) & 3) == 0) || (v == QUIC_V2 && ((b[0] >> 4) & 3) == 1);
}

/* Whether the first n bytes of the transport header are there: in the frame (else truncated)
 * and in the IP packet (else the rest is in the next fragment, truncated, or the IP length is
 * wrong, malformed). */
static __always_inline int l4_has(struct cursor *c, struct record *r, struct walk *w, __u32 n,
				  __u8 layer)
{
	if (c->pos + n > c->end) {
		fail(r, STATUS_TRUNCATED, layer);
		return 0;
	}
	if (cur_off(c) + n > w->ip_end) {
		fail(r, (r->ip_flags & IPF_MF) ? STATUS_TRUNCATED : STATUS_MALFORMED, layer);
		return 0;
	}
	return 1;
}

/* A TCP header cut short, by the frame or by the IP packet (a tiny first fragment): the fields
 * whose bytes are there (the ports of a tiny-fragment SYN), and the status of the cut. */
static __always_inline void parse_tcp_cut(struct cursor *c, struct record *r, struct walk *w)
{
	__u8 *h = c->pos;

	if (!l4_has(c, r, w, 4, LAYER_TCP))
		return;
	r->sport = load_be16(h);
	r->dport = load_be16(h + 2);
	if (!l4_has(c, r, w, 8, LAYER_TCP))
		return;
	r->seq = load_be32(h + 4);
	if (!l4_has(c, r, w, 16, LAYER_TCP))
		return;
	r->ack = load_be32(h + 8);
	r->tcp_flags = h[13];
	r->window = load_be16(h + 14);
	r->l4_hdr_len = (h[12] >> 4) * 4;
	l4_has(c, r, w, 20, LAYER_TCP); /* fails: says why */
}

/* TCP. A first fragment may hold only part of the header: parse_tcp_cut. */
static __always_inline void parse_tcp(struct cursor *c, struct record *r, struct walk *w)
{
	__u8 *h = c->pos;
	__u32 hlen;

	if (c->pos + 20 > c->end || cur_off(c) + 20 > w->ip_end) {
		parse_tcp_cut(c, r, w);
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
	if (!l4_has(c, r, w, hlen, LAYER_TCP))
		return;
	c->pos += hlen;
	stop_here(c, r, w, w->ip_end);
	w->msg = payload_kind(c);
	w->large = is_dns_port(r->sport) || is_dns_port(r->dport) || w->msg >= MSG_TLS;
}

/* UDP. A destination port of a tunnel makes the tunnel the next step. */
static __always_inline void parse_udp(struct cursor *c, struct record *r, struct walk *w)
{
	__u8 *h = c->pos;
	__u32 len, end;

	if (c->pos + 4 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_UDP);
		return;
	}
	r->sport = load_be16(h);
	r->dport = load_be16(h + 2);
	if (c->pos + 8 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_UDP);
		return;
	}
	len = load_be16(h + 4);
	r->udp_len = len;
	r->l4_hdr_len = 8;
	if (len == 0 && w->jumbo) {
		len = w->ip_end - cur_off(c); /* RFC 2675: a jumbogram's UDP length is IP's */
	} else if (len < 8) {
		fail(r, STATUS_MALFORMED, LAYER_UDP);
		return;
	}
	end = cur_off(c) + len;
	if (end > w->ip_end) {
		/* UDP claims more than IP carries: the payload is what IP carries. */
		fail(r, STATUS_MALFORMED, LAYER_UDP);
		end = w->ip_end;
	}
	c->pos += 8;
	w->large = is_dns_port(r->sport) || is_dns_port(r->dport) || payload_is_quic_initial(c);
	stop_here(c, r, w, end);
	if (!cfg.no_decap && is_tunnel_port(r->dport)) {
		w->l4_end = end;
		go_on(c, w, NEXT_TUNNEL);
	}
}

static __always_inline void parse_icmp(struct cursor *c, struct record *r, struct walk *w,
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
		r->sport = load_be16(h + 4); /* identifier */
		r->dport = load_be16(h + 6); /* sequence number */
	}
	c->pos += 8;
	stop_here(c, r, w, w->ip_end);
}

/* The transport header of r->l4_proto; an IP protocol that is a tunnel is the next step.
 * What no parser takes is payload. */
static __always_inline void parse_l4(struct cursor *c, struct record *r, struct walk *w)
{
	w->next = NEXT_DONE;
	switch (r->l4_proto) {
	case IPPROTO_TCP:
		parse_tcp(c, r, w);
		return;
	case IPPROTO_UDP:
		parse_udp(c, r, w);
		return;
	case IPPROTO_ICMP:
		if (r->ip_version == 4) {
			parse_icmp(c, r, w, LAYER_ICMP);
			return;
		}
		break;
	case IPPROTO_ICMPV6_:
		if (r->ip_version == 6) {
			parse_icmp(c, r, w, LAYER_ICMP6);
			return;
		}
		break;
	case IPPROTO_IPIP_:
	case IPPROTO_IPV6_:
	case IPPROTO_GRE_:
		if (!cfg.no_decap) {
			go_on(c, w, NEXT_TUNNEL);
			return;
		}
		break;
	}
	stop_here(c, r, w, w->ip_end);
}

#endif
