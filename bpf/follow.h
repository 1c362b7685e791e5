/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Message following: the segments that continue a message the deeper stages need whole (a TLS
 * record, an HTTP request head) get the large payload class too, not only the segment that
 * starts it. The programs keep, per TCP direction, a window of sequence numbers in the LRU map
 * "follow"; a segment that starts inside the window is given the large class. A window is
 * opened (or widened) by:
 *   - a SYN or SYN-ACK: the direction's first cfg.follow_bytes, so that a first segment of a
 *     few bytes, or segments that come out of order, still bring the head whole;
 *   - a TLS record that does not end in its segment: up to the record's end (a leading
 *     change_cipher_spec record is stepped over, for the ClientHello after a HelloRetryRequest),
 *     at most cfg.follow_bytes;
 *   - an HTTP request head whose segment does not end with CRLF CRLF: cfg.follow_bytes, closed
 *     as soon as a segment ends with CRLF CRLF;
 *   - a segment of fewer than 8 bytes whose first byte may start one of those.
 * A window is closed when a segment reaches its end, when a later segment starts past it, and
 * on FIN or RST. sensor/follow.go is the Go twin: change both together.
 *
 * Cost: a TCP segment larger than the small class that opens nothing costs one map lookup; one
 * that opens a window a lookup and an update, and, for TLS and HTTP, one or two 4 to 11 byte
 * bpf_*_load_bytes; every other packet nothing. The map is bounded (FOLLOW_FLOWS entries by
 * default, sensor.Config.FollowFlows); its evictions are counted as CNT_FOLLOW_OPENED minus
 * CNT_FOLLOW_CLOSED minus the entries left in it. */
#ifndef CHAINS_FOLLOW_H
#define CHAINS_FOLLOW_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "record.h"
#include "config.h"
#include "maps.h"

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04

/* A TCP direction: the packet's source and destination. */
struct follow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
};

/* What opened a window. */
enum follow_kind {
	FOLLOW_SYN = 1,
	FOLLOW_TLS,
	FOLLOW_HTTP,
	FOLLOW_PREFIX,
};

/* A window: the sequence numbers [start, end) of the direction get the large class. */
struct follow_val {
	__u32 start;
	__u32 end;
	__u32 kind; /* enum follow_kind */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FOLLOW_FLOWS);
	__type(key, struct follow_key);
	__type(value, struct follow_val);
} follow SEC(".maps");

static __always_inline long follow_load(void *ctx, int xdp, __u32 off, void *to, __u32 n)
{
	if (xdp)
		return bpf_xdp_load_bytes(ctx, off, to, n);
	return bpf_skb_load_bytes(ctx, off, to, n);
}

/* Whether the segment's payload, captured whole, ends with CRLF CRLF (an HTTP head's end). */
static __always_inline int follow_head_ends(void *ctx, int xdp, struct record *r, struct walk *w)
{
	__u8 b[4];

	if (w->payload_avail < 4 || w->payload_avail != r->payload_len)
		return 0;
	if (follow_load(ctx, xdp, r->payload_off + w->payload_avail - 4, b, 4) < 0)
		return 0;
	return b[0] == '\r' && b[1] == '\n' && b[2] == '\r' && b[3] == '\n';
}

/* The end, from the payload's start, of the TLS record it starts (stepping over a
 * change_cipher_spec record and its one byte into the record after it); 0 when unknown. */
static __always_inline __u32 follow_tls_end(void *ctx, int xdp, struct record *r, struct walk *w)
{
	__u8 b[11];

	if (w->payload_avail >= 11) {
		if (follow_load(ctx, xdp, r->payload_off, b, 11) < 0)
			return 0;
	} else if (w->payload_avail >= 5) {
		if (follow_load(ctx, xdp, r->payload_off, b, 5) < 0)
			return 0;
		b[5] = 0; /* no record after a change_cipher_spec */
	} else {
		return 0;
	}
	if (b[0] == 0x14 && b[3] == 0 && b[4] == 1) {
		if (w->payload_avail < 11 || b[6] != 0x16 || b[7] != 0x03)
			return 6;
		return 11 + ((__u32)b[9] << 8 | b[10]);
	}
	return 5 + ((__u32)b[3] << 8 | b[4]);
}

/* Whether a tiny segment's first byte may start a message followed: an HTTP method ("GET ",
 * "POST", "HEAD", "PUT ", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE") or a TLS record. */
