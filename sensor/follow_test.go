package sensor_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// A segment of the client's direction: its TCP flags, its sequence number and its payload.
type followSeg struct {
	syn, fin bool
	seq      uint32
	payload  []byte
	// large: the whole payload is captured (the large class); else the small class's 64 bytes.
	large bool
}

func followFrame(t testing.TB, sport uint16, s followSeg) []byte {
	t.Helper()
	tc := tcpL(sport, 443)
	tc.Seq, tc.SYN, tc.FIN = s.seq, s.syn, s.fin
	tc.ACK, tc.PSH = !s.syn, len(s.payload) > 0
	ip := ip4L("192.0.2.1", "192.0.2.2", layers.IPProtocolTCP)
	if err := tc.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return ser(t, ethL(layers.EthernetTypeIPv4), ip, tc, gopacket.Payload(s.payload))
}

// A ClientHello of 1800 bytes in a TLS record, cut after 1400 bytes of the record: the values
// below are counted by hand from how it is built.
func splitHello() (first, second []byte) {
	rec := make([]byte, 5+1800)
	copy(rec, []byte{0x16, 0x03, 0x01})
	binary.BigEndian.PutUint16(rec[3:], 1800)
	rec[5] = 1 // client_hello
	for i := 6; i < len(rec); i++ {
		rec[i] = byte(i*7 + 1) // no 0x16 03 nor HTTP method at the cut
	}
	return rec[:1400], rec[1400:]
}

func followCases() map[string][]followSeg {
	h1, h2 := splitHello()
	head := "GET /a HTTP/1.1\r\nHost: example.test\r\nCookie: " + strings.Repeat("c", 1200)
	tail := strings.Repeat("d", 300) + "\r\nUser-Agent: t\r\n\r\n"
	bulk := bytes.Repeat([]byte{0xaa}, 500)
	return map[string][]followSeg{
		// The second segment of the hello starts nothing, yet comes whole; the data after the
		// record does not.
		"hello in two segments": {
			{seq: 1000, payload: h1, large: true},
			{seq: 1000 + uint32(len(h1)), payload: h2, large: true},
			{seq: 1000 + uint32(len(h1)+len(h2)), payload: bulk},
		},
		// Out of order: the SYN opens the direction's first bytes, so the continuation coming
		// before the record's start is whole too.
		"hello reversed after a SYN": {
			{syn: true, seq: 999},
			{seq: 1000 + uint32(len(h1)), payload: h2, large: true},
			{seq: 1000, payload: h1, large: true},
		},
		"http head in two segments": {
			{seq: 5, payload: []byte(head), large: true},
			{seq: 5 + uint32(len(head)), payload: []byte(tail), large: true},
			{seq: 5 + uint32(len(head)+len(tail)), payload: bulk},
		},
		// A first segment of one byte (an evasion) opens a window for the rest of the head.
		"http head after one byte": {
			{seq: 70, payload: []byte("G"), large: true},
			{seq: 71, payload: []byte(head[1:]), large: true},
			{seq: 71 + uint32(len(head)-1), payload: []byte(tail), large: true},
		},
		// Bulk data opens nothing; a FIN closes a window.
		"bulk and fin": {
			{seq: 9, payload: bulk},
			{seq: 509, payload: h1, large: true},
			{seq: 1909, fin: true},
			{seq: 1909, payload: h2},
		},
	}
}

// TestFollowKernel replays TCP directions whose messages span segments through both programs
// and the twin: every segment inside a message gets the large class (its whole payload), the
// others the small one, and kernel and twin agree byte for byte.
func TestFollowKernel(t *testing.T) {
	sensortest.RequireBPF(t)
	for dir := uint8(0); dir < 2; dir++ {
		_, rep := loadWith(t, sensor.Config{})
		twin := sensor.NewTwin(sensor.Config{})
		sport := uint16(40000) // a direction per case
		for name, segs := range followCases() {
			sport++
			for i, s := range segs {
				frame := followFrame(t, sport, s)
				m := sensor.Meta{Dir: dir}
				raw, err := rep.Replay(frame, m)
				if err != nil {
					t.Fatalf("%s dir %d segment %d: %v", name, dir, i, err)
				}
				if tw := twin.Parse(nil, frame, m); !bytes.Equal(raw, tw) {
					t.Errorf("%s dir %d segment %d: kernel %x\ntwin %x", name, dir, i, raw, tw)
				}
				var p stages.Packet
				if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
					t.Fatal(err)
				}
				want := min(len(s.payload), sensor.DefaultSnapSmall)
				if s.large {
					want = len(s.payload)
				}
				if len(p.Payload) != want || int(p.PayloadLen) != len(s.payload) || !bytes.Equal(p.Payload, s.payload[:want]) {
					t.Errorf("%s dir %d segment %d: %d of %d payload bytes captured, want %d", name, dir, i, len(p.Payload), p.PayloadLen, want)
				}
			}
		}
	}
}

