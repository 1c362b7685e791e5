package sensor

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Frame is one packet of a capture file, as an Ethernet frame: captures of other link types
// are wrapped in a synthetic Ethernet header, so that the kernel program and the twin see the
// same bytes.
type Frame struct {
	Data     []byte          // the Ethernet frame; valid until the next call to Next
	Time     time.Time       // capture time; the Unix epoch for a block that has none (pcapng SPB)
	WireLen  uint32          // length on the wire, counted as the Ethernet frame
	Iface    int             // pcapng interface number (0 for pcap)
	LinkType layers.LinkType // the file's link type for this packet
	Dir      uint8           // 1 where the capture says the packet was outgoing (Linux cooked)
	NoMAC    uint8           // stages.NoSrcMAC, NoDstMAC: the addresses the link type does not give (zero in Data)
	Num      uint64          // 1-based packet number in the file
	Info     gopacket.CaptureInfo
	// TimeNote says Time is not the timestamp as written (a fraction past a second: Time has
	// the seconds and TimeFrac the field; past what a date shows: Time is the Unix epoch).
	TimeNote stages.TimeNote
	TimeFrac uint32
	// Orig is the frame as the file holds it (what a filter expression reads). Where Wrapped,
	// Data is Orig with its first LinkHdr bytes replaced by the synthetic Ethernet header.
	Orig    []byte
	Wrapped bool
	LinkHdr int
}

// Capture reads pcap files (both byte orders, micro- and nanosecond timestamps) with gopacket's
// pcapgo, and pcapng files (several interfaces with different link types) with a reader of its
// own that holds each interface in a few bytes (pcapng_read.go). Frames it cannot
// make a packet of (a pcapng interface of an unsupported link type, an 802.11 control frame)
// are skipped and counted (Skipped).
type Capture struct {
	read func() ([]byte, gopacket.CaptureInfo, error)
	link func(iface int) layers.LinkType
	ng   *ngReader // pcapng: its interfaces, as read so far
	fcs  int       // pcap: bytes of frame check sequence at the end of each frame
	// pcap: the record headers' timestamp fields as written; nano says they are nanoseconds.
	raw  *pcapScan
	nano bool
	buf  []byte
	// order is the file's byte order: NFLOG's TLVs are in the capturing machine's.
	order   binary.ByteOrder
	desc    func(iface int) CaptureInterface
	skipped map[string]uint64
	// name caches IfaceName's answer for the last interface asked (sources ask per packet).
	nameIdx int
	name    string
	frame   Frame
	num     uint64
}

// CaptureOptions bound what a capture stream may make the reader hold.
type CaptureOptions struct {
	// MaxInterfaces bounds the interface description blocks of a pcapng section (0:
	// DefaultMaxInterfaces); past it reading stops with ErrTooManyInterfaces.
	MaxInterfaces int
}

const (
	pcapngMagic      = 0x0a0d0d0a
	linktypeMask     = 0x0000ffff // LT_LINKTYPE: the link type proper
	linktypeReserved = 0x03ff0000 // LT_RESERVED1: must be zero
	linktypeFCSFlag  = 0x04000000 // LT_FCS_DATALINK_EXT: FCS length is present
	linktypeFCSShift = 28
)

// OpenCapture reads the file header of a pcap or pcapng stream, with the default bounds.
func OpenCapture(r io.Reader) (*Capture, error) { return OpenCaptureWith(r, CaptureOptions{}) }

