package main

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// linkPackets returns the packets the interface has received and sent (ip -s link: the
// kernel's own counters of the veth, which know nothing of the sensor).
func (tn *testNet) linkPackets(t *testing.T) (rx, tx uint64) {
	t.Helper()
	out, err := tn.inA(t, 5*time.Second, "ip", "-s", "-j", "link", "show", "dev", tn.IfA)
	if err != nil {
		t.Fatalf("ip -s link: %v\n%s", err, out)
	}
	var links []struct {
		Stats struct {
			RX struct{ Packets uint64 } `json:"rx"`
			TX struct{ Packets uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link: %v\n%s", err, out)
	}
	return links[0].Stats.RX.Packets, links[0].Stats.TX.Packets
}

// TestE2EShutdownTimeoutCounters: the output blocks (stdout a pipe nobody reads) while a
// flood fills the ring; SIGINT detaches, the chain cannot finish, and after the two grace
// periods the sensor exits with the counters as they stand. Those counters agree: the
// interface's line counts what the kernel's line counts (it once showed 30,928 seen against
// the kernel's 38,382: the records left in the ring were missing), the kernel's count is the
// veth's own (ip -s link, from the attach to the stop), and N = M + L.
func TestE2EShutdownTimeoutCounters(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "ping")
	bin := buildSensor(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close() // never read: the sensor's writes block once the pipe is full
	cmd := tn.A.Command(context.Background(), bin, "attach", "-n", tn.IfA)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = pw, &stderr
	p := sensortest.StartProc(t, cmd)
	pw.Close()
	for i := 0; !strings.Contains(stderr.String(), "attached to"); i++ {
		if i == 200 {
			t.Fatalf("not attached:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rx0, tx0 := tn.linkPackets(t)
	const echoes = 20000
	if out, err := tn.inB(t, 60*time.Second, "ping", "-f", "-q", "-c", strconv.Itoa(echoes), "-W1", tn.V4A); err != nil {
		t.Fatalf("ping -f: %v\n%s", err, out)
	}
	rx1, tx1 := tn.linkPackets(t)
	if err := p.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if !p.WaitFor(20 * time.Second) { // two grace periods of 3 s, then the counters
		p.Process.Kill()
		t.Fatalf("still running 20 s after SIGINT:\n%s", stderr.String())
	}
	out := stderr.String()
	if code := exitCode(t, p.Err()); code != 0 || !strings.Contains(out, "the run does not end") {
		t.Fatalf("exit %d, want 0 after the shutdown timeout (the output blocked):\n%s", code, out)
	}
	m := countersRE.FindStringSubmatch(lastLine(out))
	if m == nil {
		t.Fatalf("stderr does not end with the counters line:\n%s", out)
	}
	seen, _ := strconv.ParseUint(m[1], 10, 64)
	recorded, _ := strconv.ParseUint(m[2], 10, 64)
	lost, _ := strconv.ParseUint(m[3], 10, 64)
	ifLine := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(tn.IfA) + `: (\d+) seen, (\d+) in and (\d+) out records, (\d+) lost`).FindStringSubmatch(out)
	kLine := regexp.MustCompile(`(?m)^kernel: (\d+) seen \((\d+) ingress, (\d+) egress\),.* (\d+) records, (\d+) lost to a full ring buffer`).FindStringSubmatch(out)
	if ifLine == nil || kLine == nil {
		t.Fatalf("no line for %s or for the kernel:\n%s", tn.IfA, out)
	}
	n := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	ifSeen, kSeen := n(ifLine[1]), n(kLine[1])
	link := (rx1 - rx0) + (tx1 - tx0)
	t.Logf("veth: %d packets (%d in, %d out); the sensor's stderr:\n%s", link, rx1-rx0, tx1-tx0, out)
	if ifSeen != kSeen {
		t.Errorf("%s: %d seen, the kernel %d", tn.IfA, ifSeen, kSeen)
	}
	if n(ifLine[2])+n(ifLine[3]) != recorded || n(ifLine[4]) != lost || n(kLine[5]) != lost {
		t.Errorf("the records and losses do not agree:\n%s", out)
	}
	if seen != recorded+lost || seen != kSeen {
		t.Errorf("counters line %q, kernel seen %d", m[0], kSeen)
	}
	// Neighbour discovery may add a few packets between the attach and the first reading, or
	// between the last reading and the detach; the flood is 2 × 20,000.
	if kSeen < link || kSeen > link+20 || link < 2*echoes {
		t.Errorf("kernel: %d seen (%s, %s); the veth carried %d (%d echoes sent)", kSeen, kLine[2], kLine[3], link, echoes)
	}
	// The path under test: most records were still to read when the output blocked (a pipe
	// holds some 600 lines), and were counted after the stop.
	if after := regexp.MustCompile(`\((\d+) of them read after the stop`).FindStringSubmatch(out); after == nil || n(after[1]) < echoes {
		t.Errorf("the records left at the stop were not counted after it:\n%s", out)
	}
	tn.assertDetached(t)
}
