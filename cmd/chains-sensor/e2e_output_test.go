package main

// End-to-end tests of what the sensor prints: net_watch lines, JSON against tcpdump, two
// interfaces, -c, the periodic counters. The harness is in e2e_harness_test.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestE2ETextLines: net_watch lines for ICMP, UDP and TCP, IPv4 and IPv6, both directions, with
// the domain classes; exit 0 on SIGINT with the counters; nothing attached afterwards.
func TestE2ETextLines(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	tn.startServers(t)
	sp := tn.startSensor(t, bin, "-n", tn.IfA)
	tn.clientTraffic(t)
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT, want 0\n%s", code, sp.stderrText())
	}
	lines := sp.output()
	// The servers' packets end in their process, " [nginx 4242]" (owner_e2e_test.go checks it).
	lineRE := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - (\S+) (\S+) (\S+)\((\S+)\) --> (\S+)\((\S+)\)(?: \[\S+ \d+\])?$`)
	have := map[string]bool{}
	for _, l := range lines {
		m := lineRE.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("not a net_watch line: %q", l)
			continue
		}
		have[strings.Join(m[1:], " ")] = true
	}
	a4, b4, a6, b6 := tn.V4A, tn.V4B, tn.V6A, tn.V6B
	want := []string{
		"ICMP IP " + b4 + " internal " + a4 + " internal",
		"ICMP IP " + a4 + " internal " + b4 + " internal",
		"ICMP6 IP6 " + b6 + " internal " + a6 + " internal",
		"ICMP6 IP6 " + a6 + " internal " + b6 + " internal",
		"UDP IP " + b4 + " internal " + a4 + " internal",
		"UDP IP " + a4 + " internal " + b4 + " internal",
		"UDP IP6 " + b6 + " internal " + a6 + " internal",
		"UDP IP6 " + a6 + " internal " + b6 + " internal",
		"TCP IP " + b4 + " internal " + a4 + " internal",
		"TCP IP " + a4 + " internal " + b4 + " internal",
		"TCP IP6 " + b6 + " internal " + a6 + " internal",
		"TCP IP6 " + a6 + " internal " + b6 + " internal",
		"ICMP IP " + b4 + " internal " + tn.V4BC + " broadcast",
		"ICMP IP " + b4 + " internal 224.0.0.251 multicast_dns",
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("no line for %q", w)
		}
	}
	// IPv6 to all hosts comes from B's link-local address, which differs every run.
	allHosts := false
	for k := range have {
		allHosts = allHosts || (strings.HasPrefix(k, "ICMP6 IP6 fe80:") && strings.HasSuffix(k, " ff02::1 all_hosts"))
	}
	if !allHosts {
		t.Error("no line for the ICMPv6 echo to ff02::1 (all_hosts)")
	}
	_, recorded, lost := sp.counters(t)
	if recorded != uint64(len(lines)) || lost != 0 {
		t.Errorf("%d lines printed but the counters say %d recorded, %d lost", len(lines), recorded, lost)
	}
	if t.Failed() {
		t.Logf("output:\n%s\nstderr:\n%s", strings.Join(lines, "\n"), sp.stderrText())
	}
	tn.assertDetached(t)
}

// TestE2EJSONAgainstTcpdump: with -o json, every ICMP echo, DNS and HTTP packet between the two
// ends appears once with the right dir, addresses, ports and length, exactly as tcpdump captured
// them on the same interface at the same time (read back with tshark).
func TestE2EJSONAgainstTcpdump(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "tcpdump", "tshark")
	bin := buildSensor(t)
	tn.startServers(t)

	pcap := filepath.Join(tn.dir, "capture.pcap")
	tdLog := filepath.Join(tn.dir, "tcpdump.log")
	logf, err := os.Create(tdLog)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	td := tn.A.Start(t, nil, logf, "tcpdump", "-n", "-U", "-i", tn.IfA, "-w", pcap)
	for i := 0; ; i++ {
		if b, _ := os.ReadFile(tdLog); bytes.Contains(b, []byte("listening on")) {
			break
		}
		if i == 100 {
			b, _ := os.ReadFile(tdLog)
			t.Fatalf("tcpdump did not start: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}

	sp := tn.startSensor(t, bin, "-n", "-o", "json", tn.IfA)
	tn.clientTraffic(t)
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	td.Process.Signal(syscall.SIGINT)
	if !td.WaitFor(10 * time.Second) {
		t.Fatal("tcpdump did not stop")
	}

	pairs := map[[2]string]bool{
		{tn.V4A, tn.V4B}: true, {tn.V4B, tn.V4A}: true, {tn.V6A, tn.V6B}: true, {tn.V6B, tn.V6A}: true,
	}
	keep := func(proto, src, dst string, sport, dport, icmpType int) bool {
		if !pairs[[2]string{src, dst}] {
			return false
		}
		switch proto {
		case "ICMP":
			return icmpType == 0 || icmpType == 8
		case "ICMP6":
			return icmpType == 128 || icmpType == 129
		case "UDP":
			return sport == 53 || dport == 53
		case "TCP":
			return sport == 80 || dport == 80
		}
		return false
	}
	key := func(dir, proto, src string, sport int, dst string, dport, icmpType, length int) string {
		return fmt.Sprintf("%s %s %s:%d > %s:%d icmp=%d len=%d", dir, proto, src, sport, dst, dport, icmpType, length)
	}

	// What the sensor printed.
	got := map[string]int{}
	dirs := map[string]int{}
	lines := sp.output()
	for _, l := range lines {
		var o struct {
			Dir      string `json:"dir"`
			Iface    string `json:"iface"`
			IP       string `json:"ip"`
			Src      string `json:"src"`
			Dst      string `json:"dst"`
			Proto    string `json:"proto"`
			Sport    int    `json:"sport"`
			Dport    int    `json:"dport"`
			Len      int    `json:"len"`
			ICMPType int    `json:"icmp_type"`
		}
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatalf("not a JSON object: %q: %v", l, err)
		}
		if o.Iface != tn.IfA || (o.Dir != "in" && o.Dir != "out") {
			t.Errorf("iface %q dir %q in %s", o.Iface, o.Dir, l)
		}
		if !keep(o.Proto, o.Src, o.Dst, o.Sport, o.Dport, o.ICMPType) {
			continue
		}
		got[key(o.Dir, o.Proto, o.Src, o.Sport, o.Dst, o.Dport, o.ICMPType, o.Len)]++
		dirs[o.Dir]++
	}

	// What tcpdump captured, decoded by tshark.
	macA := macOf(t, tn.A, tn.IfA)
	out, err := execT(t, 30*time.Second, "tshark", "-n", "-r", pcap, "-T", "fields", "-E", "separator=|",
		"-e", "eth.src", "-e", "frame.len", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
		"-e", "ip.proto", "-e", "ipv6.nxt", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport",
		"-e", "udp.dstport", "-e", "icmp.type", "-e", "icmpv6.type")
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	want := map[string]int{}
	atoi := func(s string) int { n, _ := strconv.Atoi(strings.Split(s, ",")[0]); return n }
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 14 {
			continue
		}
		dir := "in"
		if f[0] == macA {
			dir = "out"
		}
		src, dst, nh := f[2], f[3], atoi(f[6])
		if f[4] != "" {
			src, dst, nh = f[4], f[5], atoi(f[7])
		}
		var proto string
		var sport, dport, icmpType int
		switch nh {
		case 1:
			proto, icmpType = "ICMP", atoi(f[12])
		case 58:
			proto, icmpType = "ICMP6", atoi(f[13])
		case 6:
			proto, sport, dport = "TCP", atoi(f[8]), atoi(f[9])
		case 17:
			proto, sport, dport = "UDP", atoi(f[10]), atoi(f[11])
		default:
			continue
		}
		if !keep(proto, src, dst, sport, dport, icmpType) {
			continue
		}
		want[key(dir, proto, src, sport, dst, dport, icmpType, atoi(f[1]))]++
	}
	if len(want) < 16 {
		t.Fatalf("tcpdump saw only %d kinds of packet between the ends:\n%s", len(want), out)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("tcpdump: %d × %s; chains-sensor: %d", n, k, got[k])
		}
	}
	for k, n := range got {
		if want[k] == 0 {
			t.Errorf("chains-sensor: %d × %s; tcpdump: none", n, k)
		}
	}
	if dirs["in"] == 0 || dirs["out"] == 0 {
		t.Errorf("directions seen: %v, want both in and out", dirs)
	}
	seen, recorded, lost := sp.counters(t)
	if recorded != uint64(len(lines)) || lost != 0 || seen != recorded {
		t.Errorf("%d objects printed; counters: %d seen, %d recorded, %d lost", len(lines), seen, recorded, lost)
	}
	t.Logf("%d packets of the exchanges matched tcpdump (%d kinds); %d in, %d out", sum(want), len(want), dirs["in"], dirs["out"])
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestE2ETwoInterfaces: one sensor on two interfaces: each packet carries its interface, and
// stderr has counters per interface that add up to the total.
func TestE2ETwoInterfaces(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	// A second veth, its name unique as the first's.
	ifA1, ifB1 := sensortest.IfName(t, "a"), sensortest.IfName(t, "b")
	tn.A.AddVeth(t, ifA1, ifB1, tn.B)
	tn.A.AddAddr(t, ifA1, "10.78.0.1/24")
	tn.B.AddAddr(t, ifB1, "10.78.0.2/24")
	sp := tn.startSensor(t, bin, "-n", "-o", "json", tn.IfA, ifA1)
	for _, dst := range []string{tn.V4A, "10.78.0.1"} {
		if out, err := tn.inB(t, 10*time.Second, "ping", "-c3", "-i0.1", "-W2", dst); err != nil {
			t.Fatalf("ping %s: %v\n%s", dst, err, out)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	// ICMP echoes per interface and direction, from the JSON.
	echoes := map[string]int{}
	perIface := map[string]int{}
	for _, l := range sp.output() {
		var o struct{ Iface, Dir, Src, Proto string }
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatal(err)
		}
		perIface[o.Iface]++
		if o.Proto == "ICMP" {
			echoes[o.Iface+" "+o.Dir+" "+o.Src]++
		}
	}
	for _, w := range []string{tn.IfA + " in " + tn.V4B, tn.IfA + " out " + tn.V4A, ifA1 + " in 10.78.0.2", ifA1 + " out 10.78.0.1"} {
		if echoes[w] != 3 {
			t.Errorf("%d ICMP packets for %q, want 3 (all: %v)", echoes[w], w, echoes)
		}
	}
	// stderr: "<iface>: <seen> seen, <in> in and <out> out records, <lost> lost to a full ring
	// buffer" per interface, the records summing to the total.
	re := regexp.MustCompile(`(?m)^(\S+): (\d+) seen, (\d+) in and (\d+) out records, (\d+) lost to a full ring buffer$`)
	sumIfaces := uint64(0)
	for _, m := range re.FindAllStringSubmatch(sp.stderrText(), -1) {
		seen, _ := strconv.ParseUint(m[2], 10, 64)
		in, _ := strconv.ParseUint(m[3], 10, 64)
		out, _ := strconv.ParseUint(m[4], 10, 64)
		lost, _ := strconv.ParseUint(m[5], 10, 64)
		if int(in+out) != perIface[m[1]] {
			t.Errorf("%s: stderr counts %d records, the output has %d", m[1], in+out, perIface[m[1]])
		}
		if seen != in+out+lost {
			t.Errorf("%s: %d seen != %d records + %d lost", m[1], seen, in+out, lost)
		}
		sumIfaces += in + out
	}
	if _, recorded, _ := sp.counters(t); recorded != sumIfaces || len(perIface) != 2 {
		t.Errorf("per-interface counts add up to %d, total recorded %d; interfaces %v", sumIfaces, recorded, perIface)
	}
	tn.assertDetached(t)
	if out := tn.A.MustRun(t, "ip", "link", "show", "dev", ifA1); strings.Contains(out, "xdp") {
		t.Errorf("%s still has XDP:\n%s", ifA1, out)
	}
}

// TestE2ECount: -c N prints N packets, exits 0 on its own, counts everything it saw.
func TestE2ECount(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	sp := tn.startSensor(t, bin, "-n", "-c", "5", "-o", "json", tn.IfA)
	tn.inB(t, 10*time.Second, "ping", "-c6", "-i0.05", "-W1", tn.V4A)
	if code := sp.wait(t); code != 0 {
		t.Fatalf("exit status %d\n%s", code, sp.stderrText())
	}
	if n := len(sp.output()); n != 5 {
		t.Errorf("%d lines with -c 5", n)
	}
	if seen, recorded, lost := sp.counters(t); recorded < 5 || lost != 0 || seen < 5 {
		t.Errorf("counters %d seen, %d recorded, %d lost", seen, recorded, lost)
	}
	tn.assertDetached(t)
}

// TestE2EStatsInterval: --stats-interval 1 prints the counters while running.
func TestE2EStatsInterval(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	sp := tn.startSensor(t, bin, "-n", "--stats-interval", "1", tn.IfA)
	tn.inB(t, 5*time.Second, "ping", "-c3", "-i0.2", "-W1", tn.V4A)
	time.Sleep(1500 * time.Millisecond)
	sp.stop(t, syscall.SIGINT)
	text := sp.stderrText()
	if n := strings.Count(text, " packets seen, "); n < 2 {
		t.Errorf("%d counter blocks in stderr, want a periodic one and the final one:\n%s", n, text)
	}
	if !strings.Contains(text, tn.IfA+": ") {
		t.Errorf("no per-interface counters:\n%s", text)
	}
	sp.counters(t)
}
