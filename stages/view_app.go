package stages

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Names of the application views (`--view`).
const (
	ViewURLWatch = "urlwatch"
	ViewWeirdDNS = "weird-dns"
	ViewFlows    = "flows"
)

// LineWriter is where the application views write: each call hands over whole lines. The
// buffered Output of the sinks satisfies it.
type LineWriter interface {
	Write(b []byte) error
}

// AppConfig configures the application stages of a view. The zero value is usable.
type AppConfig struct {
	Flows FlowConfig
	DNS   DNSConfig // DNS.Names, when set, learns names from the wire
}

// AppStages returns the application stage: the flow table (with reassembly) and its handlers,
// DNS, HTTP and TLS; and the flow table and DNS tracker, for their statistics.
func AppStages(cfg AppConfig) (Stage, *FlowTable, *DNSTracker) {
	dt := NewDNSTracker(cfg.DNS)
	cfg.Flows.Handlers = []Handler{dt, HTTPHandler{}, &TLSHandler{}}
	ft := NewFlowTable(cfg.Flows)
	return ft.Stage(), ft, dt
}

// AppViewOptions are the output settings of an application view.
type AppViewOptions struct {
	JSON  bool // -o json: one JSON object per line
	UTC   bool // --utc
	Color bool // --color resolved: the kind of each text line (HTTP, TLS, DNS, FLOW) in colour
}

// appColors are the ANSI colours of the kinds of text lines.
var appColors = map[string]string{"HTTP": "\x1b[32m", "TLS": "\x1b[36m", "DNS": "\x1b[31m", "FLOW": "\x1b[34m"}

// AppSink is the sink of the urlwatch, weird-dns and flows views. Write prints what the view
// wants of a packet; the flows view prints from the flow table's OnEnd instead, and Close
// (after the input ended and the table was flushed) flushes.
type AppSink struct {
	view string
	out  LineWriter
	opt  AppViewOptions
	buf  []byte
	err  error
	ft   *FlowTable
	dt   *DNSTracker
	// OnClose, when set, is called by Close before it returns: the Output's Close, which
	// flushes it and stops a live Output's timer.
	OnClose func() error
}

// NewAppView builds the application view name ("urlwatch", "weird-dns" or "flows"): the stages
// to run after the shared front of the chain, and the sink. cfg's FlowConfig.OnEnd is set by
// the flows view.
func NewAppView(name string, cfg AppConfig, out LineWriter, opt AppViewOptions) (Stage, *AppSink, bool) {
	s := &AppSink{view: name, out: out, opt: opt, buf: make([]byte, 0, 512)}
	switch name {
	case ViewURLWatch, ViewWeirdDNS:
	case ViewFlows:
		cfg.Flows.OnEnd = s.writeFlow
	default:
		return nil, nil, false
	}
	st, ft, dt := AppStages(cfg)
	s.ft, s.dt = ft, dt
	return st, s, true
}

// Stats returns the counters of the view's flow table and DNS stage (for the exit summary:
// flows created, evicted, expired; DNS messages, decoding errors, matched responses).
func (s *AppSink) Stats() (FlowStats, DNSStats) { return s.ft.Stats(), s.dt.Stats() }

// Write prints p's line for the view, if it has one.
func (s *AppSink) Write(p *Packet) error {
	if s.err != nil {
		return s.err
	}
	switch s.view {
	case ViewURLWatch:
		if p.HTTP != nil {
			s.emit(s.httpLine(p), p.Time)
		}
		if p.TLS != nil {
			s.emit(s.tlsLine(p), p.Time)
		}
	case ViewWeirdDNS:
		if p.DNS != nil && len(p.DNS.Weird) > 0 {
			s.emit(s.dnsLine(p), p.Time)
		}
	}
	return s.err
}

// Close closes the output (OnClose). The flows view has printed its open flows by now: the flows
// stage reports them when the input ends.
func (s *AppSink) Close() error {
	if s.OnClose != nil {
		if err := s.OnClose(); err != nil && s.err == nil {
			s.err = err
		}
	}
	return s.err
}

// appLine is one line of an application view: text parts or a JSON object.
type appLine struct {
	text string
	obj  map[string]any
}

