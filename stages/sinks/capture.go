package sinks

import (
	"unicode/utf8"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
)

// CaptureConfig is what the capture sink writes to and how.
type CaptureConfig struct {
	Writer *pcapng.Writer
	// Interface describes, for its interface description block, the interface a packet's
	// Ifindex names (a live interface index, a capture file's interface number).
	Interface func(ifindex uint32) pcapng.Interface
	// Comments gives each packet an opt_comment with what the stages learned (AppendComment).
	Comments bool
	// Directions says that Packet.Dir is known for every packet (live: the hook saw it); for
	// a capture file only what the file said is outgoing is marked so.
	Directions bool
	// SnapLen cuts each frame to this many bytes (0: as it comes).
	SnapLen uint32
}

// Capture is the sink of -w: each packet's frame (Packet.Frame) as an enhanced packet block,
// with its interface, time, length on the wire, direction (epb_flags) and, with Comments, a
// comment. Packets without a frame are counted (NoFrame) and not written.
type Capture struct {
	cfg     CaptureConfig
	ids     map[uint32]int
	epb     pcapng.EPB
	buf     []byte
	written []uint64 // packets written, by interface number
	NoFrame uint64   // packets that came without their frame
	cids    cidCache
}

// cidCache keeps the Community IDs of recent flows, by flow ID: a flow's packets need it
// computed once (a SHA-1 and base64), not once each.
type cidCache [1024]struct {
	flow uint64
	n    uint8
	id   [32]byte
}

// append appends f's Community ID.
func (c *cidCache) append(b []byte, f *stages.Flow) []byte {
	e := &c[f.ID%uint64(len(c))]
	if e.flow != f.ID || e.n == 0 {
		id := flows.AppendFlowCommunityID(e.id[:0], f)
		if len(id) > len(e.id) || &id[0] != &e.id[0] {
			e.n = 0
			return append(b, id...)
		}
		e.flow, e.n = f.ID, uint8(len(id))
	}
	return append(b, e.id[:e.n]...)
}

// Written returns how many packets were written on each interface, by number.
func (s *Capture) Written() []uint64 { return append([]uint64(nil), s.written...) }

// NewCapture returns the capture sink.
func NewCapture(cfg CaptureConfig) *Capture {
	return &Capture{cfg: cfg, ids: map[uint32]int{}, buf: make([]byte, 0, 1024)}
}

// Declare adds the interface ifindex names to the file now (live: every watched interface, so
// that every file describes them all and ends with their statistics), and returns its number.
func (s *Capture) Declare(ifindex uint32) (int, error) {
	if id, ok := s.ids[ifindex]; ok {
		return id, nil
	}
	id, err := s.cfg.Writer.AddInterface(s.cfg.Interface(ifindex))
	if err != nil {
		return 0, err
	}
	s.ids[ifindex] = id
	return id, nil
}

// Write writes p's block.
func (s *Capture) Write(p *stages.Packet) error {
	if p.Frame == nil {
		s.NoFrame++
		return nil
	}
	id, err := s.Declare(p.Ifindex)
	if err != nil {
		return err
	}
	e := &s.epb
	*e = pcapng.EPB{Iface: id, TS: p.Time.UnixNano(), WireLen: max(p.FrameLen, uint32(len(p.Frame))), Data: p.Frame}
	if n := s.cfg.SnapLen; n != 0 && uint32(len(e.Data)) > n {
		e.Data = e.Data[:n]
	}
	for id >= len(s.written) {
		s.written = append(s.written, 0)
	}
	s.written[id]++
	switch {
	case p.Dir == stages.DirOut:
		e.Flags = pcapng.FlagOutbound
	case s.cfg.Directions:
		e.Flags = pcapng.FlagInbound
	}
	if s.cfg.Comments {
		s.buf = appendComment(s.buf[:0], p, &s.cids)
		e.Comment = s.buf
	}
	return s.cfg.Writer.WritePacket(e)
}

// Close ends the last file with the interfaces' statistics.
func (s *Capture) Close() error { return s.cfg.Writer.Close() }

// MaxComment bounds a packet's comment: a long answer section is cut, with "...".
const MaxComment = 4096

// AppendComment appends the comment a packet gets in a capture file: what the lines say of it,
// on one line. The endpoints with their ports and names or classes (as the application views
// print them; link addresses for a frame without IP), the outermost tunnel as net_watch
// names it, the parser's complaint, the tags, the
// flow's Community ID, and what the application decoders found: the HTTP head, the TLS hello
// and the DNS message as urlwatch and weird-dns print them, parts separated by "; ".
//
//	10.0.0.1:40000(internal) --> 93.184.216.34:443(example.com) tags=outgoing community_id=1:...; TLS ClientHello sni=example.com ... ja4=...
func AppendComment(b []byte, p *stages.Packet) []byte { return appendComment(b, p, nil) }

// appendComment is AppendComment, with the flows' Community IDs from cids when it is not nil.
func appendComment(b []byte, p *stages.Packet, cids *cidCache) []byte {
	start := len(b)
	if p.Src.IsValid() || p.Dst.IsValid() {
		b = appendPacketEnds(b, p)
	} else {
		b = appendLinkEnds(b, p)
	}
	b = appendTunnel(b, p)
	b = appendStatus(b, p)
	if p.Tags != 0 {
		b = append(b, " tags="...)
		first := true
		for n := range p.Tags.Names() {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, n...)
		}
	}
	if p.Flow != nil {
		b = append(b, " community_id="...)
		if cids != nil {
			b = cids.append(b, p.Flow)
		} else {
			b = flows.AppendFlowCommunityID(b, p.Flow)
		}
	}
	// Every head, hello and message the packet completed (pipelined requests: several).
	for h := p.HTTP; h != nil; h = h.Next {
		b = append(b, "; HTTP "...)
		b = appendHTTP(b, h)
	}
	for h := p.TLS; h != nil; h = h.Next {
		if h.QUIC != 0 {
			b = append(b, "; QUIC "...)
		} else {
			b = append(b, "; TLS "...)
		}
		b = appendTLS(b, h)
	}
	for d := p.DNS; d != nil; d = d.Next {
		b = append(b, "; DNS "...)
		b = appendDNS(b, d)
	}
	if len(b)-start > MaxComment {
		// Cut at a character's start: the text stays valid UTF-8.
		cut := start + MaxComment - 3
		for cut > start && !utf8.RuneStart(b[cut]) {
			cut--
		}
		b = append(b[:cut], "..."...)
	}
	return b
}

// Tee is a sink that writes each packet to every sink it holds, in order, and closes them all.
type Tee []Sink

// Write writes p to each sink; the first error stops it.
func (t Tee) Write(p *stages.Packet) error {
	for _, s := range t {
		if err := s.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every sink and returns the first error.
func (t Tee) Close() error {
	var first error
	for _, s := range t {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// WriteFlow hands f to the sinks that print flows.
func (t Tee) WriteFlow(f *stages.Flow) {
	for _, s := range t {
		if fw, ok := s.(FlowWriter); ok {
			fw.WriteFlow(f)
		}
	}
}
