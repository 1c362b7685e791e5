package sensor

import "github.com/chains-sensor/chains-sensor/gen"

// The twin of bpf/parse_tunnel.h: entering a tunnel, GRE (with ERSPAN and PPTP), VXLAN,
// Geneve, GTP-U. Each parse* returns true when it entered the tunnel.

const (
	greCsum    = 0x8000
	greRouting = 0x4000
	greKey     = 0x2000
	greSeq     = 0x1000
	greAck     = 0x0080
	greVersion = 0x0007

	portVXLAN      = 4789
	portVXLANLinux = 8472
	portGeneve     = 6081
	portGTPU       = 2152
)

func enter(c *cursor, r *gen.SensorRecord, typ, flags uint8, id, off, end uint32, next uint8) bool {
	if r.TunDepth >= tunnelMax {
		fail(r, statusUnsupported, layerTunnel)
		return false
	}
	if r.TunDepth == 0 {
		r.TunType = typ
		c.ext.TunId = id
		if r.IpVersion == 6 {
			flags |= tunfIP6
			c.ext.TunSrc = r.SrcAddr
			c.ext.TunDst = r.DstAddr
		} else {
			copy(c.ext.TunSrc[:4], r.SrcAddr[:4])
			copy(c.ext.TunDst[:4], r.DstAddr[:4])
		}
		c.ext.TunFlags = flags
	}
	c.ext.TunInner = typ
	r.TunDepth++
	clear(recordBytes(r)[netBlockOff:])
	switch next {
	case nextIP4:
		r.EthProto = ethIPv4
	case nextIP6:
		r.EthProto = ethIPv6
	}
	r.PayloadLen = 0
	c.avail = 0
	c.large = false
	c.msg = msgNone
	c.jumbo = false
	c.ipEnd = 0
	c.len = min(c.len, end)
	c.off = off
	c.next = next
	return true
}

func parseGRE(c *cursor, r *gen.SensorRecord) bool {
	if !c.has(4) {
		fail(r, statusTruncated, layerTunnel)
		return false
	}
	flags := c.be16(0)
	proto := c.be16(2)
	if flags&greRouting != 0 || flags&greVersion > 1 {
		return false
	}
	var id uint32
	var tflags uint8
	typ := tunGRE
	p := c.pos + 4
	if flags&greCsum != 0 {
		p += 4
	}
	if flags&greKey != 0 {
		if uint64(p)+4 > uint64(len(c.b)) {
			fail(r, statusTruncated, layerTunnel)
			return false
		}
		id = c.be32(p - c.pos)
		tflags |= tunfKey
		p += 4
	}
	if flags&greSeq != 0 {
		tflags |= tunfSeq
		p += 4
	}
	if flags&greVersion != 0 {
		if proto != ethPPP || flags&greKey == 0 {
			return false
		}
		if flags&greAck != 0 {
			p += 4
		}
		id &= 0xffff
		typ = tunPPTP
	}
	if uint64(p) > uint64(len(c.b)) {
		fail(r, statusTruncated, layerTunnel)
		return false
	}
	c.pos = p
	var next uint8
	switch proto {
	case ethIPv4:
		next = nextIP4
	case ethIPv6:
		next = nextIP6
	case ethTEB:
		next = nextEth
		tflags |= tunfEth
	case ethERSPAN:
		next = nextEth
		tflags |= tunfEth
		if flags&greSeq == 0 {
			typ = tunERSPAN1
			break
		}
		typ = tunERSPAN2
		if !c.has(8) {
			fail(r, statusTruncated, layerTunnel)
			return false
		}
		if c.at(0)>>4 != 1 {
			fail(r, statusMalformed, layerTunnel)
			return false
		}
		id = uint32(c.be16(2) & 0x3ff)
		c.pos += 8
	case ethERSPAN3:
		typ = tunERSPAN3
		if !c.has(12) {
			fail(r, statusTruncated, layerTunnel)
			return false
		}
		if c.at(0)>>4 != 2 {
			fail(r, statusMalformed, layerTunnel)
			return false
		}
		id = uint32(c.be16(2) & 0x3ff)
		ft := c.at(10) >> 2 & 0x1f
		hlen := uint32(12)
		if c.at(11)&1 != 0 {
			hlen = 20
		}
		switch ft {
		case 0:
			next = nextEth
			tflags |= tunfEth
		case 2:
			next = nextIP
		default:
			return false
		}
		c.pos += hlen
	case ethPPP:
		ppp := parsePPP(c, r)
		if ppp <= 0 {
			return false
		}
		next = nextIP6
		if ppp == ethIPv4 {
			next = nextIP4
		}
	default:
		return false
	}
	return enter(c, r, typ, tflags, id, c.pos, c.ipEnd, next)
}

