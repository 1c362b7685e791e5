package names

import (
	"strings"
	"testing"
)

// FuzzCleanName: whatever a PTR answer or the hosts file holds, the name kept is bounded.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"www.example.com.", `\027[2J\007evil.`, strings.Repeat("ab.", 120), "\xff\xfe", `\195\169.`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if out := cleanName(s); len(out) > MaxNameLen {
			t.Fatalf("%d bytes", len(out))
		}
	})
}
