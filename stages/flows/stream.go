package flows

import "github.com/chains-sensor/chains-sensor/stages"

// Handler reads the application layer of what a flow table sees. The table knows its handlers
// only through this interface: it decides nothing about protocols. A payload the table does not
// reassemble (a UDP datagram, a packet without a flow, a RST's payload) goes to Packet, on its
// own. A TCP direction is read by at most one handler at a time, the first that Accepts it: the
// table hands it the direction's bytes in sequence order, through a Stream it Consumes message
// by message, for as long as it wants them. A direction no handler reads (yet, or any more) is
// judged again at the start of each of its segments, so a protocol that starts later in a
// connection (after CONNECT or STARTTLS, or after a response body the handler could not skip)
// is found too. A new protocol is one more Handler in Config.Handlers.
//
// The calls come from the goroutine that runs the table, one packet at a time; a handler sets
// the packet's application fields (Packet.DNS, HTTP, TLS) on the packet it is given.
type Handler interface {
	// Packet reads a payload on its own: a UDP datagram, a packet without a flow, a RST's
	// payload.
	Packet(p *stages.Packet)
	// Accept says whether the handler reads a TCP direction from head on. start says head is
	// the direction's beginning (the byte after its SYN, or the first byte seen of a direction
	// whose SYN was not): then it has at least AcceptBytes bytes, unless the direction can give
	// no more. Otherwise head is the payload of a segment of a direction no handler reads, and
	// the handler should ask more of it before it accepts.
	Accept(f *stages.Flow, dir int, head []byte, start bool) bool
	// Stream is called with the packet that added bytes to (or stalled) the window of a
	// direction the handler reads. The handler reads the messages at the start of s.Bytes(),
	// reports those this packet completed on p, and Consumes them. It returns false once it
	// reads no more of the direction (it lost its place, or the protocol goes on encrypted).
	// When s.Stalled(), no more bytes can come where the window ends: the handler reports what
	// it has; unless it consumed its way past the hole, the table ends the stream after the call.
	Stream(p *stages.Packet, s *Stream) bool
}

// MaxHandlers bounds Config.Handlers.
const MaxHandlers = 8

// AcceptBytes is how many contiguous bytes a direction's start has when Handler.Accept is asked
// about it (fewer only when the direction stalls or ends first): a first segment of one, two
// or three bytes does not hide what follows.
const AcceptBytes = 8

// maxSpans bounds the out-of-order pieces a Stream remembers beyond its contiguous prefix.
const maxSpans = 8

type span struct{ start, end int }

// direction is the reassembly state of one direction of a TCP flow.
type direction struct {
	stream  *Stream
	reader  int8   // the handler reading stream (-1: the start is still being judged)
	started bool   // the direction's start was seen (judged, or being judged)
	next    uint32 // with started and no stream: the sequence number up to which the direction was read
	isn     uint32 // the SYN's sequence number
	syn     bool   // a SYN was seen
	fin     bool   // a FIN was seen
}

// Stream is a window onto one direction of a TCP flow: its bytes from the reader's position on,
// reassembled in sequence order, at most Config.StreamBytes of them. The reader Consumes what
// it has read, which moves the window on; it may consume past what has arrived, to skip a
// message body it need not see (the bytes it skips need not have been captured). A segment
// captured short of its declared length leaves a hole the window cannot cross: the stream is
// then Stalled until the reader skips past it.
type Stream struct {
	t        *Table
	win      []byte // the window's storage: buf, or the current packet's payload (view)
	buf      []byte // the table's buffer, when the window holds bytes across packets
	view     bool   // win aliases the payload of the packet being handled
	base     uint32 // sequence number of win[0]: the reader's position
	contig   int    // bytes contiguous from base
	spans    [maxSpans]span
	nspans   int
	stalled  bool // bytes up to holeEnd are lost where the contiguous prefix ends
	holeEnd  int
	finSeq   uint32 // with fin: the sequence number just past the direction's last byte
	fin      bool
	segments int    // segments that added bytes to what the window holds
	read     uint64 // bytes consumed so far
	consumed bool   // Consume was called during the current handler call
}

// Bytes returns the contiguous bytes at the reader's position. They are valid until the
// handler returns or calls Consume.
func (s *Stream) Bytes() []byte { return s.win[:s.contig] }

// Stalled reports whether no more contiguous bytes can come at the end of Bytes: the window is
// full, a segment captured short of its declared length left a hole there, or the direction
// ended (FIN) there.
func (s *Stream) Stalled() bool {
	return s.stalled || s.contig == s.t.cfg.StreamBytes || (s.fin && s.base+uint32(s.contig) == s.finSeq)
}

// Segments returns how many segments contributed the bytes the window holds (a segment whose
// start an earlier message took counts too).
func (s *Stream) Segments() int { return s.segments }

