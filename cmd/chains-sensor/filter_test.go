package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

var filteredCountsLine = regexp.MustCompile(`(?m)^(\d+) packets seen, (\d+) filtered out, (\d+) recorded, (\d+) lost\n\z`)

// filteredCounts parses the closing line of a run with a filter and checks N = F + M + L.
func filteredCounts(t *testing.T, stderr string) (seen, filtered, recorded, lost uint64) {
	t.Helper()
	m := filteredCountsLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("stderr does not end with `<N> packets seen, <F> filtered out, <M> recorded, <L> lost`:\n%s", stderr)
	}
	n := make([]uint64, 4)
	for i := range n {
		n[i], _ = strconv.ParseUint(m[i+1], 10, 64)
	}
	if n[0] != n[1]+n[2]+n[3] {
		t.Fatalf("N != F + M + L: %s", m[0])
	}
	return n[0], n[1], n[2], n[3]
}

// tcpdumpCount is how many packets `tcpdump -r file expr` selects, and how many the file has.
func tcpdumpCount(t *testing.T, file, expr string) (selected, all int) {
	t.Helper()
	count := func(args ...string) int {
		out, err := exec.Command("tcpdump", append([]string{"-nr", file, "--"}, args...)...).Output()
		if err != nil {
			t.Fatalf("tcpdump %v: %v", args, err)
		}
		return strings.Count(string(out), "\n")
	}
	return count(expr), count()
}

// TestReadFilter: the expression given as words, as one argument, with --filter and with -F
// (with a comment) selects what tcpdump selects; the closing line counts the rest as filtered
// out. With --kernel (root) the kernel selects the same.
func TestReadFilter(t *testing.T) {
	sensortest.RequireTools(t, "tcpdump")
	file := filepath.Join(sensortest.Pcaps(t), "protocols", "ipv4_http_dns_wikipedia.pcap")
	expr := "udp port 53 and not src net 10.0.0.0/8"
	want, all := tcpdumpCount(t, file, expr)
	if want == 0 || want == all {
		t.Fatalf("the expression selects %d of %d: a poor test", want, all)
	}
	ffile := filepath.Join(t.TempDir(), "expr")
	if err := os.WriteFile(ffile, []byte("# DNS from outside\nudp port 53\n  and not src net 10.0.0.0/8 # not ours\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	forms := [][]string{
		append([]string{file}, strings.Fields(expr)...),
		{file, expr},
		{"--filter", expr, file},
		{"-F", ffile, file},
	}
	if os.Geteuid() == 0 {
		forms = append(forms, []string{"--kernel", file, expr}, []string{"--kernel", "-F", ffile, file})
	}
	for _, args := range forms {
		out, stderr, code := runCmd(t, append([]string{"read", "-n", "-o", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, stderr)
		}
		seen, filtered, recorded, lost := filteredCounts(t, stderr)
		if lines := strings.Count(out, "\n"); uint64(lines) != recorded || lines != want || seen != uint64(all) || filtered != uint64(all-want) || lost != 0 {
			t.Errorf("%v: %d lines, %s; tcpdump selects %d of %d", args, lines, strings.TrimSpace(stderr), want, all)
		}
	}
	// Without an expression the line is as before.
	_, stderr, _ := runCmd(t, "read", "-n", file)
	if !countsLine.MatchString(stderr) {
		t.Errorf("no filter: %q", stderr)
	}
}

// TestFilterBadInput: what libpcap refuses exits 2 with libpcap's message (as tcpdump prints
// it) and nothing on stdout, for read and for attach (which then attaches nothing: it never
// gets to load); so do an expression given twice and a missing -F file.
func TestFilterBadInput(t *testing.T) {
	sensortest.RequireTools(t, "tcpdump")
	file := filepath.Join(sensortest.Pcaps(t), "protocols", "icmp_echo.pcap")
	for _, expr := range []string{"tcp port", "host 999.1.1.1", "ether host 1:2:3", "portrange 80-", "(tcp", "inbound", "tcp and udp"} {
		td, _ := exec.Command("tcpdump", "-nr", file, "--", expr).CombinedOutput()
		msg := ""
		for _, l := range strings.Split(string(td), "\n") {
			if m, ok := strings.CutPrefix(l, "tcpdump: "); ok {
				msg = m
			}
		}
		if msg == "" {
			t.Fatalf("tcpdump takes %q: %s", expr, td)
		}
		runs := [][]string{{"read", file, expr}}
		if expr != "inbound" { // refused in files only
			// An interface that does not exist: were the expression taken, attach would fail
			// there (exit 1) rather than attach to anything.
			runs = append(runs, []string{"attach", "-i", "nosuchif0", expr})
		}
		for _, args := range runs {
			out, stderr, code := runCmd(t, args...)
			if code != 2 || out != "" || !strings.Contains(stderr, msg) {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2, nothing, %q", args, code, out, stderr, msg)
			}
		}
	}
	for _, args := range [][]string{
		{"read", "--filter", "udp", file, "tcp"},
		{"read", "-F", "/nonexistent/expr", file},
		{"attach", "-F", "/nonexistent/expr", "nosuchif0"},
	} {
		out, stderr, code := runCmd(t, args...)
		if code != 2 || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and nothing", args, code, out, stderr)
		}
	}
}

// TestAttachWithoutDashI: without -i every word is an interface name, as before.
func TestAttachWithoutDashI(t *testing.T) {
	// lo exists; "tcp" is looked up as an interface and is not one, before anything loads.
	_, stderr, code := runCmd(t, "attach", "lo", "tcp")
	if code != 1 || !strings.Contains(stderr, `"tcp"`) {
		t.Errorf("attach lo tcp: exit %d, %q: want an error about interface tcp", code, stderr)
	}
}
