package views

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/chains-sensor/chains-sensor/sensor"
	"iter"
	"strconv"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// weirdType is the original's rule (chains dns_meta.py): NULL, HINFO, TXT, and every type
// outside its list (A, NS, CNAME, SOA, NULL, PTR, HINFO, MX, TXT, AAAA, SRV, OPT: 1, 2, 5, 6, 10,
// 12, 13, 15, 16, 28, 33, 41).
func weirdType(t uint16) bool {
	switch t {
	case 10, 13, 16:
		return true
	case 1, 2, 5, 6, 12, 15, 28, 33, 41:
		return false
	}
	return true
}

// appView builds view name's application stage and sink, without the front of the chain (so
// no domains), writing to out.
func appView(t testing.TB, name string, out *sinks.Output, opt sinks.Options) (stages.Stage, sinks.Sink) {
	t.Helper()
	v, ok := Lookup(name)
	if !ok || !v.App {
		t.Fatalf("no application view %s", name)
	}
	sink := v.Sink(out, opt)
	var fc flows.Config
	if fw, ok := sink.(sinks.FlowWriter); ok {
		fc.OnEnd = fw.WriteFlow
	}
	return AppStage(fc, protocols.DNSConfig{}), sink
}

// capture is a test capture's packets, with the kernel's payload policy.
func capture(t testing.TB, pcap string) iter.Seq[*stages.Packet] {
	return stagestest.Capture(t, stagestest.PcapPath(t, pcap), stagestest.KernelSnap)
}