func (s *AppSink) emit(l appLine, t time.Time) {
	b := s.buf[:0]
	if s.opt.JSON {
		l.obj["view"] = s.view
		l.obj["ts"] = s.ts(t).Format(time.RFC3339Nano)
		j, err := json.Marshal(l.obj)
		if err != nil {
			s.err = err
			return
		}
		b = append(b, j...)
	} else {
		b = s.ts(t).AppendFormat(b, "2006-01-02 15:04:05")
		b = append(b, " - "...)
		kind, rest, _ := strings.Cut(l.text, " ")
		if c, ok := appColors[kind]; ok && s.opt.Color {
			b = append(b, c...)
			b = append(b, kind...)
			b = append(b, "\x1b[0m "...)
			b = append(b, rest...)
		} else {
			b = append(b, l.text...)
		}
	}
	b = append(b, '\n')
	s.buf = b
	if err := s.out.Write(b); err != nil {
		s.err = err
	}
}

func (s *AppSink) ts(t time.Time) time.Time {
	if s.opt.UTC {
		return t.UTC()
	}
	return t.Local()
}

// endpoint is "addr:port(domain)" for text, the domain omitted when unknown.
func endpoint(a netip.Addr, port uint16, domain string) string {
	var sb strings.Builder
	if a.Is6() && port != 0 {
		sb.WriteString("[" + a.String() + "]")
	} else {
		sb.WriteString(a.String())
	}
	if port != 0 {
		sb.WriteString(":" + strconv.Itoa(int(port)))
	}
	if domain != "" {
		sb.WriteString("(" + SafeText(domain) + ")")
	}
	return sb.String()
}

func endpoints(p *Packet) string {
	return endpoint(p.Src, p.SrcPort, p.SrcDomain) + " --> " + endpoint(p.Dst, p.DstPort, p.DstDomain)
}

func addrObj(p *Packet, o map[string]any) map[string]any {
	o["src"], o["dst"] = p.Src.String(), p.Dst.String()
	o["sport"], o["dport"] = p.SrcPort, p.DstPort
	if p.SrcDomain != "" {
		o["src_domain"] = p.SrcDomain
	}
	if p.DstDomain != "" {
		o["dst_domain"] = p.DstDomain
	}
	if p.Flow != nil {
		o["community_id"] = p.Flow.CommunityID()
	}
	return o
}

// httpLine: "HTTP 10.0.0.1:5000 --> 10.0.0.2:80 GET http://host/uri ua="..." referer=..." or
// "HTTP ... 200 OK". Text from the network is percent-decoded (URI) and escaped.
func (s *AppSink) httpLine(p *Packet) appLine {
	h := p.HTTP
	if s.opt.JSON {
		o := addrObj(p, map[string]any{"type": "http"})
		if h.Request {
			o["method"], o["host"], o["uri"] = h.Method, h.Host, h.URI
			o["user_agent"], o["referer"], o["version"] = h.UserAgent, h.Referer, h.Version
		} else {
			o["status"], o["reason"], o["version"] = h.Status, h.Reason, h.Version
		}
		if h.Partial {
			o["partial"] = true
		}
		return appLine{obj: o}
	}
	var sb strings.Builder
	sb.WriteString("HTTP " + endpoints(p) + " ")
	if h.Request {
		sb.WriteString(SafeText(h.Method) + " ")
		if h.Host != "" && strings.HasPrefix(h.URI, "/") {
			sb.WriteString("http://" + SafeText(h.Host))
		}
		sb.WriteString(h.DisplayURI())
		if h.UserAgent != "" {
			sb.WriteString(` ua="` + SafeText(h.UserAgent) + `"`)
		}
		if h.Referer != "" {
			sb.WriteString(" referer=" + SafeText(PercentDecode(h.Referer)))
		}
	} else {
		sb.WriteString(strconv.Itoa(h.Status) + " " + SafeText(h.Reason))
	}
	if h.Partial {
		sb.WriteString(" (partial)")
	}
	return appLine{text: sb.String()}
}

