package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EZeekLogs: attach --log-dir while real traffic runs (dig to dnsmasq, curl to nginx,
// ping, IPv4 and IPv6): conn.log has each curl's connection from B to A:80 closed normally by
// both sides (SF, history ShAD... with both FINs: curl and nginx close with FIN), service http;
// http.log has each request (host, uri /, status 200) under its connection's uid; dns.log has
// each dig's answer (www.test.example, rcode NOERROR, dnsmasq's address) under the uid of a UDP
// conn.log line SF with history Dd; the pings are icmp lines.
func TestE2EZeekLogs(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	tn.startServers(t)
	dir := filepath.Join(tn.dir, "logs")
	sp := tn.startSensor(t, bin, "-n", "-q", "--log-dir", dir, tn.IfA)
	tn.clientTraffic(t)
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	conns := map[string]map[string]any{}
	var icmp int
	for _, c := range jsonLines(t, filepath.Join(dir, "conn.log")) {
		conns[c["uid"].(string)] = c
		if c["proto"] == "icmp" {
			icmp++
		}
	}
	if icmp == 0 {
		t.Error("no icmp line in conn.log")
	}
	web := map[string]bool{}
	for _, h := range jsonLines(t, filepath.Join(dir, "http.log")) {
		c := conns[h["uid"].(string)]
		if c == nil {
			t.Errorf("http.log uid %v in no conn.log line", h["uid"])
			continue
		}
		host := strings.Trim(h["host"].(string), "[]")
		web[host] = true
		if host != tn.V4A && host != tn.V6A || h["uri"] != "/" || h["status_code"] != 200.0 || h["id.resp_p"] != 80.0 {
			t.Errorf("http.log %v", h)
		}
		hist, _ := c["history"].(string)
		if c["conn_state"] != "SF" || !strings.HasPrefix(hist, "ShAD") || !strings.Contains(hist, "F") || !strings.Contains(hist, "f") ||
			c["service"] != "http" || c["id.orig_h"] != h["id.orig_h"] || c["proto"] != "tcp" {
			t.Errorf("conn.log of the request %v: %v", h, c)
		}
	}
	if !web[tn.V4A] || !web[tn.V6A] {
		t.Errorf("http.log requests to %v, want %s and %s", web, tn.V4A, tn.V6A)
	}
	answers := map[string]bool{}
	for _, d := range jsonLines(t, filepath.Join(dir, "dns.log")) {
		if d["query"] != "www.test.example" {
			continue
		}
		c := conns[d["uid"].(string)]
		if c == nil || c["proto"] != "udp" || c["conn_state"] != "SF" || c["history"] != "Dd" || c["service"] != "dns" {
			t.Errorf("conn.log of the answer %v: %v", d, c)
		}
		if d["rcode_name"] != "NOERROR" {
			t.Errorf("dns.log %v", d)
		}
		if a, ok := d["answers"].([]any); ok && len(a) == 1 {
			answers[a[0].(string)] = true
		}
	}
	if !answers[tn.V4A] || !answers[tn.V6A] {
		t.Errorf("dns.log answers %v, want %s and %s", answers, tn.V4A, tn.V6A)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", sp.stderrText())
	}
	tn.assertDetached(t)
}
