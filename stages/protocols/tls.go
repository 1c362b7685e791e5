package protocols

import (
	"encoding/binary"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
)

// TLS extension numbers the TLS stage reads.
const (
	tlsExtServerName        = 0x0000
	tlsExtSupportedGroups   = 0x000a
	tlsExtSignatureAlgs     = 0x000d
	tlsExtALPN              = 0x0010
	tlsExtSupportedVersions = 0x002b
)

// tlsHelloRetryRandom is the random of a HelloRetryRequest: SHA-256("HelloRetryRequest")
// (RFC 8446 4.1.3).
const tlsHelloRetryRandom = "\xcf\x21\xad\x74\xe5\x9a\x61\x11\xbe\x1d\x8c\x02\x1e\x65\xb8\x91" +
	"\xc2\xa2\x11\x16\x7a\xbb\x8c\x5e\x07\x9e\x09\xe2\xc8\xa8\x33\x9c"

// tlsMaxFollow bounds the bytes of a direction the TLS handler reads looking for hellos.
const tlsMaxFollow = 64 << 10

// TLSVersionName returns "TLS 1.3", "TLS 1.2", ..., "SSL 3.0", or the hex value.
func TLSVersionName(v uint16) string {
	switch v {
	case 0x0304:
		return "TLS 1.3"
	case 0x0303:
		return "TLS 1.2"
	case 0x0302:
		return "TLS 1.1"
	case 0x0301:
		return "TLS 1.0"
	case 0x0300:
		return "SSL 3.0"
	case 0x0002:
		return "SSL 2.0"
	}
	return "0x" + hex16(v)
}

func hex16(v uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15]})
}

// IsGREASE reports whether v is a GREASE value (RFC 8701): 0x?a?a with both bytes equal.
func IsGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// tlsHandshake gathers the first handshake message from TLS records at the start of b, across
// records if it is fragmented. It returns the message (type, 3-byte length, body, possibly cut
// short), the first record's version, whether the message is complete, and ok=false when b
// does not start with a handshake record; with complete, used is the length of the records
// that hold the message (the last one may hold more). scratch is reused when records must be
// joined.
func tlsHandshake(b []byte, scratch []byte) (msg []byte, recVersion uint16, used int, complete, ok bool, out []byte) {
	if len(b) < 5 || b[0] != 0x16 || b[1] != 3 {
		return nil, 0, 0, false, false, scratch
	}
	recVersion = binary.BigEndian.Uint16(b[1:])
	first := true
	joined := scratch[:0]
	for len(b[used:]) >= 5 && b[used] == 0x16 {
		n := int(binary.BigEndian.Uint16(b[used+3:]))
		body := b[used+5:]
		if n < len(body) {
			body = body[:n]
		}
		if first && len(body) >= 4 {
			want := 4 + (int(body[1])<<16 | int(body[2])<<8 | int(body[3]))
			if len(body) >= want {
				return body[:want], recVersion, 5 + n, true, true, scratch
			}
		}
		first = false
		joined = append(joined, body...)
		if len(joined) >= 4 {
			want := 4 + (int(joined[1])<<16 | int(joined[2])<<8 | int(joined[3]))
			if len(joined) >= want {
				return joined[:want], recVersion, used + 5 + n, true, true, joined
			}
		}
		if len(body) < n {
			break // the record itself is cut short
		}
		used += 5 + n
	}
	return joined, recVersion, 0, false, true, joined
}

