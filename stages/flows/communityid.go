package flows

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/netip"

	"github.com/chains-sensor/chains-sensor/stages"
)

// Counterpart ICMP types of Community ID v1 (as Zeek maps them): a request and its reply hash
// alike. Types not listed are one-way: the code stands in for the destination port.
var (
	icmp4Pair = map[uint8]uint8{8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
	icmp6Pair = map[uint8]uint8{128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
		130: 131, 131: 130, 139: 140, 140: 139, 144: 145, 145: 144}
)

// ICMPPorts maps an ICMP or ICMPv6 type and code to the port pair Community ID hashes, and says
// whether the message is one-way (then the pair is never reordered).
func ICMPPorts(v6 bool, typ, code uint8) (sport, dport uint16, oneWay bool) {
	m := icmp4Pair
	if v6 {
		m = icmp6Pair
	}
	if c, ok := m[typ]; ok {
		return uint16(typ), uint16(c), false
	}
	return uint16(typ), uint16(code), true
}

// CommunityID returns the Community ID v1 of a flow (https://github.com/corelight/community-id-spec):
// "1:" and the base64 of SHA-1 over seed, the ordered addresses, proto, a zero byte and the
// ordered ports. Ports count for TCP, UDP, SCTP, ICMP and ICMPv6 (pass ICMPPorts' pair and
// oneWay there); other protocols hash without ports. Mixed address families give "".
func CommunityID(seed uint16, src, dst netip.Addr, sport, dport uint16, proto uint8, oneWay bool) string {
	var buf [2 + 16 + 16 + 2 + 4]byte
	b := communityIDInput(buf[:0], seed, src, dst, sport, dport, proto, oneWay)
	if b == nil {
		return ""
	}
	sum := sha1.Sum(b)
	return "1:" + base64.StdEncoding.EncodeToString(sum[:])
}

// AppendCommunityID appends what CommunityID returns to b, without allocating.
func AppendCommunityID(b []byte, seed uint16, src, dst netip.Addr, sport, dport uint16, proto uint8, oneWay bool) []byte {
	var buf [2 + 16 + 16 + 2 + 4]byte
	in := communityIDInput(buf[:0], seed, src, dst, sport, dport, proto, oneWay)
	if in == nil {
		return b
	}
	sum := sha1.Sum(in)
	b = append(b, "1:"...)
	return base64.StdEncoding.AppendEncode(b, sum[:])
}

func communityIDInput(b []byte, seed uint16, src, dst netip.Addr, sport, dport uint16, proto uint8, oneWay bool) []byte {
	src, dst = src.Unmap(), dst.Unmap()
	if src.Is4() != dst.Is4() || !src.IsValid() || !dst.IsValid() {
		return nil
	}
	ports := proto == stages.ProtoTCP || proto == stages.ProtoUDP || proto == stages.ProtoSCTP || proto == stages.ProtoICMP || proto == stages.ProtoICMPv6
	if !oneWay {
		c := src.Compare(dst)
		if c > 0 || (c == 0 && ports && sport > dport) {
			src, dst = dst, src
			sport, dport = dport, sport
		}
	}
	b = binary.BigEndian.AppendUint16(b, seed)
	if src.Is4() {
		s4, d4 := src.As4(), dst.As4()
		b = append(append(b, s4[:]...), d4[:]...)
	} else {
		s16, d16 := src.As16(), dst.As16()
		b = append(append(b, s16[:]...), d16[:]...)
	}
	b = append(b, proto, 0)
	if ports {
		b = binary.BigEndian.AppendUint16(b, sport)
		b = binary.BigEndian.AppendUint16(b, dport)
	}
	return b
}

// FlowCommunityID returns the Community ID v1 (seed 0) of a flow of the table.
func FlowCommunityID(f *stages.Flow) string {
	return CommunityID(0, f.Src, f.Dst, f.SrcPort, f.DstPort, f.Proto, f.OneWay)
}

// AppendFlowCommunityID appends what FlowCommunityID returns to b, without allocating.
func AppendFlowCommunityID(b []byte, f *stages.Flow) []byte {
	return AppendCommunityID(b, 0, f.Src, f.Dst, f.SrcPort, f.DstPort, f.Proto, f.OneWay)
}