// OpenCaptureWith reads the file header of a pcap or pcapng stream, within opts' bounds.
func OpenCaptureWith(r io.Reader, opts CaptureOptions) (*Capture, error) {
	if opts.MaxInterfaces <= 0 {
		opts.MaxInterfaces = DefaultMaxInterfaces
	}
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("not a capture file: it is empty or shorter than a file header")
		}
		return nil, fmt.Errorf("reading the file header: %w", err)
	}
	c := &Capture{nameIdx: -1, order: binary.LittleEndian, skipped: map[string]uint64{}}
	if binary.LittleEndian.Uint32(magic) == pcapngMagic {
		if shb, err := br.Peek(12); err == nil && binary.BigEndian.Uint32(shb[8:12]) == 0x1a2b3c4d {
			c.order = binary.BigEndian
		}
		ng, err := newNgReader(br, opts.MaxInterfaces)
		if err != nil {
			return nil, fmt.Errorf("not a readable pcapng file: %w", err)
		}
		c.ng = ng
		c.read = ng.next
		c.link = func(i int) layers.LinkType {
			ifc, _ := ng.Interface(i)
			return ifc.LinkType // 0 for none, as pcapgo's LinkType() of a mixed-link-type file
		}
		c.desc = func(i int) CaptureInterface {
			ifc, _ := ng.Interface(i)
			return ifc
		}
		return c, nil
	}
	// pcapgo keeps 16 bits of the link-type field; the FCS and reserved bits above them are
	// read from the header here.
	var raw uint32
	// The pcap file starts here, for pcapgo and for the record scanner in front of it.
	var in io.Reader
	if hdr, order := pcapHeader(br); order != nil {
		raw = order.Uint32(hdr[20:24])
		c.nano = binary.LittleEndian.Uint32(hdr) == 0xa1b23c4d || binary.LittleEndian.Uint32(hdr) == 0x4d3cb2a1
		c.raw = newPcapScan(acceptPcapMinor(br), order)
		in = c.raw
		c.order = order
	} else {
		in = acceptPcapMinor(br)
	}
	pr, err := pcapgo.NewReader(in)
	if err != nil {
		return nil, fmt.Errorf("not a readable pcap or pcapng file: %w", err)
	}
	if raw&linktypeReserved != 0 {
		return nil, fmt.Errorf("the file header's link-type field %#x has reserved bits set: not a pcap file this reader understands", raw)
	}
	lt := layers.LinkType(raw & linktypeMask)
	if raw&linktypeFCSFlag != 0 {
		c.fcs = int(raw>>linktypeFCSShift) * 2
	}
	if !supportedLinkType(lt) {
		return nil, unsupportedLinkType(lt)
	}
	c.read = pr.ZeroCopyReadPacketData
	c.link = func(int) layers.LinkType { return lt }
	c.desc = func(int) CaptureInterface { return CaptureInterface{LinkType: lt, SnapLen: pr.Snaplen()} }
	return c, nil
}

// LinkTypes returns the link types the file has declared so far: a pcap file's one, the
// interfaces' of a pcapng file (more may come with later interface blocks).
func (c *Capture) LinkTypes() []layers.LinkType {
	if c.ng == nil {
		return []layers.LinkType{c.link(0)}
	}
	var lts []layers.LinkType
	for i := range c.ng.NInterfaces() {
		lts = append(lts, c.link(i))
	}
	return lts
}

// IfaceName returns the pcapng name of interface i (as far as the file's interface blocks
// are read: by the time a packet of interface i is read, its block is), or "".
func (c *Capture) IfaceName(i int) string {
	if c.ng == nil {
		return ""
	}
	if i == c.nameIdx {
		return c.name
	}
	ifc, ok := c.ng.Interface(i)
	if !ok {
		return ""
	}
	c.nameIdx, c.name = i, ifc.Name
	return c.name
}

// CaptureInterface is what a capture file says of one of its interfaces: a pcapng interface
// description, or a pcap file's header.
type CaptureInterface struct {
	Name, Description, Filter, OS string
	LinkType                      layers.LinkType
	SnapLen                       uint32 // 0: no limit
}

// Interface returns what the file says of interface i (a pcap file has one, 0).
func (c *Capture) Interface(i int) CaptureInterface { return c.desc(i) }

// Frames returns how many frames were read so far, packets and skipped ones.
func (c *Capture) Frames() uint64 { return c.num }

// Skipped returns how many frames were skipped, by reason.
func (c *Capture) Skipped() map[string]uint64 { return c.skipped }

// Next returns the next frame, io.EOF at the end of the file, or an error naming the packet
// number where reading stopped. Frames that carry no packet the parsers take are skipped and
// counted.
func (c *Capture) Next() (*Frame, error) {
	for {
		f, err := c.next()
		var s skip
		if !errors.As(err, &s) {
			return f, err
		}
		c.skipped[string(s)]++
	}
}

