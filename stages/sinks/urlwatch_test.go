package sinks

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

// TestHostileTextEscaped: an HTTP request whose URI, host and agent carry terminal escapes
// prints them escaped, in text and in JSON; the URI percent-decoded for reading.
func TestHostileTextEscaped(t *testing.T) {
	p := &stages.Packet{IPVersion: 4, Proto: stages.ProtoTCP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 1, DstPort: 80, L4HdrLen: 20}
	p.Payload = []byte("GET /%1b]0;pwned%07?\x1b[2J HTTP/1.1\r\nHost: a\x1bb\r\nUser-Agent: \x9b31m\r\n\r\n")
	p.PayloadLen = uint16(len(p.Payload))
	protocols.ProcessHTTP(p)
	for _, f := range []Format{FormatText, FormatJSON} {
		var buf bytes.Buffer
		sink := NewURLWatch(NewOutput(&buf, false), Options{Format: f, UTC: true})
		if err := sink.Write(p); err != nil {
			t.Fatal(err)
		}
		sink.Close()
		line := buf.String()
		if strings.ContainsAny(strings.TrimSuffix(line, "\n"), "\x1b\x07\x9b\r\n") {
			t.Errorf("control bytes reached the output: %q", line)
		}
		if f == FormatText && !strings.Contains(line, `GET http://a\x1bb/\x1b]0;pwned\x07?\x1b[2J ua="\x9b31m"`) {
			t.Errorf("line %q", line)
		}
	}
}

// TestURLWatchChains: the heads and hellos one packet completed are a line each, in order; a
// hello from QUIC is a QUIC line (JSON type quic, with its version), a HelloRetryRequest says so.
func TestURLWatchChains(t *testing.T) {
	p := &stages.Packet{IPVersion: 4, Proto: stages.ProtoUDP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 50000, DstPort: 4433, L4HdrLen: 8}
	p.TLS = &stages.TLSInfo{Hello: stages.TLSClientHello, SNI: "q.example", ALPN: []string{"h3"}, Versions: []uint16{0x0304},
		JA4: "q13d0310h3_55b375c5d22e_cd85d2d88918", QUIC: 0x6b3343cf,
		Next: &stages.TLSInfo{Hello: stages.TLSServerHello, HelloRetry: true, QUIC: 0x6b3343cf, Versions: []uint16{0x0304}, Version: 0x0304, Cipher: 0x1301}}
	p.HTTP = &stages.HTTPInfo{Request: true, Method: "GET", URI: "/a", Host: "h", Next: &stages.HTTPInfo{Request: true, Method: "GET", URI: "/b", Host: "h"}}
	var text, js bytes.Buffer
	for _, c := range []struct {
		f   Format
		buf *bytes.Buffer
	}{{FormatText, &text}, {FormatJSON, &js}} {
		sink := NewURLWatch(NewOutput(c.buf, false), Options{Format: c.f, UTC: true})
		sink.Write(p)
		sink.Close()
	}
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	want := []string{"HTTP 10.0.0.1:50000 --> 10.0.0.2:4433 GET http://h/a", "HTTP 10.0.0.1:50000 --> 10.0.0.2:4433 GET http://h/b",
		"QUIC 10.0.0.1:50000 --> 10.0.0.2:4433 ClientHello sni=q.example alpn=h3 versions=TLS 1.3 ja4=q13d0310h3_55b375c5d22e_cd85d2d88918",
		"QUIC 10.0.0.1:50000 --> 10.0.0.2:4433 HelloRetryRequest version=TLS 1.3 cipher=0x1301"}
	if len(lines) != len(want) {
		t.Fatalf("lines:\n%s", text.String())
	}
	for i, l := range lines {
		if !strings.HasSuffix(l, want[i]) {
			t.Errorf("line %d %q, want ...%q", i+1, l, want[i])
		}
	}
	if s := js.String(); strings.Count(s, `"type":"quic"`) != 2 || !strings.Contains(s, `"quic_version":"0x6b3343cf"`) || !strings.Contains(s, `"hello":"retry"`) {
		t.Errorf("JSON:\n%s", s)
	}
}
