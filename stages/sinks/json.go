package sinks

import (
	"math/bits"
	"strconv"

	"github.com/chains-sensor/chains-sensor/stages"
)

// JSON prints one JSON object per packet and line:
//
//	{"ts":"2015-09-07T19:08:34.491658Z","num":1,"iface":"eth0","dir":"in","len":74,"ip":"IP",
//	 "src":"192.168.1.9","dst":"224.0.0.251","proto":"UDP","sport":5353,"dport":5353,
//	 "tcp_flags":"","src_domain":"internal","dst_domain":"multicast_dns","tags":["internal"],
//	 "status":"ok"}
//
// ts is null for a timestamp past what a date shows; ts_invalid then says "overflow", or for a
// fraction field past a second "fraction 1500000 us" (ts then has the seconds field's date).
// src_rdns and dst_rdns say, for a public address reverse DNS looked up, how its domain came
// about: name, hosts, nxdomain, nodata, timeout, refused, unreachable, servfail, error or
// pending (stages.RDNS); an address that got no name shows its class as its domain.
// ip is the NETWORK token of the net_watch line (IP, IP6, ARP, ...); proto the TRANSPORT token
// ("" when there is none); sport and dport only when the packet has them (TCP and UDP, not a
// later fragment), so that a port 0 means port 0; tcp_flags the flags as tcpdump prints them ("S.", "P.", ...), "" for
// anything but TCP. ICMP packets add icmp_type and icmp_code, ARP packets arp_op, tagged frames
// vlans, unfinished ones bad_layer; a packet that came through tunnels adds tunnel, the
// outermost one: {"type":"vxlan","id":42,"src":"192.0.2.1","dst":"192.0.2.2","depth":1,
// "flags":["eth"]} (type 4in4, 6in4, 4in6, 6in6, gre, pptp, erspan1 to 3, vxlan, geneve or gtpu;
// id where the kind has one: VNI, GRE key, PPTP call, ERSPAN session, TEID; inner, the
// innermost kind, when depth is more than 1; flags of eth, key, seq). Strings are escaped as JSON requires; bytes that are not
// UTF-8 become U+FFFD.
type JSON struct {
	out *Output
	clk *clock
	buf []byte
}

// tunnelFlags are the JSON names of the stages.TunnelFlag bits (IPv6 endpoints show as such).
var tunnelFlags = [...]struct {
	bit  uint8
	name string
}{{stages.TunnelFlagEth, `"eth"`}, {stages.TunnelFlagKey, `"key"`}, {stages.TunnelFlagSeq, `"seq"`}}

// NewJSON returns a JSON-lines sink writing to out.
func NewJSON(out *Output, opt Options) *JSON {
	return &JSON{out: out, clk: newClock(opt.UTC), buf: make([]byte, 0, 512)}
}

// Write prints p's object.
func (s *JSON) Write(p *stages.Packet) error {
	s.buf = s.AppendObject(s.buf[:0], p)
	return s.out.Write(s.buf)
}

// Close flushes the output and stops its flush timer.
func (s *JSON) Close() error { return s.out.Close() }