// tlsLine: "TLS ... ClientHello sni=... alpn=h2,http/1.1 versions=TLS 1.3,TLS 1.2 ja4=..." or
// "TLS ... ServerHello version=TLS 1.3 cipher=0x1301".
func (s *AppSink) tlsLine(p *Packet) appLine {
	h := p.TLS
	var versions []string
	for _, v := range h.Versions {
		if !IsGREASE(v) {
			versions = append(versions, TLSVersionName(v))
		}
	}
	if s.opt.JSON {
		o := addrObj(p, map[string]any{"type": "tls"})
		if h.Hello == TLSClientHello {
			o["hello"], o["sni"], o["alpn"], o["versions"], o["ja4"] = "client", h.SNI, h.ALPN, versions, h.JA4
		} else {
			o["hello"], o["version"], o["cipher"], o["ja4s"] = "server", TLSVersionName(h.Version), "0x"+hex16(h.Cipher), h.JA4
			if len(h.ALPN) > 0 {
				o["alpn"] = h.ALPN[0]
			}
		}
		if h.Partial {
			o["partial"] = true
		}
		return appLine{obj: o}
	}
	var sb strings.Builder
	sb.WriteString("TLS " + endpoints(p))
	if h.Hello == TLSClientHello {
		sb.WriteString(" ClientHello sni=" + SafeText(h.SNI))
		if len(h.ALPN) > 0 {
			sb.WriteString(" alpn=" + SafeText(strings.Join(h.ALPN, ",")))
		}
		if len(versions) > 0 {
			sb.WriteString(" versions=" + strings.Join(versions, ","))
		}
		if h.JA4 != "" {
			sb.WriteString(" ja4=" + h.JA4)
		}
	} else {
		sb.WriteString(" ServerHello version=" + TLSVersionName(h.Version) + " cipher=0x" + hex16(h.Cipher))
		if len(h.ALPN) > 0 {
			sb.WriteString(" alpn=" + SafeText(h.ALPN[0]))
		}
		if h.JA4 != "" {
			sb.WriteString(" ja4s=" + h.JA4)
		}
	}
	if h.Partial {
		sb.WriteString(" (partial)")
	}
	return appLine{text: sb.String()}
}

// dnsLine: "DNS ... query id=0x1a2b weird=[query_type=TXT subdomain=...] q=[name TXT IN]
// an=[name 300 A 1.2.3.4]".
func (s *AppSink) dnsLine(p *Packet) appLine {
	d := p.DNS
	if s.opt.JSON {
		o := addrObj(p, map[string]any{"type": "dns"})
		o["id"], o["response"], o["opcode"], o["rcode"] = d.ID, d.Response, d.Opcode, DNSRcodeName(d.Rcode)
		var weird []map[string]string
		for _, w := range d.Weird {
			weird = append(weird, map[string]string{"rule": w.Rule, "detail": w.Detail})
		}
		o["weird"] = weird
		var qs []map[string]any
		for _, q := range d.Questions {
			qs = append(qs, map[string]any{"name": q.Name, "type": DNSTypeName(q.Type), "class": DNSClassName(q.Class)})
		}
		o["questions"] = qs
		for name, sec := range map[string][]DNSRecord{"answers": d.Answers, "authority": d.Authority, "additional": d.Additional} {
			var rs []map[string]any
			for _, r := range sec {
				rs = append(rs, map[string]any{"name": r.Name, "type": DNSTypeName(r.Type), "class": DNSClassName(r.Class), "ttl": r.TTL, "data": r.Data})
			}
			if rs != nil {
				o[name] = rs
			}
		}
		if d.Matched {
			o["latency_ms"] = float64(d.Latency.Microseconds()) / 1000
		}
		if d.Err != "" {
			o["error"] = d.Err
		}
		return appLine{obj: o}
	}
	var sb strings.Builder
	sb.WriteString("DNS " + endpoints(p))
	if d.Response {
		sb.WriteString(" response " + DNSRcodeName(d.Rcode))
	} else {
		sb.WriteString(" query")
	}
	sb.WriteString(" id=0x" + hex16(d.ID) + " weird=[")
	for i, w := range d.Weird {
		if i > 0 {
			sb.WriteString(" ")
		}
		sb.WriteString(w.Rule + "=" + SafeText(w.Detail))
	}
	sb.WriteString("] q=[")
	for i, q := range d.Questions {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(SafeText(q.Name) + " " + DNSTypeName(q.Type) + " " + DNSClassName(q.Class))
	}
	sb.WriteString("]")
	for _, sec := range []struct {
		name string
		rs   []DNSRecord
	}{{"an", d.Answers}, {"ns", d.Authority}, {"ar", d.Additional}} {
		first := true
		for _, r := range sec.rs {
			if r.Type == 41 { // OPT: EDNS0 pseudo-record
				continue
			}
			if first {
				sb.WriteString(" " + sec.name + "=[")
				first = false
			} else {
				sb.WriteString("; ")
			}
			sb.WriteString(SafeText(r.Name) + " " + strconv.FormatUint(uint64(r.TTL), 10) + " " +
				DNSTypeName(r.Type) + " " + SafeText(r.Data))
		}
		if !first {
			sb.WriteString("]")
		}
	}
	return appLine{text: sb.String()}
}

