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
// ip is the NETWORK token of the net_watch line (IP, IP6, ARP, ...); proto the TRANSPORT token
// ("" when there is none); sport and dport only when the packet has them (TCP and UDP, not a
// later fragment), so that a port 0 means port 0; tcp_flags the flags as tcpdump prints them ("S.", "P.", ...), "" for
// anything but TCP. ICMP packets add icmp_type and icmp_code, ARP packets arp_op, tagged frames
// vlans, unfinished ones bad_layer. Strings are escaped as JSON requires; bytes that are not
// UTF-8 become U+FFFD.
type JSON struct {
	out *Output
	clk *clock
	w   jsonWriter
}

// NewJSON returns a JSON-lines sink writing to out.
func NewJSON(out *Output, opt Options) *JSON {
	return &JSON{out: out, clk: newClock(opt.UTC), w: jsonWriter{b: make([]byte, 0, 512)}}
}

// Write prints p's object.
func (s *JSON) Write(p *stages.Packet) error {
	s.w.b = s.AppendObject(s.w.b[:0], p)
	return s.out.Write(s.w.b)
}

// Close flushes the output and stops its flush timer.
func (s *JSON) Close() error { return s.out.Close() }

// AppendObject appends p's JSON object and a newline.
func (s *JSON) AppendObject(b []byte, p *stages.Packet) []byte {
	w := jsonWriter{b: b}
	w.beginObject()
	w.quote("ts")
	w.b = s.clk.appendRFC3339(w.b, p.Time)
	w.endQuote()
	w.uint("num", p.Num)
	w.str("iface", p.Iface)
	w.quote("dir")
	w.b = append(w.b, p.Dir.String()...)
	w.endQuote()
	w.uint("len", uint64(p.WireLen))
	w.quote("ip")
	w.b = appendNetwork(w.b, p)
	w.endQuote()
	w.quote("src")
	if p.Src.IsValid() {
		w.b = appendAddr(w.b, p.Src)
	} else {
		w.b = appendMAC(w.b, p.SrcMAC)
	}
	w.endQuote()
	w.quote("dst")
	if p.Dst.IsValid() {
		w.b = appendAddr(w.b, p.Dst)
	} else {
		w.b = appendMAC(w.b, p.DstMAC)
	}
	w.endQuote()
	w.quote("proto")
	if hasTransport(p) && p.EtherType != stages.EtherTypeARP {
		w.b = append(w.b, protoNames[p.Proto]...)
	}
	w.endQuote()
	if p.HasPorts() {
		w.uint("sport", uint64(p.SrcPort))
		w.uint("dport", uint64(p.DstPort))
	}
	w.quote("tcp_flags")
	if hasTransport(p) && p.Proto == stages.ProtoTCP && p.L4HdrLen != 0 {
		w.b = appendTCPFlags(w.b, p.TCPFlags)
	}
	w.endQuote()
	w.str("src_domain", p.SrcDomain)
	w.str("dst_domain", p.DstDomain)
	w.array("tags")
	for t := p.Tags; t != 0; {
		i := bits.TrailingZeros32(uint32(t))
		t &^= 1 << i
		w.elemStr(stages.TagName(i))
	}
	w.endArray()
	w.quote("status")
	w.b = append(w.b, p.Status.String()...)
	w.endQuote()
	if p.Status != stages.StatusOK && p.BadLayer != stages.LayerNone {
		w.quote("bad_layer")
		w.b = append(w.b, p.BadLayer.String()...)
		w.endQuote()
	}
	if hasTransport(p) && (p.Proto == stages.ProtoICMP || p.Proto == stages.ProtoICMPv6) && p.L4HdrLen != 0 {
		w.uint("icmp_type", uint64(p.ICMPType))
		w.uint("icmp_code", uint64(p.ICMPCode))
	}
	if p.EtherType == stages.EtherTypeARP {
		w.uint("arp_op", uint64(p.ARPOp))
	}
	if p.VLANCount > 0 {
		w.array("vlans")
		for i := 0; i < int(p.VLANCount) && i < len(p.VLANs); i++ {
			w.sep()
			w.b = strconv.AppendUint(w.b, uint64(p.VLANs[i]&0x0fff), 10)
		}
		w.endArray()
	}
	w.endObject()
	return append(w.b, '\n')
}
