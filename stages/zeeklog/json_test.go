package zeeklog

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzAppendString: whatever the bytes, the string is valid JSON and UTF-8, with no raw control
// character; printable text without quotes or backslashes comes back as it was.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "www.example.com", "\x1b]0;title\x07", "\x00\xff\xfe", "a\"b\\c", "\u2028\u2029\u0085", "é€😀", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		if !utf8.Valid(b) || !json.Valid(b) {
			t.Fatalf("%q: %q is not valid UTF-8 JSON", s, b)
		}
		for _, c := range b {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("%q: raw control byte in %q", s, b)
			}
		}
		plain := true
		for _, r := range s {
			plain = plain && r >= 0x20 && r < 0x7f && r != '"' && r != '\\'
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil || plain && back != s {
			t.Fatalf("%q came back as %q (%v)", s, back, err)
		}
	})
}

// TestUIDs: a uid is 'C' and 17 base62 digits, distinct for distinct flows of one run.
func TestUIDs(t *testing.T) {
	s, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for id := uint64(1); id <= 100000; id++ {
		u := s.uid(id)
		if len(u) != 18 || u[0] != 'C' {
			t.Fatalf("uid %q", u)
		}
		if seen[u] {
			t.Fatalf("uid %q twice", u)
		}
		seen[u] = true
	}
}

// TestSeconds: times and intervals are seconds with six decimals (Zeek's JSON), rounded to
// the microsecond.
func TestSeconds(t *testing.T) {
	for ns, want := range map[int64]string{0: "0.000000", 1500: "0.000002", 1258535653208281000: "1258535653.208281",
		int64(120 * time.Second): "120.000000", -1500000: "-0.001500", 999999999: "1.000000"} {
		if got := string(appendSeconds(nil, ns)); got != want {
			t.Errorf("%d ns: %s, want %s", ns, got, want)
		}
	}
}

// FuzzZeekName: whatever name the decoder hands over (escapes cut short, \DDD past 255, a
// lone backslash), the name written is valid JSON and UTF-8 with no raw control character.
func FuzzZeekName(f *testing.F) {
	for _, s := range []string{`a\027b`, `\`, `a\`, `\25`, `\999`, `\\\.`, `x\255\000.y`, "raw\x1b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, zeekName(s))
		if !utf8.Valid(b) || !json.Valid(b) {
			t.Fatalf("%q: %q is not valid UTF-8 JSON", s, b)
		}
		for _, c := range b {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("%q: raw control byte in %q", s, b)
			}
		}
	})
}
