package sinks

import (
	"strconv"

	"github.com/chains-sensor/chains-sensor/stages"
)

// Packets prints a block per packet, as the original chains PacketPrinter did:
//
//	Timestamp: 2015-09-07 19:08:34.491658 (in eth0, 73 bytes)
//	Tunnel: [vxlan 42 via 192.0.2.1 --> 192.0.2.2] carrying Ethernet   (a tunnelled packet only)
//	Ethernet Frame: 00:1b:21:aa:bb:cc --> 01:00:5e:00:00:fb (type: 0x0800)
//	stages.Packet: IP 192.168.1.9 --> 224.0.0.251 (len:59 ttl:255 tos:0 id:0) -- Frag(df:0 mf:0 offset:0)
//	Domains: internal --> multicast_dns
//	Transport: UDP sport:5353 dport:5353 len:39
//	Data: 31 bytes (\x00\x00\x00\x00\x00\x01...)
//	Application: mDNS
//	Tags: internal
//
// followed by an empty line. Lines without content (no transport, unknown application, no
// tags) are left out.
type Packets struct {
	out   *Output
	clk   *clock
	color bool
	buf   []byte
}

// NewPackets returns a packets sink writing to out.
func NewPackets(out *Output, opt Options) *Packets {
	return &Packets{out: out, clk: newClock(opt.UTC), color: opt.Color, buf: make([]byte, 0, 1024)}
}

// Write prints p's block.
func (s *Packets) Write(p *stages.Packet) error {
	s.buf = s.AppendBlock(s.buf[:0], p)
	return s.out.Write(s.buf)
}

// Close flushes the output and stops its flush timer.
func (s *Packets) Close() error { return s.out.Close() }

func (s *Packets) head(b []byte, h string) []byte {
	if s.color {
		b = append(b, colBold...)
		b = append(b, h...)
		return append(b, colReset...)
	}
	return append(b, h...)
}

// AppendBlock appends p's block and the empty line after it.
func (s *Packets) AppendBlock(b []byte, p *stages.Packet) []byte {
	u := func(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }

	b = s.head(b, "Timestamp: ")
	b = s.clk.appendPacketMicro(b, p)
	b = append(b, " ("...)
	b = append(b, p.Dir.String()...)
	if p.Iface != "" {
		b = append(b, ' ')
		b = appendText(b, p.Iface)
	}
	b = append(b, ", "...)
	b = u(b, uint64(p.WireLen))
	b = append(b, " bytes)\n"...)

	if t := &p.Tunnel; t.Depth > 0 {
		b = s.head(b, "Tunnel:")
		b = appendTunnel(b, p) // " [vxlan 42 via A --> B]"
		if t.Flags&stages.TunnelFlagEth != 0 {
			b = append(b, " carrying Ethernet"...)
		}
		b = append(b, '\n')
	}

	b = s.head(b, "Ethernet Frame: ")
	b = appendLink(b, p.SrcMAC, p.NoMAC&stages.NoSrcMAC != 0)
	b = append(b, " --> "...)
	b = appendLink(b, p.DstMAC, p.NoMAC&stages.NoDstMAC != 0)
	b = append(b, " (type: 0x"...)
	b = appendHex16(b, p.EtherType)
	for i := 0; i < int(p.VLANCount) && i < len(p.VLANs); i++ {
		b = append(b, " vlan:"...)
		b = u(b, uint64(p.VLANs[i]&0x0fff))
		b = append(b, " pcp:"...)
		b = u(b, uint64(p.VLANs[i]>>13))
	}
	b = append(b, ")\n"...)

	b = s.head(b, "Packet: ")
	b = appendNetwork(b, p)
	switch {
	case p.EtherType == stages.EtherTypeARP:
		switch p.ARPOp {
		case 1:
			b = append(b, " request"...)
		case 2:
			b = append(b, " reply"...)
		default:
			b = append(b, " op:"...)
			b = u(b, uint64(p.ARPOp))
		}
		b = appendAddrPair(b, p)
	case p.IPVersion == 4:
		b = appendAddrPair(b, p)
		b = append(b, " (len:"...)
		b = u(b, uint64(p.IPLen))
		b = append(b, " ttl:"...)
		b = u(b, uint64(p.TTL))
		b = append(b, " tos:"...)
		b = u(b, uint64(p.TOS))
		b = append(b, " id:"...)
		b = u(b, uint64(p.IPID))
		b = append(b, ") -- Frag(df:"...)
		b = appendBool(b, p.IPFlags&stages.IPFlagDF != 0)
		b = append(b, " mf:"...)
		b = appendBool(b, p.IPFlags&stages.IPFlagMF != 0)
		b = append(b, " offset:"...)
		b = u(b, uint64(p.FragOff))
		b = append(b, ')')
	case p.IPVersion == 6:
		b = appendAddrPair(b, p)
		b = append(b, " (len:"...)
		b = u(b, uint64(p.IPLen))
		b = append(b, " hlim:"...)
		b = u(b, uint64(p.TTL))
		b = append(b, " tc:"...)
		b = u(b, uint64(p.TOS))
		b = append(b, " flow:"...)
		b = u(b, uint64(p.FlowLabel))
		b = append(b, ')')
		if p.ExtMask != 0 {
			b = append(b, " ext:"...)
			b = appendExt(b, p.ExtMask)
		}
		if p.ExtMask&stages.ExtFragment != 0 {
			b = append(b, " -- Frag(mf:"...)
			b = appendBool(b, p.IPFlags&stages.IPFlagMF != 0)
			b = append(b, " offset:"...)
			b = u(b, uint64(p.FragOff))
			b = append(b, " id:"...)
			b = u(b, uint64(p.IPID))
			b = append(b, ')')
		}
	}
	b = appendStatus(b, p)
	b = append(b, '\n')

	if p.Src.IsValid() || p.Dst.IsValid() {
		b = s.head(b, "Domains: ")
		b = appendText(b, p.SrcDomain)
		b = append(b, " --> "...)
		b = appendText(b, p.DstDomain)
		b = append(b, '\n')
	}

	if hasTransport(p) && p.EtherType != stages.EtherTypeARP {
		b = s.head(b, "Transport: ")
		b = append(b, protoNames[p.Proto]...)
		switch {
		case p.L4HdrLen == 0:
		case p.Proto == stages.ProtoTCP:
			b = append(b, " sport:"...)
			b = u(b, uint64(p.SrcPort))
			b = append(b, " dport:"...)
			b = u(b, uint64(p.DstPort))
			b = append(b, " flags:"...)
			b = appendTCPFlags(b, p.TCPFlags)
			b = append(b, " seq:"...)
			b = u(b, uint64(p.Seq))
			b = append(b, " ack:"...)
			b = u(b, uint64(p.Ack))
			b = append(b, " win:"...)
			b = u(b, uint64(p.Window))
		case p.Proto == stages.ProtoUDP:
			b = append(b, " sport:"...)
			b = u(b, uint64(p.SrcPort))
			b = append(b, " dport:"...)
			b = u(b, uint64(p.DstPort))
			b = append(b, " len:"...)
			b = u(b, uint64(p.UDPLen))
		case p.Proto == stages.ProtoICMP || p.Proto == stages.ProtoICMPv6:
			b = append(b, " type:"...)
			b = u(b, uint64(p.ICMPType))
			b = append(b, " code:"...)
			b = u(b, uint64(p.ICMPCode))
			if isEcho(p) {
				b = append(b, " id:"...)
				b = u(b, uint64(p.ICMPID))
				b = append(b, " seq:"...)
				b = u(b, uint64(p.ICMPSeq))
			}
		}
		b = append(b, '\n')
		if p.PayloadLen > 0 {
			b = s.head(b, "Data: ")
			b = u(b, uint64(p.PayloadLen))
			b = append(b, " bytes"...)
			if len(p.Payload) > 0 {
				b = append(b, " ("...)
				b = appendPreview(b, p.Payload, 30)
				b = append(b, ')')
			}
			b = append(b, '\n')
		}
		if app := ApplicationGuess(p); app != "" {
			b = s.head(b, "Application: ")
			b = append(b, app...)
			b = append(b, '\n')
		}
	}

	if p.Tags != 0 {
		b = s.head(b, "Tags: ")
		first := true
		for n := range p.Tags.Names() {
			if !first {
				b = append(b, ", "...)
			}
			first = false
			b = appendText(b, n)
		}
		b = append(b, '\n')
	}
	return append(b, '\n')
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, '1')
	}
	return append(b, '0')
}

