package protocols

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

// dnsPacket builds a UDP packet carrying m, from src:sport to dst:dport at time at.
func dnsPacket(t testing.TB, m *dns.Msg, src, dst string, sport, dport uint16, at time.Time) *stages.Packet {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return &stages.Packet{Time: at, IPVersion: 4, Src: stagestest.Addr(t, src), Dst: stagestest.Addr(t, dst), Proto: stages.ProtoUDP,
		SrcPort: sport, DstPort: dport, Payload: b, PayloadLen: uint16(len(b))}
}

func weirdRules(d *stages.DNSInfo) string {
	var r []string
	for _, w := range d.Weird {
		r = append(r, w.Rule+"="+w.Detail)
	}
	return strings.Join(r, ";")
}

// TestDNSWeirdRules checks each rule of the original chains (dns_meta.py) on hand-built
// messages, packed by miekg/dns, and one NXDOMAIN burst.
func TestDNSWeirdRules(t *testing.T) {
	at := time.Unix(1700000000, 0)
	q := func(name string, qt, qc uint16) *dns.Msg {
		m := new(dns.Msg)
		m.Id = 7
		m.Question = []dns.Question{{Name: dns.Fqdn(name), Qtype: qt, Qclass: qc}}
		return m
	}
	// A 40-character subdomain with many distinct characters: entropy > 3.5 bits.
	long := "a8f3k2m9q7x1z4w6e5r0t3y8u2i9o1p4s7d6g5" // 38 characters, 20+ symbols
	cases := []struct {
		name string
		msg  func() *dns.Msg
		want string
	}{
		{"plain A", func() *dns.Msg { return q("www.example.com", dns.TypeA, dns.ClassINET) }, ""},
		{"TXT query", func() *dns.Msg { return q("example.com", dns.TypeTXT, dns.ClassINET) }, "query_type=TXT"},
		{"NULL query", func() *dns.Msg { return q("example.com", dns.TypeNULL, dns.ClassINET) }, "query_type=NULL"},
		{"HINFO query", func() *dns.Msg { return q("example.com", dns.TypeHINFO, dns.ClassINET) }, "query_type=HINFO"},
		{"unknown type", func() *dns.Msg { return q("example.com", 65280, dns.ClassINET) }, "query_type=TYPE65280"},
		// The original's rule (chains dns_meta.py): a type outside its list A, NS, CNAME, SOA,
		// NULL, PTR, HINFO, MX, TXT, AAAA, SRV, OPT maps to UNKNOWN, which is weird.
		{"ANY query", func() *dns.Msg { return q("www.isc.org", 255, dns.ClassINET) }, "query_type=ANY"},
		{"AXFR query", func() *dns.Msg { return q("example.com", 252, dns.ClassINET) }, "query_type=AXFR"},
		{"IXFR query", func() *dns.Msg { return q("example.com", 251, dns.ClassINET) }, "query_type=IXFR"},
		{"CAA query", func() *dns.Msg { return q("example.com", 257, dns.ClassINET) }, "query_type=CAA"},
		{"LOC query", func() *dns.Msg { return q("example.com", 29, dns.ClassINET) }, "query_type=LOC"},
		{"CHAOS class", func() *dns.Msg { return q("version.bind", dns.TypeA, dns.ClassCHAOS) }, "query_class=CH"},
		{"HESIOD class", func() *dns.Msg { return q("example.com", dns.TypeA, dns.ClassHESIOD) }, "query_class=HS"},
		{"ANY class", func() *dns.Msg { return q("example.com", dns.TypeA, dns.ClassANY) }, "query_class=ANY"},
		{"NONE class", func() *dns.Msg { return q("example.com", dns.TypeA, dns.ClassNONE) }, "query_class=NONE"},
		{"Z bit", func() *dns.Msg { m := q("example.com", dns.TypeA, dns.ClassINET); m.Zero = true; return m }, "z=1"},
		{"truncated", func() *dns.Msg { m := q("example.com", dns.TypeA, dns.ClassINET); m.Truncated = true; return m }, "truncated=1"},
		{"long subdomain", func() *dns.Msg { return q(long+".evil.com", dns.TypeA, dns.ClassINET) },
			"subdomain=len=38 entropy=" + formatEntropy(Entropy(long)) + " sub=" + long},
		{"long low-entropy subdomain", func() *dns.Msg {
			return q(strings.Repeat("ab", 20)+".example.com", dns.TypeA, dns.ClassINET)
		}, ""},
		{"TXT answer", func() *dns.Msg {
			m := q("example.com", dns.TypeA, dns.ClassINET)
			m.Response = true
			m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 5}, Txt: []string{"x"}}}
			return m
		}, "answer_type=TXT"},
	}
	for _, typ := range []uint16{1, 2, 5, 6, 12, 15, 28, 33} { // the list's types that are not weird
		cases = append(cases, struct {
			name string
			msg  func() *dns.Msg
			want string
		}{dns.TypeToString[typ] + " query", func() *dns.Msg { return q("example.com", typ, dns.ClassINET) }, ""})
	}
	for _, c := range cases {
		tr := NewDNSTracker(DNSConfig{})
		m := c.msg()
		if m.Response { // its query first, or it is unsolicited
			q := m.Copy()
			q.Response, q.Answer = false, nil
			tr.Packet(dnsPacket(t, q, "10.0.0.53", "10.0.0.1", 53, 40000, at))
		}
		p := dnsPacket(t, m, "10.0.0.1", "10.0.0.53", 40000, 53, at)
		tr.Packet(p)
		if p.DNS == nil {
			t.Fatalf("%s: not decoded", c.name)
		}
		if got := weirdRules(p.DNS); got != c.want {
			t.Errorf("%s: weird %q, want %q", c.name, got, c.want)
		}
		// The counts by rule (the metrics'): one for the case's rule, none for the others.
		var want [len(WeirdRules)]uint64
		if rule, _, _ := strings.Cut(c.want, "="); rule != "" {
			want[WeirdRuleIndex(rule)] = 1
		}
		if got := tr.Stats().WeirdRules; got != want {
			t.Errorf("%s: weird counts by rule %v, want %v (%v)", c.name, got, want, WeirdRules)
		}
	}
	if i := WeirdRuleIndex("no such rule"); WeirdRules[i] != "other" {
		t.Errorf("an unknown rule counts as %q, want other", WeirdRules[i])
	}
}

