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
	httpMaxSkip  = 1 << 30 // longest body skipped by its Content-Length (sequence numbers wrap at 4 GiB)
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
	info, _, _, complete = parseHTTPHead(b)
	return info, complete
}

// parseHTTPHead is ParseHTTPHead that also returns, for a complete head, its length with the
// blank line, and the length of the body that follows it: 0 for none, -1 when the head does not
// say where the body ends (chunked, or a response read until the connection closes).
func parseHTTPHead(b []byte) (info *stages.HTTPInfo, headLen int, body int64, complete bool) {
	if !LooksHTTP(b) {
		return nil, 0, 0, false
	}
	if len(b) > httpMaxHead {
		b = b[:httpMaxHead]
	}
	head := b
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		head, headLen, complete = b[:i], i+4, true
	}
	if i := bytes.Index(head, []byte("\n\n")); i >= 0 {
		head, headLen, complete = b[:i], i+2, true
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
	length, chunked := int64(-1), false
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
		case asciiEqualFold(name, "content-length"):
			if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 {
				length = n
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = true // any coding but identity ends with chunked (RFC 9112 6.1)
		}
	}
	switch {
	case !info.Request && (info.Status < 200 || info.Status == 204 || info.Status == 304):
		body = 0 // no body, whatever the head says (RFC 9112 6.3)
	case chunked, length > httpMaxSkip:
		body = -1
	case length >= 0:
		body = length
	case info.Request:
		body = 0
	default:
		body = -1 // a response without a length: read until the connection closes
	}
	return info, headLen, body, complete
}

// httpPrefix reports whether b, shorter than any start LooksHTTP knows, may still become one.
func httpPrefix(b []byte) bool {
	if len(b) >= 4 {
		return false
	}
	if bytes.HasPrefix([]byte("HTTP/"), b) {
		return true
	}
	for _, m := range httpRequestMethods {
		if bytes.HasPrefix([]byte(m), b) {
			return true
		}
	}
	return false
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
// (on any port) is read head after head, each reported on the packet that completes it, the
// requests pipelined in one segment too; the bodies the heads give a length are skipped
// unread. Where a body's end is not given (chunked, or read until close), the direction's next
// head is found again by its first bytes.
type HTTPHandler struct{}

// Packet sets p.HTTP when p's TCP payload starts an HTTP head (a packet the flow table does
// not reassemble); a head that goes on in a later segment comes out Partial.
func (HTTPHandler) Packet(p *stages.Packet) { ProcessHTTP(p) }

// Accept reads a direction that starts like HTTP.
func (HTTPHandler) Accept(_ *stages.Flow, _ int, head []byte, _ bool) bool { return LooksHTTP(head) }

// Stream reports every head the stream completes, and skips the bodies whose length is known.
func (HTTPHandler) Stream(p *stages.Packet, s *flows.Stream) bool {
	for {
		b := s.Bytes()
		if len(b) == 0 {
			return true
		}
		if !LooksHTTP(b) {
			return httpPrefix(b) && !s.Stalled() // a head whose first bytes end the segment
		}
		info, headLen, body, complete := parseHTTPHead(b)
		if !complete && !s.Stalled() && len(b) < httpMaxHead {
			return true
		}
		info.Segments = s.Segments()
		appendHTTP(p, info)
		if !complete || body < 0 {
			s.Consume(max(headLen, len(b)))
			return false
		}
		s.Consume(headLen + int(body))
	}
}

// appendHTTP adds info to the heads p completes.
func appendHTTP(p *stages.Packet, info *stages.HTTPInfo) {
	at := &p.HTTP
	for *at != nil {
		at = &(*at).Next
	}
	*at = info
}

// ProcessHTTP sets p.HTTP when p's TCP payload, on its own, starts an HTTP head.
func ProcessHTTP(p *stages.Packet) {
	if p.Proto != stages.ProtoTCP || !LooksHTTP(p.Payload) {
		return
	}
	p.HTTP, _ = ParseHTTPHead(p.Payload)
}
