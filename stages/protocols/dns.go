// Package protocols decodes the application layer, one file per protocol: dns.go, http.go,
// tls.go (with ja4.go, its fingerprints). Each protocol is a handler of the flow table
// (flows.Handler): the table hands it payloads on their own (UDP, lone TCP segments) and the
// reassembled start of the TCP directions it accepts; it sets Packet.DNS, HTTP or TLS. The
// parsers themselves are stateless functions of bytes.
//
// A new protocol is one more file here: its parser, its Handler, and a line in package views'
// AppStage that hands it to the flow table.
package protocols

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/miekg/dns"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
)

// DNS ports: DNS itself, multicast DNS and LLMNR.
const (
	PortDNS   = 53
	PortMDNS  = 5353
	PortLLMNR = 5355
)

// Limits on what one DNS message may put into a stages.DNSInfo.
const (
	dnsMaxQuestions = 32 // questions kept per message
	dnsMaxRecords   = 64 // records kept per section
)

// OverTCP reports whether p is a TCP segment to or from a port the DNS decoder reads: the
// packets whose flows a table must track for DNS over TCP to be reassembled.
func OverTCP(p *stages.Packet) bool {
	return p.Proto == stages.ProtoTCP && (IsDNSPort(p.SrcPort) || IsDNSPort(p.DstPort))
}

// IsDNSPort reports whether port is one the DNS stage decodes.
func IsDNSPort(port uint16) bool {
	return port == PortDNS || port == PortMDNS || port == PortLLMNR
}

// DNSTypeName returns the mnemonic of a DNS type (A, AAAA, TXT, ...) or TYPEnnn.
func DNSTypeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// DNSClassName returns the mnemonic of a DNS class (IN, CH, HS, NONE, ANY) or CLASSnnn.
func DNSClassName(c uint16) string {
	if s, ok := dns.ClassToString[c]; ok {
		return s
	}
	return "CLASS" + strconv.Itoa(int(c))
}

// DNSRcodeName returns the mnemonic of a message's response code (NOERROR, NXDOMAIN, ...): the
// header's four bits, with an OPT record's extended RCODE above them (RFC 6891 6.1.3). 16 is
// BADVERS there: BADSIG, its other name in the registry, is a TSIG error and never a message's
// RCODE (RFC 8945 5.3.2).
func DNSRcodeName(rc int) string {
	if rc == dns.RcodeBadVers {
		return "BADVERS"
	}
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}

// DNSConfig configures the DNS stage. The zero value is usable: defaults apply.
type DNSConfig struct {
	// MatchTimeout is how long a query waits for its response (default 30s).
	MatchTimeout time.Duration
	// MaxPending bounds the queries waiting for a response (default 16384).
	MaxPending int
	// NXBurst is how many NXDOMAIN answers to one client within NXWindow make a burst
	// (defaults 10 and 10s).
	NXBurst  int
	NXWindow time.Duration
	// MaxClients bounds the clients tracked for NXDOMAIN bursts (default 4096).
	MaxClients int
}

// Defaults of DNSConfig's query matching.
const (
	DefaultMatchTimeout = 30 * time.Second
	DefaultMaxPending   = 16384
	DefaultMaxClients   = 4096 // clients tracked for NXDOMAIN bursts
)

