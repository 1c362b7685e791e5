package main

import (
	"strings"
	"testing"
)

// Bad process filters are bad usage (exit 2), said before anything is loaded.
func TestOwnerFlagsUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"attach", "--no-processes", "--pid", "5", "lo"}, "--pid needs process attribution"},
		{[]string{"attach", "--no-processes", "--comm", "curl", "lo"}, "--comm needs process attribution"},
		{[]string{"attach", "--comm", "0123456789abcdef", "lo"}, "want 1 to 15 bytes"},
		{[]string{"attach", "--pid", "0", "lo"}, "want a process id"},
		{[]string{"attach", "--max-sockets", "0", "lo"}, "--max-sockets 0"},
		{[]string{"attach", "--max-cgroups", "0", "lo"}, "--max-cgroups 0: want 1 to "},
	} {
		_, stderr, code := runCmd(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}
