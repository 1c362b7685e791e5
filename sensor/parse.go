package sensor

import (
	"encoding/binary"
	"unsafe"

	"github.com/chains-sensor/chains-sensor/gen"
)

// The Go twin of bpf/parse.h and the record-filling part of bpf/sensor.c. It must produce the
// byte-identical record for the same frame: change both together. The tests replay every shared
// capture and fuzzed frames through both and compare bytes.

// Values of bpf/record.h and bpf/parse.h that the twin needs.
const (
	recordSize = int(unsafe.Sizeof(gen.SensorRecord{}))

	statusOK          = uint8(gen.SensorStatusSTATUS_OK)
	statusTruncated   = uint8(gen.SensorStatusSTATUS_TRUNCATED)
	statusMalformed   = uint8(gen.SensorStatusSTATUS_MALFORMED)
	statusUnsupported = uint8(gen.SensorStatusSTATUS_UNSUPPORTED)

	layerEth    = uint8(gen.SensorLayerLAYER_ETH)
	layerVLAN   = uint8(gen.SensorLayerLAYER_VLAN)
	layerPPPoE  = uint8(gen.SensorLayerLAYER_PPPOE)
	layerARP    = uint8(gen.SensorLayerLAYER_ARP)
	layerIP4    = uint8(gen.SensorLayerLAYER_IP4)
	layerIP6    = uint8(gen.SensorLayerLAYER_IP6)
	layerIP6Ext = uint8(gen.SensorLayerLAYER_IP6EXT)
	layerTCP    = uint8(gen.SensorLayerLAYER_TCP)
	layerUDP    = uint8(gen.SensorLayerLAYER_UDP)
	layerICMP   = uint8(gen.SensorLayerLAYER_ICMP)
	layerICMP6  = uint8(gen.SensorLayerLAYER_ICMP6)

	vlanMax    = 2
	ipv6ExtMax = 8

	ipfMF       = uint8(gen.SensorIpFlagIPF_MF)
	ipfDF       = uint8(gen.SensorIpFlagIPF_DF)
	ipfFragment = uint8(gen.SensorIpFlagIPF_FRAGMENT)

	extHop      = uint8(gen.SensorExtBitEXT_HOP)
	extRouting  = uint8(gen.SensorExtBitEXT_ROUTING)
	extFragment = uint8(gen.SensorExtBitEXT_FRAGMENT)
	extDstOpts  = uint8(gen.SensorExtBitEXT_DSTOPTS)
	extAH       = uint8(gen.SensorExtBitEXT_AH)
	extESP      = uint8(gen.SensorExtBitEXT_ESP)
)

// Meta is what the kernel takes from its context rather than from the frame: the twin gets it
// from the capture, and Replay writes it over what the test run reports.
type Meta struct {
	TS      int64  // Unix time in ns (the kernel writes boot time)
	Ifindex uint32 // interface index
	WireLen uint32 // length on the wire (0: the frame's length)
	Dir     uint8  // 0 in (xdp_sensor), 1 out (tc_sensor)
}

// Twin is the Go twin of the kernel parser, with the payload limits the programs were loaded with.
type Twin struct {
	SnapSmall uint16 // payload bytes for other packets
	SnapLarge uint16 // payload bytes for DNS ports, TLS handshakes and HTTP heads
}

// NewTwin returns the twin for cfg's payload limits (zero fields: the defaults).
func NewTwin(cfg Config) Twin {
	cfg = cfg.withDefaults()
	return Twin{SnapSmall: cfg.SnapSmall, SnapLarge: cfg.SnapLarge}
}

// cursor mirrors struct cursor: positions are offsets into the frame.
type cursor struct {
	b     []byte
	pos   uint32
	ipEnd uint32
	// walk_result
	avail uint32
	large bool
}

func (c *cursor) has(n uint32) bool { return uint64(c.pos)+uint64(n) <= uint64(len(c.b)) }
func (c *cursor) be16(at uint32) uint16 {
	return binary.BigEndian.Uint16(c.b[c.pos+at:])
}
func (c *cursor) be32(at uint32) uint32 {
	return binary.BigEndian.Uint32(c.b[c.pos+at:])
}

func fail(r *gen.SensorRecord, status, layer uint8) {
	if r.Status == statusOK {
		r.Status = status
		r.BadLayer = layer
	}
}

