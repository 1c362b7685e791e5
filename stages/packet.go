package stages

import (
	"net/netip"
	"time"
)

// Direction says on which hook a packet was seen.
type Direction uint8

// Directions as the kernel records them (bpf/record.h enum direction).
const (
	DirIn  Direction = 0 // ingress, seen by xdp_sensor
	DirOut Direction = 1 // egress, seen by tc_sensor
)

// String returns "in" or "out", the JSON spelling.
func (d Direction) String() string {
	if d == DirOut {
		return "out"
	}
	return "in"
}

// Status says whether the parser read every header it knows, or where it stopped.
type Status uint8

// Statuses as the kernel records them (bpf/record.h enum status).
const (
	StatusOK          Status = 0 // every known header parsed
	StatusTruncated   Status = 1 // the frame ends inside Packet.BadLayer, or before its declared end
	StatusMalformed   Status = 2 // a length or version field of Packet.BadLayer is impossible
	StatusUnsupported Status = 3 // valid, but deeper than the parser goes (e.g. too many IPv6 extension headers)
)

var statusNames = [...]string{"ok", "truncated", "malformed", "unsupported"}

// String returns the lower-case name of the status.
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Layer names a protocol layer; it says where a truncated or malformed frame went wrong.
type Layer uint8

// Layers as the kernel records them (bpf/record.h enum layer).
const (
	LayerNone Layer = iota
	LayerEthernet
	LayerVLAN
	LayerPPPoE
	LayerARP
	LayerIPv4
	LayerIPv6
	LayerIPv6Ext
	LayerTCP
	LayerUDP
	LayerICMP
	LayerICMPv6
	LayerTunnel // a GRE, ERSPAN, VXLAN, Geneve or GTP-U header
)

var layerNames = [...]string{"", "eth", "vlan", "pppoe", "arp", "ip", "ip6", "ip6ext", "tcp", "udp", "icmp", "icmp6", "tunnel"}

// String returns the short name of the layer ("" for LayerNone).
func (l Layer) String() string {
	if int(l) < len(layerNames) {
		return layerNames[l]
	}
	return "unknown"
}

// IP flag bits of Packet.IPFlags.
const (
	IPFlagMF       = 1 << 0 // more fragments (IPv4 MF, IPv6 fragment header M)
	IPFlagDF       = 1 << 1 // IPv4 don't fragment
	IPFlagFragment = 1 << 2 // the packet is a fragment (MF set or offset non-zero)
)

// IPv6 extension-header bits of Packet.ExtMask.
const (
	ExtHopByHop = 1 << 0
	ExtRouting  = 1 << 1
	ExtFragment = 1 << 2
	ExtDestOpts = 1 << 3
	ExtAH       = 1 << 4
	ExtESP      = 1 << 5 // seen and not entered: what follows is encrypted
)

// Bits of Packet.NoMAC.
const (
	NoSrcMAC = 1 << 0 // SrcMAC is not known: zero
	NoDstMAC = 1 << 1 // DstMAC is not known: zero
)

// TCP flag bits of Packet.TCPFlags (the low byte of the TCP flags field).
const (
	TCPFin = 1 << 0
	TCPSyn = 1 << 1
	TCPRst = 1 << 2
	TCPPsh = 1 << 3
	TCPAck = 1 << 4
	TCPUrg = 1 << 5
	TCPEce = 1 << 6
	TCPCwr = 1 << 7
)

// IP protocol numbers the stages look at.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132 // which Community ID treats like TCP and UDP
)

// Ethertypes the stages look at.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
)

// TimeNote says what is wrong with a capture file's timestamp, in tcpdump's words: a fraction
// field past a second is printed as written with "(invalid us)" or "(invalid ns)", a time past
// what a date can show as "[timestamp overflow]", never as a wrapped date.
type TimeNote uint8

// Timestamp notes.
const (
	TimeValid        TimeNote = iota
	TimeInvalidMicro          // a pcap microsecond field over 999,999: Time holds the seconds, TimeFrac the field
	TimeInvalidNano           // a pcap nanosecond field over 999,999,999: likewise
	TimeOverflow              // past 2262-04-11 (int64 nanoseconds since 1970): Time is the Unix epoch
)

