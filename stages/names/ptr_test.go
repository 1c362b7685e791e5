package names

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestPTRAnswerQuestion: a PTR answer counts only for the question asked: one question, the
// queried arpa name, type PTR, class IN; and only a PTR owned by that name, or by a name its
// CNAME answers lead to (RFC 2317's classless delegation), names it.
func TestPTRAnswerQuestion(t *testing.T) {
	arpa, _ := dns.ReverseAddr("192.0.2.5")
	other, _ := dns.ReverseAddr("192.0.2.6")
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	msg := func(q string, qt uint16, answers ...dns.RR) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(q, qt)
		m.Response, m.Answer = true, answers
		return m
	}
	two := msg(arpa, dns.TypePTR, rr(arpa+" 60 IN PTR host.example."))
	two.Question = append(two.Question, dns.Question{Name: other, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
	for _, c := range []struct {
		name  string
		in    *dns.Msg
		want  string
		asked bool
	}{
		{"the answer", msg(arpa, dns.TypePTR, rr(arpa+" 60 IN PTR host.example.")), "host.example.", true},
		{"case of the question", msg("5.2.0.192.IN-ADDR.ARPA.", dns.TypePTR, rr(arpa+" 60 IN PTR host.example.")), "host.example.", true},
		{"another question, same id", msg(other, dns.TypePTR, rr(other+" 60 IN PTR www.google.com.")), "", false},
		{"another type", msg(arpa, dns.TypeA), "", false},
		{"two questions", two, "", false},
		{"a PTR of another name", msg(arpa, dns.TypePTR, rr(other+" 60 IN PTR www.google.com.")), "", true},
		{"RFC 2317 CNAME", msg(arpa, dns.TypePTR, rr(arpa+" 60 IN CNAME 5.0-25.2.0.192.in-addr.arpa."),
			rr("5.0-25.2.0.192.in-addr.arpa. 60 IN PTR host.example.")), "host.example.", true},
	} {
		name, _, asked := ptrAnswer(c.in, arpa)
		if name != c.want || asked != c.asked {
			t.Errorf("%s: %q asked=%v, want %q asked=%v", c.name, name, asked, c.want, c.asked)
		}
	}
}

// TestRDNSRefusesOtherQuestion: a server whose answers carry the query's id but another
// question (a PTR for another address naming it www.google.com) names nothing: the address
// is shown as one without a name (the label is the resolver's, not the answer's).
func TestRDNSRefusesOtherQuestion(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		other, _ := dns.ReverseAddr("45.33.32.157")
		m := new(dns.Msg)
		m.SetReply(req)
		m.Question[0].Name = other
		m.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: other, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 300}, Ptr: "www.google.com."}}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	out, _ := runRDNS(t, ResolverConfig{Servers: []string{pc.LocalAddr().String()}, Wait: 2 * time.Second},
		[]pkt{{"192.168.1.9", "45.33.32.156"}})
	if out[0].dst == "www.google.com" || out[0].dst == "" {
		t.Errorf("45.33.32.156 shown as %q after an answer to another question", out[0].dst)
	}
}
