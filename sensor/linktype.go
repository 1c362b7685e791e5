package sensor

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Link types beyond Ethernet: each frame is rewritten as the Ethernet frame the parsers take,
// with the addresses the capture gives (stages.NoSrcMAC and NoDstMAC say which it does not).

// linkTypeNFLOG is LINKTYPE_NFLOG, which gopacket has no constant for.
const linkTypeNFLOG = layers.LinkType(239)

// linkTypeNames are gopacket's names of the link types (its LinkType constants, less the
// prefix), which its LinkType.String leaves "UnknownLinkType" for most of them.
var linkTypeNames = map[layers.LinkType]string{
	layers.LinkTypeNull: "Null", layers.LinkTypeEthernet: "Ethernet", layers.LinkTypeAX25: "AX25",
	layers.LinkTypeTokenRing: "TokenRing", layers.LinkTypeArcNet: "ArcNet", layers.LinkTypeSLIP: "SLIP",
	layers.LinkTypePPP: "PPP", layers.LinkTypeFDDI: "FDDI", layers.LinkTypePPP_HDLC: "PPP_HDLC",
	layers.LinkTypePPPEthernet: "PPPEthernet", layers.LinkTypeATM_RFC1483: "ATM_RFC1483",
	layers.LinkTypeRaw: "Raw", layers.LinkTypeC_HDLC: "C_HDLC", layers.LinkTypeIEEE802_11: "IEEE802_11",
	layers.LinkTypeFRelay: "FRelay", layers.LinkTypeLoop: "Loop", layers.LinkTypeLinuxSLL: "LinuxSLL",
	layers.LinkTypeLTalk: "LTalk", layers.LinkTypePFLog: "PFLog", layers.LinkTypePrismHeader: "PrismHeader",
	layers.LinkTypeIPOverFC: "IPOverFC", layers.LinkTypeSunATM: "SunATM",
	layers.LinkTypeIEEE80211Radio: "IEEE80211Radio", layers.LinkTypeARCNetLinux: "ARCNetLinux",
	layers.LinkTypeIPOver1394: "IPOver1394", layers.LinkTypeMTP2Phdr: "MTP2Phdr", layers.LinkTypeMTP2: "MTP2",
	layers.LinkTypeMTP3: "MTP3", layers.LinkTypeSCCP: "SCCP", layers.LinkTypeDOCSIS: "DOCSIS",
	layers.LinkTypeLinuxIRDA: "LinuxIRDA", layers.LinkTypeLinuxLAPD: "LinuxLAPD", layers.LinkTypeLinuxUSB: "LinuxUSB",
	layers.LinkTypeFC2: "FC2", layers.LinkTypeFC2Framed: "FC2Framed", layers.LinkTypeIPv4: "IPv4",
	layers.LinkTypeIPv6: "IPv6", layers.LinkTypeLinuxSLL2: "LinuxSLL2", linkTypeNFLOG: "NFLOG",
}

// LinkTypeName returns the name of lt, "link type N" for one without a name.
func LinkTypeName(lt layers.LinkType) string {
	if n, ok := linkTypeNames[lt]; ok {
		return n
	}
	return fmt.Sprintf("link type %d", int(lt))
}

// supportedLinkType says whether toEthernet can wrap frames of lt.
func supportedLinkType(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, layers.LinkType(12), layers.LinkType(14),
		layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypePPP, layers.LinkTypePPP_HDLC, layers.LinkTypeC_HDLC,
		linkTypeNFLOG, layers.LinkTypeIEEE802_11, layers.LinkTypeIEEE80211Radio:
		return true
	}
	return false
}

// ErrUnsupportedLinkType is what a capture of a link type the sensor cannot read fails with.
var ErrUnsupportedLinkType = errors.New("link type not supported")

func unsupportedLinkType(lt layers.LinkType) error {
	return fmt.Errorf("%w: %s (%d) (supported: Ethernet, Linux cooked v1 and v2, raw IP, BSD loopback, PPP, PPP_HDLC, C_HDLC, NFLOG, IEEE802_11 with or without radiotap)",
		ErrUnsupportedLinkType, LinkTypeName(lt), int(lt))
}

