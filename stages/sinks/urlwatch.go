package sinks

import (
	"strconv"
	"strings"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

// URLWatch is the sink of the urlwatch view: a line per HTTP request or response head and per
// TLS hello.
//
//	HTTP 10.0.0.1:5000 --> 10.0.0.2:80 GET http://host/uri ua="..." referer=...
//	HTTP 10.0.0.2:80 --> 10.0.0.1:5000 200 OK
//	TLS 10.0.0.1:5001 --> 10.0.0.2:443 ClientHello sni=... alpn=h2,http/1.1 versions=TLS 1.3,TLS 1.2 ja4=...
//	TLS 10.0.0.2:443 --> 10.0.0.1:5001 ServerHello version=TLS 1.3 cipher=0x1301 ja4s=...
//
// (a HelloRetryRequest is a ServerHello line that says HelloRetryRequest). The hellos of QUIC's
// Initial packets are QUIC lines, with JA4's q:
//
//	QUIC 10.0.0.1:5002 --> 10.0.0.2:443 ClientHello sni=... alpn=h3 versions=TLS 1.3 ja4=q13d...
//
// Several heads or hellos completed by one packet (pipelined requests) are one line each.
//
// Text from the network is escaped; the request target percent-decoded for reading.
type URLWatch struct{ appLines }

// NewURLWatch returns the urlwatch sink writing to out.
func NewURLWatch(out *Output, opt Options) *URLWatch {
	return &URLWatch{newAppLines(out, opt, "urlwatch")}
}

// Write prints the HTTP heads and TLS hellos p completed, if any.
func (s *URLWatch) Write(p *stages.Packet) error {
	for h := p.HTTP; h != nil; h = h.Next {
		s.http(p, h)
	}
	for h := p.TLS; h != nil; h = h.Next {
		s.tls(p, h)
	}
	return s.err
}

func (s *URLWatch) http(p *stages.Packet, h *stages.HTTPInfo) {
	if s.opt.Format == FormatJSON {
		httpJSON(s.json(p.Time, "http"), p, h)
		s.endJSON()
		return
	}
	b := s.text(p.Time, "HTTP")
	b = appendPacketEnds(b, p)
	b = append(b, ' ')
	s.emit(appendHTTP(b, h))
}

// appendHTTP appends what urlwatch says of an HTTP head after its endpoints: the request
// (method, URL, user agent, referer) or the response (status, reason), and " (partial)".
func appendHTTP(b []byte, h *stages.HTTPInfo) []byte {
	if h.Request {
		b = appendText(b, h.Method)
		b = append(b, ' ')
		if h.Host != "" && strings.HasPrefix(h.URI, "/") {
			b = append(b, "http://"...)
			b = appendText(b, h.Host)
		}
		b = appendText(b, PercentDecode(h.URI))
		if h.UserAgent != "" {
			b = append(b, ` ua="`...)
			b = appendText(b, h.UserAgent)
			b = append(b, '"')
		}
		if h.Referer != "" {
			b = append(b, " referer="...)
			b = appendText(b, PercentDecode(h.Referer))
		}
	} else {
		b = strconv.AppendInt(b, int64(h.Status), 10)
		b = append(b, ' ')
		b = appendText(b, h.Reason)
	}
	if h.Partial {
		b = append(b, " (partial)"...)
	}
	return b
}

func (s *URLWatch) tls(p *stages.Packet, h *stages.TLSInfo) {
	if s.opt.Format == FormatJSON {
		typ := "tls"
		if h.QUIC != 0 {
			typ = "quic"
		}
		tlsJSON(s.json(p.Time, typ), p, h)
		s.endJSON()
		return
	}
	kind := "TLS"
	if h.QUIC != 0 {
		kind = "QUIC"
	}
	b := s.text(p.Time, kind)
	b = appendPacketEnds(b, p)
	b = append(b, ' ')
	s.emit(appendTLS(b, h))
}

// tlsVersions returns the names of the versions a hello lists, GREASE left out.
func tlsVersions(h *stages.TLSInfo) []string {
	var versions []string
	for _, v := range h.Versions {
		if !protocols.IsGREASE(v) {
			versions = append(versions, protocols.TLSVersionName(v))
		}
	}
	return versions
}

// appendTLS appends what urlwatch says of a TLS hello after its endpoints: ClientHello with
// SNI, ALPN, versions and JA4, or ServerHello with version, cipher, ALPN and JA4S, and
// " (partial)".
func appendTLS(b []byte, h *stages.TLSInfo) []byte {
	if h.Hello == stages.TLSClientHello {
		b = append(b, "ClientHello sni="...)
		b = appendText(b, h.SNI)
		for i, a := range h.ALPN {
			if i == 0 {
				b = append(b, " alpn="...)
			} else {
				b = append(b, ',')
			}
			b = appendText(b, a)
		}
		for i, v := range tlsVersions(h) {
			if i == 0 {
				b = append(b, " versions="...)
			} else {
				b = append(b, ',')
			}
			b = append(b, v...)
		}
		if h.JA4 != "" {
			b = append(b, " ja4="...)
			b = append(b, h.JA4...)
		}
	} else {
		if h.HelloRetry {
			b = append(b, "HelloRetryRequest"...)
		} else {
			b = append(b, "ServerHello"...)
		}
		b = append(b, " version="...)
		b = append(b, protocols.TLSVersionName(h.Version)...)
		b = append(b, " cipher=0x"...)
		b = appendHex16(b, h.Cipher)
		if len(h.ALPN) > 0 {
			b = append(b, " alpn="...)
			b = appendText(b, h.ALPN[0])
		}
		if h.JA4 != "" {
			b = append(b, " ja4s="...)
			b = append(b, h.JA4...)
		}
	}
	if h.Partial {
		b = append(b, " (partial)"...)
	}
	return b
}

// httpJSON writes the fields of h, an HTTP head p completed (and p's endpoints), into a JSON
// object.
func httpJSON(w *jsonWriter, p *stages.Packet, h *stages.HTTPInfo) {
	packetFields(w, p)
	if h.Request {
		w.str("method", h.Method)
		w.str("host", h.Host)
		w.str("uri", h.URI)
		w.str("user_agent", h.UserAgent)
		w.str("referer", h.Referer)
	} else {
		w.int("status", h.Status)
		w.str("reason", h.Reason)
	}
	w.str("version", h.Version)
	if h.Partial {
		w.bool("partial", true)
	}
}

// tlsJSON writes the fields of h, a TLS or QUIC hello p completed (and p's endpoints), into a
// JSON object.
func tlsJSON(w *jsonWriter, p *stages.Packet, h *stages.TLSInfo) {
	packetFields(w, p)
	if h.QUIC != 0 {
		w.str("quic_version", "0x"+hex16(uint16(h.QUIC>>16))+hex16(uint16(h.QUIC)))
	}
	if h.Hello == stages.TLSClientHello {
		w.str("hello", "client")
		w.str("sni", h.SNI)
		w.strs("alpn", h.ALPN)
		w.strs("versions", tlsVersions(h))
		w.str("ja4", h.JA4)
	} else {
		if h.HelloRetry {
			w.str("hello", "retry")
		} else {
			w.str("hello", "server")
		}
		w.str("version", protocols.TLSVersionName(h.Version))
		w.str("cipher", "0x"+hex16(h.Cipher))
		w.str("ja4s", h.JA4)
		if len(h.ALPN) > 0 {
			w.str("alpn", h.ALPN[0])
		}
	}
	if h.Partial {
		w.bool("partial", true)
	}
}
