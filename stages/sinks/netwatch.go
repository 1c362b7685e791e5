package sinks

import "github.com/chains-sensor/chains-sensor/stages"

// NetWatch prints DESIGN.md's net_watch line, one per packet:
//
//	2015-09-07 19:08:34 - UDP IP 192.168.1.9(internal) --> 224.0.0.251(multicast_dns)
//
// The TRANSPORT token is left out where there is none (ARP, non-IP frames); non-IP frames show
// their MAC addresses; a packet that came through a tunnel names it after the inner pair, as
// " [vxlan 42 via 192.0.2.1 --> 192.0.2.2]"; a packet the parser could not finish ends in
// " [truncated tcp]" or the like.
type NetWatch struct {
	out   *Output
	clk   *clock
	color bool
	buf   []byte
}

// NewNetWatch returns a net_watch sink writing to out.
func NewNetWatch(out *Output, opt Options) *NetWatch {
	return &NetWatch{out: out, clk: newClock(opt.UTC), color: opt.Color, buf: make([]byte, 0, 512)}
}

// Write prints p's line.
func (s *NetWatch) Write(p *stages.Packet) error {
	s.buf = s.AppendLine(s.buf[:0], p)
	return s.out.Write(s.buf)
}

// Close flushes the output and stops its flush timer.
func (s *NetWatch) Close() error { return s.out.Close() }

// AppendLine appends p's net_watch line, newline included.
func (s *NetWatch) AppendLine(b []byte, p *stages.Packet) []byte {
	b = s.clk.appendPacketSeconds(b, p)
	b = append(b, " - "...)
	if hasTransport(p) && p.EtherType != stages.EtherTypeARP {
		if s.color {
			b = append(b, protoColor(p.Proto)...)
		}
		b = append(b, protoNames[p.Proto]...)
		if s.color {
			b = append(b, colReset...)
		}
		b = append(b, ' ')
	}
	b = appendNetwork(b, p)
	b = append(b, ' ')
	if p.Src.IsValid() || p.Dst.IsValid() {
		var sc, dc string
		if s.color {
			sc, dc = domainColor(p.SrcDomain, p.SrcClass), domainColor(p.DstDomain, p.DstClass)
		}
		b = appendEndpoint(b, p.Src, 0, false, p.SrcDomain, sc)
		b = append(b, " --> "...)
		b = appendEndpoint(b, p.Dst, 0, false, p.DstDomain, dc)
	} else {
		b = appendLinkEnds(b, p)
	}
	b = appendTunnel(b, p)
	b = appendStatus(b, p)
	return append(b, '\n')
}

// appendLinkEnds appends "SRC(class) --> DST(class)" of the link addresses, for a frame
// without network addresses.
func appendLinkEnds(b []byte, p *stages.Packet) []byte {
	b = appendLink(b, p.SrcMAC, p.NoMAC&stages.NoSrcMAC != 0)
	b = append(b, '(')
	b = append(b, linkClass(p.SrcMAC, p.NoMAC&stages.NoSrcMAC != 0)...)
	b = append(b, ")"+" --> "...)
	b = appendLink(b, p.DstMAC, p.NoMAC&stages.NoDstMAC != 0)
	b = append(b, '(')
	b = append(b, linkClass(p.DstMAC, p.NoMAC&stages.NoDstMAC != 0)...)
	return append(b, ')')
}

func protoColor(p uint8) string {
	switch p {
	case stages.ProtoTCP:
		return colCyan
	case stages.ProtoUDP:
		return colMagenta
	case stages.ProtoICMP, stages.ProtoICMPv6:
		return colYellow
	}
	return colBold
}

// domainColor is the colour of a domain.
func domainColor(domain string, c stages.Class) string {
	switch {
	case domain == stages.NXDomain:
		return colRed
	case c == stages.ClassInternal:
		return colGreen
	case c == stages.ClassBroadcast || c.IsMulticast():
		return colBlue
	case c == stages.ClassPublic:
		return colYellow
	}
	return colDim
}
