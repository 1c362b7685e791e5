// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Entry points. xdp_sensor (ingress) and tc_sensor (egress) walk the frame with parse.h into a
 * record and push it, with the leading payload bytes, to the "events" ring buffer. Neither ever
 * drops or changes a packet. How payload bytes are sized is explained in bpf/README.md. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "record.h"
#include "config.h"
#include "maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const struct sensor_config cfg = {
	.snap_large = SNAP_MAX,
	.snap_small = SNAP_CLASS_0,
	.wakeup_bytes = 0,
	.no_decap = 0,
	.follow_bytes = FOLLOW_BYTES,
	.frame_snap = 0,
};

#include "parse.h" /* reads cfg */
#include "follow.h"
#include "filter.h"

/* Put the exported types into BTF for bpf2go -type. */
const struct record *unused_record __attribute__((unused));
const struct record_ext *unused_record_ext __attribute__((unused));
const struct frame_head *unused_frame_head __attribute__((unused));
const enum counter_key *unused_counter_key __attribute__((unused));
const enum status *unused_status __attribute__((unused));
const enum layer *unused_layer __attribute__((unused));
const enum direction *unused_direction __attribute__((unused));
const enum ip_flag *unused_ip_flag __attribute__((unused));
const enum ext_bit *unused_ext_bit __attribute__((unused));
const enum tunnel *unused_tunnel __attribute__((unused));
const enum tun_flag *unused_tun_flag __attribute__((unused));

/* With cfg.wakeup_bytes (a power of two) set, wake the reader once each time the bytes waiting
 * in the ring cross a multiple of it, and never otherwise: a lagging reader is not woken for
 * every record, and a busy ring wakes it once per wakeup_bytes. size is the sample's size with
 * its 8-byte header; it is already counted in the ring's available data when this runs. */
