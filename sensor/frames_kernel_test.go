package sensor_test

import (
	"bytes"
	"reflect"
	"testing"
	"unsafe"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
)

// The frame head is the C struct, 8 bytes, so that the frame after it stays 8-byte aligned.
func TestFrameHeadLayout(t *testing.T) {
	if n := unsafe.Sizeof(gen.SensorFrameHead{}); n != 8 {
		t.Fatalf("struct frame_head is %d bytes, want 8", n)
	}
}

// Loaded with a frame snap length (attach -w), both programs give every frame of every test
// capture its record as without it, the frame's first bytes as the test run handed them in
// (up to the snap length), and the payload the twin gives, inside the frame.
func TestKernelFrames(t *testing.T) {
	sensortest.RequireBPF(t)
	twin := sensor.NewTwin(sensor.Config{})
	for _, snap := range []uint32{sensor.FrameMax, 100, 14} {
		objs, err := sensor.Load(sensor.Config{FrameSnap: snap})
		if err != nil {
			t.Fatalf("load with frame snap %d: %v", snap, err)
		}
		rep, err := sensor.NewReplayer(objs)
		if err != nil {
			objs.Close()
			t.Fatal(err)
		}
		n := 0
		eachFrame(t, func(name string, f *sensor.Frame) {
			if len(f.Data) < 14 || len(f.Data) > sensor.MaxReplayFrame {
				return
			}
			for _, dir := range []uint8{0, 1} {
				m := sensor.Meta{Dir: dir}
				raw, err := rep.Replay(f.Data, m)
				if err != nil {
					continue // what the skb test run refuses; the replay tests cover it
				}
				var got, want stages.Packet
				if err := (sensor.Decoder{Frames: true}).Decode(raw, &got); err != nil {
					t.Fatalf("%s #%d dir %d, snap %d: %v", name, f.Num, dir, snap, err)
				}
				if err := (sensor.Decoder{}).Decode(twin.Parse(nil, f.Data, sensor.Meta{Dir: dir}), &want); err != nil {
					t.Fatal(err)
				}
				capLen := min(int(snap), len(f.Data))
				if !bytes.Equal(got.Frame, f.Data[:capLen]) || got.FrameLen != uint32(len(f.Data)) {
					t.Errorf("%s #%d dir %d, snap %d: frame %d bytes of %d, want the first %d of %d",
						name, f.Num, dir, snap, len(got.Frame), got.FrameLen, capLen, len(f.Data))
				}
				if !bytes.Equal(got.Payload, want.Payload) {
					t.Errorf("%s #%d dir %d, snap %d: payload %x, the twin's %x", name, f.Num, dir, snap, got.Payload, want.Payload)
				}
				got.Frame, got.FrameLen, got.Payload, want.Payload = nil, 0, nil, nil
				got.Time = want.Time
				got.Ifindex, got.WireLen = want.Ifindex, want.WireLen
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s #%d dir %d, snap %d: the record differs from the twin's:\n%+v\n%+v", name, f.Num, dir, snap, got, want)
				}
				n++
			}
		})
		rep.Close()
		objs.Close()
		if n < 500 {
			t.Errorf("snap %d: only %d frames replayed", snap, n)
		}
	}
}