// Packet is one packet as the sensor saw it: the kernel record decoded (sensor.Decode), then
// enriched by the stages. Sources reuse Packets; nothing in here may be kept past a yield
// without copying (Payload in particular aliases the source's buffer).
type Packet struct {
	// Capture metadata.
	Time    time.Time // wall-clock time the packet was seen
	Ifindex uint32    // interface index (capture files: the pcapng interface number)
	Iface   string    // interface name, when known
	Dir     Direction // in (XDP) or out (TC)
	WireLen uint32    // length of the packet on the wire
	Num     uint64    // 1-based packet number within its source
	// TimeNote says Time is not the file's timestamp as written (TimeFrac: the raw fraction).
	TimeNote TimeNote
	TimeFrac uint32

	// Parse result.
	Status   Status // OK, or what went wrong
	BadLayer Layer  // with Status != OK: the layer where it went wrong

	// Link layer.
	DstMAC, SrcMAC [6]byte
	EtherType      uint16    // innermost ethertype, after VLAN tags, PPPoE, PPP and LLC/SNAP; an 802.3 frame's length when its LLC names no ethertype
	VLANCount      uint8     // VLAN tags walked (at most 4)
	VLANs          [4]uint16 // tag control information, outermost first
	ARPOp          uint16    // ARP operation (1 request, 2 reply); Src and Dst are the sender and target protocol addresses
	NoMAC          uint8     // NoSrcMAC, NoDstMAC: the addresses a capture of another link type than Ethernet does not give (zero)

	// Network layer. For ARP, Src and Dst hold the sender and target protocol addresses.
	IPVersion uint8 // 4, 6 or 0
	Src, Dst  netip.Addr
	Proto     uint8  // transport protocol number (IPv6: after the extension headers)
	TTL       uint8  // TTL or hop limit
	TOS       uint8  // TOS or traffic class
	IPLen     uint16 // IPv4 total length, IPv6 payload length (as declared: 0 for a jumbogram)
	IPID      uint32 // IPv4 identification, IPv6 fragment identification
	FragOff   uint16 // fragment offset in 8-byte units
	IPFlags   uint8  // IPFlag* bits
	ExtMask   uint8  // Ext* bits: IPv6 extension headers walked
	FlowLabel uint32 // IPv6 flow label

	// Transport layer.
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Window           uint16
	TCPFlags         uint8
	L4HdrLen         uint8 // transport header length in bytes
	UDPLen           uint16
	ICMPType         uint8
	ICMPCode         uint8
	ICMPID, ICMPSeq  uint16 // echo identifier and sequence number

	// Payload: the transport payload's declared length, its offset in the frame, and its leading
	// bytes as captured (ARP: the ARP message). len(Payload) <= PayloadLen.
	PayloadOff uint16
	PayloadLen uint16 // saturates at 65535 (a jumbogram's)
	Payload    []byte

	// Frame is the frame as captured, from its first byte: the kernel's copy up to the snap
	// length when the programs copy whole frames (attach -w), a capture file's frame as the
	// file holds it (its own link type), nil when the source has none. Like Payload it
	// aliases the source's buffer.
	Frame []byte
	// FrameLen is the length on the wire of the frame Frame was cut from, in Frame's link
	// type (WireLen counts a capture file's frame as the Ethernet frame the parsers read).
	// len(Frame) <= FrameLen.
	FrameLen uint32

	// Tunnel is the outermost tunnel the packet came through (its zero value: none). The
	// fields above describe the innermost packet.
	Tunnel Tunnel

	// Enrichment by the stages.
	SrcClass, DstClass   Class  // address classes (package classify)
	SrcDomain, DstDomain string // what the net_watch line shows in parentheses: a class or a name
	SrcRDNS, DstRDNS     RDNS   // how reverse DNS named (or failed to name) a public address
	Tags                 Tags   // per-packet tags (classify and reverse DNS)

	// Application layer, set by the flow table (package flows) and the decoders it hands
	// payloads to (package protocols); nil when the packet carries none. Flow points into the flow table: it changes as
	// later packets arrive and is recycled after the flow ends, so read it before the next packet
	// enters the flows stage. DNS, HTTP and TLS are allocated per message and may be kept.
	Flow      *Flow     // the bidirectional flow the packet belongs to
	FlowReply bool      // the packet goes from the flow's responder to its originator
	DNS       *DNSInfo  // a DNS, mDNS or LLMNR message
	HTTP      *HTTPInfo // an HTTP request or response head
	TLS       *TLSInfo  // a TLS ClientHello or ServerHello, completed by this packet
}

