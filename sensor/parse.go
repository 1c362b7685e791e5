package sensor

import (
	"encoding/binary"
	"unsafe"

	"github.com/chains-sensor/chains-sensor/gen"
)

// The Go twin of bpf/parse*.h and the record-filling part of bpf/sensor.c. It must produce the
// byte-identical record for the same frame: change both together. The tests replay every test
// capture, hand-built frames and fuzzed frames through both and compare bytes. Each file here
// mirrors one header: parse_link.go, parse_ip.go, parse_l4.go, parse_tunnel.go.

// Values of bpf/record.h and bpf/parse.h that the twin needs.
const (
	recordSize = int(unsafe.Sizeof(gen.SensorRecord{}))
	// extSize is the size of the extension some samples carry after the record.
	extSize = int(unsafe.Sizeof(gen.SensorRecordExt{}))
	// netBlockOff is where the record's network block starts (NET_BLOCK_OFF): entering a
	// tunnel clears it from there to the end.
	netBlockOff = int(unsafe.Offsetof(gen.SensorRecord{}.IpVersion))

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
	layerTunnel = uint8(gen.SensorLayerLAYER_TUNNEL)

	vlanMax     = 4               // VLAN_MAX
	ipv6ExtMax  = 8               // IPV6_EXT_MAX
	tunnelMax   = 3               // TUNNEL_MAX
	gtpExtMax   = 4               // GTP_EXT_MAX
	tunnelSteps = 2 + 5*tunnelMax // TUNNEL_STEPS
	offMax      = 0x7fff          // OFF_MAX

	ipfMF       = uint8(gen.SensorIpFlagIPF_MF)
	ipfDF       = uint8(gen.SensorIpFlagIPF_DF)
	ipfFragment = uint8(gen.SensorIpFlagIPF_FRAGMENT)

	extHop      = uint8(gen.SensorExtBitEXT_HOP)
	extRouting  = uint8(gen.SensorExtBitEXT_ROUTING)
	extFragment = uint8(gen.SensorExtBitEXT_FRAGMENT)
	extDstOpts  = uint8(gen.SensorExtBitEXT_DSTOPTS)
	extAH       = uint8(gen.SensorExtBitEXT_AH)
	extESP      = uint8(gen.SensorExtBitEXT_ESP)

	tunIPIP    = uint8(gen.SensorTunnelTUN_IPIP)
	tunIP6     = uint8(gen.SensorTunnelTUN_IP6)
	tunGRE     = uint8(gen.SensorTunnelTUN_GRE)
	tunPPTP    = uint8(gen.SensorTunnelTUN_PPTP)
	tunERSPAN1 = uint8(gen.SensorTunnelTUN_ERSPAN1)
	tunERSPAN2 = uint8(gen.SensorTunnelTUN_ERSPAN2)
	tunERSPAN3 = uint8(gen.SensorTunnelTUN_ERSPAN3)
	tunVXLAN   = uint8(gen.SensorTunnelTUN_VXLAN)
	tunGeneve  = uint8(gen.SensorTunnelTUN_GENEVE)
	tunGTPU    = uint8(gen.SensorTunnelTUN_GTPU)

	tunfIP6 = uint8(gen.SensorTunFlagTUNF_IP6)
	tunfEth = uint8(gen.SensorTunFlagTUNF_ETH)
	tunfKey = uint8(gen.SensorTunFlagTUNF_KEY)
	tunfSeq = uint8(gen.SensorTunFlagTUNF_SEQ)
)

// Ethertypes and IP protocols the parser knows (parse.h's defines).
const (
	ethIPv4    = 0x0800
	ethARP     = 0x0806
	ethIPv6    = 0x86dd
	eth8021Q   = 0x8100
	eth8021AD  = 0x88a8
	ethPPPoE   = 0x8864
	ethPPP     = 0x880b
	ethTEB     = 0x6558
	ethERSPAN  = 0x88be
	ethERSPAN3 = 0x22eb
	ethMinType = 0x0600

	protoICMP   = 1
	protoIPIP   = 4
	protoTCP    = 6
	protoUDP    = 17
	protoIPv6   = 41
	protoGRE    = 47
	protoESP    = 50
	protoAH     = 51
	protoICMPv6 = 58
)

// Steps of the walk (enum next_step).
const (
	nextDone = iota
	nextEth
	nextIP
	nextIP4
	nextIP6
	nextIP6Ext
	nextL4
	nextTunnel
)

// Meta is what the kernel takes from its context rather than from the frame: the twin gets it
// from the capture, and Replay writes it over what the test run reports.
type Meta struct {
	TS      int64  // Unix time in ns (the kernel writes boot time)
	Ifindex uint32 // interface index
	WireLen uint32 // length on the wire (0: the frame's length)
	Dir     uint8  // 0 in (xdp_sensor), 1 out (tc_sensor)
}

// Twin is the Go twin of the kernel parser, with the knobs the programs were loaded with. Its
// Follow table is the twin of the kernel's follow map: copies of a Twin share it, so a Twin
// serves one source of frames (it is not safe for concurrent use).
type Twin struct {
	SnapSmall uint16  // payload bytes for other packets
	SnapLarge uint16  // payload bytes for DNS ports, TLS handshakes and HTTP heads
	NoDecap   bool    // enter no tunnel (cfg.no_decap)
	Follow    *Follow // message following (nil: none)
}

// NewTwin returns the twin for cfg's knobs (zero fields: the defaults).
func NewTwin(cfg Config) Twin {
	cfg = cfg.withDefaults()
	t := Twin{SnapSmall: cfg.SnapSmall, SnapLarge: cfg.SnapLarge, NoDecap: cfg.NoDecap}
	if b := cfg.followBytes(); b != 0 {
		t.Follow = newFollow(b, t.SnapSmall, int(cfg.FollowFlows))
	}
	return t
}