func appendExt(b []byte, m uint8) []byte {
	names := [...]string{"hbh", "routing", "frag", "dstopts", "ah", "esp"}
	first := true
	for i, n := range names {
		if m&(1<<i) != 0 {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, n...)
		}
	}
	return b
}

func isEcho(p *stages.Packet) bool {
	if p.Proto == stages.ProtoICMP {
		return p.ICMPType == 0 || p.ICMPType == 8
	}
	return p.ICMPType == 128 || p.ICMPType == 129
}

// appendPreview appends up to n leading bytes of data, printable ASCII as is and the rest as \xHH,
// with "..." when data is longer.
func appendPreview(b []byte, data []byte, n int) []byte {
	more := len(data) > n
	if more {
		data = data[:n]
	}
	b = appendBytes(b, data)
	if more {
		b = append(b, "..."...)
	}
	return b
}

var httpMethods = []string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE ", "HTTP/"}

// ApplicationGuess names the application protocol of a packet from its ports and first payload
// bytes ("" when it cannot tell). The application stages give the real decode.
func ApplicationGuess(p *stages.Packet) string {
	if len(p.Payload) > 0 && p.Proto == stages.ProtoTCP {
		if len(p.Payload) >= 3 && p.Payload[0] == 0x16 && p.Payload[1] == 3 {
			return "TLS handshake"
		}
		for _, m := range httpMethods {
			if len(p.Payload) >= len(m) && string(p.Payload[:len(m)]) == m {
				return "HTTP"
			}
		}
	}
	if p.Proto != stages.ProtoTCP && p.Proto != stages.ProtoUDP {
		return ""
	}
	for _, port := range [2]uint16{p.DstPort, p.SrcPort} {
		switch port {
		case 53:
			return "DNS"
		case 5353:
			return "mDNS"
		case 5355:
			return "LLMNR"
		case 67, 68:
			return "DHCP"
		case 546, 547:
			return "DHCPv6"
		case 123:
			return "NTP"
		case 1900:
			return "SSDP"
		case 137, 138, 139:
			return "NetBIOS"
		case 80, 8080:
			return "HTTP"
		case 443:
			return "HTTPS"
		case 22:
			return "SSH"
		case 25, 587:
			return "SMTP"
		case 4789:
			return "VXLAN"
		}
	}
	return ""
}

// appendAddrPair appends " SRC --> DST", the addresses of the Packet line.
func appendAddrPair(b []byte, p *stages.Packet) []byte {
	b = append(b, ' ')
	b = appendAddr(b, p.Src)
	b = append(b, " --> "...)
	return appendAddr(b, p.Dst)
}
