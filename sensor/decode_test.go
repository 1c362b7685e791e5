package sensor_test

import (
	"bytes"
	"encoding/binary"
	"reflect"
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

// frameSample is what the programs loaded with FrameSnap submit for frame: the record (the
// twin's, byte for byte what the kernel writes), the frame head, the frame's first copied bytes.
func frameSample(rec, frame []byte, capLen, copied uint32) []byte {
	r, _ := sensor.Record(rec)
	s := append([]byte(nil), rec[:len(rec)-int(r.SnapLen)]...) // the record and its extension
	s = binary.NativeEndian.AppendUint32(s, capLen)
	s = binary.NativeEndian.AppendUint32(s, copied)
	return append(s, frame[:copied]...)
}

// A sample with its frame decodes to the same packet as the sample without, Frame holding the
// captured bytes and Payload pointing into them.
func TestDecodeFrames(t *testing.T) {
	twin := sensor.NewTwin(sensor.Config{})
	for i, f := range append(benchMix(), vxlanSYN(t)) { // the last with the record's extension
		rec := twin.Parse(nil, f, sensor.Meta{})
		var want, got stages.Packet
		if err := (sensor.Decoder{}).Decode(rec, &want); err != nil {
			t.Fatal(err)
		}
		for _, capLen := range []uint32{uint32(len(f)), 20} {
			copied := max(capLen, uint32(want.PayloadOff)+uint32(len(want.Payload)))
			raw := frameSample(rec, f, capLen, copied)
			got.Reset()
			if err := (sensor.Decoder{Frames: true}).Decode(raw, &got); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(got.Frame, f[:capLen]) || !bytes.Equal(got.Payload, want.Payload) || got.FrameLen != want.WireLen {
				t.Errorf("frame %d, %d captured: frame %x payload %x (%d on the wire), want %x, %x", i, capLen, got.Frame, got.Payload, got.FrameLen, f[:capLen], want.Payload)
			}
			got.Frame, got.Payload, got.FrameLen = nil, nil, 0
			want.Payload = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("frame %d: the rest differs:\n%+v\n%+v", i, got, want)
			}
			sample := raw
			hdr := len(sample) - int(copied) - 8
			for _, n := range []int{0, 121, hdr + 7, len(sample) - 1} {
				if err := (sensor.Decoder{Frames: true}).Decode(sample[:n], &got); err == nil && n < len(sample) {
					t.Errorf("frame %d: %d of %d bytes decoded", i, n, len(sample))
				}
			}
			bad := frameSample(rec, f, copied+1, copied)
			if err := (sensor.Decoder{Frames: true}).Decode(bad, &got); err == nil {
				t.Errorf("frame %d: a frame head with cap_len > copied decoded", i)
			}
			if err := (sensor.Decoder{}).Decode(rec, &want); err != nil {
				t.Fatal(err)
			}
		}
	}
}
