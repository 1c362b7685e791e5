// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The benchmark floor for xdp_sensor: the least a program that reports every packet must do,
 * reserve a 64-byte record in a ring buffer, fill it, submit it. Not loaded by the sensor. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} floor_events SEC(".maps");

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 *rec = bpf_ringbuf_reserve(&floor_events, 64, 0);

	if (rec) {
		rec[0] = bpf_ktime_get_boot_ns();
		rec[1] = ctx->ingress_ifindex;
		rec[2] = data_end - data;
		rec[3] = 0;
		rec[4] = 0;
		rec[5] = 0;
		rec[6] = 0;
		rec[7] = 0;
		bpf_ringbuf_submit(rec, 0);
	}
	return XDP_PASS;
}