// TunnelType names an encapsulation the sensor enters (bpf/record.h enum tunnel).
type TunnelType uint8

// Tunnel types as the kernel records them.
const (
	TunnelNone    TunnelType = iota
	TunnelIPIP               // IPv4 in IPv4 or IPv6 (IP protocol 4)
	TunnelIP6                // IPv6 in IPv4 or IPv6 (IP protocol 41)
	TunnelGRE                // GRE carrying IPv4, IPv6 or Ethernet (TEB)
	TunnelPPTP               // enhanced GRE carrying PPP
	TunnelERSPAN1            // ERSPAN type I (GRE, no ERSPAN header)
	TunnelERSPAN2            // ERSPAN type II
	TunnelERSPAN3            // ERSPAN type III
	TunnelVXLAN              // VXLAN (UDP 4789, 8472)
	TunnelGeneve             // Geneve (UDP 6081)
	TunnelGTPU               // GTP-U (UDP 2152)
)

var tunnelNames = [...]string{"", "ipip", "ip6", "gre", "pptp", "erspan1", "erspan2", "erspan3", "vxlan", "geneve", "gtpu"}

// String returns the short name of the tunnel type ("" for TunnelNone).
func (t TunnelType) String() string {
	if int(t) < len(tunnelNames) {
		return tunnelNames[t]
	}
	return "unknown"
}

// Tunnel flag bits of Tunnel.Flags (bpf/record.h enum tun_flag).
const (
	TunnelFlagIP6 = 1 << 0 // Src and Dst are IPv6 endpoints
	TunnelFlagEth = 1 << 1 // the tunnel carries Ethernet frames
	TunnelFlagKey = 1 << 2 // GRE: a key is present (it is ID)
	TunnelFlagSeq = 1 << 3 // GRE: a sequence number is present
)

// Tunnel is the outermost tunnel a packet came through: its type, its endpoints (the outer
// IP addresses), its identifier, and how many tunnels deep the packet was.
type Tunnel struct {
	Type     TunnelType
	Inner    TunnelType // the innermost tunnel's type (Type when Depth is 1)
	Depth    uint8      // tunnels entered, one inside another
	Flags    uint8      // TunnelFlag* bits
	ID       uint32     // VXLAN or Geneve VNI, GRE key, PPTP call id, ERSPAN session, GTP TEID
	Src, Dst netip.Addr // the outer packet's addresses
}

// HasPorts reports whether SrcPort and DstPort were read from a TCP or UDP header: not for a
// later fragment, an ICMP or ARP packet, nor a transport header cut short before its ports.
// (A malformed TCP header whose data offset is impossible still had its ports read, and so did
// a first fragment cut inside its TCP header, with L4HdrLen unknown: ports that are not zero.)
func (p *Packet) HasPorts() bool {
	if p.IPVersion == 0 || !p.Src.IsValid() || (p.Proto != ProtoTCP && p.Proto != ProtoUDP) {
		return false
	}
	return p.L4HdrLen != 0 || (p.Status == StatusMalformed && p.BadLayer == LayerTCP) || p.SrcPort != 0 || p.DstPort != 0
}

// CopyBytes copies the bytes p aliases (Payload and Frame) into buf, reusing its room, and
// points p at the copy: a stage that keeps p past a yield calls it. It returns the buffer.
func (p *Packet) CopyBytes(buf []byte) []byte {
	buf = append(buf[:0], p.Payload...)
	n := len(buf)
	buf = append(buf, p.Frame...)
	p.Payload = buf[:n:n]
	if p.Frame != nil {
		p.Frame = buf[n:len(buf):len(buf)]
	}
	return buf
}

// Reset clears every field of p, so that a source can reuse it for the next packet.
func (p *Packet) Reset() { *p = Packet{} }
