package sinks

import (
	"net/netip"
	"strconv"

	"github.com/chains-sensor/chains-sensor/stages"
)

// The fields every sink writes the same way: the protocol and network names, addresses,
// endpoints, TCP flags, the parser's status.

// protoNames holds the net_watch TRANSPORT token for every IP protocol number.
var protoNames = func() (t [256]string) {
	known := map[int]string{
		0: "HOPOPT", 1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 8: "EGP", 9: "IGP", 17: "UDP",
		27: "RDP", 33: "DCCP", 41: "IPV6", 43: "IPV6-ROUTE", 44: "IPV6-FRAG", 46: "RSVP", 47: "GRE",
		50: "ESP", 51: "AH", 58: "ICMP6", 59: "IPV6-NONXT", 60: "IPV6-OPTS", 88: "EIGRP", 89: "OSPF",
		94: "IPIP", 97: "ETHERIP", 103: "PIM", 108: "IPCOMP", 112: "VRRP", 115: "L2TP", 132: "SCTP",
		135: "MOBILITY", 136: "UDPLITE", 137: "MPLS",
	}
	for i := range t {
		if n, ok := known[i]; ok {
			t[i] = n
		} else {
			t[i] = "PROTO-" + strconv.Itoa(i)
		}
	}
	return t
}()

// ProtoName returns the name of an IP protocol number as the sinks print it (TCP, UDP, ICMP,
// ICMP6, GRE, ..., PROTO-<n>).
func ProtoName(p uint8) string { return protoNames[p] }

// NetworkName returns the net_watch NETWORK token of a packet: IP, IP6, ARP, or the
// ethertype's name (LLDP, ...) or hexadecimal value.
func NetworkName(p *stages.Packet) string {
	switch p.EtherType {
	case stages.EtherTypeIPv4:
		return "IP"
	case stages.EtherTypeIPv6:
		return "IP6"
	case stages.EtherTypeARP:
		return "ARP"
	}
	switch p.IPVersion {
	case 4:
		return "IP"
	case 6:
		return "IP6"
	}
	if p.EtherType < 0x0600 {
		return llcName(p.Payload) // an 802.3 frame: its LLC header, the payload, names it
	}
	if n, ok := etherNames[p.EtherType]; ok {
		return n
	}
	return ""
}

// llcName names the protocol an 802.3 frame's LLC header (DSAP, SSAP, control, and for SNAP
// an OUI and protocol id) says it carries.
func llcName(b []byte) string {
	switch {
	case len(b) >= 2 && b[0] == 0xff && b[1] == 0xff:
		return "IPX" // Novell's raw 802.3
	case len(b) >= 8 && b[0] == 0xaa && b[1] == 0xaa && b[2] == 0x03:
		if b[3] == 0x00 && b[4] == 0x00 && b[5] == 0x0c { // Cisco
			switch uint16(b[6])<<8 | uint16(b[7]) {
			case 0x2000:
				return "CDP"
			case 0x2003:
				return "VTP"
			case 0x2004:
				return "DTP"
			case 0x010b:
				return "STP" // PVST+
			case 0x0111:
				return "UDLD"
			}
		}
		return "SNAP"
	case len(b) >= 1:
		switch b[0] {
		case 0x42:
			return "STP"
		case 0xe0:
			return "IPX"
		case 0xf0:
			return "NETBIOS"
		case 0xfe:
			return "OSI"
		}
	}
	return "LLC"
}

var etherNames = map[uint16]string{
	0x8035: "RARP", 0x809b: "APPLETALK", 0x8100: "VLAN", 0x8137: "IPX", 0x8847: "MPLS",
	0x8848: "MPLS", 0x8863: "PPPOE-DISC", 0x8864: "PPPOE", 0x880b: "PPP", 0x888e: "EAPOL", 0x88a8: "VLAN",
	0x88cc: "LLDP", 0x88e5: "MACSEC", 0x88f7: "PTP", 0x8906: "FCOE", 0x9000: "LOOPBACK",
}

// appendNetwork appends NetworkName, or "ETHER-0x...." for an unnamed ethertype.
func appendNetwork(b []byte, p *stages.Packet) []byte {
	if n := NetworkName(p); n != "" {
		return append(b, n...)
	}
	b = append(b, "ETHER-0x"...)
	return appendHex16(b, p.EtherType)
}

func appendHex16(b []byte, v uint16) []byte {
	return append(b, hexDigits[v>>12], hexDigits[v>>8&15], hexDigits[v>>4&15], hexDigits[v&15])
}

// hasTransport reports whether the packet's IP protocol field is meaningful.
func hasTransport(p *stages.Packet) bool { return p.IPVersion != 0 && p.Src.IsValid() }

func appendMAC(b []byte, m [6]byte) []byte {
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&15])
	}
	return b
}

