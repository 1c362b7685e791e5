package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// oneshotEnv, when set, makes the test binary the short-lived client of
// TestE2EProcessExitsAtOnce (see oneshot); ONESHOT_LOCAL and ONESHOT_REMOTE are its addresses.
const oneshotEnv = "CHAINS_E2E_ONESHOT"

// monoNow is CLOCK_MONOTONIC in nanoseconds, the same clock in every process.
func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// oneshot is the client: from ONESHOT_LOCAL to ONESHOT_REMOTE, "udp-send" sends one datagram;
// "udp-ask" sends a DNS query and reads the answer; "tcp-get" makes an HTTP/1.0 request and
// reads the answer to the server's FIN. Right after its last packet it writes the monotonic
// time of it to stdout and exits, without closing its socket (the kernel does, at exit: for
// TCP its own FIN goes, and the server's last ACK comes, after the process is gone).
func oneshot(mode string) int {
	local, remote := os.Getenv("ONESHOT_LOCAL"), os.Getenv("ONESHOT_REMOTE")
	fail := func(err error) int { fmt.Fprintf(os.Stderr, "oneshot %s: %v\n", mode, err); return 1 }
	deadline := time.Now().Add(3 * time.Second)
	switch mode {
	case "udp-send", "udp-ask":
		la, err := net.ResolveUDPAddr("udp", local)
		if err != nil {
			return fail(err)
		}
		ra, err := net.ResolveUDPAddr("udp", remote)
		if err != nil {
			return fail(err)
		}
		c, err := net.ListenUDP("udp", la)
		if err != nil {
			return fail(err)
		}
		q := []byte("one datagram\n")
		if mode == "udp-ask" {
			m := new(dns.Msg)
			m.SetQuestion("www.test.example.", dns.TypeA)
			if q, err = m.Pack(); err != nil {
				return fail(err)
			}
		}
		if _, err := c.WriteToUDP(q, ra); err != nil {
			return fail(err)
		}
		if mode == "udp-ask" {
			c.SetReadDeadline(deadline)
			buf := make([]byte, 1500)
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return fail(err)
			}
			var a dns.Msg
			if err := a.Unpack(buf[:n]); err != nil || len(a.Answer) == 0 {
				return fail(fmt.Errorf("no answer: %v %v", err, a.String()))
			}
		}
	case "tcp-get":
		la, err := net.ResolveTCPAddr("tcp", local)
		if err != nil {
			return fail(err)
		}
		d := net.Dialer{LocalAddr: la, Deadline: deadline}
		c, err := d.Dial("tcp", remote)
		if err != nil {
			return fail(err)
		}
		c.SetDeadline(deadline)
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: www.test.example\r\n\r\n"); err != nil {
			return fail(err)
		}
		b, err := io.ReadAll(c)
		if err != nil || !strings.Contains(string(b), "hello from nginx") {
			return fail(fmt.Errorf("answer %q: %v", b, err))
		}
	default:
		return fail(fmt.Errorf("unknown mode"))
	}
	fmt.Printf("last packet at %d\n", monoNow())
	return 0
}

// TestE2EProcessExitsAtOnce runs, in B with the sensor, a client (this test binary, under the
// command name "oneshot") that exits right after its last packet, without closing its socket:
// one that sends a UDP datagram, one that asks dnsmasq in A and exits on the answer, and one
// that gets a page from nginx in A, its FIN sent by the kernel after it is gone. Each is
// checked to have exited (reaped, its /proc entry gone) and the time from its last packet to
// its exit is logged, not asserted; then every packet of its flow (the fixed source port) in
// both directions names its pid and command.
func TestE2EProcessExitsAtOnce(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "nc", "ss")
	bin := buildSensor(t)
	tn.startServers(t) // dnsmasq and nginx in A
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(tn.dir, "oneshot") // the command name the kernel gives it
	if err := os.Symlink(self, helper); err != nil {
		t.Fatal(err)
	}
	// The datagram's receiver, the oracle that it was sent.
	var got syncBuffer
	rcv := tn.A.Command(context.Background(), "nc", "-u", "-l", tn.V4A, "9401")
	rcv.Stdout = &got
	sensortest.StartProc(t, rcv)
	waitPort(t, tn.A, "udp", 9401)

	sp := tn.startSensorInB(t, bin, "-n", "-o", "json", tn.IfB)
	if !strings.Contains(sp.stderrText(), "process attribution on") {
		t.Fatalf("attribution is not on:\n%s", sp.stderrText())
	}
	var clients []client
	for _, c := range []struct {
		mode, local, remote string
		sport               int
	}{
		{"udp-send", tn.V4B, tn.V4A + ":9401", 40401},
		{"udp-ask", tn.V4B, tn.V4A + ":53", 40402},
		{"udp-ask", tn.V6B, "[" + tn.V6A + "]:53", 40403},
		{"tcp-get", tn.V4B, tn.V4A + ":80", 40404},
		{"tcp-get", tn.V6B, "[" + tn.V6A + "]:80", 40405},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := tn.B.Command(ctx, helper)
		cmd.Env = append(os.Environ(), oneshotEnv+"="+c.mode,
			"ONESHOT_LOCAL="+net.JoinHostPort(c.local, fmt.Sprint(c.sport)), "ONESHOT_REMOTE="+c.remote)
		out, err := cmd.CombinedOutput()
		exited := monoNow()
		cancel()
		var last int64
		if _, serr := fmt.Sscanf(string(out), "last packet at %d", &last); err != nil || serr != nil {
			t.Fatalf("oneshot %s: %v %q", c.mode, err, out)
		}
		pid := cmd.Process.Pid
		if !cmd.ProcessState.Exited() {
			t.Fatalf("oneshot %s %d did not exit: %v", c.mode, pid, cmd.ProcessState)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !os.IsNotExist(err) {
			t.Fatalf("oneshot %s %d: /proc still has it after it was reaped (%v)", c.mode, pid, err)
		}
		t.Logf("oneshot %s %d: exited, reaped %.1f ms after its last packet by its own clock (the test's wake-up included)",
			c.mode, pid, float64(exited-last)/1e6)
		match := portMatch(c.local, c.sport)
		clients = append(clients, client{comm: "oneshot", pid: uint32(pid), sendOnly: c.mode == "udp-send",
			match: func(l ownerLine) bool { return (l.Proto == "UDP" || l.Proto == "TCP") && match(l) }})
	}
	for i := 0; !strings.Contains(got.String(), "one datagram"); i++ {
		if i == 50 {
			t.Fatalf("nc in A did not receive the datagram within 5s: %q", got.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	time.Sleep(300 * time.Millisecond) // the last ACKs of the TCP flows
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	lines := ownerLines(t, sp)
	checkOwners(t, lines, clients)
	// The TCP clients' own FIN, sent by the kernel once they were gone, and the server's ACK
	// of it after that are there (and named, checked above).
	for _, c := range clients[3:] {
		fin, ackAfter := false, false
		for _, l := range lines {
			if c.match(l) && l.Dir == "out" && strings.Contains(l.TCPFlags, "F") {
				fin = true
			} else if c.match(l) && fin && l.Dir == "in" {
				ackAfter = true
			}
		}
		if !fin || !ackAfter {
			t.Errorf("oneshot %d: its FIN (%v) or the ACK of it (%v) is missing", c.pid, fin, ackAfter)
		}
	}
	sp.counters(t)
}
