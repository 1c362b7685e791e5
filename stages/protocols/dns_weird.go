package protocols

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/miekg/dns"
)

// Weird query and answer types and classes of the original chains (dns_meta.py).
var (
	// dnsKnownTypes are the types dns_meta.py names (query_types); any other is UNKNOWN, weird.
	dnsKnownTypes = map[uint16]bool{dns.TypeA: true, dns.TypeNS: true, dns.TypeCNAME: true, dns.TypeSOA: true,
		dns.TypeNULL: true, dns.TypePTR: true, dns.TypeHINFO: true, dns.TypeMX: true, dns.TypeTXT: true,
		dns.TypeAAAA: true, dns.TypeSRV: true, dns.TypeOPT: true}
	// dnsWeirdTypes are the named types dns_meta.py still calls weird.
	dnsWeirdTypes   = map[uint16]bool{dns.TypeNULL: true, dns.TypeHINFO: true, dns.TypeTXT: true}
	dnsWeirdClasses = map[uint16]bool{dns.ClassCHAOS: true, dns.ClassHESIOD: true, dns.ClassNONE: true, dns.ClassANY: true}
)

// dnsWeirdType reports whether t is weird as the original's rule has it: NULL, HINFO, TXT, or a
// type outside its own list (A, NS, CNAME, SOA, NULL, PTR, HINFO, MX, TXT, AAAA, SRV, OPT), so
// ANY, AXFR, IXFR, CAA, DNSSEC's and SVCB's types too.
func dnsWeirdType(t uint16) bool { return dnsWeirdTypes[t] || !dnsKnownTypes[t] }

// judge applies the weird-DNS rules of the original chains, plus NXDOMAIN bursts.
func (t *DNSTracker) judge(p *stages.Packet, info *stages.DNSInfo) {
	w := info.Weird // match's unsolicited_answer, if it found one
	if info.Z {
		w = append(w, stages.DNSWeird{Rule: "z", Detail: "1"})
	}
	if info.TC {
		w = append(w, stages.DNSWeird{Rule: "truncated", Detail: "1"})
	}
	for _, q := range info.Questions {
		if dnsWeirdType(q.Type) {
			w = appendWeird(w, "query_type", DNSTypeName(q.Type))
		}
		if dnsWeirdClasses[q.Class] {
			w = appendWeird(w, "query_class", DNSClassName(q.Class))
		}
	}
	for _, sec := range [...][]stages.DNSRecord{info.Answers, info.Authority, info.Additional} {
		for _, r := range sec {
			if r.Type == dns.TypeOPT {
				continue // EDNS0 pseudo-record: its class field is a UDP size
			}
			if dnsWeirdType(r.Type) {
				w = appendWeird(w, "answer_type", DNSTypeName(r.Type))
			}
			if dnsWeirdClasses[r.Class] {
				w = appendWeird(w, "answer_class", DNSClassName(r.Class))
			}
		}
	}
	for _, q := range info.Questions {
		sub := Subdomain(q.Name)
		if len(sub) > 35 {
			if e := Entropy(sub); e > 3.5 {
				w = appendWeird(w, "subdomain", "len="+strconv.Itoa(len(sub))+
					" entropy="+strconv.FormatFloat(e, 'f', 2, 64)+" sub="+sub)
			}
		}
	}
	if info.Response && info.Rcode == dns.RcodeNameError {
		if n, d, ok := t.nxBurst(p.Dst, p.Time); ok {
			w = append(w, stages.DNSWeird{Rule: "nxdomain_burst",
				Detail: "count=" + strconv.Itoa(n) + " in " + d.Round(time.Millisecond).String()})
		}
	}
	if len(w) > 0 {
		t.stats.Weird++
	}
	for _, x := range w {
		t.stats.WeirdRules[WeirdRuleIndex(x.Rule)]++
	}
	info.Weird = w
}

// WeirdRules names the rules of weird DNS messages, the index of DNSStats.WeirdRules; the last
// counts any other.
var WeirdRules = [...]string{"z", "truncated", "query_type", "query_class", "answer_type", "answer_class",
	"subdomain", "nxdomain_burst", "unsolicited_answer", "other"}

// WeirdRuleIndex returns the index of rule in WeirdRules (the last for one not listed).
func WeirdRuleIndex(rule string) int {
	for i, r := range WeirdRules[:len(WeirdRules)-1] {
		if r == rule {
			return i
		}
	}
	return len(WeirdRules) - 1
}

func appendWeird(w []stages.DNSWeird, rule, detail string) []stages.DNSWeird {
	for _, x := range w {
		if x.Rule == rule && x.Detail == detail {
			return w
		}
	}
	return append(w, stages.DNSWeird{Rule: rule, Detail: detail})
}

// nxBurst counts an NXDOMAIN answer to client and reports a burst once NXBurst of them arrived
// within NXWindow (every further one in the window is reported too). A full table forgets the
// client it heard of least recently.
func (t *DNSTracker) nxBurst(client netip.Addr, now time.Time) (int, time.Duration, bool) {
	w, ok := t.nx.Peek(client)
	if !ok || now.Sub(w.start) > t.cfg.NXWindow || now.Before(w.start) {
		w = nxWindow{start: now}
	}
	w.count++
	if t.nx.Add(client, w) {
		t.stats.ClientsEvicted++
	}
	t.stats.ClientsPeak = max(t.stats.ClientsPeak, t.nx.Len())
	return w.count, now.Sub(w.start), w.count >= t.cfg.NXBurst
}

// Subdomain returns name without its last two labels ("a.b.example.com" -> "a.b"), as the
// original chains did before measuring length and entropy.
func Subdomain(name string) string {
	name = strings.TrimSuffix(name, ".")
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return ""
	}
	j := strings.LastIndexByte(name[:i], '.')
	if j < 0 {
		return ""
	}
	return name[:j]
}

// Entropy returns the Shannon entropy of s in bits per byte.
func Entropy(s string) float64 {
	if len(s) == 0 {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	var e float64
	for _, c := range counts {
		if c > 0 {
			f := float64(c) / n
			e -= f * math.Log2(f)
		}
	}
	return e
}
