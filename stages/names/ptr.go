package names

import (
	"strings"

	"github.com/miekg/dns"
)

// ptrAnswer reads the answer to the PTR query for arpa from a response: asked says the
// response is to that question (exactly one question, arpa PTR IN: a response whose id matches
// is not enough); name is the PTR target of arpa, or of a name arpa's CNAME answers lead to
// (RFC 2317 classless delegation), "" when there is none.
func ptrAnswer(in *dns.Msg, arpa string) (name string, ttl uint32, asked bool) {
	if len(in.Question) != 1 {
		return "", 0, false
	}
	q := in.Question[0]
	if q.Qtype != dns.TypePTR || q.Qclass != dns.ClassINET || !strings.EqualFold(q.Name, arpa) {
		return "", 0, false
	}
	owner := arpa
	for range 8 { // CNAME steps followed at most
		next := ""
		for _, rr := range in.Answer {
			if !strings.EqualFold(rr.Header().Name, owner) || rr.Header().Class != dns.ClassINET {
				continue
			}
			switch r := rr.(type) {
			case *dns.PTR:
				return r.Ptr, r.Hdr.Ttl, true
			case *dns.CNAME:
				next = r.Target
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	return "", 0, true
}