// skip is the reason a frame of a supported link type carries no packet the parsers take; the
// capture counts it and goes on.
type skip string

func (s skip) Error() string { return string(s) }

const (
	skipWifiOther     = skip("802.11 management, control and null-data frames")
	skipWifiProtected = skip("802.11 protected (encrypted) data frames")
	skipWifiAMSDU     = skip("802.11 A-MSDU and later-fragment data frames")
	skipNFLOGNoPacket = skip("NFLOG messages without a packet")
)

// wrap returns frame data as an Ethernet frame of etype with the given addresses (nil: not
// known, zero) in c.buf.
func (c *Capture) wrap(dst, src []byte, etype uint16, data []byte) []byte {
	c.buf = append(c.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(etype>>8), byte(etype))
	copy(c.buf[0:6], dst)
	copy(c.buf[6:12], src)
	c.buf = append(c.buf, data...)
	return c.buf
}

// fromPPP handles LINKTYPE_PPP and LINKTYPE_PPP_HDLC (RFC 1662 framing, ff 03 first) as
// ethertype 0x880b, whose PPP header the parsers read; LINKTYPE_C_HDLC and Cisco framing in
// PPP_HDLC (0f or 8f, 00, then an ethertype) as that ethertype.
func (c *Capture) fromPPP(data []byte, lt layers.LinkType, f *Frame) (int, error) {
	f.NoMAC = stages.NoSrcMAC | stages.NoDstMAC
	if lt != layers.LinkTypePPP && len(data) >= 4 && (data[0] == 0x0f || data[0] == 0x8f) && data[1] == 0 {
		f.Data = c.wrap(nil, nil, binary.BigEndian.Uint16(data[2:4]), data[4:])
		return 4, nil
	}
	if lt == layers.LinkTypeC_HDLC {
		return 0, fmt.Errorf("Cisco HDLC header cut short or not Cisco HDLC (%d bytes)", len(data))
	}
	f.Data = c.wrap(nil, nil, 0x880b, data)
	return 0, nil
}

// NFLOG TLV types (linux/netfilter/nfnetlink_log.h).
const (
	nfulaHWAddr   = 8
	nfulaPayload  = 9
	nfulaHWType   = 15
	nfulaHWHeader = 16
)