// Parse walks frame as the kernel does and appends the record and its payload bytes to dst.
func (t Twin) Parse(dst, frame []byte, m Meta) []byte {
	var r gen.SensorRecord
	c := cursor{b: frame}
	r.TsNs = uint64(m.TS)
	r.Ifindex = m.Ifindex
	r.WireLen = m.WireLen
	if r.WireLen == 0 {
		r.WireLen = uint32(len(frame))
	}
	r.Dir = m.Dir
	parseFrame(&c, &r)

	snap := uint32(t.SnapSmall)
	if c.large {
		snap = uint32(t.SnapLarge)
	}
	snap = min(snap, c.avail, SnapMax)
	r.SnapLen = uint16(snap)

	dst = append(dst, recordBytes(&r)...)
	if snap > 0 {
		off := uint32(r.PayloadOff)
		dst = append(dst, frame[off:off+snap]...)
	}
	return dst
}

// recordBytes returns the bytes of r as the kernel lays them out (gen is built for
// little-endian hosts only, as the BPF object is bpfel).
func recordBytes(r *gen.SensorRecord) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(r)), recordSize)
}

func setPayload(c *cursor, r *gen.SensorRecord, declaredEnd uint32) {
	pos, stop := c.pos, declaredEnd
	r.PayloadOff = uint16(pos)
	if stop < pos {
		return
	}
	r.PayloadLen = uint16(stop - pos)
	stop = min(stop, uint32(len(c.b)))
	if stop > pos {
		c.avail = stop - pos
	}
}

func isDNSPort(p uint16) bool { return p == 53 || p == 5353 || p == 5355 }

func payloadIsLarge(c *cursor) bool {
	if !c.has(4) {
		return false
	}
	b := c.b[c.pos:]
	if b[0] == 0x16 && b[1] == 0x03 {
		return true
	}
	switch binary.BigEndian.Uint32(b) {
	case 0x47455420, 0x504f5354, 0x48454144, 0x50555420, 0x44454c45,
		0x4f505449, 0x50415443, 0x434f4e4e, 0x54524143, 0x48545450:
		return true
	}
	return false
}

func parseTCP(c *cursor, r *gen.SensorRecord) {
	if !c.has(20) {
		fail(r, statusTruncated, layerTCP)
		return
	}
	h := c.b[c.pos:]
	r.Sport = c.be16(0)
	r.Dport = c.be16(2)
	r.Seq = c.be32(4)
	r.Ack = c.be32(8)
	r.TcpFlags = h[13]
	r.Window = c.be16(14)
	hlen := uint32(h[12]>>4) * 4
	r.L4HdrLen = uint8(hlen)
	if hlen < 20 {
		fail(r, statusMalformed, layerTCP)
		return
	}
	if !c.has(hlen) {
		fail(r, statusTruncated, layerTCP)
		return
	}
	if c.pos+hlen > c.ipEnd {
		fail(r, statusMalformed, layerTCP)
		return
	}
	c.pos += hlen
	setPayload(c, r, c.ipEnd)
	c.large = isDNSPort(r.Sport) || isDNSPort(r.Dport) || payloadIsLarge(c)
}

func parseUDP(c *cursor, r *gen.SensorRecord) {
	if !c.has(8) {
		fail(r, statusTruncated, layerUDP)
		return
	}
	r.Sport = c.be16(0)
	r.Dport = c.be16(2)
	l := uint32(c.be16(4))
	r.UdpLen = uint16(l)
	r.L4HdrLen = 8
	if l < 8 {
		fail(r, statusMalformed, layerUDP)
		return
	}
	if c.pos+l > c.ipEnd {
		fail(r, statusMalformed, layerUDP)
		c.pos += 8
		setPayload(c, r, c.ipEnd)
	} else {
		c.pos += 8
		setPayload(c, r, c.pos-8+l)
	}
	c.large = isDNSPort(r.Sport) || isDNSPort(r.Dport)
}

func parseICMP(c *cursor, r *gen.SensorRecord, layer uint8) {
	if !c.has(2) {
		fail(r, statusTruncated, layer)
		return
	}
	typ := c.b[c.pos]
	r.IcmpType = typ
	r.IcmpCode = c.b[c.pos+1]
	if !c.has(8) {
		fail(r, statusTruncated, layer)
		return
	}
	r.L4HdrLen = 8
	if (layer == layerICMP && (typ == 0 || typ == 8)) || (layer == layerICMP6 && (typ == 128 || typ == 129)) {
		r.IcmpId = c.be16(4)
		r.IcmpSeq = c.be16(6)
	}
	c.pos += 8
	setPayload(c, r, c.ipEnd)
}