// Offset returns how many bytes of the direction the reader consumed so far.
func (s *Stream) Offset() uint64 { return s.read }

// Consume tells the stream that the reader is done with the first n bytes at its position; n
// may exceed len(Bytes()), to skip bytes that have not arrived (or were not captured).
func (s *Stream) Consume(n int) {
	if n <= 0 {
		return
	}
	s.consumed = true
	s.read += uint64(n)
	s.base += uint32(n)
	if s.stalled {
		if s.holeEnd <= n {
			s.stalled = false
		} else {
			s.holeEnd -= n
		}
	}
	if s.view {
		if n >= s.contig {
			s.win, s.contig, s.view = nil, 0, false
		} else {
			s.win, s.contig = s.win[n:], s.contig-n
		}
	} else {
		end := s.contig
		for _, sp := range s.spans[:s.nspans] {
			end = max(end, sp.end)
		}
		if n < end {
			copy(s.buf, s.buf[n:end])
		}
		s.contig = max(s.contig-n, 0)
		k := 0
		for _, sp := range s.spans[:s.nspans] {
			sp.start, sp.end = max(sp.start-n, 0), sp.end-n
			if sp.end > 0 {
				s.spans[k] = sp
				k++
			}
		}
		s.nspans = k
		s.mergeSpans()
	}
	if s.contig > 0 {
		s.segments = 1
	} else {
		s.segments = 0
	}
}

// lone hands a payload to every handler on its own.
func (t *Table) lone(p *stages.Packet) {
	if len(p.Payload) == 0 {
		return
	}
	for _, h := range t.cfg.Handlers {
		h.Packet(p)
	}
}

// accept returns the first handler that reads a direction from head on, or -1.
func (t *Table) accept(f *flow, dir int, head []byte, start bool) int8 {
	for i, h := range t.cfg.Handlers {
		if h.Accept(&f.Flow, dir, head, start) {
			return int8(i)
		}
	}
	return -1
}

// seqLess reports whether sequence number a comes before b (RFC 1982 arithmetic).
func seqLess(a, b uint32) bool { return int32(a-b) < 0 }

// feed takes a TCP segment of direction dir of f (with a payload, or a FIN): into the stream a
// handler reads; into the judging of the direction's start, which waits for AcceptBytes of it
// however the first segments cut them; or, for a direction no handler reads, to the handlers'
// Accept on its own.
func (t *Table) feed(f *flow, dir int, p *stages.Packet) {
	if len(t.cfg.Handlers) == 0 {
		return
	}
	d := &f.dirs[dir]
	seq := dataSeq(p)
	end := seq + uint32(max(int(p.PayloadLen), len(p.Payload)))
	if d.stream == nil {
		if len(p.Payload) == 0 {
			return
		}
		if !d.started {
			d.started = true
			d.next = seq
			if d.syn && uint32(seq-(d.isn+1)) < uint32(t.cfg.StreamBytes) {
				d.next = d.isn + 1
				t.open(d, d.next, -1)
				t.deliver(f, dir, d, p, seq, end)
				return
			}
		}
		if seqLess(seq, d.next) { // a retransmission, or the rest of a segment read before
			if seqLess(d.next, end) {
				d.next = end
			}
			return
		}
		d.next = end
		r := t.accept(f, dir, p.Payload, false)
		if r < 0 {
			return
		}
		t.open(d, seq, r)
	}
	t.deliver(f, dir, d, p, seq, end)
}

// open begins a stream at base for handler reader (-1: the direction's start is being judged).
func (t *Table) open(d *direction, base uint32, reader int8) {
	var s *Stream
	if n := len(t.streams); n > 0 {
		s = t.streams[n-1]
		t.streams = t.streams[:n-1]
	} else {
		s = new(Stream)
	}
	*s = Stream{t: t, base: base}
	d.stream, d.reader = s, reader
	t.stats.Streams++
}

// deliver adds p's payload to the direction's stream and hands the stream to its reader.
func (t *Table) deliver(f *flow, dir int, d *direction, p *stages.Packet, seq, end uint32) {
	s := d.stream
	if p.TCPFlags&stages.TCPFin != 0 {
		s.fin, s.finSeq = true, end
	}
	grew, ok := s.add(seq, p.Payload, int(p.PayloadLen))
	if !ok {
		t.stats.StreamsDenied++
		t.endStream(d)
		return
	}
	if !grew && !(p.TCPFlags&stages.TCPFin != 0 && s.Stalled()) {
		return
	}
	if d.reader < 0 {
		if s.contig < AcceptBytes && !s.Stalled() {
			t.settle(d)
			return
		}
		if s.contig == 0 {
			t.endStream(d)
			return
		}
		if d.reader = t.accept(f, dir, s.Bytes(), true); d.reader < 0 {
			t.endStream(d)
			return
		}
	}
	s.consumed = false
	if !t.cfg.Handlers[d.reader].Stream(p, s) || (s.Stalled() && !s.consumed) {
		t.endStream(d)
		return
	}
	t.settle(d)
}

