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
