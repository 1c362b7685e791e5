package protocols

import (
	"bytes"
	"strconv"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
)

// Limits on what an HTTP head may put into an stages.HTTPInfo.
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
func ParseHTTPHead(b []byte) (info *stages.HTTPInfo, complete bool) {
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
	info = &stages.HTTPInfo{Partial: !complete}
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

// HTTPHandler is the flow handler of HTTP/1.x heads: a TCP direction that starts like HTTP
// is reassembled and its first head reported on the packet that completes it; later heads (and
// any without reassembly) are read from the segment that starts them, by content, on any port.
type HTTPHandler struct{}

// Packet sets p.HTTP when p's TCP payload starts an HTTP head; a head that goes on in a later
// segment comes out Partial.
func (HTTPHandler) Packet(p *stages.Packet) { ProcessHTTP(p) }

// Accept reads a direction that starts like HTTP.
func (HTTPHandler) Accept(_ *stages.Flow, _ int, head []byte) bool { return LooksHTTP(head) }

// flows.Stream reports the direction's first head once it is complete or can grow no more.
func (HTTPHandler) Stream(p *stages.Packet, s *flows.Stream) bool {
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
func ProcessHTTP(p *stages.Packet) {
	if p.Proto != stages.ProtoTCP || !LooksHTTP(p.Payload) {
		return
	}
	p.HTTP, _ = ParseHTTPHead(p.Payload)
}