// settle runs after a handler returned: bytes left in a view of the packet's payload are copied
// into a buffer of the table's, and an empty window gives its buffer back.
func (t *Table) settle(d *direction) {
	s := d.stream
	switch {
	case s.view && s.contig > 0:
		if !s.alloc() {
			t.stats.StreamsDenied++
			t.endStream(d)
			return
		}
		copy(s.buf, s.win[:s.contig])
		s.win, s.view = s.buf, false
	case s.view:
		s.win, s.view = nil, false
	case s.buf != nil && s.contig == 0 && s.nspans == 0:
		t.putBuf(s)
	}
}

// endStream ends the direction's stream: the reader reads no more of it, and its later
// segments are judged on their own.
func (t *Table) endStream(d *direction) {
	s := d.stream
	if s == nil {
		return
	}
	d.next = s.base + uint32(s.contig)
	if s.view {
		s.win, s.view = nil, false
	}
	t.putBuf(s)
	*s = Stream{}
	if len(t.streams) < 1024 {
		t.streams = append(t.streams, s)
	}
	d.stream, d.reader = nil, -1
}

// dataSeq is the sequence number of p's first payload byte: a SYN (TCP Fast Open) takes one.
func dataSeq(p *stages.Packet) uint32 {
	if p.TCPFlags&stages.TCPSyn != 0 {
		return p.Seq + 1
	}
	return p.Seq
}

// alloc gives s a buffer from the table's pool, within the budget of Config.StreamBudget.
func (s *Stream) alloc() bool {
	t := s.t
	if s.buf != nil {
		return true
	}
	if t.stats.StreamBytes+t.cfg.StreamBytes > t.cfg.StreamBudget {
		return false
	}
	if n := len(t.bufs); n > 0 {
		s.buf = t.bufs[n-1]
		t.bufs = t.bufs[:n-1]
	} else {
		s.buf = make([]byte, t.cfg.StreamBytes)
	}
	t.stats.StreamBytes += len(s.buf)
	return true
}

// putBuf gives s's buffer back to the table's pool.
func (t *Table) putBuf(s *Stream) {
	if s.buf == nil {
		return
	}
	t.stats.StreamBytes -= len(s.buf)
	if len(t.bufs) < 64 {
		t.bufs = append(t.bufs, s.buf)
	}
	if !s.view {
		s.win = nil
	}
	s.buf = nil
	s.contig, s.nspans, s.segments = 0, 0, 0
}

// release frees a direction's stream (its flow leaves the table).
func (t *Table) release(d *direction) { t.endStream(d) }

// add stores a segment's captured bytes; declared is its payload length on the wire. It
// reports whether the contiguous prefix grew or stalled, and false for ok when the bytes
// needed a buffer the budget could not give.
func (s *Stream) add(seq uint32, data []byte, declared int) (grew, ok bool) {
	off := int(int32(seq - s.base))
	if declared < len(data) {
		declared = len(data)
	}
	if off < 0 { // begins before the window: keep the part after base
		if -off >= len(data) {
			return false, true
		}
		data = data[-off:]
		declared += off
		off = 0
	}
	limit := s.t.cfg.StreamBytes
	if off >= limit || len(data) == 0 {
		return false, true
	}
	short := len(data) < declared
	end := off + len(data)
	if end > limit {
		end = limit
		short = false
	}
	if s.buf == nil {
		if !s.view && s.contig == 0 && s.nspans == 0 && off == 0 {
			// The common case: the segment starts where the reader stands. The handler reads
			// it in place; only what it leaves is copied (settle).
			s.win, s.view, s.contig, s.segments = data[:end], true, end, 1
			s.stalled, s.holeEnd = short, declared
			return true, true
		}
		if !s.alloc() {
			return false, false
		}
		s.win = s.buf
	}
	copy(s.buf[off:end], data[:end-off])
	s.segments++
	if off <= s.contig {
		contig, stalled := s.contig, s.stalled
		if end > s.contig {
			s.contig = end
			s.stalled = false
		}
		s.mergeSpans()
		if short && end >= s.contig {
			s.stalled, s.holeEnd = true, off+declared
		}
		return s.contig != contig || s.stalled != stalled, true
	}
	if s.nspans < maxSpans {
		s.spans[s.nspans] = span{off, end}
		s.nspans++
	}
	return false, true
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

// Size returns the window's capacity, Config.StreamBytes: a message longer than that can never
// be whole in it.
func (s *Stream) Size() int { return s.t.cfg.StreamBytes }
