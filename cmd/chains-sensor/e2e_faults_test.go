package main

// End-to-end tests of the ways out under faults (issue 11), each in namespaces of its own: a
// reader of stdout that goes away (`attach | head -1`), signals on `read -` while packets wait
// for their names, the watched interface deleted, and the reverse-DNS labels of servers that
// time out, refuse, are unreachable or answer NXDOMAIN.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/miekg/dns"
)

// bpfIDs returns the ids of the BPF programs, maps and links process pid holds open, from
// /proc/PID/fdinfo.
func bpfIDs(t *testing.T, pid int) map[string][]string {
	t.Helper()
	ids := map[string][]string{}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	for _, fd := range fds {
		b, err := os.ReadFile(fd)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			for _, kind := range []string{"prog", "map", "link"} {
				if v, ok := strings.CutPrefix(l, kind+"_id:"); ok {
					ids[kind] = append(ids[kind], strings.TrimSpace(v))
				}
			}
		}
	}
	return ids
}

// assertBPFGone checks (bounded: the kernel frees them shortly after the last reference) that
// bpftool no longer finds the programs and maps of ids.
func assertBPFGone(t *testing.T, ids map[string][]string) {
	t.Helper()
	for _, kind := range []string{"prog", "map"} {
		for _, id := range ids[kind] {
			for i := 0; ; i++ {
				out, err := exec.Command("bpftool", kind, "show", "id", id).CombinedOutput()
				if err != nil {
					break
				}
				if i == 40 {
					t.Errorf("bpftool still shows %s %s after the sensor exited:\n%s", kind, id, out)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// assertNoClsact checks that no clsact qdisc and no egress filter is left on the interface.
func (tn *testNet) assertNoClsact(t *testing.T) {
	t.Helper()
	if out, _ := tn.inA(t, 5*time.Second, "tc", "qdisc", "show", "dev", tn.IfA); strings.Contains(out, "clsact") {
		t.Errorf("a clsact qdisc is left:\n%s", out)
	}
	if out, _ := tn.inA(t, 5*time.Second, "tc", "filter", "show", "dev", tn.IfA, "egress"); strings.TrimSpace(out) != "" {
		t.Errorf("an egress filter is left:\n%s", out)
	}
}

// TestE2EHeadClosesStdout: `attach | head -1`, with a real head, in TCX and in clsact mode:
// head prints one line and exits; the sensor notices its stdout is gone (EPIPE, not the
// SIGPIPE death with 141 it once had), detaches, prints the counters line and exits 1 (an
// output error, as tcpdump exits non-zero on "Unable to write output: Broken pipe"); nothing
// stays attached: no XDP, no TCX, no tc filter, no clsact qdisc, no program, no map.
func TestE2EHeadClosesStdout(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "head")
	bin := buildSensor(t)
	for _, mode := range []string{"tcx", "clsact"} {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := tn.A.Command(context.Background(), bin, "attach", "-n", "--tc-mode", mode, tn.IfA)
		var stderr syncBuffer
		cmd.Stdout, cmd.Stderr = pw, &stderr
		head := exec.Command("head", "-1")
		var headOut bytes.Buffer
		head.Stdin, head.Stdout = pr, &headOut
		if err := head.Start(); err != nil {
			t.Fatal(err)
		}
		p := sensortest.StartProc(t, cmd)
		pw.Close()
		pr.Close()
		for i := 0; !strings.Contains(stderr.String(), "attached to"); i++ {
			if i == 200 {
				t.Fatalf("%s: not attached:\n%s", mode, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		ids := bpfIDs(t, cmd.Process.Pid)
		if len(ids["prog"]) == 0 || len(ids["map"]) == 0 {
			t.Fatalf("%s: no BPF program or map held by the sensor: %v", mode, ids)
		}
		if mode == "clsact" {
			if out := tn.A.MustRun(t, "tc", "filter", "show", "dev", tn.IfA, "egress"); !strings.Contains(out, "chains-sensor") {
				t.Fatalf("clsact mode: no filter of ours:\n%s", out)
			}
		}
		tn.inB(t, 10*time.Second, "ping", "-c3", "-i0.2", "-W1", tn.V4A)
		if err := head.Wait(); err != nil {
			t.Fatalf("%s: head: %v", mode, err)
		}
		// The pipe's reader is gone now: the sensor sees it without another packet.
		if !p.WaitFor(10 * time.Second) {
			cmd.Process.Kill()
			t.Fatalf("%s: still running 10s after head exited:\n%s", mode, stderr.String())
		}
		code := exitCode(t, p.Err())
		if code != 1 || !strings.Contains(stderr.String(), "broken pipe") || !countersRE.MatchString(lastLine(stderr.String())) {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant 1, the broken pipe and the counters line last", mode, code, stderr.String())
		}
		if !netWatchRE.MatchString(strings.TrimSpace(headOut.String())) {
			t.Errorf("%s: head printed %q", mode, headOut.String())
		}
		tn.assertDetached(t)
		tn.assertNoClsact(t)
		assertBPFGone(t, ids)
	}
}

// heldRead starts `read -o json --dns-server SERVER -` in ns with stdin a pipe the test keeps
// open, writes the capture into it, and returns once the sensor holds the packets (nothing
// printed yet: the server never answers and --rdns-wait is long).
func heldRead(t *testing.T, ns *sensortest.Netns, bin, server, capture string) (*sensortest.Proc, *syncBuffer, *syncBuffer, *os.File) {
	t.Helper()
	data, err := os.ReadFile(capture)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), bin, "read", "-o", "json", "--utc", "--dns-server", server,
		"--rdns-wait", "50s", "--rdns-timeout", "50s", "-")
	var stdout, stderr syncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pr, &stdout, &stderr
	p := sensortest.StartProc(t, cmd)
	pr.Close()
	t.Cleanup(func() { pw.Close() })
	if _, err := pw.Write(data); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the packets are read and held; the pipe stays open
	if out := stdout.String(); out != "" {
		t.Fatalf("printed before the names could come: %s", out)
	}
	return p, &stdout, &stderr, pw
}

// silentServer opens a UDP socket in ns that reads queries and never answers.
func silentServer(t *testing.T, ns *sensortest.Netns) string {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// TestE2EReadSignalsPrintHeld: SIGINT, SIGTERM or SIGHUP while `read -` (a pipe that stays
// open) holds packets waiting for names that will not come: the sensor stops reading, prints
// every packet it holds (names pending), the counters line, and exits 0 at once.
func TestE2EReadSignalsPrintHeld(t *testing.T) {
	sensortest.RequireEndToEnd(t)
	ns := sensortest.NewNetns(t)
	bin := buildSensor(t)
	server := silentServer(t, ns)
	capture := filepath.Join(sensortest.Pcaps(t), "chains", "http.pcap") // 43 packets, 3 public addresses
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		p, stdout, stderr, _ := heldRead(t, ns, bin, server, capture)
		start := time.Now()
		p.Process.Signal(sig)
		if !p.WaitFor(10 * time.Second) {
			p.Process.Kill()
			t.Fatalf("%v: still running 10s later:\n%s", sig, stderr.String())
		}
		took := time.Since(start)
		if code := exitCode(t, p.Err()); code != 0 {
			t.Errorf("%v: exit %d:\n%s", sig, code, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		pending := 0
		for _, l := range lines {
			var jp struct {
				SrcRDNS string `json:"src_rdns"`
				DstRDNS string `json:"dst_rdns"`
			}
			if err := json.Unmarshal([]byte(l), &jp); err != nil {
				t.Fatalf("%v: %q: %v", sig, l, err)
			}
			if jp.SrcRDNS == "pending" || jp.DstRDNS == "pending" {
				pending++
			}
		}
		if len(lines) != 43 || pending != 43 || lastLine(stderr.String()) != "43 packets seen, 43 recorded, 0 lost" {
			t.Errorf("%v: %d lines (%d pending), stderr:\n%s\nwant the 43 held packets, their names pending, and the counters", sig, len(lines), pending, stderr.String())
		}
		t.Logf("%v: ended %v after the signal", sig, took.Round(time.Millisecond))
	}
}

// TestE2EInterfaceGone: `ip link del` of the watched veth ends the run at once with a message
// naming it, the counters line, exit 1. Watching two, deleting one is reported and the run
// goes on with the other. With --reattach, one that comes back under its name is attached
// again and watched.
func TestE2EInterfaceGone(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	goneRE := regexp.MustCompile(regexp.QuoteMeta(tn.IfA) + ` \(index \d+\) is gone: its hooks are released`)

	sp := tn.startSensor(t, bin, "-n", "--stats-interval", "1", tn.IfA)
	ids := bpfIDs(t, sp.Process.Pid)
	tn.inB(t, 5*time.Second, "ping", "-c2", "-i0.2", "-W1", tn.V4A)
	tn.A.MustRun(t, "ip", "link", "del", tn.IfA)
	start := time.Now()
	code := sp.wait(t)
	if code != 1 || !goneRE.MatchString(sp.stderrText()) || !strings.Contains(sp.stderrText(), "no watched interface is left") {
		t.Errorf("the last interface deleted: exit %d, stderr:\n%s", code, sp.stderrText())
	}
	if _, recorded, _ := sp.counters(t); recorded < 4 {
		t.Errorf("%d recorded for 2 pings and their replies", recorded)
	}
	t.Logf("the run ended %v after ip link del", time.Since(start).Round(time.Millisecond))
	assertBPFGone(t, ids)

	// Two interfaces: the second veth goes, the first is still watched.
	tn.A.AddVeth(t, tn.IfA, tn.IfB, tn.B)
	tn.A.AddAddr(t, tn.IfA, tn.V4A+"/24")
	tn.B.AddAddr(t, tn.IfB, tn.V4B+"/24")
	other, peer := sensortest.IfName(t, "c"), sensortest.IfName(t, "d")
	tn.A.AddVeth(t, other, peer, tn.B)
	sp = tn.startSensor(t, bin, "-n", tn.IfA, other)
	tn.A.MustRun(t, "ip", "link", "del", other)
	for i := 0; !strings.Contains(sp.stderrText(), other+" (index"); i++ {
		if i == 100 {
			t.Fatalf("deleting %s was not reported:\n%s", other, sp.stderrText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := tn.inB(t, 5*time.Second, "ping", "-c2", "-i0.2", "-W1", tn.V4A); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Errorf("one of two deleted, then SIGINT: exit %d\n%s", code, sp.stderrText())
	}
	if !strings.Contains(sp.stderrText(), other+" (gone): ") || !regexp.MustCompile(regexp.QuoteMeta(tn.IfA)+`: \d+ seen, [1-9]\d* in`).MatchString(sp.stderrText()) {
		t.Errorf("per-interface lines: want %s (gone) and %s still counting:\n%s", other, tn.IfA, sp.stderrText())
	}
	tn.assertDetached(t)

	// --reattach: deleted, then made again under the same name.
	sp = tn.startSensor(t, bin, "-n", "--reattach", tn.IfA)
	tn.A.MustRun(t, "ip", "link", "del", tn.IfA)
	for i := 0; !goneRE.MatchString(sp.stderrText()); i++ {
		if i == 100 {
			t.Fatalf("--reattach: deleting was not reported:\n%s", sp.stderrText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-sp.Done():
		t.Fatalf("--reattach: the run ended with its interface gone:\n%s", sp.stderrText())
	case <-time.After(500 * time.Millisecond):
	}
	tn.A.AddVeth(t, tn.IfA, tn.IfB, tn.B)
	tn.A.AddAddr(t, tn.IfA, tn.V4A+"/24")
	tn.B.AddAddr(t, tn.IfB, tn.V4B+"/24")
	for i := 0; !strings.Contains(sp.stderrText(), tn.IfA+" is back"); i++ {
		if i == 100 {
			t.Fatalf("--reattach: not attached again:\n%s", sp.stderrText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := len(sp.output())
	tn.inB(t, 5*time.Second, "ping", "-c3", "-i0.2", "-W2", tn.V4A)
	time.Sleep(200 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Errorf("--reattach: exit %d\n%s", code, sp.stderrText())
	}
	if after := len(sp.output()); after-before < 6 {
		t.Errorf("--reattach: %d lines after coming back, want the 3 pings and replies:\n%s", after-before, sp.stderrText())
	}
	tn.assertDetached(t)
}

// TestE2EDNSLabels: in a namespace of its own, `read --dns-server` against a server that
// never answers, a port where nothing listens, an address without a route, and a server that
// answers NXDOMAIN: four different labels (timeout, refused, unreachable, nxdomain), the
// address's class in the text where no NXDOMAIN came, and the stats count each outcome.
func TestE2EDNSLabels(t *testing.T) {
	sensortest.RequireEndToEnd(t)
	ns := sensortest.NewNetns(t)
	bin := buildSensor(t)
	silent := silentServer(t, ns)
	var closed string
	ns.Do(func() error {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err == nil {
			closed = pc.LocalAddr().String()
			pc.Close()
		}
		return err
	})
	ns.MustRun(t, "ip", "route", "add", "unreachable", "10.250.0.0/16")
	var nxConn net.PacketConn
	if err := ns.Do(func() (err error) { nxConn, err = net.ListenPacket("udp", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	nx := &dns.Server{PacketConn: nxConn, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNameError)
		w.WriteMsg(m)
	})}
	go nx.ActivateAndServe()
	t.Cleanup(func() { nx.Shutdown() })
	capture := filepath.Join(sensortest.Pcaps(t), "chains", "http.pcap")
	for _, c := range []struct {
		server, label, domain string
	}{
		{silent, "timeout", "public"},
		{closed, "refused", "public"},
		{"10.250.0.1:53", "unreachable", "public"},
		{nxConn.LocalAddr().String(), "nxdomain", "nxdomain"},
	} {
		js, err := ns.Run(t, 30*time.Second, bin, "read", "-o", "json", "--rdns-timeout", "300ms", "--rdns-wait", "3s", "--dns-server", c.server, capture)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.label, err, js)
		}
		text, _ := ns.Run(t, 30*time.Second, bin, "read", "--utc", "--rdns-timeout", "300ms", "--rdns-wait", "3s", "--dns-server", c.server, capture)
		sc := bufio.NewScanner(strings.NewReader(js))
		labelled := 0
		for sc.Scan() {
			var jp struct {
				Dst       string   `json:"dst"`
				DstDomain string   `json:"dst_domain"`
				DstRDNS   string   `json:"dst_rdns"`
				Tags      []string `json:"tags"`
			}
			if json.Unmarshal(sc.Bytes(), &jp) != nil || jp.Dst != "65.208.228.223" {
				continue
			}
			if jp.DstRDNS == c.label && jp.DstDomain == c.domain {
				labelled++
			}
			nxTag := strings.Contains(strings.Join(jp.Tags, ","), "nxdomain")
			if nxTag != (c.label == "nxdomain") {
				t.Errorf("%s: tags %v", c.label, jp.Tags)
			}
		}
		if labelled == 0 {
			t.Errorf("%s: no packet to 65.208.228.223 labelled %s with domain %s:\n%s", c.label, c.label, c.domain, js)
		}
		if !strings.Contains(text, "65.208.228.223("+c.domain+")") {
			t.Errorf("%s: the text does not show 65.208.228.223(%s)", c.label, c.domain)
		}
		if !regexp.MustCompile(`"rdns_` + c.label + `":[1-9]`).MatchString(js) {
			t.Errorf("%s: the stats do not count it:\n%s", c.label, js[strings.LastIndex(js, "{\"stats"):])
		}
	}
}
