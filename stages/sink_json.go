package stages

import (
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// JSONSink prints one JSON object per packet and line:
//
//	{"ts":"2015-09-07T19:08:34.491658Z","num":1,"iface":"eth0","dir":"in","len":74,"ip":"IP",
//	 "src":"192.168.1.9","dst":"224.0.0.251","proto":"UDP","sport":5353,"dport":5353,
//	 "tcp_flags":"","src_domain":"internal","dst_domain":"multicast_dns","tags":["internal"],
//	 "status":"ok"}
//
// ip is the NETWORK token of the net_watch line (IP, IP6, ARP, ...); proto the TRANSPORT token
// ("" when there is none); tcp_flags the flags as tcpdump prints them ("S.", "P.", ...), "" for
// anything but TCP. ICMP packets add icmp_type and icmp_code, ARP packets arp_op, tagged frames
// vlans, unfinished ones bad_layer. Strings are escaped as JSON requires; bytes that are not
// UTF-8 become U+FFFD.
type JSONSink struct {
	out *Output
	clk *clock
	buf []byte
}

// NewJSONSink returns a JSON-lines sink writing to out.
func NewJSONSink(out *Output, utc bool) *JSONSink {
	return &JSONSink{out: out, clk: newClock(utc), buf: make([]byte, 0, 512)}
}

// Write prints p's object.
func (s *JSONSink) Write(p *Packet) error {
	s.buf = s.AppendObject(s.buf[:0], p)
	return s.out.Write(s.buf)
}

// Close flushes the output and stops its flush timer.
func (s *JSONSink) Close() error { return s.out.Close() }

// AppendObject appends p's JSON object and a newline.
func (s *JSONSink) AppendObject(b []byte, p *Packet) []byte {
	b = append(b, `{"ts":"`...)
	b = s.clk.appendRFC3339(b, p.Time)
	b = append(b, `","num":`...)
	b = strconv.AppendUint(b, p.Num, 10)
	b = append(b, `,"iface":`...)
	b = AppendJSONString(b, p.Iface)
	b = append(b, `,"dir":"`...)
	b = append(b, p.Dir.String()...)
	b = append(b, `","len":`...)
	b = strconv.AppendUint(b, uint64(p.WireLen), 10)
	b = append(b, `,"ip":"`...)
	b = appendNetwork(b, p)
	b = append(b, `","src":"`...)
	if p.Src.IsValid() {
		b = appendAddr(b, p.Src)
	} else if p.NoMAC&NoSrcMAC == 0 {
		b = appendMAC(b, p.SrcMAC)
	}
	b = append(b, `","dst":"`...)
	if p.Dst.IsValid() {
		b = appendAddr(b, p.Dst)
	} else if p.NoMAC&NoDstMAC == 0 {
		b = appendMAC(b, p.DstMAC)
	}
	b = append(b, `","proto":"`...)
	if hasTransport(p) && p.EtherType != EtherTypeARP {
		b = append(b, protoNames[p.Proto]...)
	}
	b = append(b, `","sport":`...)
	b = strconv.AppendUint(b, uint64(p.SrcPort), 10)
	b = append(b, `,"dport":`...)
	b = strconv.AppendUint(b, uint64(p.DstPort), 10)
	b = append(b, `,"tcp_flags":"`...)
	if hasTransport(p) && p.Proto == ProtoTCP && p.L4HdrLen != 0 {
		b = appendTCPFlags(b, p.TCPFlags)
	}
	b = append(b, `","src_domain":`...)
	b = AppendJSONString(b, p.SrcDomain)
	b = append(b, `,"dst_domain":`...)
	b = AppendJSONString(b, p.DstDomain)
	b = append(b, `,"tags":[`...)
	first := true
	for t := p.Tags; t != 0; {
		i := bits.TrailingZeros32(uint32(t))
		t &^= 1 << i
		if !first {
			b = append(b, ',')
		}
		first = false
		b = AppendJSONString(b, tagName(i))
	}
	b = append(b, `],"status":"`...)
	b = append(b, p.Status.String()...)
	b = append(b, '"')
	if p.Status != StatusOK && p.BadLayer != LayerNone {
		b = append(b, `,"bad_layer":"`...)
		b = append(b, p.BadLayer.String()...)
		b = append(b, '"')
	}
	if hasTransport(p) && (p.Proto == ProtoICMP || p.Proto == ProtoICMPv6) && p.L4HdrLen != 0 {
		b = append(b, `,"icmp_type":`...)
		b = strconv.AppendUint(b, uint64(p.ICMPType), 10)
		b = append(b, `,"icmp_code":`...)
		b = strconv.AppendUint(b, uint64(p.ICMPCode), 10)
	}
	if p.EtherType == EtherTypeARP {
		b = append(b, `,"arp_op":`...)
		b = strconv.AppendUint(b, uint64(p.ARPOp), 10)
	}
	if p.VLANCount > 0 {
		b = append(b, `,"vlans":[`...)
		for i := 0; i < int(p.VLANCount) && i < len(p.VLANs); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(p.VLANs[i]&0x0fff), 10)
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

// AppendJSONString appends s as a JSON string: quotes, backslashes and control bytes escaped,
// DEL as \u007f, and every byte that is not valid UTF-8 replaced by \ufffd.
func AppendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hex[r&15])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