// ParseTLSHello decodes a ClientHello or ServerHello handshake message (type byte first). A
// message cut short yields what precedes the cut, with Partial set. It returns nil for other
// message types or when not even the fixed fields are there.
func ParseTLSHello(msg []byte) *stages.TLSInfo {
	if len(msg) < 4+2+32 || (msg[0] != stages.TLSClientHello && msg[0] != stages.TLSServerHello) {
		return nil
	}
	declared := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	body := msg[4:]
	info := &stages.TLSInfo{Hello: msg[0], Length: declared}
	if len(body) < declared {
		info.Partial = true
	} else {
		body = body[:declared]
	}
	r := tlsReader{b: body}
	info.LegacyVersion = r.u16()
	if info.Hello == stages.TLSServerHello && len(r.b) >= 32 && string(r.b[:32]) == tlsHelloRetryRandom {
		info.HelloRetry = true
	}
	r.skip(32) // random
	r.vec8()   // session id
	if info.Hello == stages.TLSClientHello {
		cs := r.vec16()
		for len(cs) >= 2 {
			info.Ciphers = append(info.Ciphers, binary.BigEndian.Uint16(cs))
			cs = cs[2:]
		}
		r.vec8() // compression methods
	} else {
		info.Cipher = r.u16()
		r.skip(1) // compression method
	}
	if r.bad {
		info.Partial = true
	}
	var exts []byte
	if len(r.b) > 0 || r.bad { // a hello may end without an extensions block (RFC 8446 4.1.2)
		exts = r.vec16()
	}
	for len(exts) >= 4 {
		typ := binary.BigEndian.Uint16(exts)
		n := int(binary.BigEndian.Uint16(exts[2:]))
		exts = exts[4:]
		if n > len(exts) {
			info.Extensions = append(info.Extensions, typ)
			info.Partial = true
			break
		}
		data := exts[:n]
		exts = exts[n:]
		info.Extensions = append(info.Extensions, typ)
		extension(info, typ, data)
	}
	if r.bad || len(exts) != 0 {
		info.Partial = true
	}
	info.Version = info.LegacyVersion
	for _, v := range info.Versions {
		if !IsGREASE(v) && (info.Hello == stages.TLSServerHello || v > info.Version) {
			info.Version = v
		}
	}
	if !info.Partial {
		if info.Hello == stages.TLSClientHello {
			info.JA4 = JA4('t', info)
		} else {
			info.JA4 = JA4S('t', info)
		}
	}
	return info
}

// extension reads the extensions ParseTLSHello keeps.
func extension(info *stages.TLSInfo, typ uint16, data []byte) {
	r := tlsReader{b: data}
	switch typ {
	case tlsExtServerName:
		if info.Hello != stages.TLSClientHello {
			return
		}
		list := tlsReader{b: r.vec16()}
		for !list.bad && len(list.b) > 0 {
			kind := list.u8()
			name := list.vec16()
			if kind == 0 && !list.bad && info.SNI == "" {
				info.SNI = clip(name)
			}
		}
	case tlsExtALPN:
		list := tlsReader{b: r.vec16()}
		for !list.bad && len(list.b) > 0 && len(info.ALPN) < 16 {
			p := list.vec8()
			if !list.bad {
				info.ALPN = append(info.ALPN, string(p))
			}
		}
	case tlsExtSupportedVersions:
		if info.Hello == stages.TLSServerHello {
			info.Versions = append(info.Versions, r.u16())
			return
		}
		vs := r.vec8()
		for len(vs) >= 2 {
			info.Versions = append(info.Versions, binary.BigEndian.Uint16(vs))
			vs = vs[2:]
		}
	case tlsExtSignatureAlgs:
		info.SigAlgs = appendU16s(info.SigAlgs, r.vec16())
	case tlsExtSupportedGroups:
		info.Groups = appendU16s(info.Groups, r.vec16())
	}
}

