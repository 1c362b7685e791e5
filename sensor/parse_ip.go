package sensor

import "github.com/chains-sensor/chains-sensor/gen"

// The twin of bpf/parse_ip.h: IPv4 with AH, IPv6 with its extension headers and jumbograms.

func parseIPv4(c *cursor, r *gen.SensorRecord) {
	either := c.next == nextIP
	c.next = nextDone
	if either {
		if !c.has(1) {
			fail(r, statusTruncated, layerIP4)
			return
		}
		if c.at(0)>>4 == 6 {
			r.EthProto = ethIPv6
			goOn(c, nextIP6)
			return
		}
		r.EthProto = ethIPv4
	}
	if !c.has(20) {
		fail(r, statusTruncated, layerIP4)
		return
	}
	h := c.b[c.pos:]
	if h[0]>>4 != 4 {
		fail(r, statusMalformed, layerIP4)
		return
	}
	r.IpVersion = 4
	r.Tos = h[1]
	r.IpLen = c.be16(2)
	r.IpId = uint32(c.be16(4))
	frag := c.be16(6)
	r.FragOff = frag & 0x1fff
	if frag&0x4000 != 0 {
		r.IpFlags |= ipfDF
	}
	if frag&0x2000 != 0 {
		r.IpFlags |= ipfMF
	}
	if frag&0x3fff != 0 {
		r.IpFlags |= ipfFragment
	}
	r.Ttl = h[8]
	r.L4Proto = h[9]
	copy(r.SrcAddr[:4], h[12:16])
	copy(r.DstAddr[:4], h[16:20])

	hlen := uint32(h[0]&0x0f) * 4
	if hlen < 20 || uint32(r.IpLen) < hlen {
		fail(r, statusMalformed, layerIP4)
		return
	}
	if !c.has(hlen) {
		fail(r, statusTruncated, layerIP4)
		return
	}
	c.ipEnd = c.pos + uint32(r.IpLen)
	if c.ipEnd > c.len {
		fail(r, statusTruncated, layerIP4)
	}
	c.pos += hlen
	if r.FragOff != 0 {
		stopHere(c, r, c.ipEnd)
		return
	}
	if r.L4Proto == protoAH {
		if !c.has(8) {
			fail(r, statusTruncated, layerIP4)
			return
		}
		r.ExtMask |= extAH
		r.L4Proto = c.at(0)
		alen := (uint32(c.at(1)) + 2) * 4
		if c.pos+alen > c.ipEnd {
			fail(r, statusMalformed, layerIP4)
			return
		}
		if !c.has(alen) {
			fail(r, statusTruncated, layerIP4)
			return
		}
		c.pos += alen
	}
	goOn(c, nextL4)
}

func isExtHeader(next uint8) bool {
	return next == 0 || next == 43 || next == 44 || next == 60 || next == 51
}

func parseIPv6(c *cursor, r *gen.SensorRecord) {
	c.next = nextDone
	if !c.has(40) {
		fail(r, statusTruncated, layerIP6)
		return
	}
	h := c.b[c.pos:]
	if h[0]>>4 != 6 {
		fail(r, statusMalformed, layerIP6)
		return
	}
	r.IpVersion = 6
	r.Tos = uint8(c.be16(0) >> 4)
	r.FlowLabel = c.be32(0) & 0xfffff
	plen := uint32(c.be16(4))
	r.IpLen = uint16(plen)
	next := h[6]
	r.L4Proto = next
	r.Ttl = h[7]
	copy(r.SrcAddr[:], h[8:24])
	copy(r.DstAddr[:], h[24:40])
	if plen == 0 {
		// A jumbogram (RFC 2675), its jumbo payload option first in a hop-by-hop header.
		if next != 0 {
			fail(r, statusMalformed, layerIP6)
			return
		}
		if !c.has(48) {
			fail(r, statusTruncated, layerIP6)
			return
		}
		if h[42] != 0xc2 || h[43] != 4 {
			fail(r, statusMalformed, layerIP6)
			return
		}
		plen = c.be32(44)
		if plen <= 0xffff {
			fail(r, statusMalformed, layerIP6)
			return
		}
		c.jumbo = true
	}
	c.pos += 40
	c.ipEnd = addSat(c.pos, plen)
	if c.ipEnd > c.len {
		fail(r, statusTruncated, layerIP6)
	}
	if isExtHeader(next) {
		goOn(c, nextIP6Ext)
	} else {
		ipv6Upper(c, r, next)
	}
}

func ipv6Upper(c *cursor, r *gen.SensorRecord, next uint8) {
	if next == protoESP {
		r.ExtMask |= extESP
		stopHere(c, r, c.ipEnd)
		return
	}
	goOn(c, nextL4)
}

func parseIPv6Ext(c *cursor, r *gen.SensorRecord) {
	next := r.L4Proto
	c.next = nextDone
	for i := 0; i < ipv6ExtMax && isExtHeader(next); i++ {
		if !c.has(8) {
			fail(r, statusTruncated, layerIP6Ext)
			return
		}
		e := c.b[c.pos:]
		var elen uint32
		switch next {
		case 0:
			r.ExtMask |= extHop
			elen = (uint32(e[1]) + 1) * 8
		case 43:
			r.ExtMask |= extRouting
			elen = (uint32(e[1]) + 1) * 8
		case 60:
			r.ExtMask |= extDstOpts
			elen = (uint32(e[1]) + 1) * 8
		case 51:
			r.ExtMask |= extAH
			elen = (uint32(e[1]) + 2) * 4
		default: // fragment
			r.ExtMask |= extFragment
			elen = 8
			r.FragOff = c.be16(2) >> 3
			if e[3]&1 != 0 {
				r.IpFlags |= ipfMF
			}
			if r.FragOff != 0 || e[3]&1 != 0 {
				r.IpFlags |= ipfFragment
			}
			r.IpId = c.be32(4)
		}
		next = e[0]
		r.L4Proto = next
		if c.pos+elen > c.ipEnd {
			fail(r, statusMalformed, layerIP6Ext)
			return
		}
		if !c.has(elen) {
			fail(r, statusTruncated, layerIP6Ext)
			return
		}
		c.pos += elen
		if r.FragOff != 0 {
			stopHere(c, r, c.ipEnd)
			return
		}
	}
	if isExtHeader(next) {
		fail(r, statusUnsupported, layerIP6Ext)
		return
	}
	ipv6Upper(c, r, next)
}
