package stages

// What the consumers of a Stream still want from it (Stream.Want bits).
const (
	WantTLS  = 1 << 0 // the direction starts with a TLS handshake record
	WantHTTP = 1 << 1 // the direction starts with an HTTP request or response line
	WantDNS  = 1 << 2 // a TCP flow on a DNS port: the direction starts with a length-prefixed message
)

// maxSpans bounds the out-of-order pieces a Stream remembers beyond its contiguous prefix.
const maxSpans = 8

type span struct{ start, end int }

// Stream is the leading bytes of one direction of a TCP flow, reassembled in sequence order
// from the payload of its segments, up to FlowConfig.StreamBytes. The HTTP and TLS stages read
// it to decode a message that spans several segments. A segment whose payload was captured
// short of its declared length leaves a hole the stream cannot cross: it is then Stalled.
type Stream struct {
	// Want says which consumers still want bytes (WantTLS, WantHTTP). A consumer clears its
	// bit when done; the flow table frees the buffer once no bit is left.
	Want uint8

	buf      []byte // StreamBytes long; valid where spans say
	base     uint32 // sequence number of buf[0]
	contig   int    // bytes contiguous from base
	spans    [maxSpans]span
	nspans   int
	stalled  bool // a short-captured segment ends where the contiguous prefix ends
	judged   bool // Want was decided from the first bytes
	segments int  // segments that added bytes
}

// Bytes returns the contiguous bytes reassembled from the start of the direction.
func (s *Stream) Bytes() []byte { return s.buf[:s.contig] }

// Stalled reports whether no more contiguous bytes can come: the buffer is full, or a segment
// captured short of its declared length left a hole at the end of Bytes.
func (s *Stream) Stalled() bool { return s.stalled || s.contig == len(s.buf) }

// Segments returns how many segments contributed bytes.
func (s *Stream) Segments() int { return s.segments }

// feed adds p's payload to the reassembly of direction dir of f, starting one if the direction
// begins with something a consumer wants.
func (t *FlowTable) feed(f *Flow, dir int, p *Packet) {
	seq := dataSeq(p)
	s := f.streams[dir]
	if s == nil {
		if f.noStream[dir] {
			return
		}
		base := seq
		if f.synSeen[dir] {
			base = f.isn[dir] + 1
		}
		if base == seq && streamWant(p.Payload, f.dnsPort()) == 0 {
			f.noStream[dir] = true // the direction does not start with anything we decode
			return
		}
		if int32(seq-base) < 0 || int(seq-base) >= t.cfg.StreamBytes {
			f.noStream[dir] = true // mid-stream, or too far in to matter
			return
		}
		if t.stats.StreamBytes+t.cfg.StreamBytes > t.cfg.StreamBudget {
			t.stats.StreamsDenied++
			f.noStream[dir] = true
			return
		}
		s = &Stream{base: base, buf: t.getBuf()}
		t.stats.Streams++
		t.stats.StreamBytes += len(s.buf)
		f.streams[dir] = s
		f.streamStarted[dir], f.streamBase[dir] = true, base
	}
	s.add(seq, p.Payload, int(p.PayloadLen))
	if !s.judged && (s.contig >= 8 || (s.contig > 0 && s.Stalled())) {
		s.judged = true
		s.Want = streamWant(s.Bytes(), f.dnsPort())
		if s.Want == 0 {
			f.noStream[dir] = true
			t.release(f, dir)
		}
	}
}

// dataSeq is the sequence number of p's first payload byte: a SYN (TCP Fast Open) takes one.
func dataSeq(p *Packet) uint32 {
	if p.TCPFlags&TCPSyn != 0 {
		return p.Seq + 1
	}
	return p.Seq
}

// streamWant says which consumers want a direction that starts with b; dnsPort says the flow
// is to or from a DNS port.
func streamWant(b []byte, dnsPort bool) uint8 {
	var w uint8
	if dnsPort && len(b) >= 2 && int(b[0])<<8|int(b[1]) >= 12 {
		w |= WantDNS
	}
	if len(b) >= 3 && b[0] == 0x16 && b[1] == 3 && b[2] <= 4 {
		w |= WantTLS
	}
	if LooksHTTP(b) {
		w |= WantHTTP
	}
	return w
}

func (f *Flow) dnsPort() bool { return IsDNSPort(f.SrcPort) || IsDNSPort(f.DstPort) }

func (t *FlowTable) getBuf() []byte {
	if n := len(t.bufs); n > 0 {
		b := t.bufs[n-1]
		t.bufs = t.bufs[:n-1]
		return b
	}
	return make([]byte, t.cfg.StreamBytes)
}

// release frees the reassembly buffer of direction dir of f.
func (t *FlowTable) release(f *Flow, dir int) {
	s := f.streams[dir]
	if s == nil {
		return
	}
	f.streams[dir] = nil
	f.noStream[dir] = true
	t.stats.StreamBytes -= len(s.buf)
	if len(t.bufs) < 64 {
		t.bufs = append(t.bufs, s.buf)
	}
	s.buf = nil
}

// add stores a segment's captured bytes; declared is its payload length on the wire.
func (s *Stream) add(seq uint32, data []byte, declared int) {
	off := int(int32(seq - s.base))
	if declared < len(data) {
		declared = len(data)
	}
	if off < 0 { // begins before the stream: keep the part after base
		if -off >= len(data) {
			return
		}
		data = data[-off:]
		declared += off
		off = 0
	}
	limit := len(s.buf)
	if off >= limit || len(data) == 0 {
		return
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
		if end > s.contig {
			s.contig = end
			s.stalled = false
		}
		s.mergeSpans()
		if short && end >= s.contig {
			s.stalled = true
		}
		return
	}
	if s.nspans < maxSpans {
		s.spans[s.nspans] = span{off, end}
		s.nspans++
	}
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
