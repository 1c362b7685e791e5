package zeeklog

import (
	"strconv"
	"strings"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/miekg/dns"
)

// pendingDNS is a query waiting for its response.
type pendingDNS struct {
	ts    time.Time
	id    ids
	query *stages.DNSInfo
}

// maxPendingDNS bounds the queries of one connection waiting for their responses: beyond it
// the oldest is written as unanswered.
const maxPendingDNS = 32

// dns logs a DNS message: dns.log has Zeek's one line per query and its response, at the
// query's time (with the rtt) when the query was seen, else at the response's. A query waits
// on its connection for the response with its ID; one never answered is written, without
// rcode, when its connection ends. Its weird reasons go to weird.log at once.
func (s *Sink) dns(p *stages.Packet, id *ids, c *conn, d *stages.DNSInfo) {
	s.weird(p, id, d)
	if !d.Response {
		if c == nil {
			s.emitDNS(p.Time, id, d)
			return
		}
		if len(c.dns) == maxPendingDNS {
			s.emitDNS(c.dns[0].ts, &c.dns[0].id, c.dns[0].query)
			c.dns = c.dns[1:]
		}
		c.dns = append(c.dns, pendingDNS{ts: p.Time, id: *id, query: d})
		return
	}
	if c != nil {
		for i := range c.dns {
			if c.dns[i].query.ID == d.ID {
				c.dns = append(c.dns[:i], c.dns[i+1:]...)
				break
			}
		}
	}
	ts := p.Time
	if d.Matched {
		ts = ts.Add(-d.Latency)
	}
	s.emitDNS(ts, id, d)
}

// emitDNS writes dns.log's line of a response, or of a query never answered (d a query: no
// rcode, no answers).
func (s *Sink) emitDNS(ts time.Time, id *ids, d *stages.DNSInfo) {
	var l line
	l.begin(s.buf[:0])
	l.time("ts", ts)
	l.ids(id)
	l.str("proto", map[bool]string{true: "tcp", false: "udp"}[d.TCP])
	l.count("trans_id", uint64(d.ID))
	if d.Matched {
		l.interval("rtt", d.Latency)
	}
	if len(d.Questions) > 0 {
		q := d.Questions[0]
		l.str("query", zeekName(q.Name))
		l.count("qclass", uint64(q.Class))
		l.str("qclass_name", className(q.Class))
		l.count("qtype", uint64(q.Type))
		l.str("qtype_name", typeName(q.Type))
	}
	if d.Response {
		l.count("rcode", uint64(d.Rcode))
		l.str("rcode_name", rcodeName(d.Rcode))
	}
	l.boolean("AA", d.AA)
	l.boolean("TC", d.TC)
	l.boolean("RD", d.RD)
	l.boolean("RA", d.RA)
	z := uint64(0)
	if d.Z {
		z = 1
	}
	l.count("Z", z)
	if d.Response && len(d.Answers) > 0 {
		answers := make([]string, len(d.Answers))
		ttls := make([]time.Duration, len(d.Answers))
		for i, a := range d.Answers {
			answers[i] = zeekName(strings.TrimSuffix(a.Data, "."))
			if a.Addr.IsValid() {
				answers[i] = a.Addr.String()
			}
			ttls[i] = time.Duration(a.TTL) * time.Second
		}
		l.strs("answers", answers)
		l.intervals("TTLs", ttls)
	}
	s.buf = l.end()
	s.emit(kDNS, ts, s.buf)
}

// weird writes weird.log's lines of a weird DNS message: one per rule that fired, named
// dns_RULE, what fired it in addl.
func (s *Sink) weird(p *stages.Packet, id *ids, d *stages.DNSInfo) {
	for _, w := range d.Weird {
		var l line
		l.begin(s.buf[:0])
		l.time("ts", p.Time)
		l.ids(id)
		l.str("name", "dns_"+w.Rule)
		l.strOpt("addl", w.Detail)
		l.boolean("notice", false)
		l.str("peer", "chains-sensor")
		l.str("source", "DNS")
		s.buf = l.end()
		s.emit(kWeird, p.Time, s.buf)
	}
}

