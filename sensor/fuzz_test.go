package sensor_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var (
	fuzzOnce sync.Once
	fuzzRep  *sensor.Replayer
	fuzzErr  error
)

// fuzzReplayer loads the programs once per fuzzing process; nil when not root.
func fuzzReplayer(t *testing.T) *sensor.Replayer {
	if !sensortest.HaveBPF(t) {
		return nil
	}
	fuzzOnce.Do(func() {
		var objs *sensor.Objects
		if objs, fuzzErr = sensor.Load(sensor.Config{}); fuzzErr == nil {
			fuzzRep, fuzzErr = sensor.NewReplayer(objs)
		}
	})
	if fuzzErr != nil {
		t.Fatal(fuzzErr)
	}
	return fuzzRep
}

// FuzzParseFrame feeds frames to the Go twin and, as root, to xdp_sensor and tc_sensor: no
// panic, a record that decodes and keeps its own bounds, and the same bytes from the kernel.
// Seeded with every frame of the test captures and the hand-built frames, and tunnel-shaped
// ones: each crafted encapsulation whole and cut inside each of its headers.
func FuzzParseFrame(f *testing.F) {
	for _, c := range frameCases() {
		f.Add(c.frame)
	}
	for _, c := range craftedFrames(f) {
		f.Add(c.frame)
		for _, cut := range []int{14 + 20 + 4, 14 + 20 + 8 + 4, 14 + 20 + 8 + 8 + 10, 14 + 40 + 6, len(c.frame) / 2, len(c.frame) - 1} {
			if cut > 14 && cut < len(c.frame) {
				f.Add(bytes.Clone(c.frame[:cut]))
			}
		}
	}
	for _, path := range sensortest.PcapFiles(f) {
		fh, err := os.Open(path)
		if err != nil {
			f.Fatal(err)
		}
		if c, err := sensor.OpenCapture(fh); err == nil {
			for {
				fr, err := c.Next()
				if err != nil {
					break
				}
				f.Add(bytes.Clone(fr.Data))
			}
		}
		fh.Close()
	}
	// twin parses every frame once more than the kernel; kernelTwin exactly as often, so
	// that message following (whose windows persist from frame to frame) runs alike.
	twin, kernelTwin := sensor.NewTwin(sensor.Config{}), sensor.NewTwin(sensor.Config{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		raw := twin.Parse(nil, frame, sensor.Meta{Dir: 0})
		var p stages.Packet
		if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
			t.Fatalf("twin output does not decode: %v", err)
		}
		if len(p.Payload) > int(p.PayloadLen) || int(p.PayloadOff)+len(p.Payload) > len(frame) ||
			!bytes.Equal(p.Payload, frame[p.PayloadOff:int(p.PayloadOff)+len(p.Payload)]) {
			t.Fatalf("payload %d bytes at %d (declared %d) of a %d-byte frame", len(p.Payload), p.PayloadOff, p.PayloadLen, len(frame))
		}
		if p.Status > stages.StatusUnsupported || (p.Status == stages.StatusOK) != (p.BadLayer == stages.LayerNone) {
			t.Fatalf("status %d at layer %d", p.Status, p.BadLayer)
		}
		rep := fuzzReplayer(t)
		if rep == nil {
			return
		}
		for dir := uint8(0); dir < 2; dir++ {
			m := sensor.Meta{Dir: dir}
			got, err := rep.Replay(frame, m)
			if errors.Is(err, sensor.ErrFrameSize) || errors.Is(err, sensor.ErrSkbRefused) {
				continue
			}
			if err != nil {
				t.Fatalf("dir %d: %v", dir, err)
			}
			if want := kernelTwin.Parse(nil, frame, m); !bytes.Equal(got, want) {
				t.Fatalf("dir %d: kernel %x\ntwin %x", dir, got, want)
			}
		}
	})
}

// fuzzLinkTypes are the link types FuzzCaptureFrame picks from.
var fuzzLinkTypes = []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
	layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, layers.LinkTypeNull, layers.LinkTypeLoop,
	layers.LinkTypePPP, layers.LinkTypePPP_HDLC, layers.LinkTypeC_HDLC, layers.LinkType(239),
	layers.LinkTypeIEEE802_11, layers.LinkTypeIEEE80211Radio}

// FuzzCaptureFrame feeds one frame of each link type the capture reader rewrites (NFLOG's
// TLVs, 802.11 and radiotap headers, Linux cooked, PPP framings) in either byte order through
// the reader and the twin: a frame, a skip or an error naming the packet, never a panic, and
// a record that decodes. Seeded with every frame of the test captures of those link types.
func FuzzCaptureFrame(f *testing.F) {
	for _, path := range sensortest.PcapFiles(f) {
		fh, err := os.Open(path)
		if err != nil {
			f.Fatal(err)
		}
		if r, err := pcapgo.NewReader(fh); err == nil {
			for i, lt := range fuzzLinkTypes {
				if lt != r.LinkType() || lt == layers.LinkTypeEthernet {
					continue
				}
				for n := 0; n < 20; n++ {
					data, _, err := r.ReadPacketData()
					if err != nil {
						break
					}
					f.Add(uint8(i), false, data)
				}
			}
		}
		fh.Close()
	}
	f.Fuzz(func(t *testing.T, which uint8, bigEndian bool, frame []byte) {
		order := binary.ByteOrder(binary.LittleEndian)
		if bigEndian {
			order = binary.BigEndian
		}
		file := pcapFile(t, fuzzLinkTypes[int(which)%len(fuzzLinkTypes)], order, frame)
		c, err := sensor.OpenCapture(bytes.NewReader(file))
		if err != nil {
			t.Fatal(err)
		}
		fr, err := c.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !strings.HasPrefix(err.Error(), "packet 1: ") {
				t.Fatalf("error not naming the packet: %v", err)
			}
			return
		}
		var p stages.Packet
		if err := (sensor.Decoder{}).Decode(sensor.NewTwin(sensor.Config{}).Parse(nil, fr.Data, sensor.Meta{WireLen: fr.WireLen}), &p); err != nil {
			t.Fatal(err)
		}
	})
}
