package protocols

import (
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// QUICConfig configures the QUIC handler. The zero value is usable: defaults apply.
type QUICConfig struct {
	MaxConns int           // handshakes followed at once (default 4096); a new one evicts the oldest
	Timeout  time.Duration // a handshake is forgotten this long after its last Initial (default 10s)
	MaxHello int           // longest hello reassembled from CRYPTO frames (default 16 KiB)
	Budget   int           // bytes of all reassembly buffers together (default 8 MiB)
}

// Defaults of QUICConfig.
const (
	DefaultQUICConns   = 4096
	DefaultQUICTimeout = 10 * time.Second
	DefaultQUICHello   = 16 << 10
	DefaultQUICBudget  = 8 << 20
)

// QUICStats counts what the QUIC handler did.
type QUICStats struct {
	Initials    uint64 // Initial packets decrypted
	Undecrypted uint64 // long headers of a known version whose Initial did not decrypt
	Hellos      uint64 // ClientHellos and ServerHellos reported
	Conns       int    // handshakes followed now
	ConnsPeak   int    // the most handshakes followed at once
	MaxConns    int    // the handshakes table's bound (QUICConfig.MaxConns, or its default)
	Evicted     uint64 // handshakes forgotten, unfinished, to make room in the full table
	Expired     uint64 // handshakes forgotten after Timeout without an Initial
	Denied      uint64 // CRYPTO frames not kept because the buffers' budget was spent
	Bytes       int    // bytes held by reassembly buffers now
}

// quicSide is one direction of a handshake: its keys and its CRYPTO stream's start.
type quicSide struct {
	keys *quicKeys
	buf  []byte // the CRYPTO stream from offset 0, as far as known
	have []span // received ranges of buf, merged
	done bool   // its hello was reported (or cannot be)
	n    int    // Initials that added CRYPTO data
}

type span struct{ start, end int }

// quicConn is a handshake followed: the client's first Destination Connection ID (from which
// both sides' Initial keys derive) and each side's CRYPTO stream.
type quicConn struct {
	v     *quicVersion
	dcid  [20]byte
	dlen  uint8
	sides [2]quicSide // 0: the client's, 1: the server's
	last  time.Time
}

// quicKey names a handshake by its client's and server's addresses and ports.
type quicKey struct {
	client, server [16]byte
	cport, sport   uint16
}

// QUICHandler is the flow handler of QUIC: on any UDP port, a datagram that holds a QUIC v1 or
// v2 Initial packet is decrypted (the Initial keys derive from the client's Destination
// Connection ID, which the datagram carries), its CRYPTO frames reassembled across Initials in
// offset order, and the ClientHello and ServerHello reported as TLS hellos with TLSInfo.QUIC set
// and JA4 computed for QUIC ('q'), on the datagram that completes them. The handshakes it
// follows are a bounded table. One handler serves one flow table.
type QUICHandler struct {
	cfg     QUICConfig
	conns   *simplelru.LRU[quicKey, *quicConn]
	stats   QUICStats
	bytes   int // held by the sides' buffers
	scratch []byte
}

// NewQUICHandler returns a handler with cfg (defaults filled in).
func NewQUICHandler(cfg QUICConfig) *QUICHandler {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultQUICConns
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultQUICTimeout
	}
	if cfg.MaxHello <= 0 {
		cfg.MaxHello = DefaultQUICHello
	}
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultQUICBudget
	}
	h := &QUICHandler{cfg: cfg}
	// A handshake leaving the table (evicted, expired) gives its buffers back.
	h.conns, _ = simplelru.NewLRU(cfg.MaxConns, func(_ quicKey, c *quicConn) { h.free(c) }) // size > 0: never fails
	return h
}

// free gives a handshake's buffers back to the budget.
func (h *QUICHandler) free(c *quicConn) {
	for i := range c.sides {
		h.bytes -= cap(c.sides[i].buf)
		c.sides[i].buf, c.sides[i].have = nil, nil
	}
}

// Stats returns the counters so far.
func (h *QUICHandler) Stats() QUICStats {
	s := h.stats
	s.Conns, s.Bytes, s.MaxConns = h.conns.Len(), h.bytes, h.cfg.MaxConns
	return s
}

// Accept reads no TCP direction: QUIC is UDP.
func (*QUICHandler) Accept(*stages.Flow, int, []byte, bool) bool { return false }

// Stream is never called: Accept takes no direction.
func (*QUICHandler) Stream(*stages.Packet, *flows.Stream) bool { return false }

// Packet reads the Initial packets of a UDP datagram.
func (h *QUICHandler) Packet(p *stages.Packet) {
	b := p.Payload
	if p.Proto != stages.ProtoUDP || len(b) < 7 || b[0]&0xc0 != 0xc0 || quicVersionOf(uint32(b[1])<<24|uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4])) == nil {
		return // the fast path: not a long header of a version we read
	}
	h.expire(p.Time)
	for len(b) > 0 {
		hd, ok := parseQUICLong(b)
		if !ok {
			return
		}
		if hd.typ == hd.v.initial {
			h.initial(p, b[:hd.end], hd)
		}
		b = b[hd.end:]
	}
}

