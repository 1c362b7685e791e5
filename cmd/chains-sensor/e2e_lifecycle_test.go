package main

// End-to-end tests of attaching and detaching: signals at any moment, other tools' XDP
// programs, clsact qdiscs and filters left alone, what a killed clsact run leaves.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestE2ESignals: SIGINT and SIGTERM exit 0 with the counters line and detach, in TCX and in
// clsact mode; after SIGKILL nothing stays attached either, thanks to bpf_link. (A clsact filter
// has no link and would survive SIGKILL; that fallback is for kernels without TCX only, so
// SIGKILL is checked in the TCX mode.)
func TestE2ESignals(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	for _, c := range []struct {
		sig  syscall.Signal
		args []string
	}{
		{syscall.SIGINT, nil},
		{syscall.SIGTERM, nil},
		{syscall.SIGINT, []string{"--tc-mode", "clsact", "--xdp-mode", "generic"}},
		{syscall.SIGTERM, []string{"--tc-mode", "clsact"}},
		{syscall.SIGKILL, nil},
		{syscall.SIGKILL, []string{"--xdp-mode", "generic", "--direction", "in"}},
	} {
		name := fmt.Sprintf("%v %v", c.sig, c.args)
		sp := tn.startSensor(t, bin, append(append([]string{"-n"}, c.args...), tn.IfA)...)
		if _, err := tn.inB(t, 5*time.Second, "ping", "-c3", "-i0.1", "-W1", tn.V4A); err != nil {
			t.Fatalf("%s: ping: %v", name, err)
		}
		if len(sp.output()) == 0 {
			// Lines are flushed at least every 50 ms; give them a moment.
			time.Sleep(200 * time.Millisecond)
		}
		code := sp.stop(t, c.sig)
		switch c.sig {
		case syscall.SIGKILL:
			if code != -int(syscall.SIGKILL) {
				t.Errorf("%s: exit %d", name, code)
			}
		default:
			if code != 0 {
				t.Errorf("%s: exit status %d, want 0\n%s", name, code, sp.stderrText())
			}
			if _, recorded, _ := sp.counters(t); recorded < 6 {
				t.Errorf("%s: %d recorded for 3 pings and their replies", name, recorded)
			}
		}
		tn.assertDetached(t)
		if out, _ := tn.inA(t, 5*time.Second, "tc", "qdisc", "show", "dev", tn.IfA); strings.Contains(out, "clsact") {
			t.Errorf("%s: the clsact qdisc we added is still there:\n%s", name, out)
		}
		if t.Failed() {
			return
		}
	}
}

// TestE2EEarlySignal: SIGINT while the programs are still loading or being attached ends the
// run cleanly too: exit 0, the counters line, nothing attached.
func TestE2EEarlySignal(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	for _, delay := range []time.Duration{0, 20 * time.Millisecond, 100 * time.Millisecond} {
		cmd := tn.A.Command(context.Background(), bin, "attach", "-n", tn.IfA)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		p := sensortest.StartProc(t, cmd)
		// Signal once the sensor has begun loading (it holds a BPF object; its handler is
		// installed before that), then after delay, so the signal lands in load or attach.
		loading := false
		for i := 0; i < 2000 && !loading; i++ {
			fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", cmd.Process.Pid))
			for _, fd := range fds {
				if l, _ := os.Readlink(fd); strings.HasPrefix(l, "anon_inode:bpf") {
					loading = true
				}
			}
			time.Sleep(time.Millisecond)
		}
		if !loading {
			t.Fatalf("chains-sensor never started loading:\n%s", stderr.String())
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGINT)
		if !p.WaitFor(20 * time.Second) {
			cmd.Process.Kill()
			t.Fatalf("delay %v: still running 20s after SIGINT\n%s", delay, stderr.String())
		}
		if err := p.Err(); err != nil {
			t.Errorf("delay %v: %v\n%s", delay, err, stderr.String())
		}
		if !countersRE.MatchString(lastLine(stderr.String())) {
			t.Errorf("delay %v: stderr does not end with the counters line:\n%s", delay, stderr.String())
		}
		tn.assertDetached(t)
	}
}

// TestE2EClsactKilled: in clsact mode (kernels without TCX) a SIGKILLed sensor leaves its
// filter behind, as there is no bpf_link; the next run says so and how to remove it, and
// leaves it alone.
func TestE2EClsactKilled(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	sp := tn.startSensor(t, bin, "-n", "--tc-mode", "clsact", "--direction", "out", tn.IfA)
	sp.stop(t, syscall.SIGKILL)
	left := tn.A.MustRun(t, "tc", "filter", "show", "dev", tn.IfA, "egress")
	if !strings.Contains(left, "chains-sensor") {
		t.Fatalf("expected the killed sensor's clsact filter to remain:\n%s", left)
	}
	sp = tn.startSensor(t, bin, "-n", "--tc-mode", "clsact", "--direction", "out", tn.IfA)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	if !strings.Contains(sp.stderrText(), "warning: "+tn.IfA+" has another chains-sensor egress filter") ||
		!strings.Contains(sp.stderrText(), "tc filter del dev "+tn.IfA+" egress prio") {
		t.Errorf("no warning about the stale filter:\n%s", sp.stderrText())
	}
	if after := tn.A.MustRun(t, "tc", "filter", "show", "dev", tn.IfA, "egress"); after != left {
		t.Errorf("the stale filter was touched:\nbefore %s\nafter %s", left, after)
	}
}

