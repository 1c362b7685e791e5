package flows

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// recorder is a Handler that accepts every direction and keeps what it is given.
type recorder struct {
	want    bool
	bytes   []byte // the stream's bytes when last called
	calls   int
	lone    int
	stalled bool
}

func (r *recorder) Packet(*stages.Packet)                 { r.lone++ }
func (r *recorder) Accept(*stages.Flow, int, []byte) bool { return r.want }
func (r *recorder) Stream(_ *stages.Packet, s *Stream) bool {
	r.calls++
	r.bytes = append(r.bytes[:0], s.Bytes()...)
	r.stalled = s.Stalled()
	return true
}

// FuzzStream cuts a message into segments, delivers them in a shuffled order (some twice) and
// checks the reassembly against the message itself: what the handler last saw is the message's
// start, all of it (up to the buffer) once every segment came.
func FuzzStream(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), uint8(5), uint64(1))
	f.Add(bytes.Repeat([]byte{0x16, 3, 1}, 300), uint8(64), uint64(7))
	f.Fuzz(func(t *testing.T, msg []byte, size uint8, seed uint64) {
		if len(msg) == 0 || size == 0 {
			return
		}
		const streamBytes = 512
		rec := &recorder{want: true}
		tb := New(Config{MaxFlows: 4, StreamBytes: streamBytes, Handlers: []Handler{rec}})
		at := time.Unix(1700000000, 0)
		mk := func(flags uint8, seq uint32, payload []byte) *stages.Packet {
			return &stages.Packet{Time: at, IPVersion: 4, Proto: stages.ProtoTCP, Src: netipA, Dst: netipB, SrcPort: 40000, DstPort: 9,
				TCPFlags: flags, Seq: seq, Payload: payload, PayloadLen: uint16(len(payload))}
		}
		tb.Process(mk(stages.TCPSyn, 999, nil))
		var segs []*stages.Packet
		for off := 0; off < len(msg); off += int(size) {
			segs = append(segs, mk(stages.TCPAck, 1000+uint32(off), msg[off:min(off+int(size), len(msg))]))
		}
		rng := rand.New(rand.NewPCG(seed, seed>>1))
		order := rng.Perm(len(segs))
		order = append(order, order[:len(order)/3]...) // retransmissions
		for _, i := range order {
			tb.Process(segs[i])
		}
		whole := msg[:min(len(msg), streamBytes)]
		if !bytes.HasPrefix(whole, rec.bytes) {
			t.Fatalf("reassembled %q is not the start of %q", rec.bytes, whole)
		}
		if len(whole) >= AcceptBytes && len(segs) <= maxSpans && !bytes.Equal(rec.bytes, whole) {
			t.Fatalf("reassembled %d bytes of %d", len(rec.bytes), len(whole))
		}
		if st := tb.Stats(); st.StreamBytes > streamBytes {
			t.Fatalf("%d bytes held", st.StreamBytes)
		}
		tb.Flush()
		if st := tb.Stats(); st.StreamBytes != 0 || tb.Len() != 0 {
			t.Fatalf("after flush: %+v", st)
		}
	})
}

// TestHandlerNotAccepting: a direction no handler accepts is never buffered; its payloads go
// to Packet, each once.
func TestHandlerNotAccepting(t *testing.T) {
	rec := &recorder{}
	tb := New(Config{Handlers: []Handler{rec}})
	for i := range 5 {
		tb.Process(&stages.Packet{Time: time.Unix(1700000000, 0), IPVersion: 4, Proto: stages.ProtoTCP, Src: netipA, Dst: netipB,
			SrcPort: 40000, DstPort: 22, TCPFlags: stages.TCPAck, Seq: uint32(1000 + 100*i), Payload: make([]byte, 100), PayloadLen: 100})
	}
	if st := tb.Stats(); st.Streams != 0 || rec.calls != 0 || rec.lone != 5 {
		t.Errorf("streams %d, stream calls %d, lone %d", st.Streams, rec.calls, rec.lone)
	}
}

var netipA, netipB = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