func appendU16s(dst []uint16, b []byte) []uint16 {
	for len(b) >= 2 {
		dst = append(dst, binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	return dst
}

// tlsReader reads big-endian fields; reading past the end sets bad and yields zeros.
type tlsReader struct {
	b   []byte
	bad bool
}

func (r *tlsReader) u8() uint8 {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *tlsReader) u16() uint16 {
	if len(r.b) < 2 {
		r.bad, r.b = true, nil
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *tlsReader) skip(n int) {
	if len(r.b) < n {
		r.bad, r.b = true, nil
		return
	}
	r.b = r.b[n:]
}

// vec8 and vec16 read a vector with a one- or two-byte length; a vector running past the end
// yields what is there and sets bad.
func (r *tlsReader) vec8() []byte  { return r.vec(int(r.u8())) }
func (r *tlsReader) vec16() []byte { return r.vec(int(r.u16())) }

func (r *tlsReader) vec(n int) []byte {
	if r.bad {
		return nil
	}
	if n > len(r.b) {
		v := r.b
		r.bad, r.b = true, nil
		return v
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// TLSHandler is the flow handler of TLS hellos: a TCP direction that starts with a handshake
// record is read record by record, and each ClientHello or ServerHello reported on the packet
// that completes it: the second ClientHello after a HelloRetryRequest too. Reading ends at
// the first record of application data or an alert (what follows is encrypted). Without
// reassembly a hello is read from the packet alone. The zero value is ready; one handler
// serves one flow table.
type TLSHandler struct {
	scratch []byte // joins a hello fragmented over several records
}

// Packet sets p.TLS when p's TCP payload, on its own, holds a ClientHello or ServerHello.
func (h *TLSHandler) Packet(p *stages.Packet) {
	if p.Proto != stages.ProtoTCP {
		return
	}
	msg, rv, _, complete, ok, sc := tlsHandshake(p.Payload, h.scratch)
	h.scratch = sc
	if !ok {
		return
	}
	if info := ParseTLSHello(msg); info != nil {
		info.RecordVersion = rv
		if !complete {
			info.Partial, info.JA4 = true, ""
		}
		p.TLS = info
	}
}

// Accept reads a direction that starts with a TLS handshake record; in the middle of a
// direction, with a record that starts a hello.
func (*TLSHandler) Accept(_ *stages.Flow, _ int, head []byte, start bool) bool {
	if len(head) < 3 || head[0] != 0x16 || head[1] != 3 || head[2] > 4 {
		return false
	}
	return start || (len(head) >= 6 && (head[5] == stages.TLSClientHello || head[5] == stages.TLSServerHello))
}

// Stream reads the direction's records and reports each hello once it is whole or can grow no
// more.
func (h *TLSHandler) Stream(p *stages.Packet, s *flows.Stream) bool {
	for s.Offset() < tlsMaxFollow {
		b := s.Bytes()
		if len(b) < 5 {
			return !s.Stalled()
		}
		n := int(binary.BigEndian.Uint16(b[3:]))
		if b[1] != 3 || n > 16384+2048 {
			return false // not a record: the reader lost its place
		}
		switch b[0] {
		case 0x14: // change_cipher_spec: a HelloRetryRequest's second ClientHello may follow
			s.Consume(5 + n)
			continue
		case 0x16:
		default:
			return false // application data or an alert: what follows is encrypted
		}
		msg, rv, used, complete, ok, sc := tlsHandshake(b, h.scratch)
		h.scratch = sc
		if !ok {
			return false
		}
		if !complete && !s.Stalled() && len(b) < s.Size() {
			return true
		}
		if len(msg) > 0 && (msg[0] == stages.TLSClientHello || msg[0] == stages.TLSServerHello) {
			// After the first message, a hello is taken only whole: a TLS 1.2 Finished is
			// an encrypted handshake record whose first byte may read as a hello's.
			if info := ParseTLSHello(msg); info != nil && (s.Offset() == 0 || complete && !info.Partial) {
				info.RecordVersion = rv
				info.Segments = s.Segments()
				if !complete {
					info.Partial, info.JA4 = true, ""
				}
				appendTLS(p, info)
			}
		}
		if !complete {
			return false
		}
		s.Consume(used)
	}
	return false
}

// appendTLS adds info to the hellos p completes.
func appendTLS(p *stages.Packet, info *stages.TLSInfo) {
	at := &p.TLS
	for *at != nil {
		at = &(*at).Next
	}
	*at = info
}