// appendLink appends the MAC address m, or "?" when the capture did not give it (unknown:
// Packet.NoMAC's bit for it is set).
func appendLink(b []byte, m [6]byte, unknown bool) []byte {
	if unknown {
		return append(b, '?')
	}
	return appendMAC(b, m)
}

// linkClass is macClass, or "unknown" for an address the capture did not give.
func linkClass(m [6]byte, unknown bool) string {
	if unknown {
		return "unknown"
	}
	return macClass(m)
}

// macClass names a MAC address as the net_watch line shows a non-IP endpoint.
func macClass(m [6]byte) string {
	switch {
	case m == [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}:
		return "broadcast"
	case m[0]&1 != 0:
		return "multicast"
	}
	return "ethernet"
}

// appendAddr appends a network address ("?" when it is missing). IPv4 goes through a table of
// the 256 decimal octets, several times faster than netip's formatting.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		for i, x := range v {
			if i > 0 {
				b = append(b, '.')
			}
			d := &octets[x]
			b = append(b, d[1:1+d[0]]...)
		}
		return b
	}
	if !a.IsValid() {
		return append(b, '?')
	}
	return a.AppendTo(b)
}

// octets holds the decimal text of each byte value: length, then up to three digits.
var octets = func() (t [256][4]byte) {
	for i := range t {
		s := strconv.Itoa(i)
		t[i][0] = byte(len(s))
		copy(t[i][1:], s)
	}
	return t
}()

// appendTCPFlags appends the TCP flags as tcpdump prints them: F S R P . U E W in that order,
// "none" when no flag is set.
func appendTCPFlags(b []byte, f uint8) []byte {
	if f == 0 {
		return append(b, "none"...)
	}
	const letters = "FSRP.UEW"
	for i := 0; i < 8; i++ {
		if f&(1<<i) != 0 {
			b = append(b, letters[i])
		}
	}
	return b
}

// appendStatus appends " [truncated tcp]" and the like for a packet the parser could not finish.
// tunnelKind is the name of a tunnel as the sinks print it: IP in IP by the two versions when
// the outer one is known (4in4, 6in4, 4in6, 6in6; else ipip, ip6ip), the others as the kernel
// names them (gre, pptp, erspan1 to 3, vxlan, geneve, gtpu).
func tunnelKind(t stages.TunnelType, outer6, known bool) string {
	switch t {
	case stages.TunnelIPIP:
		if !known {
			return "ipip"
		}
		if outer6 {
			return "4in6"
		}
		return "4in4"
	case stages.TunnelIP6:
		if !known {
			return "ip6ip"
		}
		if outer6 {
			return "6in6"
		}
		return "6in4"
	}
	return t.String()
}

// tunnelIDWord is the word before a tunnel's identifier ("" for a VNI, which needs none;
// "-" for a kind that has none).
func tunnelIDWord(t *stages.Tunnel) string {
	switch t.Type {
	case stages.TunnelVXLAN, stages.TunnelGeneve:
		return ""
	case stages.TunnelGRE:
		if t.Flags&stages.TunnelFlagKey != 0 {
			return "key"
		}
	case stages.TunnelPPTP:
		return "call"
	case stages.TunnelERSPAN2, stages.TunnelERSPAN3:
		return "session"
	case stages.TunnelGTPU:
		return "teid"
	}
	return "-"
}

// appendTunnel appends, for a packet that came through tunnels, " [KIND ID via SRC --> DST]":
// the outermost tunnel, its identifier where it has one (vxlan 42, gre key 7, pptp call 3,
// erspan2 session 77, gtpu teid 9) and its endpoints; ", N deep: KIND" after them when it
// held others, the innermost named.
func appendTunnel(b []byte, p *stages.Packet) []byte {
	t := &p.Tunnel
	if t.Depth == 0 {
		return b
	}
	b = append(b, " ["...)
	b = append(b, tunnelKind(t.Type, t.Flags&stages.TunnelFlagIP6 != 0, true)...)
	if w := tunnelIDWord(t); w != "-" {
		b = append(b, ' ')
		if w != "" {
			b = append(b, w...)
			b = append(b, ' ')
		}
		b = strconv.AppendUint(b, uint64(t.ID), 10)
	}
	b = append(b, " via "...)
	b = appendAddr(b, t.Src)
	b = append(b, " --> "...)
	b = appendAddr(b, t.Dst)
	if t.Depth > 1 {
		b = append(b, ", "...)
		b = strconv.AppendUint(b, uint64(t.Depth), 10)
		b = append(b, " deep: "...)
		b = append(b, tunnelKind(t.Inner, false, false)...)
	}
	return append(b, ']')
}

func appendStatus(b []byte, p *stages.Packet) []byte {
	if p.Status == stages.StatusOK {
		return b
	}
	b = append(b, " ["...)
	b = append(b, p.Status.String()...)
	if p.BadLayer != stages.LayerNone {
		b = append(b, ' ')
		b = append(b, p.BadLayer.String()...)
	}
	return append(b, ']')
}