// AppendObject appends p's JSON object and a newline. Its fields are fixed: their keys go out
// as constant tokens, the values through the writer's encoders (appendJSONString), the fastest
// form of the one JSON writer.
func (s *JSON) AppendObject(b []byte, p *stages.Packet) []byte {
	switch p.TimeNote {
	case stages.TimeValid:
		b = append(b, `{"ts":"`...)
		b = s.clk.appendRFC3339(b, p.Time)
		b = append(b, '"')
	case stages.TimeOverflow:
		b = append(b, `{"ts":null,"ts_invalid":"overflow"`...)
	default: // the seconds field's date, and the fraction as written
		b = append(b, `{"ts":"`...)
		b = s.clk.appendRFC3339(b, p.Time)
		b = append(b, `","ts_invalid":"`...)
		b = append(b, timeNoteJSON(p)...)
		b = append(b, '"')
	}
	b = append(b, `,"num":`...)
	b = strconv.AppendUint(b, p.Num, 10)
	b = append(b, `,"iface":`...)
	b = appendJSONString(b, p.Iface)
	b = append(b, `,"dir":"`...)
	b = append(b, p.Dir.String()...)
	b = append(b, `","len":`...)
	b = strconv.AppendUint(b, uint64(p.WireLen), 10)
	b = append(b, `,"ip":"`...)
	b = appendNetwork(b, p)
	b = append(b, `","src":"`...)
	if p.Src.IsValid() {
		b = appendAddr(b, p.Src)
	} else if p.NoMAC&stages.NoSrcMAC == 0 {
		b = appendMAC(b, p.SrcMAC)
	}
	b = append(b, `","dst":"`...)
	if p.Dst.IsValid() {
		b = appendAddr(b, p.Dst)
	} else if p.NoMAC&stages.NoDstMAC == 0 {
		b = appendMAC(b, p.DstMAC)
	}
	b = append(b, `","proto":"`...)
	if hasTransport(p) && p.EtherType != stages.EtherTypeARP {
		b = append(b, protoNames[p.Proto]...)
	}
	b = append(b, `"`...)
	if p.HasPorts() {
		b = append(b, `,"sport":`...)
		b = strconv.AppendUint(b, uint64(p.SrcPort), 10)
		b = append(b, `,"dport":`...)
		b = strconv.AppendUint(b, uint64(p.DstPort), 10)
	}
	b = append(b, `,"tcp_flags":"`...)
	if hasTransport(p) && p.Proto == stages.ProtoTCP && p.L4HdrLen != 0 {
		b = appendTCPFlags(b, p.TCPFlags)
	}
	b = append(b, `","src_domain":`...)
	b = appendJSONString(b, p.SrcDomain)
	b = append(b, `,"dst_domain":`...)
	b = appendJSONString(b, p.DstDomain)
	if p.SrcRDNS != stages.RDNSNone {
		b = append(b, `,"src_rdns":"`...)
		b = append(b, p.SrcRDNS.String()...)
		b = append(b, '"')
	}
	if p.DstRDNS != stages.RDNSNone {
		b = append(b, `,"dst_rdns":"`...)
		b = append(b, p.DstRDNS.String()...)
		b = append(b, '"')
	}
	b = append(b, `,"tags":[`...)
	for t, first := p.Tags, true; t != 0; first = false {
		i := bits.TrailingZeros32(uint32(t))
		t &^= 1 << i
		if !first {
			b = append(b, ","...)
		}
		b = appendJSONString(b, stages.TagName(i))
	}
	b = append(b, `],"status":"`...)
	b = append(b, p.Status.String()...)
	b = append(b, `"`...)
	if p.Status != stages.StatusOK && p.BadLayer != stages.LayerNone {
		b = append(b, `,"bad_layer":"`...)
		b = append(b, p.BadLayer.String()...)
		b = append(b, `"`...)
	}
	if hasTransport(p) && (p.Proto == stages.ProtoICMP || p.Proto == stages.ProtoICMPv6) && p.L4HdrLen != 0 {
		b = append(b, `,"icmp_type":`...)
		b = strconv.AppendUint(b, uint64(p.ICMPType), 10)
		b = append(b, `,"icmp_code":`...)
		b = strconv.AppendUint(b, uint64(p.ICMPCode), 10)
	}
	if p.EtherType == stages.EtherTypeARP {
		b = append(b, `,"arp_op":`...)
		b = strconv.AppendUint(b, uint64(p.ARPOp), 10)
	}
	if p.VLANCount > 0 {
		b = append(b, `,"vlans":[`...)
		for i := 0; i < int(p.VLANCount) && i < len(p.VLANs); i++ {
			if i > 0 {
				b = append(b, ","...)
			}
			b = strconv.AppendUint(b, uint64(p.VLANs[i]&0x0fff), 10)
		}
		b = append(b, "]"...)
	}
	if t := &p.Tunnel; t.Depth > 0 {
		b = append(b, `,"tunnel":{"type":"`...)
		b = append(b, tunnelKind(t.Type, t.Flags&stages.TunnelFlagIP6 != 0, true)...)
		b = append(b, `"`...)
		if tunnelIDWord(t) != "-" {
			b = append(b, `,"id":`...)
			b = strconv.AppendUint(b, uint64(t.ID), 10)
		}
		b = append(b, `,"src":"`...)
		b = appendAddr(b, t.Src)
		b = append(b, `","dst":"`...)
		b = appendAddr(b, t.Dst)
		b = append(b, `","depth":`...)
		b = strconv.AppendUint(b, uint64(t.Depth), 10)
		if t.Depth > 1 {
			b = append(b, `,"inner":"`...)
			b = append(b, tunnelKind(t.Inner, false, false)...)
			b = append(b, `"`...)
		}
		b = append(b, `,"flags":[`...)
		n := 0
		for _, f := range tunnelFlags {
			if t.Flags&f.bit != 0 {
				if n > 0 {
					b = append(b, ',')
				}
				b = append(b, f.name...)
				n++
			}
		}
		b = append(b, "]}"...)
	}
	b = append(b, "}\n"...)
	return b
}
