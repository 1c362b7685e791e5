package main

// End-to-end tests of what the sensor says when it cannot run: missing privileges, missing
// interfaces, bad flags, and `check`.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestE2EClearErrors: without privileges, and for an interface that does not exist, attach
// fails with an error that names the fix; nothing is attached.
func TestE2EClearErrors(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "setpriv")
	bin := buildSensor(t)
	// The binary must be reachable by an unprivileged user.
	os.Chmod(filepath.Dir(bin), 0o755)
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}
	out, err := tn.inA(t, 20*time.Second, append(nobody, bin, "attach", "-n", tn.IfA)...)
	if err == nil {
		t.Fatalf("attach as nobody succeeded:\n%s", out)
	}
	for _, want := range []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "sudo", "setcap"} {
		if !strings.Contains(out, want) {
			t.Errorf("attach as nobody: error does not name %s:\n%s", want, out)
		}
	}
	out, err = tn.inA(t, 20*time.Second, bin, "attach", "-n", "nosuch0")
	if err == nil || !strings.Contains(out, `no such interface "nosuch0"`) || !strings.Contains(out, "ip link") {
		t.Errorf("attach nosuch0: %v\n%s", err, out)
	}
	// The test namespaces have no default route, so no default interface.
	out, err = tn.inA(t, 20*time.Second, bin, "attach", "-n")
	if err == nil || !strings.Contains(out, "no default route") || !strings.Contains(out, "chains-sensor attach eth0") {
		t.Errorf("attach without an interface and without a default route: %v\n%s", err, out)
	}
	out, err = tn.inA(t, 20*time.Second, bin, "attach", "-n", "--xdp-mode", "turbo", tn.IfA)
	if err == nil || !strings.Contains(out, "auto, native or generic") {
		t.Errorf("--xdp-mode turbo: %v\n%s", err, out)
	}
	tn.assertDetached(t)
}

// TestE2ECheck: `check` on the veth as root says the sensor can run and lists every hook;
// as nobody it says which capabilities are missing and exits 1. It leaves nothing attached.
func TestE2ECheck(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "setpriv")
	bin := buildSensor(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	out, err := tn.inA(t, 60*time.Second, bin, "check", tn.IfA)
	if err != nil {
		t.Fatalf("check as root: %v\n%s", err, out)
	}
	for _, want := range []string{"BPF ring buffer", "kernel BTF", "BPF_PROG_TEST_RUN", "sensor programs load",
		"cgroup v2 (process attribution)", "cgroup socket programs", "process attribution  ",
		"XDP native on " + tn.IfA, "XDP generic on " + tn.IfA, "TCX egress on " + tn.IfA, "clsact egress on " + tn.IfA,
		"chains-sensor can run here"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output has no %q:\n%s", want, out)
		}
	}
	tn.assertDetached(t)
	if qd, _ := tn.inA(t, 5*time.Second, "tc", "qdisc", "show", "dev", tn.IfA); strings.Contains(qd, "clsact") {
		t.Errorf("check left a clsact qdisc:\n%s", qd)
	}
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}
	out, err = tn.inA(t, 60*time.Second, append(nobody, bin, "check", tn.IfA)...)
	if err == nil {
		t.Fatalf("check as nobody exits 0:\n%s", out)
	}
	if !strings.Contains(out, "missing CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON") || !strings.Contains(out, "cannot run here") {
		t.Errorf("check as nobody does not name the missing capabilities:\n%s", out)
	}
	t.Logf("check as nobody:\n%s", out)
}

// TestE2ECheckNativeAsAttach: `check` says native XDP is usable exactly where attach (auto)
// then attaches natively: on the veth yes; once the peer's MTU is too large for native XDP on a
// veth (the driver still advertises XDP, as virtio_net does where it then refuses) no, and
// attach falls back to generic.
func TestE2ECheckNativeAsAttach(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	nativeRow := regexp.MustCompile(`(?m)^XDP native on ` + regexp.QuoteMeta(tn.IfA) + ` +(\S+) +(.*)$`)
	for _, c := range []struct {
		mtu    string
		native bool
	}{{"1500", true}, {"9000", false}, {"1500", true}} {
		tn.B.MustRun(t, "ip", "link", "set", "dev", tn.IfB, "mtu", c.mtu)
		out, err := tn.inA(t, 60*time.Second, bin, "check", tn.IfA)
		if err != nil {
			t.Fatalf("peer MTU %s: check: %v\n%s", c.mtu, err, out)
		}
		m := nativeRow.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("peer MTU %s: no XDP native row:\n%s", c.mtu, out)
		}
		sp := tn.startSensor(t, bin, "-n", "--direction", "in", tn.IfA)
		attached := regexp.MustCompile(`attached to \S+: ingress (\S+),`).FindStringSubmatch(sp.stderrText())
		if code := sp.stop(t, syscall.SIGINT); code != 0 {
			t.Fatalf("peer MTU %s: attach exit %d\n%s", c.mtu, code, sp.stderrText())
		}
		if attached == nil {
			t.Fatalf("peer MTU %s: no attached line:\n%s", c.mtu, sp.stderrText())
		}
		t.Logf("peer MTU %s: check says native %s (%s); attach used %s", c.mtu, m[1], m[2], attached[1])
		if (m[1] == "yes") != (attached[1] == "native") || (attached[1] == "native") != c.native {
			t.Errorf("peer MTU %s: check says native XDP %s, attach attached %s; want native %v", c.mtu, m[1], attached[1], c.native)
		}
		tn.assertDetached(t)
	}
}