func parseL4(c *cursor, r *gen.SensorRecord) {
	switch r.L4Proto {
	case 6:
		parseTCP(c, r)
	case 17:
		parseUDP(c, r)
	case 1:
		if r.IpVersion == 4 {
			parseICMP(c, r, layerICMP)
		} else {
			setPayload(c, r, c.ipEnd)
		}
	case 58:
		if r.IpVersion == 6 {
			parseICMP(c, r, layerICMP6)
		} else {
			setPayload(c, r, c.ipEnd)
		}
	default:
		setPayload(c, r, c.ipEnd)
	}
}

func parseIPv4(c *cursor, r *gen.SensorRecord) {
	if !c.has(20) {
		fail(r, statusTruncated, layerIP4)
		return
	}
	h := c.b[c.pos:]
	r.IpVersion = h[0] >> 4
	if r.IpVersion != 4 {
		fail(r, statusMalformed, layerIP4)
		return
	}
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
	if c.ipEnd > uint32(len(c.b)) {
		fail(r, statusTruncated, layerIP4)
	}
	c.pos += hlen
	if r.FragOff != 0 {
		setPayload(c, r, c.ipEnd)
	} else {
		parseL4(c, r)
	}
}

func isExtHeader(next uint8) bool {
	return next == 0 || next == 43 || next == 44 || next == 60 || next == 51
}

func parseIPv6(c *cursor, r *gen.SensorRecord) {
	if !c.has(40) {
		fail(r, statusTruncated, layerIP6)
		return
	}
	h := c.b[c.pos:]
	r.IpVersion = h[0] >> 4
	if r.IpVersion != 6 {
		fail(r, statusMalformed, layerIP6)
		return
	}
	r.Tos = uint8(c.be16(0) >> 4)
	r.FlowLabel = c.be32(0) & 0xfffff
	r.IpLen = c.be16(4)
	next := h[6]
	r.L4Proto = next
	r.Ttl = h[7]
	copy(r.SrcAddr[:], h[8:24])
	copy(r.DstAddr[:], h[24:40])
	if r.IpLen == 0 {
		fail(r, statusMalformed, layerIP6)
		return
	}
	c.pos += 40
	c.ipEnd = c.pos + uint32(r.IpLen)
	if c.ipEnd > uint32(len(c.b)) {
		fail(r, statusTruncated, layerIP6)
	}

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
			setPayload(c, r, c.ipEnd)
			return
		}
	}
	if isExtHeader(next) {
		fail(r, statusUnsupported, layerIP6Ext)
		return
	}
	if next == 50 {
		r.ExtMask |= extESP
		setPayload(c, r, c.ipEnd)
		return
	}
	parseL4(c, r)
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
	if c.be16(2) != 0x0800 || h[4] != 6 || h[5] != 4 {
		fail(r, statusUnsupported, layerARP)
		return
	}
	copy(r.SrcAddr[:4], h[14:18])
	copy(r.DstAddr[:4], h[24:28])
}

func parseFrame(c *cursor, r *gen.SensorRecord) {
	if !c.has(14) {
		fail(r, statusTruncated, layerEth)
		return
	}
	copy(r.DstMac[:], c.b[0:6])
	copy(r.SrcMac[:], c.b[6:12])
	proto := c.be16(12)
	c.pos += 14

	for i := 0; i < vlanMax; i++ {
		if proto != 0x8100 && proto != 0x88a8 {
			break
		}
		if !c.has(4) {
			r.EthProto = proto
			fail(r, statusTruncated, layerVLAN)
			return
		}
		r.VlanTci[i] = c.be16(0)
		r.VlanCount++
		proto = c.be16(2)
		c.pos += 4
	}
	r.EthProto = proto
	if proto == 0x8100 || proto == 0x88a8 {
		fail(r, statusUnsupported, layerVLAN)
		return
	}
	if proto == 0x8864 {
		if !c.has(8) {
			fail(r, statusTruncated, layerPPPoE)
			return
		}
		switch c.be16(6) {
		case 0x0021:
			proto = 0x0800
		case 0x0057:
			proto = 0x86dd
		default:
			c.pos += 6
			setPayload(c, r, uint32(len(c.b)))
			return
		}
		c.pos += 8
		r.EthProto = proto
	}
	switch proto {
	case 0x0800:
		parseIPv4(c, r)
	case 0x86dd:
		parseIPv6(c, r)
	case 0x0806:
		parseARP(c, r)
	default:
		setPayload(c, r, uint32(len(c.b)))
	}
}
