package stages

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"plain", "quote\"back\\slash", "\x00\x1f\x7f", "\xff", "é\u2028", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON %q for %q: %v", b, s, err)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("round trip %q -> %q", s, got)
		}
		for _, c := range b {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("control byte %#x in %q", c, b)
			}
		}
	})
}

// FuzzSinks builds a packet from the fuzzer's bytes (any field values, hostile domain and
// interface names, any payload) and writes it through every sink: the JSON line must parse
// and carry the same addresses, text must hold no control byte but the newlines.
func FuzzSinks(f *testing.F) {
	f.Add(make([]byte, 64), "internal", "evil\x1b[2J", "eth0")
	f.Add(bytes.Repeat([]byte{0xff}, 80), "", "\xff\xfe\x00", "if\n0")
	f.Fuzz(func(t *testing.T, raw []byte, srcDom, dstDom, iface string) {
		if len(raw) < 48 {
			raw = append(raw, make([]byte, 48-len(raw))...)
		}
		var p Packet
		p.Time = time.Unix(int64(binary.BigEndian.Uint32(raw[0:4])), int64(binary.BigEndian.Uint32(raw[4:8])%1e9))
		p.EtherType = binary.BigEndian.Uint16(raw[8:10])
		switch raw[10] % 3 {
		case 1:
			p.IPVersion = 4
			p.Src = netip.AddrFrom4([4]byte(raw[12:16]))
			p.Dst = netip.AddrFrom4([4]byte(raw[16:20]))
		case 2:
			p.IPVersion = 6
			p.Src = netip.AddrFrom16([16]byte(raw[12:28]))
			p.Dst = netip.AddrFrom16([16]byte(raw[28:44]))
		}
		p.Proto = raw[11]
		p.SrcPort, p.DstPort = binary.BigEndian.Uint16(raw[44:46]), binary.BigEndian.Uint16(raw[46:48])
		p.TCPFlags, p.L4HdrLen = raw[20], raw[21]
		p.Status, p.BadLayer = Status(raw[22]%5), Layer(raw[23]%14)
		p.VLANCount = raw[24] % 4
		p.Tags = Tags(raw[25])
		p.Payload = raw[48:]
		p.PayloadLen = uint16(len(p.Payload))
		p.SrcClass, p.DstClass = Class(raw[26]%(uint8(numClasses)+2)), Class(raw[27]%(uint8(numClasses)+2))
		p.SrcDomain, p.DstDomain, p.Iface = srcDom, dstDom, iface

		var js, text bytes.Buffer
		out := NewOutput(&js, false)
		js1 := NewJSONSink(out, raw[11]&1 == 0)
		js1.Write(&p)
		js1.Close()
		var obj map[string]any
		if err := json.Unmarshal(js.Bytes(), &obj); err != nil {
			t.Fatalf("invalid JSON %q: %v", js.Bytes(), err)
		}
		if p.Src.IsValid() && obj["src"] != p.Src.String() {
			t.Fatalf("src %v, want %v", obj["src"], p.Src)
		}
		tout := NewOutput(&text, false)
		for _, s := range []Sink{NewNetWatchSink(tout, true, false), NewPacketsSink(tout, false, false)} {
			s.Write(&p)
			s.Close()
		}
		for _, c := range text.Bytes() {
			if (c < 0x20 && c != '\n') || c >= 0x7f {
				t.Fatalf("byte %#x in text output %q", c, text.Bytes())
			}
		}
		if p.Src.IsValid() && !bytes.Contains(text.Bytes(), []byte(" "+p.Src.String()+"(")) {
			t.Fatalf("net_watch line lacks %s: %q", p.Src, text.Bytes())
		}
		if n := bytes.Count(text.Bytes(), []byte("\n")); n < 3 {
			t.Fatalf("%d newlines", n)
		}
	})
}
