package sinks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"plain", "quote\"back\\slash", "\x00\x1f\x7f", "\xff", "é\u2028", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
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
// interface names, any payload, HTTP, TLS and DNS fields made of the same hostile text) and
// writes it through every sink: the JSON lines must parse and carry the same addresses, text
// must hold no control character but the newlines and no invalid UTF-8.
func FuzzSinks(f *testing.F) {
	f.Add(make([]byte, 64), "internal", "evil\x1b[2J", "eth0")
	f.Add(bytes.Repeat([]byte{0xff}, 80), "", "\xff\xfe\x00", "if\n0")
	f.Fuzz(func(t *testing.T, raw []byte, srcDom, dstDom, iface string) {
		if len(raw) < 48 {
			raw = append(raw, make([]byte, 48-len(raw))...)
		}
		var p stages.Packet
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
		p.Status, p.BadLayer = stages.Status(raw[22]%5), stages.Layer(raw[23]%14)
		p.VLANCount = raw[24] % 4
		p.Tags = stages.Tags(raw[25])
		p.Payload = raw[48:]
		p.PayloadLen = uint16(len(p.Payload))
		p.SrcClass, p.DstClass = stages.Class(raw[26]%(uint8(37)+2)), stages.Class(raw[27]%(uint8(37)+2))
		p.SrcDomain, p.DstDomain, p.Iface = srcDom, dstDom, iface

		var js, text bytes.Buffer
		out := NewOutput(&js, false)
		js1 := NewJSON(out, Options{UTC: raw[11]&1 == 0})
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
		for _, s := range []Sink{NewNetWatch(tout, Options{UTC: true}), NewPackets(tout, Options{})} {
			s.Write(&p)
			s.Close()
		}
		if err := terminalSafe(text.Bytes()); err != nil {
			t.Fatal(err)
		}
		if p.Src.IsValid() && !bytes.Contains(text.Bytes(), []byte(" "+p.Src.String())) {
			t.Fatalf("net_watch line lacks %s: %q", p.Src, text.Bytes())
		}
		if n := bytes.Count(text.Bytes(), []byte("\n")); n < 3 {
			t.Fatalf("%d newlines", n)
		}

		// The application sinks, with the same hostile text in every field they print.
		p.HTTP, _ = protocols.ParseHTTPHead(p.Payload)
		if p.HTTP == nil {
			p.HTTP = &stages.HTTPInfo{Request: raw[28]&1 == 0, Method: srcDom, URI: dstDom, Host: iface, UserAgent: srcDom, Referer: dstDom, Reason: iface}
		}
		p.TLS = &stages.TLSInfo{Hello: 1 + raw[29]&1, SNI: srcDom, ALPN: []string{dstDom, iface}, Versions: []uint16{0x0304, 0x0a0a}}
		p.DNS = &stages.DNSInfo{Response: raw[30]&1 == 0, Weird: []stages.DNSWeird{{Rule: "subdomain", Detail: srcDom}},
			Questions: []stages.DNSQuestion{{Name: dstDom, Type: 16, Class: 1}},
			Answers:   []stages.DNSRecord{{Name: iface, Type: 16, Class: 1, Data: srcDom}}}
		for _, f := range []Format{FormatText, FormatJSON} {
			var app bytes.Buffer
			aout := NewOutput(&app, false)
			for _, s := range []Sink{NewURLWatch(aout, Options{Format: f}), NewWeirdDNS(aout, Options{Format: f})} {
				if err := s.Write(&p); err != nil {
					t.Fatal(err)
				}
				s.Close()
			}
			lines := bytes.Split(bytes.TrimSuffix(app.Bytes(), []byte("\n")), []byte("\n"))
			if len(lines) != 3 {
				t.Fatalf("%d application lines: %q", len(lines), app.Bytes())
			}
			for _, l := range lines {
				if f == FormatJSON {
					if err := json.Unmarshal(l, &obj); err != nil {
						t.Fatalf("invalid JSON %q: %v", l, err)
					}
				} else if err := terminalSafe(l); err != nil {
					t.Fatal(err)
				}
			}
		}
		// The capture comment: one line of the same safe text, within its bound.
		c := AppendComment(nil, &p)
		if err := terminalSafe(c); err != nil || bytes.IndexByte(c, '\n') >= 0 || len(c) > MaxComment {
			t.Fatalf("comment %q (%d bytes): %v", c, len(c), err)
		}
	})
}

// terminalSafe says what in b could harm a terminal: a control character other than the
// newline (C0, DEL, C1, the Unicode line and paragraph separators) or invalid UTF-8.
func terminalSafe(b []byte) error {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if (r == utf8.RuneError && n <= 1) || (r < 0x20 && r != '\n') || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return fmt.Errorf("%q at %d in text output %q", b[i:i+max(n, 1)], i, b)
		}
		i += n
	}
	return nil
}