// appendEndpoint appends one end of a line: the address ("?" when there is none), ":port" when
// hasPort (an IPv6 address then in brackets), and "(domain)" when domain is not "", escaped,
// in color when color is not "".
func appendEndpoint(b []byte, a netip.Addr, port uint16, hasPort bool, domain, color string) []byte {
	if hasPort && a.Is6() {
		b = append(b, '[')
		b = appendAddr(b, a)
		b = append(b, ']')
	} else {
		b = appendAddr(b, a)
	}
	if hasPort {
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(port), 10)
	}
	if domain != "" {
		b = append(b, '(')
		if color != "" {
			b = append(b, color...)
			b = appendText(b, domain)
			b = append(b, colReset...)
		} else {
			b = appendText(b, domain)
		}
		b = append(b, ')')
	}
	return b
}

// appendPacketEnds appends "SRC --> DST" for a packet's line: each end with its port (when the
// packet has ports) and its domain.
func appendPacketEnds(b []byte, p *stages.Packet) []byte {
	ports := p.HasPorts()
	b = appendEndpoint(b, p.Src, p.SrcPort, ports, p.SrcDomain, "")
	b = append(b, " --> "...)
	return appendEndpoint(b, p.Dst, p.DstPort, ports, p.DstDomain, "")
}

// hex16 returns v as four lower-case hex digits.
func hex16(v uint16) string { return string(appendHex16(nil, v)) }

// Colours of the text sinks (ANSI SGR sequences).
const (
	colReset   = "\x1b[0m"
	colDim     = "\x1b[2m"
	colBold    = "\x1b[1m"
	colRed     = "\x1b[31m"
	colGreen   = "\x1b[32m"
	colYellow  = "\x1b[33m"
	colBlue    = "\x1b[34m"
	colMagenta = "\x1b[35m"
	colCyan    = "\x1b[36m"
)

// appendOwner appends " [comm pid]", the local process that sent or received p, or nothing
// when none is known. The command name is the process's own choice (prctl, argv[0]): it goes
// through the terminal escaper.
func appendOwner(b []byte, p *stages.Packet) []byte {
	o := &p.Owner
	if !o.Known() {
		return b
	}
	b = append(b, " ["...)
	b = appendBytes(b, o.CommBytes())
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(o.PID), 10)
	return append(b, ']')
}

// appendOwnerDetail appends the owner's uid, cgroup and container or unit, for the packets
// view's Process line: " uid 0, cgroup /system.slice/nginx.service (unit nginx.service)".
func appendOwnerDetail(b []byte, o *stages.Owner) []byte {
	b = append(b, " uid "...)
	b = strconv.AppendUint(b, uint64(o.UID), 10)
	b = append(b, ", cgroup "...)
	if o.Cgroup != "" {
		b = appendText(b, o.Cgroup)
	} else {
		b = append(b, "id "...)
		b = strconv.AppendUint(b, o.CgroupID, 10)
	}
	switch c := &o.Container; {
	case c.Known():
		b = append(b, " (container"...)
		if c.Runtime != "" {
			b = append(b, ' ')
			b = append(b, c.Runtime...)
		}
		if c.ID != "" {
			b = append(b, ' ')
			b = appendText(b, c.ID)
		}
		if c.Pod != "" {
			b = append(b, " pod "...)
			b = append(b, c.Pod...)
		}
		b = append(b, ')')
	case o.Unit != "":
		b = append(b, " (unit "...)
		b = appendText(b, o.Unit)
		b = append(b, ')')
	}
	return b
}

// appendOwnerJSON appends the owner's fields to a JSON object: "pid", "comm", "uid", "cgroup"
// (its path; "" when it could not be resolved), "cgroup_id", and "container"
// ({"runtime","id","pod"}) or "unit" when the path names one.
func appendOwnerJSON(b []byte, o *stages.Owner) []byte {
	b = append(b, `,"pid":`...)
	b = strconv.AppendUint(b, uint64(o.PID), 10)
	b = append(b, `,"comm":`...)
	b = appendJSONString(b, string(o.CommBytes()))
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(o.UID), 10)
	b = append(b, `,"cgroup":`...)
	b = appendJSONString(b, o.Cgroup)
	b = append(b, `,"cgroup_id":`...)
	b = strconv.AppendUint(b, o.CgroupID, 10)
	if c := &o.Container; c.Known() {
		b = append(b, `,"container":{"runtime":`...)
		b = appendJSONString(b, c.Runtime)
		b = append(b, `,"id":`...)
		b = appendJSONString(b, c.ID)
		if c.Pod != "" {
			b = append(b, `,"pod":`...)
			b = appendJSONString(b, c.Pod)
		}
		b = append(b, '}')
	} else if o.Unit != "" {
		b = append(b, `,"unit":`...)
		b = appendJSONString(b, o.Unit)
	}
	return b
}
