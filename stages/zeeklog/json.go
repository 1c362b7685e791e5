package zeeklog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// line builds one JSON object the way Zeek's JSON logs write it: times and intervals as
// seconds with six decimals, counts as integers, vectors and sets as arrays, unset fields
// left out.
type line struct {
	b     []byte
	first bool
}

func (l *line) begin(b []byte) { l.b, l.first = append(b, '{'), true }

// end closes the object and the line.
func (l *line) end() []byte { return append(l.b, '}', '\n') }

func (l *line) key(k string) {
	if !l.first {
		l.b = append(l.b, ',')
	}
	l.first = false
	l.b = append(l.b, '"')
	l.b = append(l.b, k...)
	l.b = append(l.b, '"', ':')
}

func (l *line) str(k, v string) {
	l.key(k)
	l.b = appendString(l.b, v)
}

// strOpt writes a string field unless it is empty (an unset field).
func (l *line) strOpt(k, v string) {
	if v != "" {
		l.str(k, v)
	}
}

func (l *line) count(k string, v uint64) {
	l.key(k)
	l.b = strconv.AppendUint(l.b, v, 10)
}

func (l *line) boolean(k string, v bool) {
	l.key(k)
	l.b = strconv.AppendBool(l.b, v)
}

// time writes a Zeek time: seconds since the epoch, with six decimals.
func (l *line) time(k string, t time.Time) {
	l.key(k)
	l.b = appendSeconds(l.b, t.UnixNano())
}

// interval writes a Zeek interval: seconds, with six decimals.
func (l *line) interval(k string, d time.Duration) {
	l.key(k)
	l.b = appendSeconds(l.b, int64(d))
}

func (l *line) addr(k string, a netip.Addr) {
	l.key(k)
	l.b = append(l.b, '"')
	l.b = a.Unmap().AppendTo(l.b)
	l.b = append(l.b, '"')
}

// strs writes a vector of strings.
func (l *line) strs(k string, vs []string) {
	l.key(k)
	l.b = append(l.b, '[')
	for i, v := range vs {
		if i > 0 {
			l.b = append(l.b, ',')
		}
		l.b = appendString(l.b, v)
	}
	l.b = append(l.b, ']')
}

// intervals writes a vector of intervals.
func (l *line) intervals(k string, ds []time.Duration) {
	l.key(k)
	l.b = append(l.b, '[')
	for i, d := range ds {
		if i > 0 {
			l.b = append(l.b, ',')
		}
		l.b = appendSeconds(l.b, int64(d))
	}
	l.b = append(l.b, ']')
}

// appendSeconds appends ns nanoseconds as seconds with six decimals (Zeek's microseconds).
func appendSeconds(b []byte, ns int64) []byte {
	if ns < 0 {
		b = append(b, '-')
		ns = -ns
	}
	us := (ns + 500) / 1000
	b = strconv.AppendInt(b, us/1e6, 10)
	frac := us % 1e6
	b = append(b, '.')
	for d := int64(1e5); d > 0; d /= 10 {
		b = append(b, byte('0'+frac/d%10))
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as Zeek escapes log strings: a control
// character, DEL or a byte that is not UTF-8 becomes the four characters \xNN (lower-case hex,
// the backslash itself escaped for JSON), so that nothing raw reaches a terminal; the quote
// and the backslash get JSON's escapes.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 || r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029 {
				// Not UTF-8, a C1 control, or a separator some readers take for a newline.
				for j := range n {
					b = append(b, '\\', '\\', 'x', hexDigits[s[i+j]>>4], hexDigits[s[i+j]&15])
				}
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}
