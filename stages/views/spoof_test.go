package views

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// spoofNet is the network of the spoofing test: a client, its resolver, an attacker, and the
// address the attacker wants named www.google.com (scanme.nmap.org's, 45.33.32.156).
type spoofNet struct {
	t                                *testing.T
	client, resolver, attacker, prey string
	at                               time.Time
	num                              uint64
	pkts                             []stages.Packet
}

// udp adds a DNS message from src:sport to dst:dport, ms milliseconds into the test.
func (n *spoofNet) udp(m *dns.Msg, src, dst string, sport, dport uint16, ms int) {
	b, err := m.Pack()
	if err != nil {
		n.t.Fatal(err)
	}
	n.num++
	p := stages.Packet{Time: n.at.Add(time.Duration(ms) * time.Millisecond), Num: n.num, IPVersion: 4, EtherType: stages.EtherTypeIPv4,
		Proto: stages.ProtoUDP, Src: stagestest.Addr(n.t, src), Dst: stagestest.Addr(n.t, dst), SrcPort: sport, DstPort: dport,
		L4HdrLen: 8, WireLen: uint32(42 + len(b)), PayloadLen: uint16(len(b)), Payload: b}
	n.pkts = append(n.pkts, p)
}

// toPrey adds a TCP packet from the client to the prey, whose dst_domain says how it is named.
func (n *spoofNet) toPrey(ms int) uint64 {
	n.num++
	n.pkts = append(n.pkts, stages.Packet{Time: n.at.Add(time.Duration(ms) * time.Millisecond), Num: n.num, IPVersion: 4,
		EtherType: stages.EtherTypeIPv4, Proto: stages.ProtoTCP, Src: stagestest.Addr(n.t, n.client), Dst: stagestest.Addr(n.t, n.prey),
		SrcPort: 50000, DstPort: 443, TCPFlags: stages.TCPSyn, L4HdrLen: 20, WireLen: 74})
	return n.num
}

func query(id uint16, name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.Id = id
	return m
}

// answer is a response to query(id, name) that gives addr.
func answer(id uint16, name, addr string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(query(id, name))
	rr, _ := dns.NewRR(dns.Fqdn(name) + " 300 IN A " + addr)
	m.Answer = []dns.RR{rr}
	return m
}

// TestSpoofedAnswersNameNothing: with names from the wire, no answer the sensor cannot match to
// a query it saw renames an address: not one nobody asked for, not one to a query with
// another question, not one from an address or port the query did not go to, not one after
// the query's timeout. The answer that matches (same id and question, from the resolver's
// address and port to the client's, in time) does name it. The unmatched ones are weird:
// unsolicited_answer.
func TestSpoofedAnswersNameNothing(t *testing.T) {
	n := &spoofNet{t: t, client: "192.168.1.9", resolver: "192.0.2.53", attacker: "198.51.100.66", prey: "45.33.32.156",
		at: time.Unix(1700000000, 0)}
	// 1. An answer no one asked for, from the attacker, as if from the resolver's port.
	n.udp(answer(0x1111, "www.google.com", n.prey), n.attacker, n.client, 53, 40000, 0)
	// 2. An answer forged with the resolver's address and the id of a query that asked
	// another question.
	n.udp(query(0x2222, "example.org"), n.client, n.resolver, 40001, 53, 10)
	n.udp(answer(0x2222, "www.google.com", n.prey), n.resolver, n.client, 53, 40001, 11)
	// 3. The right id and question, from the attacker's address.
	n.udp(query(0x3333, "www.google.com"), n.client, n.resolver, 40002, 53, 20)
	n.udp(answer(0x3333, "www.google.com", n.prey), n.attacker, n.client, 53, 40002, 21)
	// 4. The right id, question and address, to another port of the client.
	n.udp(answer(0x3333, "www.google.com", n.prey), n.resolver, n.client, 53, 40099, 22)
	// 5. The right everything, a minute late (the query waits 30s).
	n.udp(query(0x4444, "www.google.com"), n.client, n.resolver, 40003, 53, 30)
	n.udp(answer(0x4444, "www.google.com", n.prey), n.resolver, n.client, 53, 40003, 60_030)
	before := n.toPrey(60_040)
	// 6. The real answer, matched (its question's case differs, as a resolver's may when the
	// query's was 0x20-randomised): it names the address.
	n.udp(query(0x5555, "scanme.nmap.org"), n.client, n.resolver, 40004, 53, 60_100)
	n.udp(answer(0x5555, "SCANME.nmap.org", n.prey), n.resolver, n.client, 53, 40004, 60_120)
	after := n.toPrey(60_130)

	var out bytes.Buffer
	p, err := Build(&Config{View: "net_watch", Format: sinks.FormatJSON, UTC: true, Names: names.ModeWire}, sinks.NewOutput(&out, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(stagestest.Replay(n.pkts)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	domains := map[uint64]string{}
	for l := range strings.Lines(out.String()) {
		var o struct {
			Num       uint64 `json:"num"`
			DstDomain string `json:"dst_domain"`
		}
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatal(err)
		}
		domains[o.Num] = o.DstDomain
	}
	if d := domains[before]; d != "public" {
		t.Errorf("after five spoofed answers the prey shows as %q, want its class, public", d)
	}
	if d := domains[after]; d != "SCANME.nmap.org" {
		t.Errorf("after the matched answer the prey shows as %q, want SCANME.nmap.org (the name answered)", d)
	}
	counts := map[string]uint64{}
	for _, c := range p.Counters() {
		counts[c.Name] = c.Value
	}
	if counts["dns_unsolicited"] != 5 || counts["dns_matched"] != 1 || counts["wire_names_unmatched"] != 5 || counts["wire_names_learned"] != 1 {
		t.Errorf("counters at exit: %v", counts)
	}

	// The weird-dns view shows the five, each with why.
	var weird bytes.Buffer
	w, err := Build(&Config{View: "weird-dns", UTC: true, NoDNS: true}, sinks.NewOutput(&weird, false))
	if err != nil {
		t.Fatal(err)
	}
	w.Run(stagestest.Replay(n.pkts))
	w.Close()
	lines := strings.Split(strings.TrimSpace(weird.String()), "\n")
	want := []string{"unsolicited_answer=no query", "unsolicited_answer=question differs: asked example.org A",
		"unsolicited_answer=no query", "unsolicited_answer=no query", "unsolicited_answer=no query"}
	if len(lines) != len(want) {
		t.Fatalf("weird-dns:\n%s", weird.String())
	}
	for i, l := range lines {
		if !strings.Contains(l, " response NOERROR ") || !strings.Contains(l, "weird=["+want[i]+"]") {
			t.Errorf("line %d: %s, want %s", i+1, l, want[i])
		}
	}
}
