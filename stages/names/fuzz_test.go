package names

import (
	"strings"
	"testing"
)

func FuzzSanitizeName(f *testing.F) {
	for _, s := range []string{"www.example.com.", "\x1b[2J\x07evil.", strings.Repeat("ab.", 120), "\xff\xfe", `\027[31m.`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := SanitizeName(s)
		if len(out) > MaxNameLen {
			t.Fatalf("%d bytes", len(out))
		}
		for i := 0; i < len(out); i++ {
			if out[i] <= 0x20 || out[i] >= 0x7f {
				t.Fatalf("byte %#x in %q", out[i], out)
			}
		}
	})
}
