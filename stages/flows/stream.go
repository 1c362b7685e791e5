package flows

import "github.com/chains-sensor/chains-sensor/stages"

// Handler reads the application layer of what a flow table sees. The table knows its handlers
// only through this interface: it decides nothing about protocols. For every packet with a
// payload it either hands the payload to Packet, on its own, or (TCP) keeps it for the
// reassembly of its direction, whose bytes go in sequence order to the handlers that accepted
// the direction. A new protocol is one more Handler in Config.Handlers.
//
// The calls come from the goroutine that runs the table, one packet at a time; a handler sets
// the packet's application fields (Packet.DNS, HTTP, TLS) on the packet it is given.
type Handler interface {
	// Packet reads a payload on its own: a UDP datagram, a packet without a flow, or a TCP
	// segment of a direction that no handler reassembles (begun before the capture, read to
	// its end by every handler that accepted it, or denied a buffer).
	Packet(p *stages.Packet)
	// Accept is asked once for each direction of a TCP flow, with the direction's first bytes
	// (at least AcceptBytes of them, unless the direction can give no more): true makes the
	// table reassemble the direction and hand its bytes to Stream.
	Accept(f *stages.Flow, dir int, head []byte) bool
	// Stream is called with the packet that added bytes to (or stalled) the contiguous start of
	// a direction the handler accepted. It returns false once it wants no more of it; the
	// direction's later segments then go to Packet.
	Stream(p *stages.Packet, s *Stream) bool
}

// MaxHandlers bounds Config.Handlers.
const MaxHandlers = 8

// AcceptBytes is how many contiguous bytes a direction's start has when Handler.Accept is asked
// (fewer only when the direction stalls or ends first).
const AcceptBytes = 8

// maxSpans bounds the out-of-order pieces a Stream remembers beyond its contiguous prefix.
const maxSpans = 8

type span struct{ start, end int }

// direction is the reassembly state of one direction of a TCP flow.
type direction struct {
	stream  *Stream
	readers uint8  // handlers (bit i: Handlers[i]) reading the stream
	judged  bool   // Accept was asked
	done    bool   // no stream (any more): payloads go to Handler.Packet
	started bool   // a stream began in this direction, at base
	base    uint32 // its first sequence number
	isn     uint32 // the SYN's sequence number
	syn     bool   // a SYN was seen
	fin     bool   // a FIN was seen
}

// Stream is the leading bytes of one direction of a TCP flow, reassembled in sequence order
// from the payload of its segments, up to Config.StreamBytes. A segment whose payload was
// captured short of its declared length leaves a hole the stream cannot cross: it is then
// Stalled.
type Stream struct {
	buf      []byte // StreamBytes long; valid where spans say
	base     uint32 // sequence number of buf[0]
	contig   int    // bytes contiguous from base
	spans    [maxSpans]span
	nspans   int
	stalled  bool // a short-captured segment ends where the contiguous prefix ends
	segments int  // segments that added bytes
}

// Bytes returns the contiguous bytes reassembled from the start of the direction.
func (s *Stream) Bytes() []byte { return s.buf[:s.contig] }

// Stalled reports whether no more contiguous bytes can come: the buffer is full, or a segment
// captured short of its declared length left a hole at the end of Bytes.
func (s *Stream) Stalled() bool { return s.stalled || s.contig == len(s.buf) }

// Segments returns how many segments contributed bytes.
func (s *Stream) Segments() int { return s.segments }

// lone hands a payload to every handler on its own.
func (t *Table) lone(p *stages.Packet) {
	if len(p.Payload) == 0 {
		return
	}
	for _, h := range t.cfg.Handlers {
		h.Packet(p)
	}
}

// accept asks every handler whether it reads a direction that starts with head.
func (t *Table) accept(f *flow, dir int, head []byte) uint8 {
	var m uint8
	for i, h := range t.cfg.Handlers {
		if h.Accept(&f.Flow, dir, head) {
			m |= 1 << i
		}
	}
	return m
}

