package sinks

import (
	"strconv"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

// WeirdDNS is the sink of the weird-dns view: a line per DNS message with at least one weird
// reason, with its questions and records:
//
//	DNS 10.0.0.1:40000 --> 10.0.0.53:53 query id=0x1a2b weird=[query_type=TXT subdomain=...] q=[name TXT IN]
//	DNS 10.0.0.53:53 --> 10.0.0.1:40000 response NOERROR id=0x1a2b weird=[...] q=[...] an=[name 300 A 1.2.3.4]
type WeirdDNS struct{ appLines }

// NewWeirdDNS returns the weird-dns sink writing to out.
func NewWeirdDNS(out *Output, opt Options) *WeirdDNS {
	return &WeirdDNS{newAppLines(out, opt, "weird-dns")}
}

// Write prints the DNS messages p completed that are weird.
func (s *WeirdDNS) Write(p *stages.Packet) error {
	for d := p.DNS; d != nil; d = d.Next {
		if len(d.Weird) == 0 {
			continue
		}
		if s.opt.Format == FormatJSON {
			s.json1(p, d)
		} else {
			s.text1(p, d)
		}
	}
	return s.err
}

func (s *WeirdDNS) json1(p *stages.Packet, d *stages.DNSInfo) {
	dnsJSON(s.json(p.Time, "dns"), p, d)
	s.endJSON()
}

// dnsJSON writes the fields of d, a DNS message p completed (and p's endpoints), into a JSON
// object.
func dnsJSON(w *jsonWriter, p *stages.Packet, d *stages.DNSInfo) {
	packetFields(w, p)
	w.uint("id", uint64(d.ID))
	w.bool("response", d.Response)
	w.int("opcode", d.Opcode)
	w.str("rcode", protocols.DNSRcodeName(d.Rcode))
	w.array("weird")
	for _, x := range d.Weird {
		w.elemObject()
		w.str("rule", x.Rule)
		w.str("detail", x.Detail)
		w.endObject()
	}
	w.endArray()
	if d.Questions == nil {
		w.key("questions")
		w.b = append(w.b, "null"...)
	} else {
		w.array("questions")
		for _, q := range d.Questions {
			w.elemObject()
			w.str("name", q.Name)
			w.str("type", protocols.DNSTypeName(q.Type))
			w.str("class", protocols.DNSClassName(q.Class))
			w.endObject()
		}
		w.endArray()
	}
	for _, sec := range [...]struct {
		name string
		rs   []stages.DNSRecord
	}{{"answers", d.Answers}, {"authority", d.Authority}, {"additional", d.Additional}} {
		if len(sec.rs) == 0 {
			continue
		}
		w.array(sec.name)
		for _, r := range sec.rs {
			w.elemObject()
			w.str("name", r.Name)
			w.str("type", protocols.DNSTypeName(r.Type))
			w.str("class", protocols.DNSClassName(r.Class))
			w.uint("ttl", uint64(r.TTL))
			w.str("data", r.Data)
			w.endObject()
		}
		w.endArray()
	}
	if d.Matched {
		w.float("latency_ms", float64(d.Latency.Microseconds())/1000)
	}
	if d.Err != "" {
		w.str("error", d.Err)
	}
}

func (s *WeirdDNS) text1(p *stages.Packet, d *stages.DNSInfo) {
	b := s.text(p.Time, "DNS")
	b = appendPacketEnds(b, p)
	b = append(b, ' ')
	s.emit(appendDNS(b, d))
}

// appendDNS appends what weird-dns says of a DNS message after its endpoints: query or
// response with its rcode, the id, why it is weird (when it is), the questions and the
// records but EDNS0's OPT.
func appendDNS(b []byte, d *stages.DNSInfo) []byte {
	if d.Response {
		b = append(b, "response "...)
		b = append(b, protocols.DNSRcodeName(d.Rcode)...)
	} else {
		b = append(b, "query"...)
	}
	b = append(b, " id=0x"...)
	b = appendHex16(b, d.ID)
	if len(d.Weird) > 0 {
		b = append(b, " weird=["...)
		for i, x := range d.Weird {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, x.Rule...)
			b = append(b, '=')
			b = appendText(b, x.Detail)
		}
		b = append(b, ']')
	}
	b = append(b, " q=["...)
	for i, q := range d.Questions {
		if i > 0 {
			b = append(b, "; "...)
		}
		b = appendText(b, q.Name)
		b = append(b, ' ')
		b = append(b, protocols.DNSTypeName(q.Type)...)
		b = append(b, ' ')
		b = append(b, protocols.DNSClassName(q.Class)...)
	}
	b = append(b, ']')
	for _, sec := range [...]struct {
		name string
		rs   []stages.DNSRecord
	}{{"an", d.Answers}, {"ns", d.Authority}, {"ar", d.Additional}} {
		first := true
		for _, r := range sec.rs {
			if r.Type == 41 { // OPT: the EDNS0 pseudo-record
				continue
			}
			if first {
				b = append(b, ' ')
				b = append(b, sec.name...)
				b = append(b, "=["...)
				first = false
			} else {
				b = append(b, "; "...)
			}
			b = appendText(b, r.Name)
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(r.TTL), 10)
			b = append(b, ' ')
			b = append(b, protocols.DNSTypeName(r.Type)...)
			b = append(b, ' ')
			b = appendText(b, r.Data)
		}
		if !first {
			b = append(b, ']')
		}
	}
	return b
}