func (c *Capture) next() (*Frame, error) {
	n := c.num + 1
	data, ci, err := c.read()
	if err != nil {
		if errors.Is(err, io.EOF) && len(data) == 0 && !errors.Is(err, io.ErrUnexpectedEOF) {
			if c.ng != nil && c.ng.NInterfaces() == 0 {
				return nil, errors.New("the pcapng file has no interface description block, so it can hold no packets")
			}
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("packet %d: the file ends inside a packet record (truncated capture)", n)
		}
		return nil, fmt.Errorf("packet %d: %w", n, err)
	}
	c.num = n
	if c.fcs > 0 && len(data) >= c.fcs {
		data = data[:len(data)-c.fcs]
		ci.Length = max(ci.Length-c.fcs, len(data))
	}
	if ci.Timestamp.IsZero() {
		// A pcapng Simple Packet Block has no timestamp: the Unix epoch stands in, as in
		// libpcap (tcpdump prints 1970-01-01 00:00:00), not year 1 (1754 once in nanoseconds).
		ci.Timestamp = time.Unix(0, 0).UTC()
	}
	note, frac := stages.TimeValid, uint32(0)
	if c.raw != nil {
		// pcapgo multiplies a microsecond field by 1000 in 32 bits and lets time.Unix carry a
		// fraction past a second into the seconds: the fields as written say what it was.
		if ts, ok := c.raw.take(); ok {
			switch {
			case !c.nano && ts.frac > 999_999:
				note, frac = stages.TimeInvalidMicro, ts.frac
			case c.nano && ts.frac > 999_999_999:
				note, frac = stages.TimeInvalidNano, ts.frac
			}
			if note != stages.TimeValid {
				ci.Timestamp = time.Unix(int64(ts.sec), 0).UTC()
			}
		}
	}
	if sec := ci.Timestamp.Unix(); sec < 0 || sec > maxTimeSeconds {
		// Past what the records' int64 nanoseconds hold (a pcapng timestamp of 2^64-1 µs
		// once printed as 1969-12-31).
		note, ci.Timestamp = stages.TimeOverflow, time.Unix(0, 0).UTC()
	}
	lt := c.link(ci.InterfaceIndex)
	if !supportedLinkType(lt) {
		// Only pcapng gets here (a pcap file of such a link type does not open): its
		// other interfaces go on.
		return nil, skip(fmt.Sprintf("packets of pcapng interface %d (%s, link type %d, not supported)", ci.InterfaceIndex, LinkTypeName(lt), int(lt)))
	}
	f := &c.frame
	*f = Frame{Time: ci.Timestamp, Iface: ci.InterfaceIndex, LinkType: lt, Num: n, Info: ci, TimeNote: note, TimeFrac: frac}
	hdr, tail, err := c.toEthernet(data, lt, f)
	var s skip
	if errors.As(err, &s) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("packet %d: %w", n, err)
	}
	f.Orig = data
	if lt != layers.LinkTypeEthernet {
		f.Wrapped, f.LinkHdr = true, hdr
	}
	wire := ci.Length - hdr - tail + 14
	f.WireLen = uint32(max(wire, len(f.Data)))
	return f, nil
}

// maxTimeSeconds is the last second a record's timestamp (int64 nanoseconds since 1970) holds:
// 2262-04-11 23:47:16 UTC.
const maxTimeSeconds = (1<<63 - 1) / int64(time.Second)