// feed takes a TCP payload of direction dir of f: into the direction's reassembly (starting
// one when its first bytes interest a handler), or to the handlers on its own.
func (t *Table) feed(f *flow, dir int, p *stages.Packet) {
	d := &f.dirs[dir]
	seq := dataSeq(p)
	if d.stream == nil {
		if d.done {
			if !d.started || seq != d.base { // not a retransmission of a stream's start
				t.lone(p)
			}
			return
		}
		base := seq
		if d.syn {
			base = d.isn + 1
		}
		off := int32(seq - base)
		if off < 0 || int(off) >= t.cfg.StreamBytes || len(t.cfg.Handlers) == 0 {
			d.done = true // mid-stream, too far in to matter, or no one to read it
			t.lone(p)
			return
		}
		if off == 0 && len(p.Payload) >= AcceptBytes {
			// The first segment says enough: no buffer unless a handler wants the bytes.
			d.judged = true
			if d.readers = t.accept(f, dir, p.Payload); d.readers == 0 {
				d.done = true
				t.lone(p)
				return
			}
		}
		if t.stats.StreamBytes+t.cfg.StreamBytes > t.cfg.StreamBudget {
			t.stats.StreamsDenied++
			d.done = true
			t.lone(p)
			return
		}
		d.stream = &Stream{base: base, buf: t.getBuf()}
		d.started, d.base = true, base
		t.stats.Streams++
		t.stats.StreamBytes += len(d.stream.buf)
	}
	s := d.stream
	if !s.add(seq, p.Payload, int(p.PayloadLen)) {
		return
	}
	if !d.judged {
		if s.contig < AcceptBytes && !(s.contig > 0 && s.Stalled()) {
			return
		}
		d.judged = true
		if d.readers = t.accept(f, dir, s.Bytes()); d.readers == 0 {
			t.release(d)
			if seq != d.base {
				t.lone(p)
			}
			return
		}
	}
	for i, h := range t.cfg.Handlers {
		if d.readers&(1<<i) != 0 && !h.Stream(p, s) {
			d.readers &^= 1 << i
		}
	}
	if d.readers == 0 {
		t.release(d)
	}
}

// dataSeq is the sequence number of p's first payload byte: a SYN (TCP Fast Open) takes one.
func dataSeq(p *stages.Packet) uint32 {
	if p.TCPFlags&stages.TCPSyn != 0 {
		return p.Seq + 1
	}
	return p.Seq
}

func (t *Table) getBuf() []byte {
	if n := len(t.bufs); n > 0 {
		b := t.bufs[n-1]
		t.bufs = t.bufs[:n-1]
		return b
	}
	return make([]byte, t.cfg.StreamBytes)
}

// release frees the reassembly buffer of a direction; its later payloads go to Handler.Packet.
func (t *Table) release(d *direction) {
	s := d.stream
	if s == nil {
		return
	}
	d.stream, d.readers, d.done = nil, 0, true
	t.stats.StreamBytes -= len(s.buf)
	if len(t.bufs) < 64 {
		t.bufs = append(t.bufs, s.buf)
	}
	s.buf = nil
}

// add stores a segment's captured bytes; declared is its payload length on the wire. It
// reports whether the contiguous prefix grew or stalled.
func (s *Stream) add(seq uint32, data []byte, declared int) bool {
	off := int(int32(seq - s.base))
	if declared < len(data) {
		declared = len(data)
	}
	if off < 0 { // begins before the stream: keep the part after base
		if -off >= len(data) {
			return false
		}
		data = data[-off:]
		declared += off
		off = 0
	}
	limit := len(s.buf)
	if off >= limit || len(data) == 0 {
		return false
	}
	short := len(data) < declared
	end := off + len(data)
	if end > limit {
		end = limit
		short = false
	}
	copy(s.buf[off:end], data)
	s.segments++
	if off <= s.contig {
		contig, stalled := s.contig, s.stalled
		if end > s.contig {
			s.contig = end
			s.stalled = false
		}
		s.mergeSpans()
		if short && end >= s.contig {
			s.stalled = true
		}
		return s.contig != contig || s.stalled != stalled
	}
	if s.nspans < maxSpans {
		s.spans[s.nspans] = span{off, end}
		s.nspans++
	}
	return false
}

// mergeSpans folds remembered out-of-order pieces into the contiguous prefix.
func (s *Stream) mergeSpans() {
	for changed := true; changed; {
		changed = false
		for i := 0; i < s.nspans; i++ {
			sp := s.spans[i]
			if sp.start > s.contig {
				continue
			}
			if sp.end > s.contig {
				s.contig = sp.end
			}
			s.nspans--
			s.spans[i] = s.spans[s.nspans]
			i--
			changed = true
		}
	}
}
