package sensor_test

import (
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages"
)

// TestDecodeAllocatesNothing decodes the benchmark mix (IPv4, IPv6, VLAN, payloads) and counts
// allocations: the decoder runs once per packet on the live path.
func TestDecodeAllocatesNothing(t *testing.T) {
	twin := sensor.NewTwin(sensor.Config{})
	var raws [][]byte
	for _, f := range benchMix() {
		raws = append(raws, twin.Parse(nil, f, sensor.Meta{}))
	}
	var p stages.Packet
	dec := sensor.Decoder{BootTime: 1}
	allocs := testing.AllocsPerRun(1000, func() {
		for _, raw := range raws {
			if err := dec.Decode(raw, &p); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per decode of the mix", allocs)
	}
}

func TestDecodeShortSample(t *testing.T) {
	raw := sensor.NewTwin(sensor.Config{}).Parse(nil, benchMix()[1], sensor.Meta{})
	var p stages.Packet
	for _, n := range []int{0, 10, 119, len(raw) - 1} {
		if err := (sensor.Decoder{}).Decode(raw[:n], &p); err == nil {
			t.Errorf("%d of %d bytes decoded without error", n, len(raw))
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	twin := sensor.NewTwin(sensor.Config{})
	var raws [][]byte
	for _, f := range benchMix() {
		raws = append(raws, twin.Parse(nil, f, sensor.Meta{}))
	}
	var p stages.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := (sensor.Decoder{}).Decode(raws[i%len(raws)], &p); err != nil {
			b.Fatal(err)
		}
	}
}
