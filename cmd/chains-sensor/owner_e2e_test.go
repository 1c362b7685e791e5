package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// ownerLine is what these tests read of a JSON line.
type ownerLine struct {
	Dir      string  `json:"dir"`
	Src      string  `json:"src"`
	Dst      string  `json:"dst"`
	Proto    string  `json:"proto"`
	Sport    int     `json:"sport"`
	Dport    int     `json:"dport"`
	ICMPType *int    `json:"icmp_type"`
	TCPFlags string  `json:"tcp_flags"`
	PID      *uint32 `json:"pid"`
	Comm     string  `json:"comm"`
	Cgroup   string  `json:"cgroup"`
}

func (l ownerLine) String() string {
	pid := "no process"
	if l.PID != nil {
		pid = fmt.Sprintf("[%s %d] cgroup %q", l.Comm, *l.PID, l.Cgroup)
	}
	return fmt.Sprintf("%s %s %s:%d > %s:%d %s %s", l.Dir, l.Proto, l.Src, l.Sport, l.Dst, l.Dport, l.TCPFlags, pid)
}

// startSensorInB is startSensor with the sensor in namespace B, where the clients run.
func (tn *testNet) startSensorInB(t *testing.T, bin string, args ...string) *sensorProc {
	t.Helper()
	sp := &sensorProc{}
	cmd := tn.B.Command(context.Background(), bin, append([]string{"attach"}, args...)...)
	cmd.Stdout = sp
	cmd.Stderr = &lockedWriter{mu: &sp.mu, w: &sp.stderr}
	sp.Proc = sensortest.StartProc(t, cmd)
	for i := 0; !strings.Contains(sp.stderrText(), "attached to"); i++ {
		select {
		case <-sp.Done():
			t.Fatalf("chains-sensor exited before attaching: %v\n%s", sp.Err(), sp.stderrText())
		case <-time.After(50 * time.Millisecond):
		}
		if i == 200 {
			t.Fatalf("chains-sensor did not attach within 10s:\n%s", sp.stderrText())
		}
	}
	return sp
}

var cgroupSeq atomic.Int32

