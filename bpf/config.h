/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Knobs set from Go before load (spec.Variables["cfg"]); the verifier sees them as constants. */
#ifndef CHAINS_CONFIG_H
#define CHAINS_CONFIG_H

#include <linux/types.h>

/* Payload size classes: a sample is reserved as the record plus the smallest class that holds
 * the payload bytes to copy. The reservation size must be a constant for the verifier. */
#define SNAP_CLASS_0 64
#define SNAP_CLASS_1 256
#define SNAP_CLASS_2 1024
#define SNAP_CLASS_3 4096
#define SNAP_MAX SNAP_CLASS_3

/* Frame size classes, when the programs copy whole frames (cfg.frame_snap, attach -w): the
 * sample is the record, its extension, struct frame_head and the smallest class that holds the
 * frame's bytes to copy. FRAME_MAX, the largest, bounds the snap length. */
#define FRAME_CLASS_0 128
#define FRAME_CLASS_1 256
#define FRAME_CLASS_2 512
#define FRAME_CLASS_3 1024
#define FRAME_CLASS_4 2048
#define FRAME_CLASS_5 4096
#define FRAME_CLASS_6 16384
#define FRAME_CLASS_7 65536
#define FRAME_CLASS_8 262144
#define FRAME_MAX FRAME_CLASS_8

/* Bytes of the skb made linear for direct access in tc_sensor; headers past this are
 * reported truncated there (xdp_sensor always sees the whole linear frame). */
#define TC_PULL_LEN 512

/* Default of cfg.follow_bytes, and the default bound of the follow map. */
#define FOLLOW_BYTES 8192
#define FOLLOW_FLOWS 65536

struct sensor_config {
	/* Payload bytes copied for packets that look like DNS (ports 53, 5353, 5355), a TLS
	 * handshake record or an HTTP head. At most SNAP_MAX. */
	__u16 snap_large;
	/* Payload bytes copied for any other packet with a payload. At most SNAP_MAX. */
	__u16 snap_small;
	/* A power of two: wake the reader each time the bytes waiting in the ring cross a
	 * multiple of it, and only then; 0 leaves the wake-up to the kernel (a wake-up whenever
	 * the reader has caught up). */
	__u32 wakeup_bytes;
	/* Non-zero: enter no tunnel, report the outer packet (attach and read --no-decap). */
	__u32 no_decap;
	/* Bytes of a TCP direction followed with the large payload class (bpf/follow.h): after a
	 * SYN, after an HTTP request head or a tiny segment that may start one, and at most this
	 * much of a TLS record. 0: no following. */
	__u32 follow_bytes;
	/* Non-zero: every sample carries the frame from its first byte, up to this many bytes (at
	 * most FRAME_MAX), after a struct frame_head (attach -w). */
	__u32 frame_snap;
};

#endif