func formatEntropy(e float64) string { return strconv.FormatFloat(e, 'f', 2, 64) }

// TestEntropy checks Shannon entropy against hand-computed values.
func TestEntropy(t *testing.T) {
	for s, want := range map[string]float64{"": 0, "aaaa": 0, "ab": 1, "abcd": 2, "aabb": 1, "abcdefgh": 3} {
		if got := Entropy(s); got != want {
			t.Errorf("Entropy(%q) = %v, want %v", s, got, want)
		}
	}
	if got := Subdomain("a.b.example.com"); got != "a.b" {
		t.Errorf("Subdomain: %q", got)
	}
	if got := Subdomain("example.com."); got != "" {
		t.Errorf("Subdomain of a registered domain: %q", got)
	}
}

// TestNXDOMAINBurst: ten NXDOMAIN answers to one client within the window make a burst; the
// same answers spread over other clients do not.
func TestNXDOMAINBurst(t *testing.T) {
	tr := NewDNSTracker(DNSConfig{NXBurst: 10, NXWindow: 10 * time.Second})
	at := time.Unix(1700000000, 0)
	resp := func(i int, client string, late ...time.Duration) *stages.Packet {
		m := new(dns.Msg)
		m.Id = uint16(i)
		m.Response = true
		m.Rcode = dns.RcodeNameError
		m.Question = []dns.Question{{Name: "n" + string(rune('a'+i%26)) + ".example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
		when := at.Add(time.Duration(i) * 100 * time.Millisecond)
		if len(late) > 0 {
			when = at.Add(late[0])
		}
		q := m.Copy()
		q.Response, q.Rcode = false, 0
		tr.Packet(dnsPacket(t, q, client, "10.0.0.53", 40000, 53, when.Add(-time.Millisecond))) // its query
		return dnsPacket(t, m, "10.0.0.53", client, 53, 40000, when)
	}
	for i := 0; i < 9; i++ {
		p := resp(i, "10.0.0.1")
		tr.Packet(p)
		if len(p.DNS.Weird) != 0 {
			t.Fatalf("answer %d already weird: %v", i+1, p.DNS.Weird)
		}
		q := resp(i, "10.0.0.2")
		if i%2 == 0 {
			tr.Packet(q)
		}
	}
	p := resp(9, "10.0.0.1")
	tr.Packet(p)
	if got := weirdRules(p.DNS); !strings.HasPrefix(got, "nxdomain_burst=count=10 in 900ms") {
		t.Errorf("10th NXDOMAIN: weird %q", got)
	}
	// Outside the window the count starts again.
	late := resp(9, "10.0.0.1", time.Minute)
	tr.Packet(late)
	if len(late.DNS.Weird) != 0 {
		t.Errorf("after the window: %v", late.DNS.Weird)
	}
}

// TestDNSMatchBounded: queries never answered do not grow the pending table past its bound:
// the oldest are evicted, counted, and the newest still match their responses.
func TestDNSMatchBounded(t *testing.T) {
	tr := NewDNSTracker(DNSConfig{MaxPending: 100})
	at := time.Unix(1700000000, 0)
	msg := func(i int, response bool) *dns.Msg {
		m := new(dns.Msg)
		m.Id, m.Response = uint16(i), response
		m.Question = []dns.Question{{Name: "x.example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
		return m
	}
	for i := 0; i < 1000; i++ {
		tr.Packet(dnsPacket(t, msg(i, false), "10.0.0.1", "10.0.0.53", uint16(1024+i), 53, at))
	}
	if n := tr.pending.Len(); n > 100 {
		t.Errorf("pending table holds %d, bound 100", n)
	}
	if st := tr.Stats(); st.PendingEvicted != 900 || st.Pending != 100 {
		t.Errorf("stats %+v: want 900 evicted, 100 pending", st)
	}
	late := dnsPacket(t, msg(999, true), "10.0.0.53", "10.0.0.1", 53, 1024+999, at.Add(time.Second))
	early := dnsPacket(t, msg(0, true), "10.0.0.53", "10.0.0.1", 53, 1024, at.Add(time.Second))
	tr.Packet(late)
	tr.Packet(early)
	if !late.DNS.Matched || early.DNS.Matched || weirdRules(early.DNS) != "unsolicited_answer=no query" {
		t.Errorf("newest query's response matched %v; evicted one's %v, weird %q", late.DNS.Matched, early.DNS.Matched, weirdRules(early.DNS))
	}
	// After the timeout every query has expired, and is counted so.
	tr.Packet(dnsPacket(t, msg(5000, false), "10.0.0.9", "10.0.0.53", 999, 53, at.Add(time.Hour)))
	if st := tr.Stats(); st.Pending != 1 || st.PendingExpired != 99 {
		t.Errorf("after an hour: %+v", st)
	}
}

// TestRRData: the data we format ourselves reads as miekg/dns's presentation format does.
func TestRRData(t *testing.T) {
	for _, text := range []string{
		"example.com. 300 IN MX 10 mail.example.com.",
		"_sip._tcp.example.com. 60 IN SRV 10 20 5060 sip.example.com.",
		"example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300",
		"example.com. 300 IN TXT \"v=spf1 -all\" \"two\"",
		"example.com. 300 IN A 192.0.2.1",
		"example.com. 300 IN AAAA 2001:db8::1",
	} {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatal(err)
		}
		full := rr.String()
		want := full[len(rr.Header().String()):]
		if got := rrData(rr); got != strings.TrimSuffix(strings.ReplaceAll(want, ". ", " "), ".") {
			t.Errorf("%s: %q, want %q", text, got, want)
		}
	}
}

// TestEDNSExtendedRcode: a response whose header says rcode 0 and whose OPT record says
// extended rcode 1 (the TTL's top byte) has rcode 16, BADVERS (RFC 6891 6.1.3: the extended
// RCODE is the OPT's 8 bits above the header's 4; RFC 6891 9: 16 is BADVERS). The message is
// written byte by byte here, from the RFC's layout.
func TestEDNSExtendedRcode(t *testing.T) {
	msg := []byte{0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 1} // id, QR RD RA rcode 0, 1 question, 1 additional
	msg = append(msg, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1)
	msg = append(msg, 0, 0, 41, 0x10, 0, 1, 0, 0, 0, 0, 0) // root, OPT, UDP 4096, ext rcode 1, version 0, flags 0, no data
	p := &stages.Packet{Time: time.Unix(1700000000, 0), IPVersion: 4, Src: stagestest.Addr(t, "10.0.0.53"), Dst: stagestest.Addr(t, "10.0.0.1"),
		Proto: stages.ProtoUDP, SrcPort: 53, DstPort: 40000, Payload: msg, PayloadLen: uint16(len(msg))}
	NewDNSTracker(DNSConfig{}).Packet(p)
	if p.DNS == nil || p.DNS.Err != "" {
		t.Fatalf("not decoded: %+v", p.DNS)
	}
	if p.DNS.Rcode != 16 || DNSRcodeName(p.DNS.Rcode) != "BADVERS" {
		t.Errorf("rcode %d %s, want 16 BADVERS", p.DNS.Rcode, DNSRcodeName(p.DNS.Rcode))
	}
	if DNSRcodeName(0) != "NOERROR" || DNSRcodeName(3) != "NXDOMAIN" || DNSRcodeName(4000) != "RCODE4000" {
		t.Error("other rcodes")
	}
}