// testCgroup makes a cgroup v2 directory of the test's own below the root, removed at the end
// (once the processes in it are gone); it returns its path below the root and an open fd.
func testCgroup(t *testing.T) (string, int) {
	t.Helper()
	root, err := sensor.CgroupV2Root()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy: %v", err)
	}
	rel := fmt.Sprintf("/chains-e2e-%d-%d", os.Getpid(), cgroupSeq.Add(1))
	dir := filepath.Join(root.Dir, rel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("make the test's cgroup: %v", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		os.Remove(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		for i := 0; i < 50; i++ { // bounded: the processes in it are reaped by now or soon
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", dir)
	})
	return rel, int(f.Fd())
}

// client is one process the test started in B, with the flow it made known beforehand (the
// source port, or the ICMP identifier, is fixed by its command line).
type client struct {
	comm   string
	pid    uint32
	cgroup string // "" outside the test's cgroup
	match  func(l ownerLine) bool
	server bool // a server: named once it has used the accepted socket, not on every packet
	// sendOnly: its flow has no ingress packet (it sends one datagram and exits).
	sendOnly bool
}

// TestE2EProcessAttribution starts the sensor in B with process attribution, then clients in
// B (curl, dig, ping over IPv4 and IPv6, one curl in a cgroup the test made) and servers in B
// (nc over TCP and UDP, for clients in A), each with a known pid: every packet of a client's
// flow, in both directions, names its pid and command; the servers are named on ingress and
// egress and never wrongly; ping forwarded through B (A to C) names no process.
func TestE2EProcessAttribution(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "nc", "sysctl")
	bin := buildSensor(t)
	tn.startServers(t) // dnsmasq and nginx in A

	// C behind B: A's pings to C are forwarded by B, past the sensor.
	c := sensortest.NewNetns(t)
	ifB2, ifC := sensortest.IfName(t, "f"), sensortest.IfName(t, "c")
	tn.B.AddVeth(t, ifB2, ifC, c)
	tn.B.AddAddr(t, ifB2, "10.79.0.1/24")
	c.AddAddr(t, ifC, "10.79.0.2/24")
	tn.B.MustRun(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	tn.A.MustRun(t, "ip", "route", "add", "10.79.0.0/24", "via", tn.V4B)
	c.MustRun(t, "ip", "route", "add", "10.77.0.0/24", "via", "10.79.0.1")

	sp := tn.startSensorInB(t, bin, "-n", "-o", "json", tn.IfB)
	if !strings.Contains(sp.stderrText(), "process attribution on") {
		t.Fatalf("attribution is not on:\n%s", sp.stderrText())
	}

	var clients []client
	run := func(name string, cgroupFD int, match func(l ownerLine) bool, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := tn.B.Command(ctx, name, args...)
		cg := ""
		if cgroupFD >= 0 {
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cgroupFD
			cg = "in the test's cgroup"
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		clients = append(clients, client{comm: name, pid: uint32(cmd.Process.Pid), cgroup: cg, match: match})
	}
	port := func(local string, p int) func(ownerLine) bool {
		return func(l ownerLine) bool {
			return (l.Src == local && l.Sport == p) || (l.Dst == local && l.Dport == p)
		}
	}
	echo := func(local, peer string) func(ownerLine) bool {
		return func(l ownerLine) bool {
			return l.ICMPType != nil && (l.Src == local && l.Dst == peer || l.Src == peer && l.Dst == local) &&
				(l.Proto == "ICMP" && (*l.ICMPType == 0 || *l.ICMPType == 8) || l.Proto == "ICMP6" && (*l.ICMPType == 128 || *l.ICMPType == 129))
		}
	}
	run("curl", -1, port(tn.V4B, 40101), "-sS", "-m", "3", "--local-port", "40101", "http://"+tn.V4A+"/")
	run("curl", -1, port(tn.V6B, 40102), "-sS", "-m", "3", "--local-port", "40102", "-g", "http://["+tn.V6A+"]/")
	run("dig", -1, port(tn.V4B, 40103), "+short", "+tries=1", "+time=2", "-b", tn.V4B+"#40103", "@"+tn.V4A, "www.test.example", "A")
	run("dig", -1, port(tn.V6B, 40104), "+short", "+tries=1", "+time=2", "-b", tn.V6B+"#40104", "@"+tn.V6A, "www.test.example", "AAAA")
	run("ping", -1, echo(tn.V4B, tn.V4A), "-c2", "-i0.2", "-W2", "-e", "4242", tn.V4A)
	run("ping", -1, echo(tn.V6B, tn.V6A), "-6", "-c2", "-i0.2", "-W2", "-e", "4243", tn.V6A)
	rel, fd := testCgroup(t)
	run("curl", fd, port(tn.V4B, 40105), "-sS", "-m", "3", "--local-port", "40105", "http://"+tn.V4A+"/")
	clients[len(clients)-1].cgroup = rel

	// Servers in B, for clients in A: nc over TCP (it answers with its stdin) and UDP.
	for _, s := range []struct {
		port      int
		udp       bool
		clientArg []string
	}{{9100, false, []string{"-N", "-w2"}}, {9101, true, []string{"-u", "-w1"}}} {
		args := []string{"-N", "-l", tn.V4B, fmt.Sprint(s.port)}
		if s.udp {
			args[0] = "-u" // and no -N: UDP has no shutdown
		}
		srv := tn.B.Command(context.Background(), "nc", args...)
		srv.Stdin = strings.NewReader("hello from nc\n")
		p := sensortest.StartProc(t, srv)
		time.Sleep(300 * time.Millisecond) // listening (a miss only fails the client below)
		cl := tn.A.Command(context.Background(), "nc", append(s.clientArg, tn.V4B, fmt.Sprint(s.port))...)
		cl.Stdin = strings.NewReader("hi\n")
		out, err := cl.CombinedOutput()
		if !strings.Contains(string(out), "hello from nc") {
			t.Fatalf("nc client to port %d: %v %q", s.port, err, out)
		}
		p.Process.Kill()
		clients = append(clients, client{comm: "nc", pid: uint32(p.Process.Pid), match: port(tn.V4B, s.port), server: !s.udp})
	}
	// Forwarded through B: no process of B's.
	if out, err := tn.inA(t, 10*time.Second, "ping", "-c2", "-i0.2", "-W2", "10.79.0.2"); err != nil {
		t.Fatalf("ping through B: %v\n%s", err, out)
	}

	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	lines := ownerLines(t, sp)
	checkOwners(t, lines, clients)
	fwd := 0
	for _, l := range lines {
		if l.Src == "10.79.0.2" || l.Dst == "10.79.0.2" {
			fwd++
			if l.PID != nil {
				t.Errorf("forwarded packet names a process: %s", l)
			}
		}
	}
	if fwd < 4 {
		t.Errorf("%d forwarded packets seen, want the 2 requests and 2 replies", fwd)
	}
	if !strings.Contains(sp.stderrText(), "processes: ") {
		t.Errorf("no attribution tables line on stderr:\n%s", sp.stderrText())
	}
	sp.counters(t)
}

// ownerLines parses the sensor's JSON lines.
func ownerLines(t *testing.T, sp *sensorProc) []ownerLine {
	t.Helper()
	var lines []ownerLine
	for _, s := range sp.output() {
		var l ownerLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		lines = append(lines, l)
	}
	return lines
}

// checkOwners checks each process's flow in lines: every packet (a server's: every packet it
// names) names its pid, command and cgroup, and it is named on ingress and on egress.
func checkOwners(t *testing.T, lines []ownerLine, clients []client) {
	t.Helper()
	for _, c := range clients {
		var in, out, named int
		var flow []string
		for _, l := range lines {
			if !c.match(l) {
				continue
			}
			flow = append(flow, l.String())
			if l.PID == nil {
				if !c.server {
					t.Errorf("%s %d: a packet of its flow names no process: %s", c.comm, c.pid, l)
				}
				continue
			}
			if *l.PID != c.pid || l.Comm != c.comm {
				t.Errorf("%s %d: a packet of its flow names another process: %s", c.comm, c.pid, l)
				continue
			}
			if c.cgroup != "" && l.Cgroup != c.cgroup {
				t.Errorf("%s %d: cgroup %q, want the test's %q: %s", c.comm, c.pid, l.Cgroup, c.cgroup, l)
			}
			named++
			if l.Dir == "in" {
				in++
			} else {
				out++
			}
		}
		if out == 0 || in == 0 && !c.sendOnly {
			t.Errorf("%s %d: named on %d ingress and %d egress packets, want both; its flow:\n%s", c.comm, c.pid, in, out, strings.Join(flow, "\n"))
		}
		t.Logf("%s %d: %d of %d packets named (%d in, %d out)", c.comm, c.pid, named, len(flow), in, out)
	}
}