static __always_inline int follow_prefix(void *ctx, int xdp, struct record *r, struct walk *w)
{
	__u8 b[1];

	if (r->payload_len >= 8 || w->payload_avail != r->payload_len || w->payload_avail < 1)
		return 0;
	if (follow_load(ctx, xdp, r->payload_off, b, 1) < 0)
		return 0;
	switch (b[0]) {
	case 'G':
	case 'P':
	case 'H':
	case 'D':
	case 'O':
	case 'C':
	case 'T':
	case 0x16:
	case 0x14:
		return 1;
	}
	return 0;
}

/* Decide whether the TCP segment r (whose TCP header was read whole) is followed, and keep the
 * direction's window. */
static __always_inline void follow_decide(void *ctx, int xdp, struct record *r, struct walk *w)
{
	struct follow_key k = {};
	struct follow_val *v, nv = {};
	__u8 fl = r->tcp_flags;
	__u32 seq = r->seq + ((fl & TCPF_SYN) ? 1 : 0);
	__u32 len = r->payload_len;
	__u32 budget = cfg.follow_bytes;
	__u32 add = 0, kind = 0, span = 0;
	int in = 0, passed = 0;

	if (fl & TCPF_SYN) {
		add = budget;
		kind = FOLLOW_SYN;
	} else if (len && w->msg == MSG_TLS) {
		__u32 end = follow_tls_end(ctx, xdp, r, w);

		if (end > len) {
			add = end < budget ? end : budget;
			kind = FOLLOW_TLS;
		}
	} else if (len && w->msg == MSG_HTTP_REQ) {
		if (!follow_head_ends(ctx, xdp, r, w)) {
			add = budget;
			kind = FOLLOW_HTTP;
		}
	} else if (len && w->msg == MSG_DATA && follow_prefix(ctx, xdp, r, w)) {
		add = budget;
		kind = FOLLOW_PREFIX;
	}
	/* Nothing to open or close, and the payload fits the small class anyway. */
	if (!add && !(fl & (TCPF_FIN | TCPF_RST)) && (!len || w->payload_avail <= cfg.snap_small))
		return;

	__builtin_memcpy(k.src, r->src_addr, 16);
	__builtin_memcpy(k.dst, r->dst_addr, 16);
	k.sport = r->sport;
	k.dport = r->dport;
	v = bpf_map_lookup_elem(&follow, &k);
	if (v) {
		span = v->end - v->start;
		if (len && seq - v->start < span) {
			in = 1;
			if (!w->large) {
				w->large = 1;
				count(CNT_FOLLOWED);
			}
			if (seq + len - v->start >= span ||
			    (v->kind == FOLLOW_HTTP && !add && follow_head_ends(ctx, xdp, r, w)))
				passed = 1;
		} else if (len && seq - v->end < 0x80000000) {
			passed = 1; /* the segment starts past the window */
		}
	}
	if (fl & (TCPF_FIN | TCPF_RST)) {
		if (bpf_map_delete_elem(&follow, &k) == 0)
			count(CNT_FOLLOW_CLOSED);
		return;
	}
	if (add) {
		if (v && in) {
			if (seq + add - v->start > span)
				v->end = seq + add;
			v->kind = kind;
		} else if (v) {
			v->start = seq;
			v->end = seq + add;
			v->kind = kind;
		} else {
			nv.start = seq;
			nv.end = seq + add;
			nv.kind = kind;
			if (bpf_map_update_elem(&follow, &k, &nv, BPF_NOEXIST) == 0)
				count(CNT_FOLLOW_OPENED);
		}
		if (len && kind == FOLLOW_SYN && !w->large) {
			w->large = 1; /* data in a SYN (TCP Fast Open) starts the window */
			count(CNT_FOLLOWED);
		}
		return;
	}
	if (passed && bpf_map_delete_elem(&follow, &k) == 0)
		count(CNT_FOLLOW_CLOSED);
}

/* Global functions: verified once each, whatever way through the walk led here. */
__attribute__((noinline)) int follow_xdp(struct xdp_md *ctx, struct record *r, struct walk *w)
{
	if (!r || !w)
		return 0;
	follow_decide(ctx, 1, r, w);
	return 0;
}

__attribute__((noinline)) int follow_tc(struct __sk_buff *skb, struct record *r, struct walk *w)
{
	if (!r || !w)
		return 0;
	follow_decide(skb, 0, r, w);
	return 0;
}

#endif
