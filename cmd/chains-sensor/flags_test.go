package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestBadFlagsExit2: every value out of range, every malformed one and every unknown flag is
// bad usage: exit 2, the error on stderr (with the usage for a flag that does not parse),
// nothing on stdout, no counters line; attach refuses before looking up interfaces or
// privileges. The cases the issue found: --stats-interval 9223372037 (seconds times 1e9
// overflowed int64: the stats were off) and 18446744074 (printed every 0.29 s), --dns-server
// 127.0.0.1:99999 (accepted, every name then nxdomain).
func TestBadFlagsExit2(t *testing.T) {
	file := filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap")
	cases := []struct {
		args []string
		want string // on stderr
	}{
		{[]string{"attach", "--stats-interval", "9223372037", "lo"}, "--stats-interval 9223372037: want 0 (only on exit) to 86400 seconds"},
		{[]string{"attach", "--stats-interval", "18446744074", "lo"}, "--stats-interval 18446744074: want 0 (only on exit) to 86400 seconds"},
		{[]string{"attach", "--stats-interval", "99999999999999999999", "lo"}, "invalid value \"99999999999999999999\" for flag -stats-interval"},
		{[]string{"attach", "--stats-interval", "-1", "lo"}, "--stats-interval -1"},
		{[]string{"attach", "--ring-size", "3", "lo"}, "--ring-size 3: want a power of two"},
		{[]string{"attach", "--wakeup-bytes", "4294967296", "lo"}, "--wakeup-bytes 4294967296"},
		{[]string{"attach", "--snap-small", "70000", "lo"}, "--snap-small 70000: want 1 to 4096"},
		{[]string{"attach", "--direction", "sideways", "lo"}, "want in, out or both"},
		{[]string{"attach", "--tc-mode", "tc", "lo"}, "want auto, tcx or clsact"},
		{[]string{"attach", "--rdns-wait", "5x", "lo"}, "invalid value \"5x\" for flag -rdns-wait"},
		{[]string{"attach", "--dns-server", "127.0.0.1:99999", "nosuchif0"}, `port "99999" is not a number from 1 to 65535`},
		{[]string{"read", "--dns-server", "127.0.0.1:99999", file}, `port "99999"`},
		{[]string{"read", "--dns-server", "[::1", file}, "not HOST:PORT"},
		{[]string{"read", "--dns-server", "::1:53:x", file}, "not HOST:PORT"},
		{[]string{"read", "--dns-server", "a b", file}, "neither an address nor a host name"},
		{[]string{"read", "--dns-server", "[10.0.0.1]", file}, "only an IPv6 address goes in brackets"},
		{[]string{"read", "--dns-server", "1.2.3.4:0", file}, "port 0"},
		{[]string{"read", "--dns-server", "", file}, "no host"},
		{[]string{"read", "-c", "-1", file}, "invalid value \"-1\" for flag -c"},
		{[]string{"read", "-c", "99999999999999999999", file}, "for flag -c"},
		{[]string{"read", "--rdns-wait", "0s", file}, "--rdns-wait 0s: want a duration from 1ms to 1m0s"},
		{[]string{"read", "--rdns-wait", "-5ms", file}, "--rdns-wait -5ms"},
		{[]string{"read", "--rdns-wait", "9999999h", file}, "for flag -rdns-wait"},
		{[]string{"read", "--rdns-cache", "0", file}, "--rdns-cache 0: want 1 to"},
		{[]string{"read", "--rdns-max-inflight", "-3", file}, "--rdns-max-inflight -3"},
		{[]string{"read", "--rdns-rate", "0", file}, "--rdns-rate 0: want 1 to"},
		{[]string{"read", "--wire-names", "0", file}, "--wire-names 0: want 1 to"},
		{[]string{"read", "--max-flows", "99999999999", file}, "--max-flows 99999999999: want 1 to 16777216"},
		{[]string{"read", "--flow-idle", "10000h", file}, "--flow-idle 10000h0m0s: want a duration"},
		{[]string{"read", "--max-interfaces", "0", file}, "--max-interfaces 0"},
		{[]string{"read", "--internal", "10.0.0.0/33", file}, "--internal"},
		{[]string{"read", "--internal", "not-a-cidr", file}, "--internal"},
		{[]string{"read", "-o", "xml", file}, `-o "xml"`},
		{[]string{"read", "--names", "dns", file}, `--names "dns"`},
		{[]string{"read", "--color", "sometimes", file}, `--color "sometimes": want auto, always, never`},
		{[]string{"read", "--view", "nope", file}, `--view "nope"`},
		{[]string{"read", "--nosuch", file}, "flag provided but not defined: -nosuch"},
		{[]string{"read"}, "read takes a FILE"},
		{[]string{"nosuchcommand"}, `no command "nosuchcommand"`},
	}
	for _, c := range cases {
		out, stderr, code := runCmd(t, c.args...)
		if code != 2 || out != "" || !strings.Contains(stderr, c.want) || countsLine.MatchString(stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2, nothing, %q and no counters line", c.args, code, out, stderr, c.want)
		}
	}
	// A flag that does not parse prints the command's usage, on stderr.
	_, stderr, _ := runCmd(t, "read", "--nosuch", file)
	if !strings.Contains(stderr, "USAGE:") || !strings.Contains(stderr, "--dns-server") {
		t.Errorf("no usage on stderr:\n%s", stderr)
	}
}

