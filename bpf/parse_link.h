/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The link layer: Ethernet, VLAN tags, 802.3 LLC/SNAP, PPPoE and PPP, ARP. Part of parse.h;
 * sensor/parse_link.go is its Go twin. */
#ifndef CHAINS_PARSE_LINK_H
#define CHAINS_PARSE_LINK_H

/* A PPP frame: the address and control bytes (ff 03) when present, then a protocol field of one
 * byte (RFC 1661 protocol-field compression: an odd first byte is the whole field) or two.
 * Returns the ethertype of IPv4 and IPv6 with the cursor past the field; 0 for another
 * protocol, the cursor at its protocol field; -1 when the frame ends first. */
static __always_inline int parse_ppp(struct cursor *c, struct record *r)
{
	__u8 *h = c->pos;
	__u16 proto;

	if (c->pos + 2 <= c->end && h[0] == 0xff && h[1] == 0x03)
		c->pos += 2;
	h = c->pos;
	if (c->pos + 1 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_PPPOE);
		return -1;
	}
	if (h[0] & 1) {
		switch (h[0]) {
		case PPP_IP:
			c->pos += 1;
			return ETH_P_IP;
		case PPP_IPV6:
			c->pos += 1;
			return ETH_P_IPV6;
		}
		return 0;
	}
	if (c->pos + 2 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_PPPOE);
		return -1;
	}
	proto = load_be16(h);
	switch (proto) {
	case PPP_IP:
		c->pos += 2;
		return ETH_P_IP;
	case PPP_IPV6:
		c->pos += 2;
		return ETH_P_IPV6;
	}
	return 0;
}

/* A PPPoE session header and the PPP frame in it. Returns as parse_ppp; a frame of another
 * protocol (LCP, IPCP, ...) is the payload from its protocol field to the PPPoE length. */
static __always_inline int parse_pppoe(struct cursor *c, struct record *r, struct walk *w)
{
	__u8 *h = c->pos;
	__u32 end;
	int proto;

	if (c->pos + 6 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_PPPOE);
		return -1;
	}
	end = cur_off(c) + 6 + load_be16(h + 4);
	c->pos += 6;
	proto = parse_ppp(c, r);
	if (proto == 0)
		stop_here(c, r, w, end);
	return proto;
}

/* An 802.3 frame: the type field is the length of an LLC PDU. SNAP with an ethertype OUI
 * (00-00-00, RFC 1042, or 00-00-f8, 802.1H) carries an ethertype: returns it with the cursor
 * past the SNAP header. Any other LLC PDU (STP, CDP, ...) is the payload up to the declared
 * length, so without the padding: returns 0. -1 when the frame ends first. */
static __always_inline int parse_llc(struct cursor *c, struct record *r, struct walk *w, __u16 len)
{
	__u8 *h = c->pos;
	__u32 end = cur_off(c) + len;

	if (c->pos + 3 > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_ETH);
		return -1;
	}
	if (h[0] == 0xaa && h[1] == 0xaa && h[2] == 0x03) {
		if (c->pos + 8 > c->end) {
			fail(r, STATUS_TRUNCATED, LAYER_ETH);
			return -1;
		}
		if (h[3] == 0 && h[4] == 0 && (h[5] == 0 || h[5] == 0xf8)) {
			c->pos += 8;
			return load_be16(h + 6);
		}
	}
	stop_here(c, r, w, end);
	return 0;
}

static __always_inline void parse_arp(struct cursor *c, struct record *r, struct walk *w)
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

/* An Ethernet header with its VLAN tags and what the ethertype leads to: an IP header is the
 * next step; ARP, and anything else as payload, end the walk. Rewrites the link block. */
static __always_inline void parse_link(struct cursor *c, struct record *r, struct walk *w,
				       struct record_ext *x)
{
	__u8 *h = c->pos;
	__u16 proto;
	int i, ret;

	w->next = NEXT_DONE;
	r->vlan_count = 0;
	*(__u32 *)r->vlan_tci = 0;
	*(__u32 *)x->vlan_tci = 0;
	if (c->pos + ETH_HLEN > c->end) {
		fail(r, STATUS_TRUNCATED, LAYER_ETH);
		return;
	}
	copy4(r->dst_mac, h); /* dst_mac is 4-aligned, src_mac 2-aligned */
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
		if (i < 2) {
			r->vlan_tci[i] = load_be16(h);
		} else {
			if (i == 2 && !r->tun_depth) /* the outer packet's x is not cleared yet */
				__builtin_memset(x, 0, sizeof(*x));
			x->vlan_tci[i - 2] = load_be16(h);
		}
		r->vlan_count++;
		proto = load_be16(h + 2);
		c->pos += 4;
	}
	r->eth_proto = proto;
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD_) {
		fail(r, STATUS_UNSUPPORTED, LAYER_VLAN);
		return;
	}
	if (proto < ETH_MIN_TYPE) {
		ret = parse_llc(c, r, w, proto);
		if (ret <= 0)
			return;
		proto = ret;
		r->eth_proto = proto;
	}
	if (proto == ETH_P_PPP_SES_ || proto == ETH_P_PPP_) {
		if (proto == ETH_P_PPP_SES_) {
			ret = parse_pppoe(c, r, w);
		} else {
			ret = parse_ppp(c, r);
			if (ret == 0)
				stop_here(c, r, w, w->len);
		}
		if (ret <= 0)
			return;
		proto = ret;
		r->eth_proto = proto;
	}

	switch (proto) {
	case ETH_P_IP:
		go_on(c, w, NEXT_IP4);
		break;
	case ETH_P_IPV6:
		go_on(c, w, NEXT_IP6);
		break;
	case ETH_P_ARP:
		parse_arp(c, r, w);
		break;
	default:
		stop_here(c, r, w, w->len);
	}
}

#endif