// fromNFLOG takes the packet of a Linux NFLOG message (LINKTYPE_NFLOG), and returns where it
// starts and how many bytes follow it: a 4-byte header (address
// family, version, resource id), then TLVs whose length and type are in the byte order of the
// machine that captured (the file's), padded to 4 bytes. The packet is NFULA_PAYLOAD; the MACs
// come from NFULA_HWHEADER when it is an Ethernet header, else the source from NFULA_HWADDR.
func (c *Capture) fromNFLOG(data []byte, f *Frame) (int, int, error) {
	if len(data) < 4 {
		return 0, 0, fmt.Errorf("NFLOG header cut short (%d bytes)", len(data))
	}
	var payload, hwHeader, hwAddr []byte
	hwType := uint16(0)
	havePayload := false
	at := 0 // where the payload starts in data
	for b := data[4:]; len(b) >= 4; {
		l, typ := int(c.order.Uint16(b[0:2])), c.order.Uint16(b[2:4])&0x7fff
		if l < 4 || l > len(b) {
			return 0, 0, fmt.Errorf("NFLOG TLV of length %d in %d bytes", l, len(b))
		}
		v := b[4:l]
		switch typ {
		case nfulaPayload:
			payload, havePayload = v, true
			at = len(data) - len(b) + 4
		case nfulaHWHeader:
			hwHeader = v
		case nfulaHWType:
			if len(v) >= 2 {
				hwType = binary.BigEndian.Uint16(v)
			}
		case nfulaHWAddr:
			if len(v) >= 10 && binary.BigEndian.Uint16(v) == 6 {
				hwAddr = v[4:10]
			}
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	if !havePayload {
		return 0, 0, skipNFLOGNoPacket
	}
	var etype uint16
	switch data[0] {
	case 2: // AF_INET
		etype = 0x0800
	case 10: // AF_INET6
		etype = 0x86dd
	default:
		etype = ipEthertype(payload)
	}
	f.NoMAC = stages.NoDstMAC | stages.NoSrcMAC
	var dst, src []byte
	switch {
	case hwType == 1 && len(hwHeader) >= 14: // ARPHRD_ETHER: the Ethernet header itself
		dst, src = hwHeader[0:6], hwHeader[6:12]
		f.NoMAC = 0
	case hwAddr != nil:
		src = hwAddr
		f.NoMAC = stages.NoDstMAC
	}
	f.Data = c.wrap(dst, src, etype, payload)
	return at, len(data) - at - len(payload), nil
}

// from80211 takes an 802.11 data frame (LINKTYPE_IEEE802_11, or after a radiotap header with
// LINKTYPE_IEEE802_11_RADIOTAP) to the Ethernet frame of its LLC payload: an LLC/SNAP header
// with an ethertype OUI gives the ethertype, any other LLC makes an 802.3 frame. The addresses
// are the frame's destination and source by its To DS and From DS bits.
func (c *Capture) from80211(data []byte, radiotap bool, f *Frame) (int, int, error) {
	hdr, tail := 0, 0
	if radiotap {
		var rt layers.RadioTap
		if err := rt.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil || int(rt.Length) > len(data) {
			return 0, 0, fmt.Errorf("radiotap header cut short or malformed (%d bytes)", len(data))
		}
		hdr = int(rt.Length)
		if len(rt.RadioTapValues) > 0 && rt.RadioTapValues[0].Flags.FCS() && len(data)-hdr >= 4 {
			tail = 4
		}
		data = data[hdr : len(data)-tail]
	}
	if len(data) < 2 {
		return 0, 0, fmt.Errorf("802.11 frame control cut short (%d bytes)", len(data))
	}
	fc, flags := data[0], data[1]
	typ, subtype := fc>>2&3, fc>>4
	if fc&3 != 0 || typ != 2 || subtype&4 != 0 { // version 0, data, with a body
		return 0, 0, skipWifiOther
	}
	if len(data) < 24 {
		return 0, 0, fmt.Errorf("802.11 header cut short (%d bytes)", len(data))
	}
	if flags&0x40 != 0 {
		return 0, 0, skipWifiProtected
	}
	toDS, fromDS := flags&1 != 0, flags&2 != 0
	n := 24
	if toDS && fromDS {
		n += 6
	}
	qos := subtype&8 != 0
	if qos {
		if len(data) < n+2 {
			return 0, 0, fmt.Errorf("802.11 QoS control cut short (%d bytes)", len(data))
		}
		if data[n]&0x80 != 0 {
			return 0, 0, skipWifiAMSDU
		}
		n += 2
		if flags&0x80 != 0 { // +HTC
			n += 4
		}
	}
	if binary.LittleEndian.Uint16(data[22:24])&0xf != 0 { // a later fragment: no LLC header
		return 0, 0, skipWifiAMSDU
	}
	if len(data) < n {
		return 0, 0, fmt.Errorf("802.11 header cut short (%d bytes)", len(data))
	}
	a1, a2, a3 := data[4:10], data[10:16], data[16:22]
	dst, src := a1, a2
	switch {
	case toDS && fromDS:
		dst, src = a3, data[24:30]
	case toDS:
		dst = a3
	case fromDS:
		src = a3
	}
	body := data[n:]
	if len(body) >= 8 && body[0] == 0xaa && body[1] == 0xaa && body[2] == 0x03 && body[3] == 0 && body[4] == 0 && (body[5] == 0 || body[5] == 0xf8) {
		f.Data = c.wrap(dst, src, binary.BigEndian.Uint16(body[6:8]), body[8:])
		return hdr + n + 8, tail, nil
	}
	f.Data = c.wrap(dst, src, uint16(min(len(body), 1500)), body) // 802.3: the LLC follows
	return hdr + n, tail, nil
}