// TestGoodFlags: the values at the edges of the ranges, and the HOST[:PORT] forms, are taken.
func TestGoodFlags(t *testing.T) {
	file := filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap")
	for _, args := range [][]string{
		{"--rdns-wait", "1ms"}, {"--rdns-wait", "1m"}, {"--max-flows", "1"}, {"--rdns-cache", "1"},
		{"--dns-match-timeout", "1ns"}, {"--max-interfaces", "1"}, {"-c", "0"},
	} {
		if _, stderr, code := runCmd(t, append(append([]string{"read", "-n"}, args...), file)...); code != 0 {
			t.Errorf("%q: exit %d: %s", args, code, stderr)
		}
	}
}

// TestParseServer: HOST[:PORT] as --dns-server takes it, IPv6 in brackets before a port, 53
// when no port is given.
func TestParseServer(t *testing.T) {
	good := map[string]string{
		"127.0.0.1":         "127.0.0.1:53",
		"127.0.0.1:5353":    "127.0.0.1:5353",
		"[::1]":             "[::1]:53",
		"::1":               "[::1]:53",
		"[::1]:5300":        "[::1]:5300",
		"[fe80::1%eth0]:53": "[fe80::1%eth0]:53",
		"ns.example":        "ns.example:53",
		"ns.example:1053":   "ns.example:1053",
		"localhost:65535":   "localhost:65535",
	}
	for in, want := range good {
		got, err := parseServer("dns-server", in)
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ":53", "127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]:", "::1]:53",
		"[10.0.0.1]", "a b:53", "host/x", "[::1]:65536", "1.2.3.4:53:53"} {
		if got, err := parseServer("dns-server", bad); err == nil || !badUsage(err) {
			t.Errorf("%q: taken as %q (%v)", bad, got, err)
		}
	}
}

// TestReadOutputFails: read whose standard output cannot be written, a full disk (/dev/full:
// ENOSPC) or a pipe whose reader is gone (EPIPE, which would kill the process with SIGPIPE if
// it were fd 1 and not caught), ends with exit 1, the reason spelled out, and the counters
// line last.
func TestReadOutputFails(t *testing.T) {
	file := filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap")
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full:", err)
	}
	defer full.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close()
	defer pw.Close()
	for _, c := range []struct {
		out  *os.File
		want string
	}{{full, "the disk is full"}, {pw, "broken pipe"}} {
		var stderr bytes.Buffer
		runMu.Lock()
		code := run([]string{"chains-sensor", "read", "-n", file}, c.out, &stderr)
		runMu.Unlock()
		if m := countsLine.FindStringSubmatch(stderr.String()); code != 1 || !strings.Contains(stderr.String(), c.want) || m == nil {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant 1, %q and the counters line last", c.out.Name(), code, stderr.String(), c.want)
		}
	}
}