// zeekName turns a name as the DNS decoder holds it (presentation format: odd bytes as \DDD,
// dots and backslashes inside labels as \. and \\) into the bytes of the wire, as Zeek logs
// them: appendString then writes a control byte or one that is not UTF-8 as \xNN.
func zeekName(name string) string {
	if !strings.Contains(name, "\\") {
		return name
	}
	b := make([]byte, 0, len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '\\' || i+1 == len(name) {
			b = append(b, c)
			continue
		}
		if d := name[i+1:]; len(d) >= 3 && isDigit(d[0]) && isDigit(d[1]) && isDigit(d[2]) {
			if v := int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0'); v <= 0xff {
				b = append(b, byte(v))
				i += 3
				continue
			}
		}
		b = append(b, name[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// className is Zeek's DNS class name (DNS::classes).
func className(c uint16) string {
	switch c {
	case 1:
		return "C_INTERNET"
	case 2:
		return "C_CSNET"
	case 3:
		return "C_CHAOS"
	case 4:
		return "C_HESIOD"
	case 254:
		return "C_NONE"
	case 255:
		return "C_ANY"
	}
	return "unknown-" + strconv.Itoa(int(c))
}

// typeName is Zeek's DNS query type name (DNS::query_types), which are the RFCs' mnemonics
// as miekg/dns spells them; "query-N" when unknown, as Zeek writes them.
func typeName(t uint16) string {
	if n, ok := dns.TypeToString[t]; ok && t != dns.TypeNone && t != dns.TypeReserved {
		return n
	}
	return "query-" + strconv.Itoa(int(t))
}

// rcodeName is Zeek's DNS rcode name (DNS::base_errors): NOERROR, NXDOMAIN, ...
func rcodeName(r int) string {
	if n, ok := dns.RcodeToString[r]; ok {
		return n
	}
	return "unknown-" + strconv.Itoa(r)
}

// pendingHTTP is a request waiting for its response.
type pendingHTTP struct {
	ts    time.Time
	id    ids
	depth uint64
	req   *stages.HTTPInfo
}

// http pairs requests and responses in order, as Zeek's http.log does (a line per pair, at
// the request's time): a request waits for the next response of its connection; a response
// with no request waiting is logged alone.
func (s *Sink) http(p *stages.Packet, id *ids, c *conn, h *stages.HTTPInfo) {
	if c == nil {
		// Outside the flow table: no pairing.
		if h.Request {
			s.emitHTTP(&pendingHTTP{ts: p.Time, id: *id, depth: 1, req: h}, nil)
		} else {
			s.emitHTTP(&pendingHTTP{ts: p.Time, id: *id, depth: 1}, h)
		}
		return
	}
	c.services |= svcHTTP
	if h.Request {
		c.depth++
		if len(c.http) == maxPendingHTTP {
			s.emitHTTP(&c.http[0], nil)
			c.http = c.http[1:]
		}
		c.http = append(c.http, pendingHTTP{ts: p.Time, id: *id, depth: c.depth, req: h})
		return
	}
	if len(c.http) == 0 {
		c.depth++
		s.emitHTTP(&pendingHTTP{ts: p.Time, id: *id, depth: c.depth}, h)
		return
	}
	s.emitHTTP(&c.http[0], h)
	c.http = c.http[1:]
}

// emitHTTP writes http.log's line of a request (nil: none seen) and its response (nil: none).
func (s *Sink) emitHTTP(r *pendingHTTP, resp *stages.HTTPInfo) {
	var l line
	l.begin(s.buf[:0])
	l.time("ts", r.ts)
	l.ids(&r.id)
	l.count("trans_depth", r.depth)
	if q := r.req; q != nil {
		l.strOpt("method", q.Method)
		l.strOpt("host", q.Host)
		l.strOpt("uri", q.URI)
		l.strOpt("referrer", q.Referer)
		l.strOpt("version", strings.TrimPrefix(q.Version, "HTTP/"))
		l.strOpt("user_agent", q.UserAgent)
	} else if resp != nil {
		l.strOpt("version", strings.TrimPrefix(resp.Version, "HTTP/"))
	}
	if resp != nil {
		l.count("status_code", uint64(resp.Status))
		l.strOpt("status_msg", resp.Reason)
	}
	s.buf = l.end()
	s.emit(kHTTP, r.ts, s.buf)
}

// pendingTLS is a ClientHello waiting for the ServerHello.
type pendingTLS struct {
	ts     time.Time
	id     ids
	client *stages.TLSInfo
}

// ssl pairs a connection's ClientHello with its ServerHello (ssl.log has a line per
// connection): written at the ServerHello, or when the connection ends without one.
func (s *Sink) ssl(p *stages.Packet, id *ids, c *conn, h *stages.TLSInfo) {
	if c == nil {
		if h.Hello == stages.TLSClientHello {
			s.emitSSL(&pendingTLS{ts: p.Time, id: *id, client: h}, nil)
		} else {
			s.emitSSL(&pendingTLS{ts: p.Time, id: *id}, h)
		}
		return
	}
	if h.QUIC != 0 {
		c.services |= svcQUIC
	}
	c.services |= svcSSL
	if h.Hello == stages.TLSClientHello {
		if c.tls != nil {
			s.emitSSL(c.tls, nil) // a second ClientHello: the first got no answer
		}
		c.tls = &pendingTLS{ts: p.Time, id: *id, client: h}
		return
	}
	if h.HelloRetry {
		return // the client says hello again; the connection's line waits for the real answer
	}
	t := c.tls
	if t == nil {
		t = &pendingTLS{ts: p.Time, id: *id}
	}
	c.tls = nil
	s.emitSSL(t, h)
}

// emitSSL writes ssl.log's line of a ClientHello (nil in t: none seen) and its ServerHello
// (nil: none): version and next_protocol are the server's choice, server_name and ja4 the
// client's.
func (s *Sink) emitSSL(t *pendingTLS, server *stages.TLSInfo) {
	var l line
	l.begin(s.buf[:0])
	l.time("ts", t.ts)
	l.ids(&t.id)
	if server != nil {
		l.strOpt("version", versionName(server.Version))
	}
	if t.client != nil {
		l.strOpt("server_name", t.client.SNI)
	}
	if server != nil && len(server.ALPN) > 0 {
		l.str("next_protocol", server.ALPN[0])
	}
	if t.client != nil {
		l.strOpt("ja4", t.client.JA4)
	}
	s.buf = l.end()
	s.emit(kSSL, t.ts, s.buf)
}

// versionName is Zeek's SSL::version_strings name of a protocol version.
func versionName(v uint16) string {
	switch v {
	case 0x0300:
		return "SSLv3"
	case 0x0301:
		return "TLSv10"
	case 0x0302:
		return "TLSv11"
	case 0x0303:
		return "TLSv12"
	case 0x0304:
		return "TLSv13"
	case 0xfeff:
		return "DTLSv10"
	case 0xfefd:
		return "DTLSv12"
	}
	if v == 0 {
		return ""
	}
	return "unknown-" + strconv.Itoa(int(v))
}

// flushConn writes what waits on a connection that ended.
func (s *Sink) flushConn(c *conn) {
	for i := range c.dns {
		s.emitDNS(c.dns[i].ts, &c.dns[i].id, c.dns[i].query)
	}
	c.dns = nil
	for i := range c.http {
		s.emitHTTP(&c.http[i], nil)
	}
	c.http = nil
	if c.tls != nil {
		s.emitSSL(c.tls, nil)
		c.tls = nil
	}
}
