package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// captureOn runs tcpdump -w on the sensor's side of the veth until the returned stop is
// called: the oracle of what the interface received and sent. A 2000-byte snapshot and a 32
// MiB buffer keep up with 64 KiB GSO segments, immediate mode hands every packet over before
// the stop; stop fails the test if tcpdump dropped any.
func (tn *testNet) captureOn(t *testing.T, pcap string) (stop func()) {
	t.Helper()
	return tn.tcpdumpOn(t, pcap, "2000")
}

// tcpdumpOn runs tcpdump -w pcap with snapshot length snap on the sensor's interface until the
// returned stop, which fails the test if tcpdump dropped anything.
func (tn *testNet) tcpdumpOn(t *testing.T, pcap, snap string) (stop func()) {
	t.Helper()
	logName := pcap + ".log"
	logf, err := os.Create(logName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	td := tn.A.Start(t, nil, logf, "tcpdump", "-n", "-U", "--immediate-mode", "-s", snap, "-B", "32768", "-i", tn.IfA, "-w", pcap)
	for i := 0; ; i++ {
		if b, _ := os.ReadFile(logName); bytes.Contains(b, []byte("listening on")) {
			break
		}
		if i == 100 {
			b, _ := os.ReadFile(logName)
			t.Fatalf("tcpdump did not start: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		td.Process.Signal(syscall.SIGINT)
		if !td.WaitFor(10 * time.Second) {
			t.Fatal("tcpdump did not stop")
		}
		b, _ := os.ReadFile(logName)
		if !bytes.Contains(b, []byte("\n0 packets dropped by kernel")) {
			t.Fatalf("tcpdump did not capture everything, so it is no oracle:\n%s", b)
		}
	}
}

// quiet stops what the link says by itself, so that all it carries during a test is the test's
// own traffic: no IPv6 (neighbour discovery, MLD, router solicitations) and permanent
// neighbour entries (no ARP).
func (tn *testNet) quiet(t *testing.T) {
	t.Helper()
	macA, macB := macOf(t, tn.A, tn.IfA), macOf(t, tn.B, tn.IfB)
	tn.A.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf."+tn.IfA+".disable_ipv6=1")
	tn.B.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf."+tn.IfB+".disable_ipv6=1")
	tn.A.MustRun(t, "ip", "neigh", "replace", tn.V4B, "lladdr", macB, "dev", tn.IfA, "nud", "permanent")
	tn.B.MustRun(t, "ip", "neigh", "replace", tn.V4A, "lladdr", macA, "dev", tn.IfB, "nud", "permanent")
	time.Sleep(200 * time.Millisecond) // let what was under way pass
}

// countIn is how many packets of pcap tcpdump selects with expr ("" for all).
func countIn(t *testing.T, pcap, expr string) int {
	t.Helper()
	args := []string{"-nr", pcap}
	if expr != "" {
		args = append(args, "--", expr)
	}
	out, err := exec.Command("tcpdump", args...).Output()
	if err != nil {
		t.Fatalf("tcpdump -r %s %q: %v", pcap, expr, err)
	}
	return strings.Count(string(out), "\n")
}

// TestE2EFilter: `attach -i IF 'icmp or udp port 53'` while ping, dig and curl run prints only
// the ICMP and DNS packets, all of those tcpdump captured on the interface; the rest of what
// the interface received and sent is counted as filtered out, on the closing line and on the
// interface's stats line.
func TestE2EFilter(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "tcpdump")
	bin := buildSensor(t)
	tn.startServers(t)
	tn.quiet(t)
	pcap := filepath.Join(tn.dir, "filter.pcap")
	stopCapture := tn.captureOn(t, pcap)

	const expr = "icmp or udp port 53"
	sp := tn.startSensor(t, bin, "-n", "-o", "json", "-i", tn.IfA, expr)
	for _, s := range [][]string{
		{"ping", "-c3", "-i0.2", "-W2", tn.V4A},
		{"dig", "+short", "+tries=1", "+time=2", "@" + tn.V4A, "www.test.example", "A"},
		{"curl", "-sS", "-m", "3", "http://" + tn.V4A + "/"},
		{"dig", "+short", "+tries=1", "+time=2", "@" + tn.V4A, "www.test.example", "A"},
		{"curl", "-sS", "-m", "3", "http://" + tn.V4A + "/"},
	} {
		if out, err := tn.inB(t, 10*time.Second, s...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	stopCapture()

	lines := sp.output()
	for _, l := range lines {
		var o struct {
			Proto string `json:"proto"`
			Sport int    `json:"sport"`
			Dport int    `json:"dport"`
		}
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatalf("not a JSON object: %q: %v", l, err)
		}
		if o.Proto != "ICMP" && !(o.Proto == "UDP" && (o.Sport == 53 || o.Dport == 53)) {
			t.Errorf("the filter let through %s", l)
		}
	}
	all, selected := countIn(t, pcap, ""), countIn(t, pcap, expr)
	tcp := countIn(t, pcap, "tcp port 80")
	stderr := sp.stderrText()
	seen, filtered, recorded, lost := filteredCounts(t, stderr)
	if selected < 10 || tcp < 10 {
		t.Fatalf("tcpdump captured %d ICMP/DNS and %d HTTP packets: the traffic did not happen", selected, tcp)
	}
	if recorded != uint64(len(lines)) || recorded != uint64(selected) || lost != 0 {
		t.Errorf("%d lines, %d recorded, %d lost; tcpdump captured %d ICMP/DNS packets", len(lines), recorded, lost, selected)
	}
	if seen != uint64(all) || filtered != uint64(all-selected) {
		t.Errorf("seen %d, filtered out %d; tcpdump captured %d packets on %s, %d of them not ICMP/DNS", seen, filtered, all, tn.IfA, all-selected)
	}
	ifLine := fmt.Sprintf("%s: %d seen, %d filtered out, ", tn.IfA, all, all-selected)
	if !strings.Contains(stderr, ifLine) {
		t.Errorf("no %q in the stats:\n%s", ifLine, stderr)
	}
	t.Logf("tcpdump captured %d packets (%d ICMP/DNS, %d HTTP); the sensor: %d seen, %d filtered out, %d recorded", all, selected, tcp, seen, filtered, recorded)
	if t.Failed() {
		out, _ := exec.Command("tcpdump", "-nr", pcap).CombinedOutput()
		t.Logf("tcpdump:\n%s\nsensor:\n%s\n%s", out, strings.Join(lines, "\n"), stderr)
	}
	tn.assertDetached(t)
}

// TestE2EFilterTooComplex: an expression the verifier refuses exits 2, says so with the
// verifier's last lines, prints nothing on stdout and attaches nothing.
func TestE2EFilterTooComplex(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	// Each protochain is a loop; in tc_sensor each costs the verifier hundreds of thousands
	// of instructions (six of them: the parser itself costs the verifier less since it
	// enters tunnels step by step, and four now fit).
	expr := "ip6 protochain 6 or ip6 protochain 17 or ip6 protochain 58 or ip protochain 1 or ip6 protochain 50 or ip protochain 6"
	cmd := tn.A.Command(context.Background(), bin, "attach", "-n", "-i", tn.IfA, expr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("attach still running after 2 minutes")
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q; want 2 and nothing", code, stdout.String())
	}
	if e := stderr.String(); !strings.Contains(e, "too large or too complex for the kernel's verifier") || !strings.Contains(e, "processed") {
		t.Errorf("stderr does not explain:\n%s", e)
	}
	tn.assertDetached(t)
}

// TestE2EFilterDeepEgress: tc_sensor makes only the head of an skb linear (TC_PULL_LEN, 512
// bytes); a filter that reads past it fetches the bytes with bpf_skb_load_bytes. An HTTP
// response leaving through the veth in large (GSO) segments, filtered on payload bytes 1000
// bytes into TCP, is selected packet for packet as tcpdump selects it on the same interface.
func TestE2EFilterDeepEgress(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "tcpdump", "nginx", "curl")
	bin := buildSensor(t)
	// Our own nginx on port 8080, serving 1 MB of 'A'.
	root := filepath.Join(tn.dir, "www")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "big"), bytes.Repeat([]byte("A"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(tn.dir, "nginx-big.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx-big.pid;
error_log stderr;
events { worker_connections 16; }
http {
	access_log off;
	client_body_temp_path %[1]s/body; proxy_temp_path %[1]s/proxy; fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi; scgi_temp_path %[1]s/scgi;
	server { listen %[2]s:8080; root %[3]s; }
}
`, tn.dir, tn.V4A, root)), 0o644)
	tn.startA(t, "nginx", "-c", conf, "-p", tn.dir, "-e", "stderr")
	url := "http://" + tn.V4A + ":8080/big"
	for i := 0; ; i++ {
		if _, err := tn.inB(t, 5*time.Second, "curl", "-sSf", "-m", "2", "-o", "/dev/null", url); err == nil {
			break
		}
		if i == 30 {
			t.Fatal("nginx on 8080 does not answer")
		}
		time.Sleep(200 * time.Millisecond)
	}

	const expr = "tcp src port 8080 and tcp[1000:4] = 0x41414141"
	pcap := filepath.Join(tn.dir, "deep.pcap")
	stopCapture := tn.captureOn(t, pcap)
	sp := tn.startSensor(t, bin, "-n", "-o", "json", "--direction", "out", "-i", tn.IfA, expr)
	for i := 0; i < 3; i++ {
		if out, err := tn.inB(t, 20*time.Second, "curl", "-sSf", "-m", "10", "-o", "/dev/null", url); err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	stopCapture()
	// tcpdump captured both directions; the sensor watched egress, which is all of port 8080's.
	want := countIn(t, pcap, expr)
	_, _, recorded, lost := filteredCounts(t, sp.stderrText())
	out, _ := exec.Command("tcpdump", "-nr", pcap, "--", expr).Output()
	big := 0
	for _, l := range strings.Split(string(out), "\n") {
		var n int
		if i := strings.LastIndex(l, "length "); i >= 0 {
			fmt.Sscanf(l[i:], "length %d", &n)
		}
		if n > 1448 {
			big++ // a GSO segment: longer than the MTU allows
		}
	}
	t.Logf("tcpdump selects %d egress packets (%d of them larger than the MTU), the sensor recorded %d", want, big, recorded)
	if want < 10 || recorded != uint64(want) || lost != 0 {
		t.Errorf("the sensor recorded %d (%d lost), tcpdump selects %d", recorded, lost, want)
		all, _ := exec.Command("tcpdump", "-nr", pcap, "-S", "--", "tcp src port 8080").CombinedOutput()
		log, _ := os.ReadFile(pcap + ".log")
		t.Logf("tcpdump:\n%s\n%s", all, log)
	}
	tn.assertDetached(t)
}