// initial decrypts one Initial packet of p and adds its CRYPTO frames to its side's stream.
func (h *QUICHandler) initial(p *stages.Packet, pkt []byte, hd quicLong) {
	fwd := quicKey{client: p.Src.As16(), server: p.Dst.As16(), cport: p.SrcPort, sport: p.DstPort}
	rev := quicKey{client: p.Dst.As16(), server: p.Src.As16(), cport: p.DstPort, sport: p.SrcPort}
	c, side, key := h.lookup(fwd, rev)
	if c == nil || (side == 0 && c.v != hd.v) {
		// A new handshake: the sender is its client, whose Destination Connection ID is the key
		// material of both sides.
		c, side, key = &quicConn{v: hd.v}, 0, fwd
	}
	// A client Initial with another Destination Connection ID than the first: usually the
	// server's chosen one, which the client takes up on its first packet (RFC 9000 7.2) while
	// its Initial keys stay those of the first (RFC 9001 5.2); after a Retry, the ID the Retry
	// gave, with new keys. The keys in hand are tried first.
	changed := side == 0 && c.dlen > 0 && string(hd.dcid) != string(c.dcid[:c.dlen])
	if side == 0 && c.dlen == 0 {
		c.dlen = uint8(copy(c.dcid[:], hd.dcid))
	}
	s := &c.sides[side]
	if s.keys == nil {
		k, err := newQUICKeys(c.v, c.dcid[:c.dlen], side == 1)
		if err != nil {
			return
		}
		s.keys = k
	}
	plain, err := s.keys.open(h.scratch, pkt, hd)
	if err != nil && changed {
		// Not the first ID's keys: a client starting afresh after a Retry.
		r := &quicConn{v: hd.v}
		r.dlen = uint8(copy(r.dcid[:], hd.dcid))
		if k, kerr := newQUICKeys(r.v, hd.dcid, false); kerr == nil {
			if plain, err = k.open(h.scratch, pkt, hd); err == nil {
				h.free(c)
				c, s = r, &r.sides[0]
				s.keys = k
			}
		}
	}
	if err != nil {
		h.stats.Undecrypted++
		return
	}
	h.scratch = plain[:0]
	h.stats.Initials++
	c.last = p.Time
	if h.conns.Add(key, c) {
		h.stats.Evicted++
	}
	h.stats.ConnsPeak = max(h.stats.ConnsPeak, h.conns.Len())
	if s.done {
		return
	}
	added := false
	quicFrames(plain, func(off uint64, data []byte) {
		if h.add(s, off, data) {
			added = true
		}
	})
	if !added {
		return
	}
	s.n++
	h.hello(p, c, s)
}

// lookup finds the handshake p belongs to: as its client's packet (side 0) or its server's.
func (h *QUICHandler) lookup(fwd, rev quicKey) (*quicConn, int, quicKey) {
	if c, ok := h.conns.Peek(fwd); ok {
		return c, 0, fwd
	}
	if c, ok := h.conns.Peek(rev); ok {
		return c, 1, rev
	}
	return nil, 0, fwd
}

// hello reports the side's hello once its CRYPTO stream holds it whole, or can never: longer
// than MaxHello.
func (h *QUICHandler) hello(p *stages.Packet, c *quicConn, s *quicSide) {
	have := 0
	if len(s.have) > 0 && s.have[0].start == 0 {
		have = s.have[0].end
	}
	if have < 4 {
		return
	}
	b := s.buf[:have]
	want := 4 + (int(b[1])<<16 | int(b[2])<<8 | int(b[3]))
	if b[0] != stages.TLSClientHello && b[0] != stages.TLSServerHello {
		s.done = true
		return
	}
	if have < want && want <= h.cfg.MaxHello {
		return
	}
	s.done = true
	info := ParseTLSHello(b[:min(have, want)])
	h.bytes -= cap(s.buf)
	s.buf, s.have = nil, nil // info holds copies
	if info == nil {
		return
	}
	info.QUIC = c.v.versionValue
	info.Segments = s.n
	if !info.Partial {
		if info.Hello == stages.TLSClientHello {
			info.JA4 = JA4('q', info)
		} else {
			info.JA4 = JA4S('q', info)
		}
	}
	h.stats.Hellos++
	appendTLS(p, info)
}

// add stores a CRYPTO frame's data at off of s, within MaxHello bytes of the stream's start
// and the buffers' budget; it reports whether it brought new bytes.
func (h *QUICHandler) add(s *quicSide, off uint64, data []byte) bool {
	limit := h.cfg.MaxHello
	if off >= uint64(limit) || len(data) == 0 {
		return false
	}
	start := int(off)
	end := min(start+len(data), limit)
	// Merge [start, end) into the sorted, disjoint ranges.
	out := make([]span, 0, len(s.have)+1)
	merged := span{start, end}
	grew := true
	for _, r := range s.have {
		if r.end < merged.start || r.start > merged.end {
			out = append(out, r)
			continue
		}
		if r.start <= merged.start && r.end >= merged.end {
			grew = false
		}
		merged = span{min(r.start, merged.start), max(r.end, merged.end)}
	}
	if !grew {
		return false
	}
	if len(out) >= 64 {
		return false // too many holes: no honest client cuts its hello so
	}
	if end > len(s.buf) {
		old := cap(s.buf)
		if h.bytes+end-old > h.cfg.Budget {
			h.stats.Denied++
			return false
		}
		s.buf = append(s.buf, make([]byte, end-len(s.buf))...)
		h.bytes += cap(s.buf) - old
	}
	copy(s.buf[start:end], data)
	out = append(out, merged)
	for i := len(out) - 1; i > 0 && out[i].start < out[i-1].start; i-- {
		out[i], out[i-1] = out[i-1], out[i]
	}
	s.have = out
	return true
}

// expire forgets the handshakes whose last Initial is older than Timeout (the oldest first:
// constant time a packet).
func (h *QUICHandler) expire(now time.Time) {
	for {
		_, c, ok := h.conns.GetOldest()
		if !ok || now.Sub(c.last) <= h.cfg.Timeout {
			return
		}
		h.conns.RemoveOldest()
		h.stats.Expired++
	}
}
