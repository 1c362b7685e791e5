package sensor

import "github.com/chains-sensor/chains-sensor/gen"

// The twin of bpf/parse_link.h: Ethernet, VLAN tags, 802.3 LLC/SNAP, PPPoE and PPP, ARP.

// parsePPP mirrors parse_ppp: the ethertype of IPv4 or IPv6, 0 for another protocol, -1 when
// the frame ends first.
func parsePPP(c *cursor, r *gen.SensorRecord) int {
	if c.has(2) && c.at(0) == 0xff && c.at(1) == 0x03 {
		c.pos += 2
	}
	if !c.has(1) {
		fail(r, statusTruncated, layerPPPoE)
		return -1
	}
	if c.at(0)&1 != 0 {
		switch c.at(0) {
		case 0x21:
			c.pos++
			return ethIPv4
		case 0x57:
			c.pos++
			return ethIPv6
		}
		return 0
	}
	if !c.has(2) {
		fail(r, statusTruncated, layerPPPoE)
		return -1
	}
	switch c.be16(0) {
	case 0x0021:
		c.pos += 2
		return ethIPv4
	case 0x0057:
		c.pos += 2
		return ethIPv6
	}
	return 0
}

func parsePPPoE(c *cursor, r *gen.SensorRecord) int {
	if !c.has(6) {
		fail(r, statusTruncated, layerPPPoE)
		return -1
	}
	end := c.pos + 6 + uint32(c.be16(4))
	c.pos += 6
	proto := parsePPP(c, r)
	if proto == 0 {
		stopHere(c, r, end)
	}
	return proto
}

func parseLLC(c *cursor, r *gen.SensorRecord, length uint16) int {
	end := c.pos + uint32(length)
	if !c.has(3) {
		fail(r, statusTruncated, layerEth)
		return -1
	}
	if c.at(0) == 0xaa && c.at(1) == 0xaa && c.at(2) == 0x03 {
		if !c.has(8) {
			fail(r, statusTruncated, layerEth)
			return -1
		}
		if c.at(3) == 0 && c.at(4) == 0 && (c.at(5) == 0 || c.at(5) == 0xf8) {
			proto := c.be16(6)
			c.pos += 8
			return int(proto)
		}
	}
	stopHere(c, r, end)
	return 0
}

func parseARP(c *cursor, r *gen.SensorRecord) {
	if !c.has(8) {
		fail(r, statusTruncated, layerARP)
		return
	}
	h := c.b[c.pos:]
	r.ArpOp = c.be16(6)
	l := 8 + 2*(uint32(h[4])+uint32(h[5]))
	setPayload(c, r, c.pos+l)
	if !c.has(l) {
		fail(r, statusTruncated, layerARP)
		return
	}
	if c.be16(2) != ethIPv4 || h[4] != 6 || h[5] != 4 {
		fail(r, statusUnsupported, layerARP)
		return
	}
	copy(r.SrcAddr[:4], h[14:18])
	copy(r.DstAddr[:4], h[24:28])
}

func parseLink(c *cursor, r *gen.SensorRecord) {
	c.next = nextDone
	r.VlanCount = 0
	r.VlanTci = [2]uint16{}
	c.ext.VlanTci = [2]uint16{}
	if !c.has(14) {
		fail(r, statusTruncated, layerEth)
		return
	}
	copy(r.DstMac[:], c.b[c.pos:c.pos+6])
	copy(r.SrcMac[:], c.b[c.pos+6:c.pos+12])
	proto := c.be16(12)
	c.pos += 14

	for i := 0; i < vlanMax; i++ {
		if proto != eth8021Q && proto != eth8021AD {
			break
		}
		if !c.has(4) {
			r.EthProto = proto
			fail(r, statusTruncated, layerVLAN)
			return
		}
		if i < 2 {
			r.VlanTci[i] = c.be16(0)
		} else {
			c.ext.VlanTci[i-2] = c.be16(0)
		}
		r.VlanCount++
		proto = c.be16(2)
		c.pos += 4
	}
	r.EthProto = proto
	if proto == eth8021Q || proto == eth8021AD {
		fail(r, statusUnsupported, layerVLAN)
		return
	}
	if proto < ethMinType {
		ret := parseLLC(c, r, proto)
		if ret <= 0 {
			return
		}
		proto = uint16(ret)
		r.EthProto = proto
	}
	if proto == ethPPPoE || proto == ethPPP {
		var ret int
		if proto == ethPPPoE {
			ret = parsePPPoE(c, r)
		} else {
			ret = parsePPP(c, r)
			if ret == 0 {
				stopHere(c, r, c.len)
			}
		}
		if ret <= 0 {
			return
		}
		proto = uint16(ret)
		r.EthProto = proto
	}
	switch proto {
	case ethIPv4:
		goOn(c, nextIP4)
	case ethIPv6:
		goOn(c, nextIP6)
	case ethARP:
		parseARP(c, r)
	default:
		stopHere(c, r, c.len)
	}
}
