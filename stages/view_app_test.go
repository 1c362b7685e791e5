package stages

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

type bufWriter struct{ bytes.Buffer }

func (w *bufWriter) Write(b []byte) error { _, err := w.Buffer.Write(b); return err }

// runView runs an application view over a capture and returns its output lines.
func runView(t *testing.T, view, pcap string, json bool) []string {
	t.Helper()
	var out bufWriter
	st, sink, ok := NewAppView(view, AppConfig{}, &out, AppViewOptions{JSON: json, UTC: true})
	if !ok {
		t.Fatalf("no view %s", view)
	}
	for p := range st(capturePackets(t, pcapPath(t, pcap), kernelSnap)) {
		if err := sink.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(out.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestURLWatchView: one line per HTTP request and response and per hello; the requests' hosts
// and URIs are tshark's (testdata/tshark/http_http_pcap.tsv), the SNI tshark's
// (tls_tls13_large_clienthello_kyber_pcap.tsv).
func TestURLWatchView(t *testing.T) {
	lines := runView(t, ViewURLWatch, "chains/http.pcap", false)
	rows := readTSV(t, "http_http_pcap.tsv")
	if len(lines) != len(rows) {
		t.Errorf("%d lines for %d HTTP messages:\n%s", len(lines), len(rows), strings.Join(lines, "\n"))
	}
	for _, r := range rows {
		if r[1] == "" {
			continue
		}
		want := "GET http://" + r[2] + PercentDecode(r[3])
		found := false
		for _, l := range lines {
			if strings.Contains(l, want) && strings.Contains(l, `ua="`+r[4]+`"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no line with %q", want)
		}
	}
	if !strings.HasPrefix(lines[0], "2004-05-13 10:17:08 - HTTP 145.254.160.237:3372 --> 65.208.228.223:80 GET http://www.ethereal.com/download.html") {
		t.Errorf("first line: %s", lines[0])
	}
	tls := runView(t, ViewURLWatch, "protocols/tls13_large_clienthello_kyber.pcap", false)
	if len(tls) != 2 || !strings.Contains(tls[0], "ClientHello sni=lh3.google.com alpn=h2,http/1.1 versions=TLS 1.3,TLS 1.2 ja4=t13d") ||
		!strings.Contains(tls[1], "ServerHello version=TLS 1.3 cipher=0x1301") {
		t.Errorf("TLS lines:\n%s", strings.Join(tls, "\n"))
	}
	for _, l := range runView(t, ViewURLWatch, "chains/sqli.pcap", true) {
		var o map[string]any
		if err := json.Unmarshal([]byte(l), &o); err != nil || o["view"] != "urlwatch" || o["ts"] == nil {
			t.Errorf("bad JSON line %s: %v", l, err)
		}
	}
}

// TestWeirdDNSView: chains/dns.pcap's TXT, NULL, HINFO and unknown-type queries (by tshark's
// dns.qry.type) all appear in the weird-dns view, queries and responses alike.
func TestWeirdDNSView(t *testing.T) {
	lines := runView(t, ViewWeirdDNS, "chains/dns.pcap", true)
	ids := map[string]int{}
	for _, l := range lines {
		var o struct {
			ID    uint16 `json:"id"`
			Weird []struct{ Rule, Detail string }
		}
		if err := json.Unmarshal([]byte(l), &o); err != nil || len(o.Weird) == 0 {
			t.Fatalf("bad line %s: %v", l, err)
		}
		ids["0x"+hex16(o.ID)]++
	}
	for _, r := range readTSV(t, "dns_dns_pcap.tsv") {
		for _, ty := range strings.Split(r[10], ",") {
			n, _ := strconv.Atoi(ty)
			if dnsWeirdType(uint16(n)) && ids[r[1]] == 0 {
				t.Errorf("frame %s (id %s, type %s) not in the weird-dns view", r[0], r[1], ty)
			}
		}
	}
	text := runView(t, ViewWeirdDNS, "chains/dns.pcap", false)
	if len(text) != len(lines) || !strings.Contains(strings.Join(text, "\n"), "weird=[query_type=TXT] q=[google.com TXT IN]") {
		t.Errorf("text view:\n%s", strings.Join(text, "\n"))
	}
}

// TestFlowsView: a line per TCP and UDP conversation tshark counts in chains/http.pcap (-z
// conv: 2 TCP, 1 UDP), with their ends and Community IDs.
func TestFlowsView(t *testing.T) {
	lines := runView(t, ViewFlows, "chains/http.pcap", false)
	if len(lines) != 3 {
		t.Fatalf("%d flow lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{"FLOW TCP 145.254.160.237:3372 --> 65.208.228.223:80 end=", "FLOW UDP 145.254.160.237:3009 --> 145.253.2.203:53",
		"packets=16/18", "cid=1:"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in\n%s", want, all)
		}
	}
	var out bufWriter
	st, sink, _ := NewAppView(ViewFlows, AppConfig{}, &out, AppViewOptions{})
	for range st(capturePackets(t, pcapPath(t, "chains/http.pcap"), kernelSnap)) {
	}
	if fs, ds := sink.Stats(); fs.Flows != 3 || fs.Ended != 3 || ds.Messages != 2 || ds.Matched != 1 {
		t.Errorf("stats %+v %+v", fs, ds)
	}
	for _, l := range runView(t, ViewFlows, "chains/http.pcap", true) {
		var o map[string]any
		if err := json.Unmarshal([]byte(l), &o); err != nil || o["type"] != "flow" {
			t.Errorf("bad JSON %s", l)
		}
	}
}

// TestHostileTextEscaped: an HTTP request whose URI and agent carry terminal escapes prints
// them escaped, in text and in JSON.
func TestHostileTextEscaped(t *testing.T) {
	var out bufWriter
	sink := &AppSink{view: ViewURLWatch, out: &out, opt: AppViewOptions{UTC: true}}
	p := &Packet{IPVersion: 4, Proto: ProtoTCP, Src: mustAddr(t, "10.0.0.1"), Dst: mustAddr(t, "10.0.0.2"), SrcPort: 1, DstPort: 80}
	p.Payload = []byte("GET /%1b]0;pwned%07?\x1b[2J HTTP/1.1\r\nHost: a\x1bb\r\nUser-Agent: \x9b31m\r\n\r\n")
	p.PayloadLen = uint16(len(p.Payload))
	ProcessHTTP(p)
	if err := sink.Write(p); err != nil {
		t.Fatal(err)
	}
	line := out.String()
	if strings.ContainsAny(strings.TrimSuffix(line, "\n"), "\x1b\x07\x9b\r\n") {
		t.Errorf("control bytes reached the output: %q", line)
	}
	if !strings.Contains(line, `/\x1b]0;pwned\x07?\x1b[2J`) {
		t.Errorf("line %q", line)
	}
}

// TestAppViewColor: with colour, only the kind word is coloured; without, no escape at all.
func TestAppViewColor(t *testing.T) {
	for _, color := range []bool{false, true} {
		var out bufWriter
		st, sink, _ := NewAppView(ViewFlows, AppConfig{}, &out, AppViewOptions{UTC: true, Color: color})
		for p := range st(capturePackets(t, pcapPath(t, "chains/http.pcap"), kernelSnap)) {
			sink.Write(p)
		}
		sink.Close()
		s := out.String()
		if has := strings.Contains(s, "\x1b[34mFLOW\x1b[0m TCP"); has != color || (!color && strings.Contains(s, "\x1b")) {
			t.Errorf("color %v:\n%q", color, s)
		}
	}
}

// TestFlowsViewEarlyStop: when the consumer stops early (-c N), the flows begun so far are
// still printed, once.
func TestFlowsViewEarlyStop(t *testing.T) {
	var out bufWriter
	st, sink, _ := NewAppView(ViewFlows, AppConfig{}, &out, AppViewOptions{UTC: true})
	n := 0
	for p := range st(capturePackets(t, pcapPath(t, "chains/http.pcap"), kernelSnap)) {
		sink.Write(p)
		if n++; n == 5 {
			break
		}
	}
	sink.Close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "end=eof") || !strings.Contains(lines[0], "packets=3/2") {
		t.Errorf("lines:\n%s", out.String())
	}
}
