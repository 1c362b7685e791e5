package stages

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// HTTPInfo is the head of an HTTP/1.x request or response.
type HTTPInfo struct {
	Request   bool   // a request; otherwise a response
	Method    string // request method
	URI       string // request target as sent (percent-encoded); see DisplayURI
	Version   string // "HTTP/1.1", ...
	Host      string // Host header
	UserAgent string // User-Agent header
	Referer   string // Referer header
	Status    int    // response status code
	Reason    string // response reason phrase
	Partial   bool   // the head was cut short (capture or reassembly limit); later fields may be missing
	Segments  int    // TCP segments the head was reassembled from (0: read from one packet)
}

// Limits on what an HTTP head may put into an HTTPInfo.
const (
	httpMaxField = 2048 // bytes kept of a URI or header value
	httpMaxHead  = 16 << 10
)

// httpRequestMethods are the request methods LooksHTTP recognises.
var httpRequestMethods = [...]string{"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "CONNECT ", "TRACE ", "PATCH ",
	"PROPFIND ", "PROPPATCH ", "MKCOL ", "COPY ", "MOVE ", "LOCK ", "UNLOCK ", "SEARCH ", "REPORT "}

// LooksHTTP reports whether b starts like an HTTP/1.x request (a known method and a space) or
// response ("HTTP/1." or "HTTP/2 " or "HTTP/0.9"). It does not allocate.
func LooksHTTP(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	if bytes.HasPrefix(b, []byte("HTTP/")) {
		return true
	}
	c := b[0]
	if c < 'C' || c > 'U' {
		return false
	}
	for _, m := range httpRequestMethods {
		if len(b) >= len(m) && string(b[:len(m)]) == m {
			return true
		}
	}
	return false
}

// ParseHTTPHead decodes the start line and the Host, User-Agent and Referer headers of an HTTP
// head at the start of b. It returns nil when b does not start like HTTP. complete says
// whether the blank line ending the head was found.
func ParseHTTPHead(b []byte) (info *HTTPInfo, complete bool) {
	if !LooksHTTP(b) {
		return nil, false
	}
	if len(b) > httpMaxHead {
		b = b[:httpMaxHead]
	}
	head := b
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		head, complete = b[:i], true
	} else if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		head, complete = b[:i], true
	}
	line, rest, more := cutLine(head)
	info = &HTTPInfo{Partial: !complete}
	if bytes.HasPrefix(line, []byte("HTTP/")) {
		v, after, _ := bytes.Cut(line, []byte(" "))
		info.Version = clip(v)
		code, reason, _ := bytes.Cut(after, []byte(" "))
		if n, err := strconv.Atoi(string(code)); err == nil && n >= 0 && n < 1000 {
			info.Status = n
		}
		info.Reason = clip(reason)
	} else {
		info.Request = true
		m, after, _ := bytes.Cut(line, []byte(" "))
		info.Method = clip(m)
		uri := after
		if i := bytes.LastIndexByte(after, ' '); i >= 0 && bytes.HasPrefix(after[i+1:], []byte("HTTP/")) {
			uri, info.Version = after[:i], clip(after[i+1:])
		}
		info.URI = clip(uri)
	}
	for more {
		line, rest, more = cutLine(rest)
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "host"):
			info.Host = clip(value)
		case asciiEqualFold(name, "user-agent"):
			info.UserAgent = clip(value)
		case asciiEqualFold(name, "referer"):
			info.Referer = clip(value)
		}
	}
	return info, complete
}

// cutLine returns the first line of b (without CR LF), the rest, and whether there was a line.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, nil, false
	}
	line, rest, _ = bytes.Cut(b, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), rest, true
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func clip(b []byte) string {
	if len(b) > httpMaxField {
		b = b[:httpMaxField]
	}
	return string(b)
}

// DisplayURI returns the request target percent-decoded for reading, with every byte that
// could harm a terminal (controls, escape sequences, invalid UTF-8) escaped as \xNN.
func (h *HTTPInfo) DisplayURI() string { return SafeText(PercentDecode(h.URI)) }

// PercentDecode decodes %XX escapes; a malformed escape is kept as it is.
func PercentDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// SafeText returns s with every byte that could harm a terminal escaped: ASCII controls, DEL,
// C1 controls, invalid UTF-8 and the backslash itself become \xNN (\\ for the backslash).
// Printable UTF-8 passes unchanged. Text from the network goes through it before display.
func SafeText(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hexdigits = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			if c == '\\' {
				b.WriteString(`\\`)
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if c >= 0x80 && r != utf8.RuneError && !(r >= 0x80 && r < 0xa0) && r != 0x2028 && r != 0x2029 && r != 0xfeff {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		b.WriteString(`\x`)
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
		i++
	}
	return b.String()
}

// HTTPHandler is the flow handler of HTTP/1.x heads: a TCP direction that starts like HTTP
// is reassembled and its first head reported on the packet that completes it; later heads (and
// any without reassembly) are read from the segment that starts them, by content, on any port.
type HTTPHandler struct{}

// Packet sets p.HTTP when p's TCP payload starts an HTTP head; a head that goes on in a later
// segment comes out Partial.
func (HTTPHandler) Packet(p *Packet) { ProcessHTTP(p) }

// Accept reads a direction that starts like HTTP.
func (HTTPHandler) Accept(_ *Flow, _ int, head []byte) bool { return LooksHTTP(head) }

// Stream reports the direction's first head once it is complete or can grow no more.
func (HTTPHandler) Stream(p *Packet, s *Stream) bool {
	info, complete := ParseHTTPHead(s.Bytes())
	if info == nil {
		return false
	}
	if !complete && !s.Stalled() {
		return true
	}
	info.Segments = s.Segments()
	p.HTTP = info
	return false
}

// ProcessHTTP sets p.HTTP when p's TCP payload, on its own, starts an HTTP head.
func ProcessHTTP(p *Packet) {
	if p.Proto != ProtoTCP || !LooksHTTP(p.Payload) {
		return
	}
	p.HTTP, _ = ParseHTTPHead(p.Payload)
}