// cursor mirrors struct cursor (pos) and struct walk (the rest): positions are offsets into
// the frame, whose length is the kernel's data_end.
type cursor struct {
	b     []byte
	pos   uint32
	off   uint32 // walk.off
	len   uint32 // walk.len
	ipEnd uint32
	avail uint32 // walk.payload_avail
	l4End uint32 // walk.l4_end
	next  uint8
	large bool
	jumbo bool
	msg   uint8               // walk.msg
	ext   gen.SensorRecordExt // walk.ext

	noDecap bool
}

func (c *cursor) has(n uint32) bool { return uint64(c.pos)+uint64(n) <= uint64(len(c.b)) }
func (c *cursor) at(i uint32) byte  { return c.b[c.pos+i] }
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

func addSat(a, b uint32) uint32 {
	if s := a + b; s >= a {
		return s
	}
	return 0xffffffff
}

// Parse walks frame as the kernel does and appends the record and its payload bytes to dst.
func (t Twin) Parse(dst, frame []byte, m Meta) []byte {
	var r gen.SensorRecord
	c := cursor{b: frame, len: uint32(len(frame)), noDecap: t.NoDecap}
	r.TsNs = uint64(m.TS)
	r.Ifindex = m.Ifindex
	r.WireLen = m.WireLen
	if r.WireLen == 0 {
		r.WireLen = uint32(len(frame))
	}
	r.Dir = m.Dir
	walk(&c, &r)
	if c.msg != msgNone && t.Follow != nil {
		t.Follow.decide(frame, &r, &c)
	}

	snap := uint32(t.SnapSmall)
	if c.large {
		snap = uint32(t.SnapLarge)
	}
	snap = min(snap, c.avail, SnapMax)
	r.SnapLen = uint16(snap)

	dst = append(dst, recordBytes(&r)...)
	if hasExt(&r) {
		dst = append(dst, extBytes(&c.ext)...)
	}
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

// extBytes returns the bytes of x as the kernel lays them out.
func extBytes(x *gen.SensorRecordExt) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(x)), extSize)
}

// hasExt mirrors RECORD_HAS_EXT: whether r's sample carries the extension.
func hasExt(r *gen.SensorRecord) bool { return r.TunDepth > 0 || r.VlanCount > 2 }

// walk mirrors parse.h's walk: the outer packet's link, IP and transport headers, then one
// step at a time, each starting at c.off.
func walk(c *cursor, r *gen.SensorRecord) {
	parseLink(c, r)
	if c.next == nextIP4 && offOK(c, r, c.pos, layerIP4) {
		parseIP4L4(c, r)
	} else if c.next == nextIP6 && offOK(c, r, c.pos, layerIP6) {
		parseIP6L4(c, r)
	}
	for i := 0; i < tunnelSteps; i++ {
		switch c.next {
		case nextEth:
			step(c, r, layerEth, parseLink)
		case nextIP, nextIP4:
			step(c, r, layerIP4, parseIP4L4)
		case nextIP6:
			step(c, r, layerIP6, parseIP6L4)
		case nextIP6Ext:
			step(c, r, layerIP6Ext, parseIP6ExtL4)
		case nextTunnel:
			step(c, r, layerTunnel, parseTunnel)
		default:
			return
		}
	}
}

// step mirrors the STEP functions: the cursor at c.off.
func step(c *cursor, r *gen.SensorRecord, layer uint8, parse func(*cursor, *gen.SensorRecord)) {
	if offOK(c, r, c.off, layer) {
		c.pos = c.off
		parse(c, r)
	}
}

// offOK mirrors forget_pos: a header past OFF_MAX ends the walk, truncated.
func offOK(c *cursor, r *gen.SensorRecord, off uint32, layer uint8) bool {
	if off > offMax {
		fail(r, statusTruncated, layer)
		c.next = nextDone
		return false
	}
	return true
}

func parseIP4L4(c *cursor, r *gen.SensorRecord) {
	parseIPv4(c, r)
	if c.next == nextL4 && offOK(c, r, c.pos, l4Layer(r)) {
		parseL4(c, r)
	}
}

func parseIP6L4(c *cursor, r *gen.SensorRecord) {
	parseIPv6(c, r)
	if c.next == nextL4 && offOK(c, r, c.pos, l4Layer(r)) {
		parseL4(c, r)
	}
}

func parseIP6ExtL4(c *cursor, r *gen.SensorRecord) {
	parseIPv6Ext(c, r)
	if c.next == nextL4 && offOK(c, r, c.pos, l4Layer(r)) {
		parseL4(c, r)
	}
}

func l4Layer(r *gen.SensorRecord) uint8 {
	switch r.L4Proto {
	case protoTCP:
		return layerTCP
	case protoUDP:
		return layerUDP
	}
	if r.IpVersion == 6 {
		return layerIP6
	}
	return layerIP4
}

func setPayload(c *cursor, r *gen.SensorRecord, declaredEnd uint32) {
	pos, stop := c.pos, declaredEnd
	r.PayloadOff = uint16(pos)
	if stop < pos {
		return
	}
	r.PayloadLen = stop - pos
	stop = min(stop, c.len)
	if stop > pos {
		c.avail = stop - pos
	}
}

func stopHere(c *cursor, r *gen.SensorRecord, declaredEnd uint32) {
	setPayload(c, r, declaredEnd)
	c.next = nextDone
}

func goOn(c *cursor, next uint8) {
	c.off = c.pos
	c.next = next
}