// TestFollowNoFollow: with following off the continuation of a hello gets the small class.
func TestFollowNoFollow(t *testing.T) {
	sensortest.RequireBPF(t)
	_, rep := loadWith(t, sensor.Config{NoFollow: true})
	twin := sensor.NewTwin(sensor.Config{NoFollow: true})
	h1, h2 := splitHello()
	for i, s := range []followSeg{{seq: 1, payload: h1}, {seq: 1 + uint32(len(h1)), payload: h2}} {
		frame := followFrame(t, 40001, s)
		raw, err := rep.Replay(frame, sensor.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		if tw := twin.Parse(nil, frame, sensor.Meta{}); !bytes.Equal(raw, tw) {
			t.Errorf("segment %d: kernel %x\ntwin %x", i, raw, tw)
		}
		var p stages.Packet
		if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
			t.Fatal(err)
		}
		if want := []int{len(h1), sensor.DefaultSnapSmall}[i]; len(p.Payload) != want {
			t.Errorf("segment %d: %d payload bytes, want %d", i, len(p.Payload), want)
		}
	}
}

// TestFollowBound opens more windows than the map holds: it keeps no more than its bound, the
// counters account for every window (opened = closed + evicted + left), and the evictions are
// those the bound forces.
func TestFollowBound(t *testing.T) {
	sensortest.RequireBPF(t)
	const bound, flows = 8, 64
	objs, rep := loadWith(t, sensor.Config{FollowFlows: bound})
	if got := objs.Follow.MaxEntries(); got != bound {
		t.Fatalf("follow map of %d entries, want %d", got, bound)
	}
	h1, h2 := splitHello()
	for i := range flows {
		if _, err := rep.Replay(followFrame(t, uint16(20000+i), followSeg{seq: 1, payload: h1}), sensor.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	// The last flow's window is still there: its continuation comes whole and closes it.
	raw, err := rep.Replay(followFrame(t, uint16(20000+flows-1), followSeg{seq: 1 + uint32(len(h1)), payload: h2}), sensor.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	var p stages.Packet
	if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Payload) != len(h2) {
		t.Errorf("the newest window's continuation: %d payload bytes, want %d", len(p.Payload), len(h2))
	}
	k, err := sensor.ReadKernelCounts(objs)
	if err != nil {
		t.Fatal(err)
	}
	f := k.Follow
	if f.Opened != flows || f.Closed != 1 || f.Followed != 1 || f.Live > bound || k.FollowBound != bound {
		t.Errorf("follow counts %+v, bound %d: want %d opened, 1 closed and followed, at most %d left", f, k.FollowBound, flows, bound)
	}
	if f.Evicted != f.Opened-f.Closed-uint64(f.Live) || f.Evicted < flows-bound {
		t.Errorf("evicted %d: want opened - closed - left (%d), at least %d", f.Evicted, f.Opened-f.Closed-uint64(f.Live), flows-bound)
	}
	var b strings.Builder
	sensor.WriteStats(&b, k, sensor.LiveCounts{})
	if want := "evicted from the full table (bound 8)"; !strings.Contains(b.String(), want) {
		t.Errorf("stats line lacks %q:\n%s", want, b.String())
	}
}

// TestFollowTwinBound: the twin's table has the same bound and the same accounting.
func TestFollowTwinBound(t *testing.T) {
	twin := sensor.NewTwin(sensor.Config{FollowFlows: 8})
	h1, _ := splitHello()
	for i := range 64 {
		twin.Parse(nil, followFrame(t, uint16(20000+i), followSeg{seq: 1, payload: h1}), sensor.Meta{})
	}
	if s := twin.Follow.Stats(); s.Opened != 64 || s.Live != 8 || s.Evicted != 56 {
		t.Errorf("twin follow stats %+v: want 64 opened, 8 left, 56 evicted", s)
	}
}

// TestQUICInitialLarge: a QUIC v1 or v2 Initial on any UDP port gets the large class (RFC 9000
// 17.2.2: long header, fixed bit, type 0; RFC 9369 3.2: type 1 in v2); a 1-RTT packet and a v1
// Handshake packet the small one, in the kernel and the twin.
func TestQUICInitialLarge(t *testing.T) {
	_, rep := loadObjects(t)
	twin := sensor.NewTwin(sensor.Config{})
	pkt := func(first byte, version uint32) []byte {
		b := make([]byte, 1200)
		b[0] = first
		binary.BigEndian.PutUint32(b[1:], version)
		return b
	}
	for _, c := range []struct {
		name    string
		payload []byte
		whole   bool
	}{
		{"v1 initial", pkt(0xc3, 1), true},
		{"v2 initial", pkt(0xd3, 0x6b3343cf), true},
		{"v1 handshake", pkt(0xe3, 1), false},
		{"v2 type 0 (0-RTT)", pkt(0xc3, 0x6b3343cf), false},
		{"1-rtt", pkt(0x43, 1), false},
	} {
		frame := ser(t, ethL(layers.EthernetTypeIPv4), ip4L("192.0.2.1", "192.0.2.2", layers.IPProtocolUDP), udpL(50000, 4433), gopacket.Payload(c.payload))
		raw, err := rep.Replay(frame, sensor.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		if tw := twin.Parse(nil, frame, sensor.Meta{}); !bytes.Equal(raw, tw) {
			t.Errorf("%s: kernel and twin differ", c.name)
		}
		var p stages.Packet
		if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
			t.Fatal(err)
		}
		want := sensor.DefaultSnapSmall
		if c.whole {
			want = len(c.payload)
		}
		if len(p.Payload) != want {
			t.Errorf("%s: %d payload bytes, want %d", c.name, len(p.Payload), want)
		}
	}
}
