package stages

import "net/netip"

// NetWatchSink prints DESIGN.md's net_watch line, one per packet:
//
//	2015-09-07 19:08:34 - UDP IP 192.168.1.9(internal) --> 224.0.0.251(multicast_dns)
//
// The TRANSPORT token is left out where there is none (ARP, non-IP frames); non-IP frames show
// their MAC addresses; a packet the parser could not finish ends in " [truncated tcp]" or the like.
type NetWatchSink struct {
	out   *Output
	clk   *clock
	color bool
	buf   []byte
}

// NewNetWatchSink returns a net_watch sink writing to out; utc prints UTC instead of local time.
func NewNetWatchSink(out *Output, utc, color bool) *NetWatchSink {
	return &NetWatchSink{out: out, clk: newClock(utc), color: color, buf: make([]byte, 0, 512)}
}

// Write prints p's line.
func (s *NetWatchSink) Write(p *Packet) error {
	s.buf = s.AppendLine(s.buf[:0], p)
	return s.out.Write(s.buf)
}

// Close flushes the output and stops its flush timer.
func (s *NetWatchSink) Close() error { return s.out.Close() }

// AppendLine appends p's net_watch line, newline included.
func (s *NetWatchSink) AppendLine(b []byte, p *Packet) []byte {
	b = s.clk.appendSeconds(b, p.Time)
	b = append(b, " - "...)
	if hasTransport(p) && p.EtherType != EtherTypeARP {
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
		b = s.appendEnd(b, p.Src, p.SrcDomain, p.SrcClass)
		b = append(b, " --> "...)
		b = s.appendEnd(b, p.Dst, p.DstDomain, p.DstClass)
	} else {
		b = appendLink(b, p.SrcMAC, p.NoMAC&NoSrcMAC != 0)
		b = append(b, '(')
		b = append(b, linkClass(p.SrcMAC, p.NoMAC&NoSrcMAC != 0)...)
		b = append(b, ")"+" --> "...)
		b = appendLink(b, p.DstMAC, p.NoMAC&NoDstMAC != 0)
		b = append(b, '(')
		b = append(b, linkClass(p.DstMAC, p.NoMAC&NoDstMAC != 0)...)
		b = append(b, ')')
	}
	b = appendStatus(b, p)
	return append(b, '\n')
}

func (s *NetWatchSink) appendEnd(b []byte, a netip.Addr, domain string, c Class) []byte {
	b = appendAddr(b, a)
	b = append(b, '(')
	if s.color {
		b = append(b, domainColor(domain, c)...)
		b = appendSafe(b, domain)
		b = append(b, colReset...)
	} else {
		b = appendSafe(b, domain)
	}
	return append(b, ')')
}

func protoColor(p uint8) string {
	switch p {
	case ProtoTCP:
		return colCyan
	case ProtoUDP:
		return colMagenta
	case ProtoICMP, ProtoICMPv6:
		return colYellow
	}
	return colBold
}

func domainColor(domain string, c Class) string {
	switch {
	case domain == NXDomain:
		return colRed
	case c == ClassInternal:
		return colGreen
	case c == ClassBroadcast || c.IsMulticast():
		return colBlue
	case c == ClassPublic:
		return colYellow
	}
	return colDim
}