// runView runs an application view over a capture and returns its output lines.
func runView(t *testing.T, view, pcap string, json bool) []string {
	t.Helper()
	var buf bytes.Buffer
	opt := sinks.Options{UTC: true}
	if json {
		opt.Format = sinks.FormatJSON
	}
	st, sink := appView(t, view, sinks.NewOutput(&buf, false), opt)
	for p := range st(capture(t, pcap)) {
		if err := sink.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(buf.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestURLWatchView: one line per HTTP request and response and per hello; the requests' hosts
// and URIs are tshark's (testdata/tshark/http_http_pcap.tsv), the SNI tshark's
// (tls_tls13_large_clienthello_kyber_pcap.tsv).
func TestURLWatchView(t *testing.T) {
	lines := runView(t, "urlwatch", "chains/http.pcap", false)
	rows := stagestest.TSV(t, "http_http_pcap.tsv")
	if len(lines) != len(rows) {
		t.Errorf("%d lines for %d HTTP messages:\n%s", len(lines), len(rows), strings.Join(lines, "\n"))
	}
	for _, r := range rows {
		if r[1] == "" {
			continue
		}
		want := "GET http://" + r[2] + sinks.PercentDecode(r[3])
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
	tls := runView(t, "urlwatch", "protocols/tls13_large_clienthello_kyber.pcap", false)
	if len(tls) != 2 || !strings.Contains(tls[0], "ClientHello sni=lh3.google.com alpn=h2,http/1.1 versions=TLS 1.3,TLS 1.2 ja4=t13d") ||
		!strings.Contains(tls[1], "ServerHello version=TLS 1.3 cipher=0x1301") {
		t.Errorf("TLS lines:\n%s", strings.Join(tls, "\n"))
	}
	for _, l := range runView(t, "urlwatch", "chains/sqli.pcap", true) {
		var o map[string]any
		if err := json.Unmarshal([]byte(l), &o); err != nil || o["view"] != "urlwatch" || o["ts"] == nil {
			t.Errorf("bad JSON line %s: %v", l, err)
		}
	}
}

// TestWeirdDNSView: every query of chains/dns.pcap whose type (tshark's dns.qry.type) the
// original's rule calls weird appears in the weird-dns view, queries and responses alike: TXT
// (frames 1, 2), LOC (5, 6), and the ANY query for www.isc.org (23, 24); the A, AAAA, MX, PTR,
// NS and SRV ones do not.
func TestWeirdDNSView(t *testing.T) {
	lines := runView(t, "weird-dns", "chains/dns.pcap", true)
	ids := map[string]int{}
	for _, l := range lines {
		var o struct {
			ID    uint16 `json:"id"`
			Weird []struct{ Rule, Detail string }
		}
		if err := json.Unmarshal([]byte(l), &o); err != nil || len(o.Weird) == 0 {
			t.Fatalf("bad line %s: %v", l, err)
		}
		ids[fmt.Sprintf("0x%04x", o.ID)]++
	}
	for _, r := range stagestest.TSV(t, "dns_dns_pcap.tsv") {
		for _, ty := range strings.Split(r[10], ",") {
			n, _ := strconv.Atoi(ty)
			if weirdType(uint16(n)) && ids[r[1]] == 0 {
				t.Errorf("frame %s (id %s, type %s) not in the weird-dns view", r[0], r[1], ty)
			}
		}
	}
	if ids["0xfee3"] != 2 {
		t.Errorf("the ANY query for www.isc.org (id 0xfee3) and its response: %d lines", ids["0xfee3"])
	}
	text := runView(t, "weird-dns", "chains/dns.pcap", false)
	all := strings.Join(text, "\n")
	if len(text) != len(lines) || !strings.Contains(all, "weird=[query_type=TXT] q=[google.com TXT IN]") ||
		!strings.Contains(all, "query id=0xfee3 weird=[query_type=ANY] q=[www.isc.org ANY IN]") {
		t.Errorf("text view:\n%s", strings.Join(text, "\n"))
	}
}

// TestFlowsView: a line per TCP and UDP conversation tshark counts in chains/http.pcap (-z
// conv: 2 TCP, 1 UDP), with their ends and Community IDs.
func TestFlowsView(t *testing.T) {
	lines := runView(t, "flows", "chains/http.pcap", false)
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
	var fs flows.Stats
	dt := protocols.NewDNSTracker(protocols.DNSConfig{})
	ft := flows.New(flows.Config{Handlers: []flows.Handler{dt, protocols.HTTPHandler{}, &protocols.TLSHandler{}}})
	for range ft.Stage()(capture(t, "chains/http.pcap")) {
	}
	fs = ft.Stats()
	if ds := dt.Stats(); fs.Flows != 3 || fs.Ended != 3 || ds.Messages != 2 || ds.Matched != 1 {
		t.Errorf("stats %+v %+v", fs, ds)
	}
	for _, l := range runView(t, "flows", "chains/http.pcap", true) {
		var o map[string]any
		if err := json.Unmarshal([]byte(l), &o); err != nil || o["type"] != "flow" {
			t.Errorf("bad JSON %s", l)
		}
	}
}

// TestAppViewColor: with colour, only the kind word is coloured; without, no escape at all.
func TestAppViewColor(t *testing.T) {
	for _, color := range []bool{false, true} {
		var out bytes.Buffer
		st, sink := appView(t, "flows", sinks.NewOutput(&out, false), sinks.Options{UTC: true, Color: color})
		for p := range st(capture(t, "chains/http.pcap")) {
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
	var out bytes.Buffer
	st, sink := appView(t, "flows", sinks.NewOutput(&out, false), sinks.Options{UTC: true})
	n := 0
	for p := range st(capture(t, "chains/http.pcap")) {
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

// TestOneProtocolNamer: the flows view names a flow's protocol as net_watch names its packets:
// protocols/gre_icmp.pcap's GRE flow (IP protocol 47, "gre" in tshark's frame.protocols, GRE
// in IANA's registry), read as the sensor reads it, is "FLOW GRE", not "IP47".
func TestOneProtocolNamer(t *testing.T) {
	// The GRE packets themselves, not what they carry.
	pkts := readPacketsWith(t, stagestest.PcapPath(t, "protocols/gre_icmp.pcap"), sensor.Config{NoDecap: true})
	for view, want := range map[string]string{"flows": " - FLOW GRE 172.27.1.66 --> 66.59.109.137 end=", "net_watch": " - GRE IP 172.27.1.66(internal) --> "} {
		var buf bytes.Buffer
		b, err := Build(&Config{NoDNS: true, UTC: true, View: view}, sinks.NewOutput(&buf, false))
		if err != nil {
			t.Fatal(err)
		}
		b.Run(stagestest.Replay(pkts))
		b.Close()
		if !strings.Contains(buf.String(), want) {
			t.Errorf("%s: no %q in\n%s", view, want, buf.String())
		}
	}
}
