/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The packet filter: a pcap-filter expression (tcpdump's), evaluated first thing in both
 * programs, so that a packet it rejects costs no ring space and no user-space time.
 *
 * libpcap compiles the expression to classic BPF; sensor/filter translates that into eBPF,
 * and sensor.Load puts the translation in place of filter_frame's body before loading (the body
 * here is a stand-in that is never run). filter_cfg says whether there is a filter at all:
 * without one the verifier sees the call as dead code and removes it. */
#ifndef CHAINS_FILTER_H
#define CHAINS_FILTER_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "record.h"
#include "maps.h"

/* Bytes of a capture file's link header that read --kernel can hand the filter. */
#define FILTER_HDR_MAX 64

struct filter_config {
	__u8 on;     /* filter_frame holds a filter */
	__u8 replay; /* read --kernel: filter_frame reads the frame's wire length and link header
		      * from filter_replay (see struct filter_replay) */
};

volatile const struct filter_config filter_cfg = {};

/* read --kernel, for each frame before its test run: what the capture file says that the
 * replayed frame does not carry. The filter was compiled for the file's link type and reads
 * the file's frame: its link header from here (the replay wraps the frame in a synthetic
 * Ethernet header instead), the rest from the replayed frame, and `len` from wire_len (the
 * replayed frame is only the captured part). */
struct filter_replay {
	__u32 wire_len;
	__u8 link_hdr[FILTER_HDR_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct filter_replay);
} filter_replay SEC(".maps");

/* Packets the filter rejected, per interface index, both hooks together (beside the per-hook
 * CNT_XDP_FILTERED and CNT_TC_FILTERED). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} filtered_by_iface SEC(".maps");

/* The stub replaced at load time. Its arguments are the translation's calling convention:
 * R1 the context, R2 and R3 the linear frame, R4 the wire length, R5 filter_replay's value
 * (replay) or 0. It returns non-zero to keep the packet. Static and not inlined, so the
 * verifier checks it as part of each caller with the packet pointers' types intact; the asm
 * keeps clang from dropping an argument or folding the result. */
static __attribute__((noinline)) int filter_frame(void *ctx, void *data, void *data_end, __u32 wire_len,
						  struct filter_replay *replay)
{
	int ret;

	asm volatile("%[ret] = 1"
		     : [ret] "=r"(ret)
		     : "r"(ctx), "r"(data), "r"(data_end), "r"(wire_len), "r"(replay));
	return ret;
}

static __always_inline void count_filtered(__u32 ifindex)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&filtered_by_iface, &ifindex);

	if (v)
		(*v)++;
	else
		bpf_map_update_elem(&filtered_by_iface, &ifindex, &one, BPF_NOEXIST);
}

/* Whether the packet goes on to the parser; a rejected one is counted here. */
static __always_inline int filter_pass(void *ctx, int xdp, void *data, void *data_end,
				       __u32 wire_len, __u32 ifindex)
{
	struct filter_replay *replay = 0;
	__u32 zero = 0;

	if (!filter_cfg.on)
		return 1;
	if (filter_cfg.replay) {
		replay = bpf_map_lookup_elem(&filter_replay, &zero);
		if (!replay)
			return 1;
	}
	if (filter_frame(ctx, data, data_end, wire_len, replay))
		return 1;
	count(xdp ? CNT_XDP_FILTERED : CNT_TC_FILTERED);
	count_filtered(ifindex);
	return 0;
}

#endif