// TestE2EForeignClsactSurvives: an existing clsact qdisc carrying someone else's egress and
// ingress filters survives our attach and detach, in TCX and in clsact mode.
func TestE2EForeignClsactSurvives(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	tn.A.MustRun(t, "tc", "qdisc", "add", "dev", tn.IfA, "clsact")
	// Their filters: bpf (the classifier every BPF-capable kernel has) running a program of
	// their own, loaded by tc from an object file.
	obj := foreignObject(t)
	tn.A.MustRun(t, "tc", "filter", "add", "dev", tn.IfA, "egress", "prio", "7", "bpf", "da", "obj", obj, "sec", "tc")
	tn.A.MustRun(t, "tc", "filter", "add", "dev", tn.IfA, "ingress", "prio", "9", "bpf", "da", "obj", obj, "sec", "tc")
	filters := func() string {
		e := tn.A.MustRun(t, "tc", "filter", "show", "dev", tn.IfA, "egress")
		i := tn.A.MustRun(t, "tc", "filter", "show", "dev", tn.IfA, "ingress")
		return e + i
	}
	before := filters()
	for _, mode := range []string{"auto", "clsact"} {
		sp := tn.startSensor(t, bin, "-n", "--tc-mode", mode, tn.IfA)
		if mode == "clsact" {
			if during := filters(); !strings.Contains(during, "chains-sensor") || !strings.Contains(during, "sensor_bpfel.o") {
				t.Errorf("clsact mode: want their filter and ours side by side:\n%s", during)
			}
		}
		tn.inB(t, 5*time.Second, "ping", "-c2", "-i0.1", "-W1", tn.V4A)
		if code := sp.stop(t, syscall.SIGINT); code != 0 {
			t.Fatalf("%s: exit status %d\n%s", mode, code, sp.stderrText())
		}
		if after := filters(); after != before {
			t.Errorf("%s: filters before:\n%s\nafter:\n%s", mode, before, after)
		}
		if out := tn.A.MustRun(t, "tc", "qdisc", "show", "dev", tn.IfA); !strings.Contains(out, "clsact") {
			t.Errorf("%s: their clsact qdisc is gone:\n%s", mode, out)
		}
		tn.assertDetached(t, "sensor_bpfel.o")
	}
}

// foreignObject returns the sensor's BPF object file, which tc and ip link load as programs of
// someone else's (other loads, other names than ours).
func foreignObject(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("../../gen/sensor_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("no BPF object to play someone else's program: %v", err)
	}
	return abs
}

// foreignXDPObject returns a BPF object with an XDP program (section "xdp") that is not ours to
// attach as "someone else": the floor benchmark program if there, else the sensor's own object.
func foreignXDPObject(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"../../gen/floor_bpfel.o", "../../gen/sensor_bpfel.o"} {
		if _, err := os.Stat(p); err == nil {
			abs, _ := filepath.Abs(p)
			return abs
		}
	}
	t.Fatal("no BPF object in gen/")
	return ""
}

// TestE2EForeignXDP: an XDP program someone else attached (native or generic, with ip link) is
// left alone, and attach fails with an error that names the program and the way out; with
// --direction out the sensor still runs.
func TestE2EForeignXDP(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	obj := foreignXDPObject(t)
	for _, mode := range []string{"xdpdrv", "xdpgeneric"} {
		tn.A.MustRun(t, "ip", "link", "set", "dev", tn.IfA, mode, "obj", obj, "sec", "xdp")
		before := tn.A.MustRun(t, "ip", "link", "show", "dev", tn.IfA)
		out, err := tn.inA(t, 20*time.Second, bin, "attach", "-n", tn.IfA)
		if err == nil {
			t.Fatalf("%s: attach succeeded over a foreign XDP program:\n%s", mode, out)
		}
		for _, want := range []string{"already has XDP program id", "someone else", "bpftool net show dev " + tn.IfA, "--direction out"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: error does not say %q:\n%s", mode, want, out)
			}
		}
		if after := tn.A.MustRun(t, "ip", "link", "show", "dev", tn.IfA); after != before {
			t.Errorf("%s: the foreign program changed:\nbefore %s\nafter %s", mode, before, after)
		}
		if tc, _ := tn.inA(t, 5*time.Second, "bpftool", "net", "show", "dev", tn.IfA); strings.Contains(tc, "tcx") {
			t.Errorf("%s: the failed attach left a TCX program:\n%s", mode, tc)
		}
		// Egress only works beside it.
		sp := tn.startSensor(t, bin, "-n", "--direction", "out", tn.IfA)
		tn.inB(t, 5*time.Second, "ping", "-c1", "-W1", tn.V4A)
		if code := sp.stop(t, syscall.SIGINT); code != 0 {
			t.Errorf("%s: --direction out beside a foreign XDP program: exit %d\n%s", mode, code, sp.stderrText())
		}
		tn.A.MustRun(t, "ip", "link", "set", "dev", tn.IfA, mode, "off")
	}
	tn.assertDetached(t)
}