// writeFlow prints a finished flow: "FLOW TCP 10.0.0.1:5000 --> 10.0.0.2:80 end=fin
// state=closed duration=1.2s packets=10/8 bytes=1200/5400 cid=1:..." (counts originator/responder).
func (s *AppSink) writeFlow(f *Flow) {
	if s.err != nil {
		return
	}
	proto := flowProtoName(f.Proto)
	if s.opt.JSON {
		o := map[string]any{"type": "flow", "proto": proto, "src": f.Src.String(), "dst": f.Dst.String(),
			"sport": f.SrcPort, "dport": f.DstPort, "end": f.End.String(), "first": s.ts(f.First()).Format(time.RFC3339Nano),
			"duration_s": f.Duration().Seconds(), "packets": f.Packets, "bytes": f.Bytes, "payload_bytes": f.PayloadBytes,
			"community_id": f.CommunityID()}
		if f.Proto == ProtoTCP {
			o["state"] = f.State.String()
		}
		s.emit(appLine{obj: o}, f.Last())
		return
	}
	b := s.buf[:0]
	b = s.ts(f.Last()).AppendFormat(b, "2006-01-02 15:04:05")
	if s.opt.Color {
		b = append(b, " - "+appColors["FLOW"]+"FLOW\x1b[0m "...)
	} else {
		b = append(b, " - FLOW "...)
	}
	b = append(b, proto...)
	b = append(b, ' ')
	b = appendEndpoint(b, f.Src, f.SrcPort)
	b = append(b, " --> "...)
	b = appendEndpoint(b, f.Dst, f.DstPort)
	b = append(b, " end="...)
	b = append(b, f.End.String()...)
	if f.Proto == ProtoTCP {
		b = append(b, " state="...)
		b = append(b, f.State.String()...)
	}
	b = append(b, " duration="...)
	b = append(b, f.Duration().Round(time.Microsecond).String()...)
	b = append(b, " packets="...)
	b = strconv.AppendUint(b, f.Packets[0], 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, f.Packets[1], 10)
	b = append(b, " bytes="...)
	b = strconv.AppendUint(b, f.Bytes[0], 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, f.Bytes[1], 10)
	b = append(b, " cid="...)
	b = f.AppendCommunityID(b)
	b = append(b, '\n')
	s.buf = b
	if err := s.out.Write(b); err != nil {
		s.err = err
	}
}

// appendEndpoint appends "addr:port" ("[v6]:port"; the address alone for port 0).
func appendEndpoint(b []byte, a netip.Addr, port uint16) []byte {
	if port == 0 {
		return a.AppendTo(b)
	}
	if a.Is6() {
		b = append(b, '[')
		b = a.AppendTo(b)
		b = append(b, ']')
	} else {
		b = a.AppendTo(b)
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(port), 10)
}

func flowProtoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoICMP:
		return "ICMP"
	case ProtoICMPv6:
		return "ICMP6"
	case ProtoSCTP:
		return "SCTP"
	}
	return "IP" + strconv.Itoa(int(p))
}