// toEthernet puts the frame in f.Data and returns the lengths of the link header it replaced
// and of the trailer (an 802.11 FCS) it dropped.
func (c *Capture) toEthernet(data []byte, lt layers.LinkType, f *Frame) (int, int, error) {
	var src []byte
	var etype uint16
	var hdr int
	switch lt {
	case layers.LinkTypeEthernet:
		f.Data = data
		return 14, 0, nil
	case layers.LinkTypeLinuxSLL: // 16 bytes: pkttype, hatype, halen, addr[8], protocol
		if len(data) < 16 {
			return 0, 0, fmt.Errorf("Linux cooked header cut short (%d bytes)", len(data))
		}
		if binary.BigEndian.Uint16(data[0:2]) == 4 { // PACKET_OUTGOING
			f.Dir = 1
		}
		if binary.BigEndian.Uint16(data[4:6]) == 6 {
			src = data[6:12]
		}
		etype, hdr = sllProtocol(binary.BigEndian.Uint16(data[14:16]), data[16:]), 16
	case layers.LinkTypeLinuxSLL2: // 20 bytes: protocol, reserved, ifindex, hatype, pkttype, halen, addr[8]
		if len(data) < 20 {
			return 0, 0, fmt.Errorf("Linux cooked v2 header cut short (%d bytes)", len(data))
		}
		if data[10] == 4 {
			f.Dir = 1
		}
		if data[11] == 6 {
			src = data[12:18]
		}
		etype, hdr = sllProtocol(binary.BigEndian.Uint16(data[0:2]), data[20:]), 20
	case layers.LinkTypeIPv4:
		etype, hdr = 0x0800, 0
	case layers.LinkTypeIPv6:
		etype, hdr = 0x86dd, 0
	case layers.LinkTypeRaw, layers.LinkType(12), layers.LinkType(14):
		etype, hdr = ipEthertype(data), 0
	case layers.LinkTypeNull, layers.LinkTypeLoop: // 4-byte address family
		if len(data) < 4 {
			return 0, 0, fmt.Errorf("loopback header cut short (%d bytes)", len(data))
		}
		af := binary.LittleEndian.Uint32(data[:4])
		if lt == layers.LinkTypeLoop || af > 0xffff {
			af = binary.BigEndian.Uint32(data[:4])
		}
		switch af {
		case 2:
			etype = 0x0800
		case 10, 24, 28, 30: // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS
			etype = 0x86dd
		default:
			etype = ipEthertype(data[4:])
		}
		hdr = 4
	case layers.LinkTypePPP, layers.LinkTypePPP_HDLC, layers.LinkTypeC_HDLC:
		hdr, err := c.fromPPP(data, lt, f)
		return hdr, 0, err
	case linkTypeNFLOG:
		return c.fromNFLOG(data, f)
	case layers.LinkTypeIEEE802_11, layers.LinkTypeIEEE80211Radio:
		return c.from80211(data, lt == layers.LinkTypeIEEE80211Radio, f)
	default:
		return 0, 0, unsupportedLinkType(lt)
	}
	f.NoMAC = stages.NoDstMAC
	if src == nil {
		f.NoMAC |= stages.NoSrcMAC
	}
	f.Data = c.wrap(nil, src, etype, data[hdr:])
	return hdr, 0, nil
}

// sllProtocol is the ethertype for a Linux cooked frame's protocol field: an ethertype, or
// for LINUX_SLL_P_802_2 (LLC frames) and LINUX_SLL_P_802_3 (Novell's raw 802.3) the length of
// the 802.3 frame they are.
func sllProtocol(p uint16, payload []byte) uint16 {
	if p == 0x0004 || p == 0x0001 {
		return uint16(min(len(payload), 1500))
	}
	return p
}

// pcapHeader peeks at the 24-byte pcap file header and returns it with the byte order its
// magic number (micro- or nanosecond) says; the order is nil when it is no pcap header.
func pcapHeader(br *bufio.Reader) ([]byte, binary.ByteOrder) {
	hdr, err := br.Peek(24)
	if err != nil {
		return nil, nil
	}
	switch binary.LittleEndian.Uint32(hdr) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		return hdr, binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		return hdr, binary.BigEndian
	}
	return nil, nil
}

// acceptPcapMinor lets pcap files of format 2.0 to 2.3 through, as libpcap does: pcapgo takes
// 2.4 only, and the record format has not changed since 2.0. Other versions are left for pcapgo
// to refuse.
func acceptPcapMinor(br *bufio.Reader) io.Reader {
	hdr, order := pcapHeader(br)
	if order == nil {
		return br
	}
	if order.Uint16(hdr[4:6]) != 2 || order.Uint16(hdr[6:8]) >= 4 {
		return br
	}
	fixed := make([]byte, 24)
	copy(fixed, hdr)
	order.PutUint16(fixed[6:8], 4)
	br.Discard(24)
	return io.MultiReader(bytes.NewReader(fixed), br)
}

// ipEthertype guesses the ethertype of a raw IP packet from its version nibble.
func ipEthertype(b []byte) uint16 {
	if len(b) > 0 && b[0]>>4 == 6 {
		return 0x86dd
	}
	return 0x0800
}
