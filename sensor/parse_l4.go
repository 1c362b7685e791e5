package sensor

import (
	"encoding/binary"

	"github.com/chains-sensor/chains-sensor/gen"
)

// The twin of bpf/parse_l4.h: TCP, UDP, ICMP, ICMPv6, and the IP protocols that are tunnels.

func isDNSPort(p uint16) bool { return p == 53 || p == 5353 || p == 5355 }

// What the payload after a whole TCP header starts (enum msg_kind).
const (
	msgNone = iota
	msgData
	msgTLS
	msgHTTPReq
	msgHTTPResp
)

// payloadKind mirrors payload_kind.
func payloadKind(c *cursor) uint8 {
	if !c.has(4) {
		return msgData
	}
	b := c.b[c.pos:]
	if (b[0] == 0x16 || b[0] == 0x14) && b[1] == 0x03 {
		return msgTLS
	}
	switch binary.BigEndian.Uint32(b) {
	case 0x47455420, 0x504f5354, 0x48454144, 0x50555420, 0x44454c45,
		0x4f505449, 0x50415443, 0x434f4e4e, 0x54524143:
		return msgHTTPReq
	case 0x48545450:
		return msgHTTPResp
	}
	return msgData
}

// payloadIsQUICInitial mirrors payload_is_quic_initial.
func payloadIsQUICInitial(c *cursor) bool {
	if !c.has(5) {
		return false
	}
	b := c.b[c.pos:]
	if b[0]&0xc0 != 0xc0 {
		return false
	}
	typ := b[0] >> 4 & 3
	switch binary.BigEndian.Uint32(b[1:]) {
	case 0x00000001:
		return typ == 0
	case 0x6b3343cf:
		return typ == 1
	}
	return false
}

// l4Has mirrors l4_has: the first n bytes of the transport header in the frame and in the IP
// packet (else the rest is in the next fragment, or the IP length is wrong).
func l4Has(c *cursor, r *gen.SensorRecord, n uint32, layer uint8) bool {
	if !c.has(n) {
		fail(r, statusTruncated, layer)
		return false
	}
	if c.pos+n > c.ipEnd {
		if r.IpFlags&ipfMF != 0 {
			fail(r, statusTruncated, layer)
		} else {
			fail(r, statusMalformed, layer)
		}
		return false
	}
	return true
}

// parseTCPCut mirrors parse_tcp_cut: the fields of a cut header whose bytes are there.
func parseTCPCut(c *cursor, r *gen.SensorRecord) {
	if !l4Has(c, r, 4, layerTCP) {
		return
	}
	r.Sport = c.be16(0)
	r.Dport = c.be16(2)
	if !l4Has(c, r, 8, layerTCP) {
		return
	}
	r.Seq = c.be32(4)
	if !l4Has(c, r, 16, layerTCP) {
		return
	}
	r.Ack = c.be32(8)
	r.TcpFlags = c.at(13)
	r.Window = c.be16(14)
	r.L4HdrLen = (c.at(12) >> 4) * 4
	l4Has(c, r, 20, layerTCP)
}

func parseTCP(c *cursor, r *gen.SensorRecord) {
	if !c.has(20) || c.pos+20 > c.ipEnd {
		parseTCPCut(c, r)
		return
	}
	r.Sport = c.be16(0)
	r.Dport = c.be16(2)
	r.Seq = c.be32(4)
	r.Ack = c.be32(8)
	r.TcpFlags = c.at(13)
	r.Window = c.be16(14)
	hlen := uint32(c.at(12)>>4) * 4
	r.L4HdrLen = uint8(hlen)
	if hlen < 20 {
		fail(r, statusMalformed, layerTCP)
		return
	}
	if !l4Has(c, r, hlen, layerTCP) {
		return
	}
	c.pos += hlen
	stopHere(c, r, c.ipEnd)
	c.msg = payloadKind(c)
	c.large = isDNSPort(r.Sport) || isDNSPort(r.Dport) || c.msg >= msgTLS
}

func parseUDP(c *cursor, r *gen.SensorRecord) {
	if !c.has(4) {
		fail(r, statusTruncated, layerUDP)
		return
	}
	r.Sport = c.be16(0)
	r.Dport = c.be16(2)
	if !c.has(8) {
		fail(r, statusTruncated, layerUDP)
		return
	}
	l := uint32(c.be16(4))
	r.UdpLen = uint16(l)
	r.L4HdrLen = 8
	if l == 0 && c.jumbo {
		l = c.ipEnd - c.pos
	} else if l < 8 {
		fail(r, statusMalformed, layerUDP)
		return
	}
	end := c.pos + l
	if end > c.ipEnd {
		fail(r, statusMalformed, layerUDP)
		end = c.ipEnd
	}
	c.pos += 8
	c.large = isDNSPort(r.Sport) || isDNSPort(r.Dport) || payloadIsQUICInitial(c)
	stopHere(c, r, end)
	if !c.noDecap && isTunnelPort(r.Dport) {
		c.l4End = end
		goOn(c, nextTunnel)
	}
}

func isTunnelPort(p uint16) bool {
	return p == portVXLAN || p == portVXLANLinux || p == portGeneve || p == portGTPU
}

func parseICMP(c *cursor, r *gen.SensorRecord, layer uint8) {
	if !c.has(2) {
		fail(r, statusTruncated, layer)
		return
	}
	typ := c.at(0)
	r.IcmpType = typ
	r.IcmpCode = c.at(1)
	if !c.has(8) {
		fail(r, statusTruncated, layer)
		return
	}
	r.L4HdrLen = 8
	if (layer == layerICMP && (typ == 0 || typ == 8)) || (layer == layerICMP6 && (typ == 128 || typ == 129)) {
		r.Sport = c.be16(4) // identifier
		r.Dport = c.be16(6) // sequence number
	}
	c.pos += 8
	stopHere(c, r, c.ipEnd)
}

func parseL4(c *cursor, r *gen.SensorRecord) {
	c.next = nextDone
	switch r.L4Proto {
	case protoTCP:
		parseTCP(c, r)
		return
	case protoUDP:
		parseUDP(c, r)
		return
	case protoICMP:
		if r.IpVersion == 4 {
			parseICMP(c, r, layerICMP)
			return
		}
	case protoICMPv6:
		if r.IpVersion == 6 {
			parseICMP(c, r, layerICMP6)
			return
		}
	case protoIPIP, protoIPv6, protoGRE:
		if !c.noDecap {
			goOn(c, nextTunnel)
			return
		}
	}
	stopHere(c, r, c.ipEnd)
}
