package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestStageFlags: the flags of the flow table and the DNS query matching reach their stages.
// chains/http.pcap holds three conversations (tshark -z conv: two TCP, one UDP); with a table
// of one flow they evict each other, and with a 1s idle timeout the UDP one (a query and its
// answer 0.36s apart, then nothing) ends idle. chains/dns.pcap's responses are matched to their
// queries (tshark's dns.time in stages/testdata/tshark/dns_dns_pcap.tsv) unless a query may
// wait no time at all.
func TestStageFlags(t *testing.T) {
	pcaps := sensortest.Pcaps(t)
	http := filepath.Join(pcaps, "chains", "http.pcap")
	flows := func(args ...string) []string {
		t.Helper()
		out, stderr, code := runCmd(t, append(append([]string{"read", "-n", "--utc", "--view", "flows"}, args...), http)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return strings.Split(strings.TrimSpace(out), "\n")
	}
	lines := flows("--max-flows", "1")
	evicted := 0
	for _, l := range lines {
		if strings.Contains(l, " end=evicted ") {
			evicted++
		}
	}
	if len(lines) <= 3 || evicted < len(lines)-1 {
		t.Errorf("--max-flows 1: %d lines, %d evicted:\n%s", len(lines), evicted, strings.Join(lines, "\n"))
	}
	if all := strings.Join(flows("--flow-idle", "1s"), "\n"); !strings.Contains(all, "FLOW UDP 145.254.160.237:3009 --> 145.253.2.203:53 end=idle ") {
		t.Errorf("--flow-idle 1s:\n%s", all)
	}
	if all := strings.Join(flows(), "\n"); strings.Contains(all, "end=idle") || strings.Contains(all, "end=evicted") {
		t.Errorf("defaults:\n%s", all)
	}
	dns := filepath.Join(pcaps, "chains", "dns.pcap")
	matched := func(args ...string) int {
		out, stderr, code := runCmd(t, append(append([]string{"read", "-n", "--utc", "--view", "weird-dns", "-o", "json"}, args...), dns)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return strings.Count(out, `"latency_ms":`)
	}
	if n := matched(); n == 0 {
		t.Error("no weird response matched to its query")
	}
	if n := matched("--dns-match-timeout", "1ns"); n != 0 {
		t.Errorf("--dns-match-timeout 1ns: %d responses matched", n)
	}
	for _, bad := range [][]string{{"--max-flows", "0"}, {"--flow-idle", "0s"}, {"--dns-max-pending", "-1"}} {
		if _, stderr, code := runCmd(t, append(append([]string{"read"}, bad...), http)...); code != 2 || !strings.Contains(stderr, bad[0]+" "+bad[1]+": want ") {
			t.Errorf("%v: exit %d, %s", bad, code, stderr)
		}
	}
}

// TestWireNamesFlag: --wire-names bounds the names learned from DNS answers (chains/dns.pcap
// answers for more than 2 public addresses: tshark's dns.a and dns.aaaa), and the exit stats
// say the bound, the flag and the evictions.
func TestWireNamesFlag(t *testing.T) {
	file := filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap")
	_, stderr, code := runCmd(t, "read", "--names", "wire", "--wire-names", "2", file)
	var line string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "table wire_names: ") {
			line = l
		}
	}
	if code != 0 || !strings.HasPrefix(line, "table wire_names: 2 of 2 (--wire-names), peak 2, ") || strings.HasSuffix(line, " 0 evicted") || !strings.HasSuffix(line, " evicted") {
		t.Errorf("exit %d, wire_names line %q:\n%s", code, line, stderr)
	}
}

// TestQUICHandshakesFlag: --quic-max-handshakes bounds the QUIC handshakes followed.
// protocols/quic_ja4_chrome.pcap holds 11 connections, each one client Initial (tshark:
// quic.long.packet_type==0 from 11 distinct source ports), so a table of one evicts 10, and
// all 11 hellos are still reported (each fits one Initial).
func TestQUICHandshakesFlag(t *testing.T) {
	file := filepath.Join(sensortest.Pcaps(t), "protocols", "quic_ja4_chrome.pcap")
	out, stderr, code := runCmd(t, "read", "-n", "--view", "urlwatch", "--quic-max-handshakes", "1", file)
	want := "table quic_handshakes: 1 of 1 (--quic-max-handshakes), peak 1, 10 evicted"
	if code != 0 || !strings.Contains(stderr, want+"\n") || strings.Count(out, " QUIC ") != 11 {
		t.Errorf("exit %d, want %q and 11 QUIC lines:\n%s\n%s", code, want, out, stderr)
	}
	for _, bad := range [][]string{{"--quic-max-handshakes", "0"}, {"--dns-max-clients", "0"}} {
		if _, stderr, code := runCmd(t, append(append([]string{"read"}, bad...), file)...); code != 2 || !strings.Contains(stderr, bad[0]+" "+bad[1]+": want ") {
			t.Errorf("%v: exit %d, %s", bad, code, stderr)
		}
	}
}