func parseVXLAN(c *cursor, r *gen.SensorRecord, end uint32) bool {
	if !c.has(8) {
		fail(r, statusTruncated, layerTunnel)
		return false
	}
	return enter(c, r, tunVXLAN, tunfEth, c.be32(4)>>8, c.pos+8, end, nextEth)
}

func parseGeneve(c *cursor, r *gen.SensorRecord, end uint32) bool {
	if !c.has(8) {
		fail(r, statusTruncated, layerTunnel)
		return false
	}
	if c.at(0)>>6 != 0 {
		fail(r, statusMalformed, layerTunnel)
		return false
	}
	hlen := 8 + uint32(c.at(0)&0x3f)*4
	if c.pos+hlen > end {
		fail(r, statusMalformed, layerTunnel)
		return false
	}
	var next, flags uint8
	switch c.be16(2) {
	case ethTEB:
		next, flags = nextEth, tunfEth
	case ethIPv4:
		next = nextIP4
	case ethIPv6:
		next = nextIP6
	default:
		return false
	}
	return enter(c, r, tunGeneve, flags, c.be32(4)>>8, c.pos+hlen, end, next)
}

func parseGTPU(c *cursor, r *gen.SensorRecord, end uint32) bool {
	if !c.has(8) {
		fail(r, statusTruncated, layerTunnel)
		return false
	}
	f := c.at(0)
	if f>>5 != 1 || f&0x10 == 0 {
		fail(r, statusMalformed, layerTunnel)
		return false
	}
	if c.at(1) != 0xff {
		return false
	}
	teid := c.be32(4)
	gend := min(c.pos+8+uint32(c.be16(2)), end)
	p := c.pos + 8
	var nt uint8
	if f&0x07 != 0 {
		if !c.has(12) {
			fail(r, statusTruncated, layerTunnel)
			return false
		}
		if f&0x04 != 0 {
			nt = c.at(11)
		}
		p = c.pos + 12
	}
	for i := 0; i < gtpExtMax && nt != 0; i++ {
		if uint64(p)+1 > uint64(len(c.b)) {
			fail(r, statusTruncated, layerTunnel)
			return false
		}
		elen := uint32(c.b[p]) * 4
		if elen == 0 {
			fail(r, statusMalformed, layerTunnel)
			return false
		}
		q := p + elen - 1
		if uint64(q)+1 > uint64(len(c.b)) {
			fail(r, statusTruncated, layerTunnel)
			return false
		}
		nt = c.b[q]
		p += elen
	}
	if nt != 0 {
		fail(r, statusUnsupported, layerTunnel)
		return false
	}
	c.pos = p
	if c.pos >= gend {
		if c.pos > gend {
			fail(r, statusMalformed, layerTunnel)
		}
		return false
	}
	return enter(c, r, tunGTPU, 0, teid, c.pos, gend, nextIP)
}

func parseUDPTunnel(c *cursor, r *gen.SensorRecord, end uint32) bool {
	switch r.Dport {
	case portVXLAN, portVXLANLinux:
		return parseVXLAN(c, r, end)
	case portGeneve:
		return parseGeneve(c, r, end)
	case portGTPU:
		return parseGTPU(c, r, end)
	}
	return false
}

// parseTunnel mirrors parse_tunnel: the tunnel the transport step found.
func parseTunnel(c *cursor, r *gen.SensorRecord) {
	start := c.pos
	c.next = nextDone
	switch r.L4Proto {
	case protoUDP:
		parseUDPTunnel(c, r, c.l4End)
		return
	case protoIPIP:
		if enter(c, r, tunIPIP, 0, 0, c.pos, c.ipEnd, nextIP4) {
			return
		}
	case protoIPv6:
		if enter(c, r, tunIP6, 0, 0, c.pos, c.ipEnd, nextIP6) {
			return
		}
	case protoGRE:
		if parseGRE(c, r) {
			return
		}
		c.pos = start
	}
	stopHere(c, r, c.ipEnd)
}
