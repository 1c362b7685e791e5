package sensor

import (
	"fmt"
	"strings"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/cilium/ebpf"
)

// Counters are the kernel's per-CPU counters summed over CPUs, indexed by gen.SensorCounterKey.
type Counters [gen.SensorCounterKeyCNT_MAX]uint64

// ReadCounters sums the per-CPU counters of objs.
func ReadCounters(objs *Objects) (Counters, error) {
	var c Counters
	var per []uint64
	for k := range c {
		if err := objs.Counters.Lookup(uint32(k), &per); err != nil {
			return c, fmt.Errorf("reading counter %d: %w", k, err)
		}
		for _, v := range per {
			c[k] += v
		}
	}
	return c, nil
}

// ReadLostByIfindex returns the records lost to a full ring buffer per interface index, summed
// over CPUs (the kernel counts them only when one is lost).
func ReadLostByIfindex(objs *Objects) (map[uint32]uint64, error) {
	lost, err := sumByIfindex(objs.LostByIf)
	if err != nil {
		return nil, fmt.Errorf("reading the per-interface loss: %w", err)
	}
	return lost, nil
}

// ReadFilteredByIfindex returns the packets the filter rejected per interface index, summed
// over CPUs.
func ReadFilteredByIfindex(objs *Objects) (map[uint32]uint64, error) {
	n, err := sumByIfindex(objs.FilteredByIf)
	if err != nil {
		return nil, fmt.Errorf("reading the per-interface filtered-out counts: %w", err)
	}
	return n, nil
}

// sumByIfindex sums a per-CPU hash of counts keyed by interface index.
func sumByIfindex(m *ebpf.Map) (map[uint32]uint64, error) {
	sum := map[uint32]uint64{}
	var idx uint32
	var per []uint64
	it := m.Iterate()
	for it.Next(&idx, &per) {
		for _, v := range per {
			sum[idx] += v
		}
	}
	return sum, it.Err()
}

// SeenXDP is the number of packets xdp_sensor ran on (each was emitted, lost or filtered out).
func (c *Counters) SeenXDP() uint64 {
	return c[gen.SensorCounterKeyCNT_XDP_EMITTED] + c[gen.SensorCounterKeyCNT_XDP_LOST] +
		c[gen.SensorCounterKeyCNT_XDP_FILTERED]
}

// SeenTC is the number of packets tc_sensor ran on.
func (c *Counters) SeenTC() uint64 {
	return c[gen.SensorCounterKeyCNT_TC_EMITTED] + c[gen.SensorCounterKeyCNT_TC_LOST] +
		c[gen.SensorCounterKeyCNT_TC_FILTERED]
}

// Filtered is the number of packets the filter expression rejected, both hooks.
func (c *Counters) Filtered() uint64 {
	return c[gen.SensorCounterKeyCNT_XDP_FILTERED] + c[gen.SensorCounterKeyCNT_TC_FILTERED]
}

// Seen is the number of packets the programs ran on.
func (c *Counters) Seen() uint64 { return c.SeenXDP() + c.SeenTC() }

// Emitted is the number of records the programs submitted to the ring buffer.
func (c *Counters) Emitted() uint64 {
	return c[gen.SensorCounterKeyCNT_XDP_EMITTED] + c[gen.SensorCounterKeyCNT_TC_EMITTED]
}

// RingFull is the number of records lost because the ring buffer was full.
func (c *Counters) RingFull() uint64 {
	return c[gen.SensorCounterKeyCNT_XDP_LOST] + c[gen.SensorCounterKeyCNT_TC_LOST]
}

// Truncated returns how many packets were truncated at layer l.
func (c *Counters) Truncated(l stages.Layer) uint64 {
	return c[int(gen.SensorCounterKeyCNT_TRUNCATED_BASE)+int(l)]
}

// Malformed returns how many packets were malformed at layer l.
func (c *Counters) Malformed(l stages.Layer) uint64 {
	return c[int(gen.SensorCounterKeyCNT_MALFORMED_BASE)+int(l)]
}

// Sub returns c - o, counter by counter (for the change over an interval).
func (c Counters) Sub(o Counters) Counters {
	for i := range c {
		c[i] -= o[i]
	}
	return c
}

// String lists the non-zero counters by name, for the stats lines on stderr.
func (c *Counters) String() string {
	var b strings.Builder
	name := func(k int) string {
		switch gen.SensorCounterKey(k) {
		case gen.SensorCounterKeyCNT_XDP_EMITTED:
			return "xdp_emitted"
		case gen.SensorCounterKeyCNT_TC_EMITTED:
			return "tc_emitted"
		case gen.SensorCounterKeyCNT_XDP_LOST:
			return "xdp_lost"
		case gen.SensorCounterKeyCNT_TC_LOST:
			return "tc_lost"
		case gen.SensorCounterKeyCNT_SNAP_FAILED:
			return "snap_failed"
		case gen.SensorCounterKeyCNT_UNSUPPORTED:
			return "unsupported"
		case gen.SensorCounterKeyCNT_XDP_FILTERED:
			return "xdp_filtered"
		case gen.SensorCounterKeyCNT_TC_FILTERED:
			return "tc_filtered"
		}
		base := int(gen.SensorCounterKeyCNT_TRUNCATED_BASE)
		mal := int(gen.SensorCounterKeyCNT_MALFORMED_BASE)
		switch {
		case k >= mal && k < int(gen.SensorCounterKeyCNT_MAX):
			return "malformed_" + stages.Layer(k-mal).String()
		case k >= base && k < mal:
			return "truncated_" + stages.Layer(k-base).String()
		}
		return fmt.Sprintf("counter_%d", k)
	}
	for k, v := range c {
		if v == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", name(k), v)
	}
	return b.String()
}

// ReadFollow returns what message following did, from the counters c and the entries left in
// the follow map (its evictions are the windows opened, less those closed and those left).
func ReadFollow(objs *Objects, c Counters) (FollowStats, error) {
	f := FollowStats{Opened: c[gen.SensorCounterKeyCNT_FOLLOW_OPENED], Closed: c[gen.SensorCounterKeyCNT_FOLLOW_CLOSED],
		Followed: c[gen.SensorCounterKeyCNT_FOLLOWED]}
	if objs.Follow == nil {
		return f, nil
	}
	var k gen.SensorFollowKey
	var v gen.SensorFollowVal
	it := objs.Follow.Iterate()
	for it.Next(&k, &v) {
		f.Live++
	}
	if err := it.Err(); err != nil {
		return f, fmt.Errorf("reading the follow map: %w", err)
	}
	if n := f.Opened - f.Closed; n >= uint64(f.Live) {
		f.Evicted = n - uint64(f.Live)
	}
	return f, nil
}