func (c *DNSConfig) defaults() {
	if c.MatchTimeout <= 0 {
		c.MatchTimeout = DefaultMatchTimeout
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.NXBurst <= 0 {
		c.NXBurst = 10
	}
	if c.NXWindow <= 0 {
		c.NXWindow = 10 * time.Second
	}
	if c.MaxClients <= 0 {
		c.MaxClients = DefaultMaxClients
	}
}

// DNSStats counts what the DNS stage did. Its two tables (queries waiting for their response,
// clients tracked for NXDOMAIN bursts) are bounded; what each holds now is beside what it
// evicted and what expired from it.
type DNSStats struct {
	Messages       uint64 // messages decoded (possibly partly)
	Errors         uint64 // messages whose decoding stopped early
	Matched        uint64 // responses matched to their query
	Unsolicited    uint64 // responses that match no query seen (weird: unsolicited_answer)
	Weird          uint64 // messages with at least one weird reason
	Pending        int    // queries waiting for their response now
	PendingExpired uint64 // queries whose response did not come within MatchTimeout
	PendingEvicted uint64 // queries forgotten, unanswered, to make room in the full table
	PendingPeak    int    // the most queries waiting at once
	MaxPending     int    // the pending table's bound (DNSConfig.MaxPending, or its default)
	Clients        int    // clients tracked for NXDOMAIN bursts now
	ClientsPeak    int    // the most clients tracked at once
	MaxClients     int    // the clients table's bound (DNSConfig.MaxClients, or its default)
	ClientsEvicted uint64 // clients forgotten within their window to make room
	// WeirdRules counts the weird reasons by rule, indexed as WeirdRules names them.
	WeirdRules [len(WeirdRules)]uint64
}

// dnsKey identifies a query awaiting its response: client, server, transport and id. A query
// to a multicast group (LLMNR, mDNS) has the zero server: any responder may answer it.
type dnsKey struct {
	client, server         [16]byte // plain bytes hash faster than netip.Addr
	clientPort, serverPort uint16
	id                     uint16
	tcp                    bool
}

func makeDNSKey(client netip.Addr, cport uint16, server netip.Addr, sport uint16, tcp bool, id uint16) dnsKey {
	return dnsKey{client: client.As16(), server: server.As16(), clientPort: cport, serverPort: sport, id: id, tcp: tcp}
}

// dnsPending is a query waiting for its response: when it was seen, its packet number and its
// first question, which the response must repeat.
type dnsPending struct {
	t     time.Time
	num   uint64
	q     stages.DNSQuestion
	hasQ  bool
	multi bool // sent to a multicast group
}

type nxWindow struct {
	start time.Time
	count int
}

// DNSTracker decodes DNS messages, matches responses to queries and judges weirdness. It is the
// state behind the DNS stage; one tracker serves one chain (it is not safe for concurrent use).
//
// Its tables cost constant time per packet however full they are: each is a map with a list
// in the order entries were last written (hashicorp/golang-lru's simplelru), which, packet
// times only growing, is the order in which they expire; each packet first drops the expired
// entries at the old end, and a full table evicts its oldest entry for a new one.
type DNSTracker struct {
	cfg     DNSConfig
	pending *simplelru.LRU[dnsKey, dnsPending]
	nx      *simplelru.LRU[netip.Addr, nxWindow]
	stats   DNSStats
	msg     dns.Msg
}

// NewDNSTracker returns a tracker with cfg (defaults filled in).
func NewDNSTracker(cfg DNSConfig) *DNSTracker {
	cfg.defaults()
	t := &DNSTracker{cfg: cfg}
	t.pending, _ = simplelru.NewLRU[dnsKey, dnsPending](cfg.MaxPending, nil) // sizes > 0: never fails
	t.nx, _ = simplelru.NewLRU[netip.Addr, nxWindow](cfg.MaxClients, nil)
	return t
}

// Stats returns the counters so far.
func (t *DNSTracker) Stats() DNSStats {
	s := t.stats
	s.Pending, s.Clients = t.pending.Len(), t.nx.Len()
	s.MaxPending, s.MaxClients = t.cfg.MaxPending, t.cfg.MaxClients
	return s
}

// Packet decodes the DNS message p carries on its own, if it carries one, into p.DNS: a UDP
// datagram, or a TCP segment that starts with a message's two-byte length.
func (t *DNSTracker) Packet(p *stages.Packet) {
	if len(p.Payload) == 0 || (p.Proto != stages.ProtoUDP && p.Proto != stages.ProtoTCP) ||
		!(IsDNSPort(p.SrcPort) || IsDNSPort(p.DstPort)) || p.IPFlags&stages.IPFlagFragment != 0 && p.FragOff != 0 {
		return
	}
	msg := p.Payload
	tcp := p.Proto == stages.ProtoTCP
	if tcp {
		// DNS over TCP: a two-byte length, then the message. Without reassembly, a message
		// that starts at the start of a segment is decoded from that segment.
		if len(msg) < 2+12 {
			return
		}
		n := int(binary.BigEndian.Uint16(msg))
		msg = msg[2:]
		if n < 12 {
			return
		}
		if n < len(msg) {
			msg = msg[:n]
		}
	} else if len(msg) < 12 {
		return
	}
	t.finish(p, msg, tcp)
}

// Accept reads a TCP direction on a DNS port that starts with a plausible message length; a
// segment in the middle of a direction must also start with a plausible header (one question, a
// known opcode), for a length read from the middle of a message is no message.
func (t *DNSTracker) Accept(f *stages.Flow, _ int, head []byte, start bool) bool {
	if !(IsDNSPort(f.SrcPort) || IsDNSPort(f.DstPort)) || len(head) < 2 || int(head[0])<<8|int(head[1]) < 12 {
		return false
	}
	return start || (len(head) >= 2+12 && head[2+4] == 0 && head[2+5] == 1 && head[2+2]>>3&0xf <= 6)
}

// Stream decodes the direction's messages, each once it is whole, on the segment that
// completes it. A message cut short (a hole in the capture, or longer than the window) is
// decoded as far as it goes and the rest of it skipped, so the next message is read too.
func (t *DNSTracker) Stream(p *stages.Packet, s *flows.Stream) bool {
	for {
		b := s.Bytes()
		if len(b) < 2 {
			return !s.Stalled()
		}
		n := int(binary.BigEndian.Uint16(b))
		if n < 12 {
			return false
		}
		if len(b) < 2+n {
			if !s.Stalled() {
				return true
			}
			if len(b) >= 2+12 {
				t.finish(p, b[2:], true)
			}
		} else {
			t.finish(p, b[2:2+n], true)
		}
		s.Consume(2 + n)
	}
}

// finish decodes msg and adds it to the messages p completes.
func (t *DNSTracker) finish(p *stages.Packet, msg []byte, tcp bool) {
	info := t.decode(msg)
	info.TCP = tcp
	t.match(p, info)
	t.judge(p, info)
	at := &p.DNS
	for *at != nil {
		at = &(*at).Next
	}
	*at = info
}

// dnsInfo is a DNSInfo allocated with room for the usual one or two questions.
type dnsInfo struct {
	stages.DNSInfo
	qbuf [2]stages.DNSQuestion
}

// decode unpacks one message with miekg/dns. A message that fails part-way keeps what was read.
func (t *DNSTracker) decode(msg []byte) *stages.DNSInfo {
	t.stats.Messages++
	m := &t.msg
	*m = dns.Msg{}
	err := m.Unpack(msg)
	a := new(dnsInfo)
	info := &a.DNSInfo
	*info = stages.DNSInfo{
		ID:       binary.BigEndian.Uint16(msg),
		Flags:    binary.BigEndian.Uint16(msg[2:]),
		Response: m.Response,
		Opcode:   m.Opcode,
		Rcode:    m.Rcode,
		AA:       m.Authoritative,
		TC:       m.Truncated,
		RD:       m.RecursionDesired,
		RA:       m.RecursionAvailable,
		Z:        m.Zero,
		AD:       m.AuthenticatedData,
		CD:       m.CheckingDisabled,
	}
	if err != nil {
		t.stats.Errors++
		info.Err = err.Error()
		// The header is read by hand when the library refused it (too short a message).
		f := info.Flags
		info.Response = f&0x8000 != 0
		info.Opcode = int(f>>11) & 0xf
		info.AA, info.TC, info.RD, info.RA = f&0x0400 != 0, f&0x0200 != 0, f&0x0100 != 0, f&0x0080 != 0
		info.Z, info.AD, info.CD = f&0x0040 != 0, f&0x0020 != 0, f&0x0010 != 0
		if m.Rcode == 0 {
			info.Rcode = int(f & 0xf)
		}
	}
	qs := m.Question
	if len(qs) > dnsMaxQuestions {
		qs = qs[:dnsMaxQuestions]
	}
	if len(qs) > 0 {
		if len(qs) <= len(a.qbuf) {
			info.Questions = a.qbuf[:len(qs)]
		} else {
			info.Questions = make([]stages.DNSQuestion, len(qs))
		}
		for i, q := range qs {
			info.Questions[i] = stages.DNSQuestion{Name: DNSName(q.Name), Type: q.Qtype, Class: q.Qclass &^ 0x8000}
		}
	}
	// One backing array for the three sections.
	na, nn, ne := min(len(m.Answer), dnsMaxRecords), min(len(m.Ns), dnsMaxRecords), min(len(m.Extra), dnsMaxRecords)
	if na+nn+ne > 0 {
		all := make([]stages.DNSRecord, 0, na+nn+ne)
		all = appendRecords(all, m.Answer[:na])
		info.Answers = all[:len(all):len(all)]
		all = appendRecords(all, m.Ns[:nn])
		info.Authority = all[len(info.Answers):len(all):len(all)]
		all = appendRecords(all, m.Extra[:ne])
		info.Additional = all[len(info.Answers)+len(info.Authority):]
		for _, sec := range []*[]stages.DNSRecord{&info.Answers, &info.Authority, &info.Additional} {
			if len(*sec) == 0 {
				*sec = nil
			}
		}
	}
	m.Question, m.Answer, m.Ns, m.Extra = nil, nil, nil, nil
	return info
}

func appendRecords(out []stages.DNSRecord, rrs []dns.RR) []stages.DNSRecord {
	for _, rr := range rrs {
		if rr == nil {
			continue
		}
		h := rr.Header()
		r := stages.DNSRecord{Name: DNSName(h.Name), Type: h.Rrtype, Class: h.Class &^ 0x8000, TTL: h.Ttl}
		switch x := rr.(type) {
		case *dns.A:
			r.Addr, _ = netip.AddrFromSlice(x.A)
			r.Addr = r.Addr.Unmap()
		case *dns.AAAA:
			r.Addr, _ = netip.AddrFromSlice(x.AAAA)
		}
		if r.Addr.IsValid() {
			r.Data = r.Addr.String()
		} else {
			r.Data = rrData(rr)
		}
		out = append(out, r)
	}
	return out
}

// rrData returns the data part of rr in presentation format.
func rrData(rr dns.RR) string {
	switch r := rr.(type) {
	case *dns.A:
		if a, ok := netip.AddrFromSlice(r.A); ok {
			return a.Unmap().String()
		}
	case *dns.AAAA:
		if a, ok := netip.AddrFromSlice(r.AAAA); ok {
			return a.String()
		}
	case *dns.CNAME:
		return DNSName(r.Target)
	case *dns.PTR:
		return DNSName(r.Ptr)
	case *dns.NS:
		return DNSName(r.Ns)
	case *dns.MX:
		return strconv.Itoa(int(r.Preference)) + " " + DNSName(r.Mx)
	case *dns.SRV:
		return strconv.Itoa(int(r.Priority)) + " " + strconv.Itoa(int(r.Weight)) + " " +
			strconv.Itoa(int(r.Port)) + " " + DNSName(r.Target)
	case *dns.SOA:
		return DNSName(r.Ns) + " " + DNSName(r.Mbox) + " " + strconv.FormatUint(uint64(r.Serial), 10) + " " +
			strconv.FormatUint(uint64(r.Refresh), 10) + " " + strconv.FormatUint(uint64(r.Retry), 10) + " " +
			strconv.FormatUint(uint64(r.Expire), 10) + " " + strconv.FormatUint(uint64(r.Minttl), 10)
	case *dns.OPT:
		return "" // EDNS0: its options are not shown
	}
	// The presentation format is "name\tTTL\tCLASS\tTYPE\tdata": keep what follows the fourth tab.
	s := rr.String()
	for i := 0; i < 4; i++ {
		j := strings.IndexByte(s, '\t')
		if j < 0 {
			return s
		}
		s = s[j+1:]
	}
	return s
}

// DNSName turns a name in miekg/dns presentation format into the form stages.DNSInfo holds names in:
// no trailing dot, and the \DDD escapes of bytes >= 0x80 turned back into bytes when the name
// is then valid UTF-8 (as tshark shows it); control bytes, dots and backslashes inside labels
// stay escaped.
func DNSName(name string) string {
	if len(name) > 1 && name[len(name)-1] == '.' && name[len(name)-2] != '\\' {
		name = name[:len(name)-1]
	}
	if !strings.Contains(name, "\\") {
		return name
	}
	b := make([]byte, 0, len(name))
	high := false
	for i := 0; i < len(name); i++ {
		if name[i] == '\\' && i+3 < len(name) && isDigit3(name[i+1:i+4]) {
			v := int(name[i+1]-'0')*100 + int(name[i+2]-'0')*10 + int(name[i+3]-'0')
			if v >= 0x80 && v <= 0xff {
				b = append(b, byte(v))
				i += 3
				high = true
				continue
			}
		}
		b = append(b, name[i])
	}
	if !high || !utf8.Valid(b) {
		return name
	}
	return string(b)
}

func isDigit3(s string) bool {
	return len(s) == 3 && '0' <= s[0] && s[0] <= '9' && '0' <= s[1] && s[1] <= '9' && '0' <= s[2] && s[2] <= '9'
}

// match pairs responses with their queries and sets Matched and Latency. A response matches
// a query seen from its destination to its source (addresses and ports; any source for a
// query to a multicast group), over the same transport, with the same id and the same first
// question, within MatchTimeout; a response that matches none is unsolicited (multicast DNS
// responses over UDP excepted: they are announcements, answering no one in particular).
func (t *DNSTracker) match(p *stages.Packet, info *stages.DNSInfo) {
	now := p.Time
	t.expire(now)
	if !info.Response {
		server := p.Dst
		if server.IsMulticast() {
			server = netip.Addr{}
		}
		q := dnsPending{t: now, num: p.Num, multi: !server.IsValid()}
		if len(info.Questions) > 0 {
			q.q, q.hasQ = info.Questions[0], true
		}
		if t.pending.Add(makeDNSKey(p.Src, p.SrcPort, server, p.DstPort, info.TCP, info.ID), q) {
			t.stats.PendingEvicted++
		}
		t.stats.PendingPeak = max(t.stats.PendingPeak, t.pending.Len())
		return
	}
	k := makeDNSKey(p.Dst, p.DstPort, p.Src, p.SrcPort, info.TCP, info.ID)
	q, ok := t.pending.Peek(k)
	if !ok {
		k.server = [16]byte{}
		q, ok = t.pending.Peek(k)
	}
	if ok && now.Sub(q.t) <= t.cfg.MatchTimeout && sameQuestion(q, info) {
		t.pending.Remove(k)
		info.Matched = true
		info.Latency = now.Sub(q.t)
		info.QueryNum = q.num
		t.stats.Matched++
		return
	}
	if info.TCP || (p.SrcPort != PortMDNS && p.DstPort != PortMDNS && !p.Dst.IsMulticast()) {
		t.stats.Unsolicited++
		info.Weird = append(info.Weird, stages.DNSWeird{Rule: "unsolicited_answer", Detail: unsolicitedWhy(ok, q, info)})
	}
}

// sameQuestion reports whether a response repeats the first question of its query (names
// compared without regard to ASCII case: a resolver may echo 0x20-randomised case).
func sameQuestion(q dnsPending, info *stages.DNSInfo) bool {
	if !q.hasQ {
		return len(info.Questions) == 0
	}
	if len(info.Questions) == 0 {
		return false
	}
	r := info.Questions[0]
	return r.Type == q.q.Type && r.Class == q.q.Class && strings.EqualFold(r.Name, q.q.Name)
}

// unsolicitedWhy says why a response matches no query: none with its id from its
// destination, or one whose question is another.
func unsolicitedWhy(found bool, q dnsPending, info *stages.DNSInfo) string {
	switch {
	case !found:
		return "no query"
	case q.hasQ && !sameQuestion(q, info):
		return "question differs: asked " + q.q.Name + " " + DNSTypeName(q.q.Type)
	}
	return "after the query's timeout"
}

// expire drops the queries that waited longer than MatchTimeout and the clients whose
// NXDOMAIN window passed (or that lie that far ahead: the packets' clock went back): the oldest
// entries of each table, so in constant time for each.
func (t *DNSTracker) expire(now time.Time) {
	for {
		_, q, ok := t.pending.GetOldest()
		if !ok || (now.Sub(q.t) <= t.cfg.MatchTimeout && q.t.Sub(now) <= t.cfg.MatchTimeout) {
			break
		}
		t.pending.RemoveOldest()
		t.stats.PendingExpired++
	}
	for {
		_, w, ok := t.nx.GetOldest()
		if !ok || (now.Sub(w.start) <= t.cfg.NXWindow && w.start.Sub(now) <= t.cfg.NXWindow) {
			break
		}
		t.nx.RemoveOldest()
	}
}