static __always_inline __u64 wakeup_flags(__u64 size)
{
	__u64 avail, mask;

	if (!cfg.wakeup_bytes)
		return 0;
	avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	mask = ~((__u64)cfg.wakeup_bytes - 1);
	if (avail >= size && (avail & mask) != ((avail - size) & mask))
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* The chunk of a small copy that bit W of n stands for: it starts where the larger bits end,
 * n & (64 - 2W), a bound the verifier reads off the mask. */
#define COPY_CHUNK(W, T)                                                 \
	if (n & (W)) {                                                   \
		__u32 at = n & (64 - 2 * (W));                           \
		if ((void *)(from + at + (W)) > end)                     \
			return -1;                                       \
		*(T *)(to + at) = *(T *)(from + at);                     \
	}

/* Copy n < 64 payload bytes at off straight from the linear frame, in power-of-two chunks: for
 * the small size class this is cheaper than a load_bytes helper call. Returns -1 when the bytes
 * are not all in the linear part (tc_sensor past the pulled headers). */
static __always_inline long copy_small(void *ctx, int xdp, __u32 off, __u8 *to, __u32 n)
{
	void *data, *end;
	__u8 *from;

	if (xdp) {
		data = (void *)(long)((struct xdp_md *)ctx)->data;
		end = (void *)(long)((struct xdp_md *)ctx)->data_end;
	} else {
		data = (void *)(long)((struct __sk_buff *)ctx)->data;
		end = (void *)(long)((struct __sk_buff *)ctx)->data_end;
	}
	asm volatile("" : "+r"(off));
	from = data + (off & 0x7fff);
	COPY_CHUNK(32, __u64 __attribute__((vector_size(32))))
	COPY_CHUNK(16, __u64 __attribute__((vector_size(16))))
	COPY_CHUNK(8, __u64)
	COPY_CHUNK(4, __u32)
	COPY_CHUNK(2, __u16)
	COPY_CHUNK(1, __u8)
	return 0;
}

static __always_inline long load_payload(void *ctx, int xdp, __u32 off, void *to, __u32 len)
{
	if (len < 64 && copy_small(ctx, xdp, off, to, len) == 0)
		return 0;
	if (xdp)
		return bpf_xdp_load_bytes(ctx, off, to, len);
	return bpf_skb_load_bytes(ctx, off, to, len);
}

/* Reserve the record, EXT bytes of extension (0 or sizeof(struct record_ext)) and a CLASS-byte
 * payload area, copy the record, its extension and up to CLASS payload bytes into it, submit.
 * Evaluates to 0, or -1 when the ring buffer is full. */
#define EMIT(CLASS, EXT)                                                                 \
	({                                                                               \
		int ret_ = -1;                                                           \
		/* Typed, so that the copy below moves 8 bytes at a time (ring samples are \
		 * 8-byte aligned). */                                                   \
		struct record *s_ = bpf_ringbuf_reserve(&events, sizeof(*r) + (EXT) + (CLASS), 0); \
		if (s_) {                                                                \
			__u32 n_ = snap;                                                 \
			/* 1 <= snap <= CLASS here, a power of two: the mask changes     \
			 * nothing but shows the verifier the bounds. The barrier keeps  \
			 * the compiler from dropping it. */                             \
			asm volatile("" : "+r"(n_));                                     \
			n_ = (((n_ - 1) & ((CLASS) - 1)) + 1);                           \
			*s_ = *r;                                                        \
			if (EXT)                                                         \
				*(struct record_ext *)(s_ + 1) = *x;                     \
			if ((CLASS) && load_payload(ctx, xdp, r->payload_off,            \
						    (void *)(s_ + 1) + (EXT), n_) < 0) { \
				s_->snap_len = 0;                                        \
				count(CNT_SNAP_FAILED);                                  \
			}                                                                \
			bpf_ringbuf_submit(s_, wakeup_flags(sizeof(*r) + (EXT) + (CLASS) + 8)); \
			ret_ = 0;                                                        \
		}                                                                        \
		ret_;                                                                    \
	})

/* The smallest size class that holds snap payload bytes. */
#define EMIT_CLASSES(EXT)                                                                \
	({                                                                               \
		int r_ = -1;                                                             \
		if (snap == 0)                                                           \
			r_ = EMIT(0, EXT); /* CLASS 0: no payload copied */              \
		else if (snap <= SNAP_CLASS_0)                                           \
			r_ = EMIT(SNAP_CLASS_0, EXT);                                    \
		else if (snap <= SNAP_CLASS_1)                                           \
			r_ = EMIT(SNAP_CLASS_1, EXT);                                    \
		else if (snap <= SNAP_CLASS_2)                                           \
			r_ = EMIT(SNAP_CLASS_2, EXT);                                    \
		else if (snap <= SNAP_CLASS_3)                                           \
			r_ = EMIT(SNAP_CLASS_3, EXT);                                    \
		r_;                                                                      \
	})

static __always_inline int emit(void *ctx, int xdp, struct record *r, struct record_ext *x,
				__u32 snap)
{
	if (RECORD_HAS_EXT(r) && x)
		return EMIT_CLASSES(sizeof(struct record_ext));
	return EMIT_CLASSES(0);
}

/* Reserve the record, its extension (EXT bytes), a frame head and a CLASS-byte frame area; copy
 * the record, the extension, and `copy` bytes of the frame from its first byte; submit. The
 * payload the record describes is inside them (copy reaches its end). Evaluates to 0, or -1
 * when the ring buffer is full. */
#define EMIT_FRAME(CLASS, EXT)                                                           \
	({                                                                               \
		int ret_ = -1;                                                           \
		struct record *s_ = bpf_ringbuf_reserve(&events, sizeof(*r) + (EXT) +     \
							sizeof(struct frame_head) + (CLASS), 0); \
		if (s_) {                                                                \
			struct frame_head *h_;                                           \
			__u32 n_ = copy;                                                 \
			/* 1 <= copy <= CLASS, a power of two: as in EMIT. */            \
			asm volatile("" : "+r"(n_));                                     \
			n_ = (((n_ - 1) & ((CLASS) - 1)) + 1);                           \
			*s_ = *r;                                                        \
			if (EXT)                                                         \
				*(struct record_ext *)(s_ + 1) = *x;                     \
			h_ = (void *)(s_ + 1) + (EXT);                                   \
			h_->cap_len = cap;                                               \
			h_->copied = n_;                                                 \
			if (load_payload(ctx, xdp, 0, h_ + 1, n_) < 0) {                 \
				h_->cap_len = 0;                                         \
				h_->copied = 0;                                          \
				s_->snap_len = 0;                                        \
				count(CNT_SNAP_FAILED);                                  \
			}                                                                \
			bpf_ringbuf_submit(s_, wakeup_flags(sizeof(*r) + (EXT) +         \
							    sizeof(struct frame_head) + (CLASS) + 8)); \
			ret_ = 0;                                                        \
		}                                                                        \
		ret_;                                                                    \
	})

/* The smallest frame class that holds copy bytes. */
#define EMIT_FRAME_CLASSES(EXT)                                                          \
	({                                                                               \
		int r_ = -1;                                                             \
		if (copy <= FRAME_CLASS_0)                                               \
			r_ = EMIT_FRAME(FRAME_CLASS_0, EXT);                             \
		else if (copy <= FRAME_CLASS_1)                                          \
			r_ = EMIT_FRAME(FRAME_CLASS_1, EXT);                             \
		else if (copy <= FRAME_CLASS_2)                                          \
			r_ = EMIT_FRAME(FRAME_CLASS_2, EXT);                             \
		else if (copy <= FRAME_CLASS_3)                                          \
			r_ = EMIT_FRAME(FRAME_CLASS_3, EXT);                             \
		else if (copy <= FRAME_CLASS_4)                                          \
			r_ = EMIT_FRAME(FRAME_CLASS_4, EXT);                             \
		else if (copy <= FRAME_CLASS_5)                                          \
			r_ = EMIT_FRAME(FRAME_CLASS_5, EXT);                             \
		else if (copy <= FRAME_CLASS_6)                                          \
			r_ = EMIT_FRAME(FRAME_CLASS_6, EXT);                             \
		else if (copy <= FRAME_CLASS_7)                                          \
			r_ = EMIT_FRAME(FRAME_CLASS_7, EXT);                             \
		else if (copy <= FRAME_CLASS_8)                                          \
			r_ = EMIT_FRAME(FRAME_CLASS_8, EXT);                             \
		r_;                                                                      \
	})

/* attach -w: the record with the frame from its first byte, up to cfg.frame_snap bytes (cap),
 * and further when the payload the record describes (snap bytes at payload_off) goes on, so
 * that the stages get what they get without -w. */
static __always_inline int emit_frame(void *ctx, int xdp, struct record *r, struct record_ext *x,
				      __u32 snap)
{
	__u32 cap = r->wire_len, copy;

	if (cap > cfg.frame_snap)
		cap = cfg.frame_snap;
	if (cap > FRAME_MAX)
		cap = FRAME_MAX;
	copy = r->payload_off + snap;
	if (copy < cap)
		copy = cap;
	if (copy == 0)
		copy = 1; /* a frame is never empty; keeps 1 <= copy for the classes */
	if (copy > FRAME_MAX)
		return -1;
	if (RECORD_HAS_EXT(r) && x)
		return EMIT_FRAME_CLASSES(sizeof(struct record_ext));
	return EMIT_FRAME_CLASSES(0);
}

/* Everything after the walk: count the status, size the payload, emit, count the outcome. */
static __always_inline void finish(void *ctx, int xdp, struct record *r, struct walk *w,
				   struct record_ext *x)
{
	__u32 snap;
	int ret;

	switch (r->status) {
	case STATUS_TRUNCATED:
		count(CNT_TRUNCATED_BASE + r->bad_layer);
		break;
	case STATUS_MALFORMED:
		count(CNT_MALFORMED_BASE + r->bad_layer);
		break;
	case STATUS_UNSUPPORTED:
		count(CNT_UNSUPPORTED);
		break;
	}

	snap = w->large ? cfg.snap_large : cfg.snap_small;
	if (snap > w->payload_avail)
		snap = w->payload_avail;
	if (snap > SNAP_MAX)
		snap = SNAP_MAX;
	r->snap_len = snap;
	if (cfg.frame_snap) /* a constant: the verifier keeps one of the two */
		ret = emit_frame(ctx, xdp, r, x, snap);
	else
		ret = emit(ctx, xdp, r, x, snap);
	if (ret)
		count_lost(r->ifindex);
	if (xdp)
		count(ret ? CNT_XDP_LOST : CNT_XDP_EMITTED);
	else
		count(ret ? CNT_TC_LOST : CNT_TC_EMITTED);
}

/* Global functions: the verifier checks each once, not once for every way through the parser
 * that reaches it (each way leaves other known values in the record). */
__attribute__((noinline)) int finish_xdp(struct xdp_md *ctx, struct record *r, struct walk *w,
					 struct record_ext *x)
{
	if (!r || !w)
		return 0;
	finish(ctx, 1, r, w, x);
	return 0;
}

__attribute__((noinline)) int finish_tc(struct __sk_buff *skb, struct record *r, struct walk *w,
					struct record_ext *x)
{
	if (!r || !w)
		return 0;
	finish(skb, 0, r, w, x);
	return 0;
}

static __always_inline void sense(void *ctx, int xdp, void *data, void *data_end, __u32 wire_len,
				  __u32 ifindex, __u8 dir)
{
	/* First the filter expression: a packet it rejects costs nothing more. */
	if (!filter_pass(ctx, xdp, data, data_end, wire_len, ifindex))
		return;

	struct record r = {};
	struct walk w = { .len = wire_len };
	struct record_ext x; /* cleared by walk when needed */
	struct record_ext *xp;

	r.ts_ns = bpf_ktime_get_boot_ns();
	r.ifindex = ifindex;
	r.wire_len = wire_len;
	r.dir = dir;
	walk(ctx, xdp, &r, &w, &x);
	if (w.msg != MSG_NONE && cfg.follow_bytes) {
		if (xdp)
			follow_xdp(ctx, &r, &w);
		else
			follow_tc(ctx, &r, &w);
	}
	xp = RECORD_HAS_EXT(&r) ? &x : NULL; /* x is cleared when the record has one */
	if (xdp)
		finish_xdp(ctx, &r, &w, xp);
	else
		finish_tc(ctx, &r, &w, xp);
}

SEC("xdp")
int xdp_sensor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	sense(ctx, 1, data, data_end, data_end - data, ctx->ingress_ifindex, DIR_IN);
	return XDP_PASS;
}

SEC("tc")
int tc_sensor(struct __sk_buff *skb)
{
	__u32 pull = skb->len < TC_PULL_LEN ? skb->len : TC_PULL_LEN;

	/* Make the headers linear for direct access; the payload copy reads past it anyway. */
	if (skb->data_end - skb->data < pull)
		bpf_skb_pull_data(skb, pull);
	sense(skb, 0, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->len, skb->ifindex,
	      DIR_OUT);
	return TC_ACT_UNSPEC;
}
