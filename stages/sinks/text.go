package sinks

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The escaper set: appendText for every text a terminal shows (appendBytes for binary data),
// appendJSONString for every JSON string, and jsonWriter, the one way JSON is written. Each sink
// uses these and no other.

const hexDigits = "0123456789abcdef"

// plain reports whether s needs no escaping for a terminal: printable ASCII without backslash.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// appendText appends s for a terminal: printable ASCII as it is, but the backslash, which
// doubles; printable UTF-8 beyond ASCII as it is; every other byte (ASCII and C1 controls, DEL,
// bytes of invalid UTF-8, U+2028, U+2029, U+FEFF, U+FFFD) as \xHH. What it writes holds no
// control byte and reads back unambiguously. Text from the network (names, HTTP fields, SNI)
// reaches a terminal only through it.
func appendText(b []byte, s string) []byte {
	if plain(s) { // the common case, without the escaper's loop
		return append(b, s...)
	}
	return appendEscaped(b, s, true)
}

// appendBytes appends binary data (a payload preview) for a terminal as appendText does, but
// with every byte beyond ASCII as \xHH too: in data, bytes that happen to form UTF-8 are no
// text.
func appendBytes(b []byte, data []byte) []byte {
	for _, c := range data {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return appendEscaped(b, data, false)
		}
	}
	return append(b, data...)
}

func appendEscaped[T string | []byte](b []byte, s T, keepUTF8 bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			if c == '\\' {
				b = append(b, '\\', '\\')
			} else {
				b = append(b, c)
			}
			i++
			continue
		}
		if c >= 0x80 && keepUTF8 {
			r, n := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			if r != utf8.RuneError && r >= 0xa0 && r != 0x2028 && r != 0x2029 && r != 0xfeff {
				b = append(b, s[i:i+n]...)
				i += n
				continue
			}
		}
		b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
		i++
	}
	return b
}

// Text returns s escaped for a terminal, as appendText writes it.
func Text(s string) string {
	if plain(s) {
		return s
	}
	return string(appendText(make([]byte, 0, len(s)+8), s))
}

// PercentDecode decodes %XX escapes (an HTTP request target, for reading); a malformed escape
// is kept as it is. Its result goes through appendText like any other text.
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

// appendJSONString appends s as a JSON string: quotes, backslashes and control bytes escaped,
// DEL as \u007f, U+2028 and U+2029 escaped, and every byte that is not valid UTF-8 replaced by
// \ufffd.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&15])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonWriter writes JSON into a byte slice: objects and arrays, fields in the order written,
// no spaces. Keys are the sinks' own constants and are written as they are. (The per-packet
// sink, whose fields are fixed, writes its keys as constant tokens and its values with the same
// encoders: that is this writer unrolled, for speed.)
type jsonWriter struct {
	b     []byte
	first bool // nothing written yet in the innermost object or array
}

func (w *jsonWriter) sep() {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
}

func (w *jsonWriter) beginObject() { w.b, w.first = append(w.b, '{'), true }
func (w *jsonWriter) endObject()   { w.b, w.first = append(w.b, '}'), false }
func (w *jsonWriter) beginArray()  { w.b, w.first = append(w.b, '['), true }
func (w *jsonWriter) endArray()    { w.b, w.first = append(w.b, ']'), false }

// key writes a field's key; its value follows.
func (w *jsonWriter) key(k string) {
	w.sep()
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonWriter) str(k, v string) {
	w.key(k)
	w.b = appendJSONString(w.b, v)
}

func (w *jsonWriter) uint(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

func (w *jsonWriter) int(k string, v int) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, int64(v), 10)
}

func (w *jsonWriter) bool(k string, v bool) {
	w.key(k)
	w.b = strconv.AppendBool(w.b, v)
}

// float writes v as encoding/json does: the shortest decimal that reads back as v, exponent
// form only below 1e-6 and from 1e21 on.
func (w *jsonWriter) float(k string, v float64) {
	w.key(k)
	w.float1(v)
}

// float1 writes the number v (a field's value or an array's element).
func (w *jsonWriter) float1(v float64) {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		w.b = append(w.b, "null"...)
		return
	}
	f := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		f = 'e'
	}
	w.b = strconv.AppendFloat(w.b, v, f, -1, 64)
	if f == 'e' { // 1e-07 -> 1e-7
		if n := len(w.b); n >= 4 && w.b[n-4] == 'e' && w.b[n-3] == '-' && w.b[n-2] == '0' {
			w.b[n-2] = w.b[n-1]
			w.b = w.b[:n-1]
		}
	}
}

// quote begins the string value of k for text that needs no escaping (the sinks' own tokens,
// addresses); the caller appends it to w.b and calls endQuote.
func (w *jsonWriter) quote(k string) {
	w.key(k)
	w.b = append(w.b, '"')
}

func (w *jsonWriter) endQuote() { w.b = append(w.b, '"') }

// addr writes an address as a string.
func (w *jsonWriter) addr(k string, a netip.Addr) {
	w.quote(k)
	w.b = appendAddr(w.b, a)
	w.endQuote()
}

// array begins an array as the value of k.
func (w *jsonWriter) array(k string) { w.key(k); w.beginArray() }

// elemObject begins an object as the next element of an array; elemStr writes a string.
func (w *jsonWriter) elemObject() { w.sep(); w.beginObject() }
func (w *jsonWriter) elemStr(v string) {
	w.sep()
	w.b = appendJSONString(w.b, v)
}

// strs writes a list of strings, null for none.
func (w *jsonWriter) strs(k string, vs []string) {
	if vs == nil {
		w.key(k)
		w.b = append(w.b, "null"...)
		return
	}
	w.array(k)
	for _, v := range vs {
		w.elemStr(v)
	}
	w.endArray()
}

// pair writes a two-element list of numbers (originator, responder).
func (w *jsonWriter) pair(k string, v [2]uint64) {
	w.key(k)
	w.b = append(w.b, '[')
	w.b = strconv.AppendUint(w.b, v[0], 10)
	w.b = append(w.b, ',')
	w.b = strconv.AppendUint(w.b, v[1], 10)
	w.b = append(w.b, ']')
}
