/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#ifndef CHAINS_MAPS_H
#define CHAINS_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "record.h"

/* Records to user space. The size is a default; sensor.Load may override it. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* Per-CPU counters keyed by enum counter_key. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Records lost (ring buffer full) per interface index, both hooks together. Touched only when a
 * record is lost, so the fast path pays nothing for it; with the records user space reads per
 * interface it gives each interface's packets seen. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} lost_by_iface SEC(".maps");

static __always_inline void count_lost(__u32 ifindex)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(&lost_by_iface, &ifindex);

	if (v)
		(*v)++;
	else
		bpf_map_update_elem(&lost_by_iface, &ifindex, &one, BPF_NOEXIST);
}

static __always_inline void count(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		(*v)++;
}

#endif
