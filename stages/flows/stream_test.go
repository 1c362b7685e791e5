package flows

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// recorder is a Handler that accepts every direction and keeps what it is given.
type recorder struct {
	want    bool
	judged  int
	bytes   []byte // the stream's bytes when last called
	calls   int
	lone    int
	stalled bool
}

func (r *recorder) Packet(*stages.Packet) { r.lone++ }
func (r *recorder) Accept(_ *stages.Flow, _ int, _ []byte, start bool) bool {
	r.judged++
	return r.want && start
}
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

// TestHandlerNotAccepting: a direction no handler accepts is never buffered; each of its
// segments is judged once, on its own, and none goes to Packet.
func TestHandlerNotAccepting(t *testing.T) {
	rec := &recorder{}
	tb := New(Config{Handlers: []Handler{rec}})
	for i := range 5 {
		tb.Process(&stages.Packet{Time: time.Unix(1700000000, 0), IPVersion: 4, Proto: stages.ProtoTCP, Src: netipA, Dst: netipB,
			SrcPort: 40000, DstPort: 22, TCPFlags: stages.TCPAck, Seq: uint32(1000 + 100*i), Payload: make([]byte, 100), PayloadLen: 100})
	}
	// A retransmission of a segment judged before is not judged again.
	tb.Process(&stages.Packet{Time: time.Unix(1700000000, 0), IPVersion: 4, Proto: stages.ProtoTCP, Src: netipA, Dst: netipB,
		SrcPort: 40000, DstPort: 22, TCPFlags: stages.TCPAck, Seq: 1100, Payload: make([]byte, 100), PayloadLen: 100})
	if st := tb.Stats(); st.Streams != 0 || st.StreamBytes != 0 || rec.calls != 0 || rec.lone != 0 || rec.judged != 5 {
		t.Errorf("streams %d, stream calls %d, lone %d, judged %d", st.Streams, rec.calls, rec.lone, rec.judged)
	}
}

// consumer reads length-prefixed messages (one length byte) from the streams it accepts,
// consuming each, and keeps them.
type consumer struct {
	msgs    []string
	give    int // after this many messages, give up the direction (0: never)
	judged  []string
	stalled int
}

func (c *consumer) Packet(*stages.Packet) {}
func (c *consumer) Accept(_ *stages.Flow, _ int, head []byte, start bool) bool {
	c.judged = append(c.judged, string(head))
	return len(head) > 0 && head[0] == '>'
}
func (c *consumer) Stream(_ *stages.Packet, s *Stream) bool {
	for {
		b := s.Bytes()
		if len(b) < 2 {
			return !s.Stalled()
		}
		n := int(b[1])
		if len(b) < 2+n {
			if s.Stalled() {
				c.stalled++
				s.Consume(2 + n)
				continue
			}
			return true
		}
		c.msgs = append(c.msgs, string(b[2:2+n]))
		s.Consume(2 + n)
		if c.give > 0 && len(c.msgs) == c.give {
			return false
		}
	}
}

func msg(s string) []byte { return append([]byte{'>', byte(len(s))}, s...) }

// TestStreamConsumes: a reader consumes message after message; the window follows it
// across segments that cut messages anywhere, holds no buffer once nothing is left over, and
// skips a message whose middle was captured short (the next one is read).
func TestStreamConsumes(t *testing.T) {
	c := &consumer{}
	tb := New(Config{Handlers: []Handler{c}})
	at := time.Unix(1700000000, 0)
	seq := uint32(1001)
	send := func(b []byte, declared int) {
		tb.Process(&stages.Packet{Time: at, IPVersion: 4, Proto: stages.ProtoTCP, Src: netipA, Dst: netipB, SrcPort: 40000, DstPort: 7,
			TCPFlags: stages.TCPAck, Seq: seq, Payload: b, PayloadLen: uint16(declared)})
		seq += uint32(declared)
	}
	tb.Process(&stages.Packet{Time: at, IPVersion: 4, Proto: stages.ProtoTCP, Src: netipA, Dst: netipB, SrcPort: 40000, DstPort: 7,
		TCPFlags: stages.TCPSyn, Seq: 1000})
	var all []byte
	for _, m := range []string{"one", "two", "three", "four"} {
		all = append(all, msg(m)...)
	}
	send(all[:3], 3) // ">\x03o": a start too short to judge
	send(all[3:9], 6)
	send(all[9:], len(all)-9)
	if st := tb.Stats(); st.StreamBytes != 0 {
		t.Errorf("%d bytes held with nothing left over", st.StreamBytes)
	}
	long := msg("a message captured only in part")
	send(long[:6], len(long)) // the rest of it is not in the capture
	send(msg("after"), 7)
	if want := []string{"one", "two", "three", "four", "after"}; !slices.Equal(c.msgs, want) || c.stalled != 1 {
		t.Errorf("messages %q (stalled %d), want %q", c.msgs, c.stalled, want)
	}
}

// TestStreamJudgedAgain: once its reader gives a direction up, the direction's later segments
// are judged on their own, and a reader takes it again where one says so.
func TestStreamJudgedAgain(t *testing.T) {
	c := &consumer{give: 1}
	tb := New(Config{Handlers: []Handler{c}})
	at := time.Unix(1700000000, 0)
	mk := func(seq uint32, b []byte) *stages.Packet {
		return &stages.Packet{Time: at, IPVersion: 4, Proto: stages.ProtoTCP, Src: netipA, Dst: netipB, SrcPort: 40000, DstPort: 7,
			TCPFlags: stages.TCPAck, Seq: seq, Payload: b, PayloadLen: uint16(len(b))}
	}
	tb.Process(&stages.Packet{Time: at, IPVersion: 4, Proto: stages.ProtoTCP, Src: netipA, Dst: netipB, SrcPort: 40000, DstPort: 7,
		TCPFlags: stages.TCPSyn, Seq: 1000})
	first := append(msg("first"), "junk"...)
	tb.Process(mk(1001, first))
	tb.Process(mk(1001+uint32(len(first)), []byte("bulk data")))
	tb.Process(mk(1001+uint32(len(first))+9, msg("again")))
	tb.Process(mk(1001, first)) // a retransmission: read already
	if !slices.Equal(c.msgs, []string{"first", "again"}) {
		t.Errorf("messages %q", c.msgs)
	}
	if want := []string{string(first), "bulk data", string(msg("again"))}; !slices.Equal(c.judged, want) {
		t.Errorf("judged %q, want %q", c.judged, want)
	}
}

var netipA, netipB = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
