package sensor

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

func TestCheckVeth(t *testing.T) {
	v0, _ := inVethNetns(t)
	rs := Check(CheckOptions{Iface: v0, Load: func() (*Objects, error) { return Load(Config{}) }})
	var buf bytes.Buffer
	ok := WriteCheckTable(&buf, rs)
	t.Log("\n" + buf.String())
	if !ok {
		t.Fatal("check says the sensor cannot run on a veth as root")
	}
	for _, want := range []string{"BPF ring buffer *", "XDP native on " + v0, "TCX egress on " + v0, "clsact egress on " + v0, "sensor programs load *"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table has no row %q", want)
		}
	}
	if hasClsact(t, v0) || xdpProgID(t, v0) != 0 || len(tcxEgressIDs(t, v0)) != 0 {
		t.Error("check left something attached")
	}
}

func TestCheckNoSuchInterface(t *testing.T) {
	rs := Check(CheckOptions{Iface: "nosuch0"})
	var buf bytes.Buffer
	if WriteCheckTable(&buf, rs) {
		t.Fatalf("check passed with a missing interface:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), `no such interface "nosuch0"`) {
		t.Errorf("no fix naming the interface:\n%s", buf.String())
	}
}

// TestCheckXDPNativeAsIproute: `check` says native XDP is usable exactly where iproute2's own
// native attach (ip link set dev X xdpdrv) works: on a veth yes; on a veth whose peer's MTU is
// too large for XDP no, although the driver advertises XDP (the case of virtio_net without
// enough queues, where check used to say yes and attach fell back to generic); on vxlan and
// loopback, whose drivers have no native XDP, no.
func TestCheckXDPNativeAsIproute(t *testing.T) {
	n := sensortest.NewNetns(t)
	obj, err := filepath.Abs("../gen/floor_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	v0, v1 := sensortest.IfName(t, "v0"), sensortest.IfName(t, "v1")
	w0, w1 := sensortest.IfName(t, "w0"), sensortest.IfName(t, "w1")
	n.AddVeth(t, v0, v1, nil)
	n.AddVeth(t, w0, w1, nil)
	n.MustRun(t, "ip", "link", "set", "dev", w1, "mtu", "9000")
	vx := sensortest.IfName(t, "x")
	n.MustRun(t, "ip", "link", "add", vx, "type", "vxlan", "id", "42", "dstport", "4789", "local", "127.0.0.1")
	n.MustRun(t, "ip", "link", "set", vx, "up")
	n.Enter(t)
	xdp, _ := passPrograms(t)
	for _, c := range []struct {
		iface      string
		advertises bool // the driver advertises XDP
	}{{v0, true}, {w0, true}, {vx, false}, {"lo", false}} {
		// The oracle: iproute2 attaches natively, or says why not.
		out, err := n.Run(t, 10*time.Second, "ip", "link", "set", "dev", c.iface, "xdpdrv", "obj", obj, "sec", "xdp")
		native := err == nil
		if native {
			n.MustRun(t, "ip", "link", "set", "dev", c.iface, "xdpdrv", "off")
		}
		idx, err := LookupInterface(c.iface)
		if err != nil {
			t.Fatal(err)
		}
		r := checkXDPNative(c.iface, idx, xdp, nil)
		t.Logf("%s: ip link xdpdrv: %v %s; check: %s %s", c.iface, native, strings.TrimSpace(out), r.Status, r.Detail)
		if (r.Status == CheckOK) != native {
			t.Errorf("%s: check says native XDP %s (%s); iproute2's native attach worked: %v %s",
				c.iface, r.Status, r.Detail, native, out)
		}
		if feats, err := xdpFeatures(idx); err == nil && (feats&netdevXDPActBasic != 0) != c.advertises {
			t.Errorf("%s: XDP features %#x, want advertised=%v", c.iface, feats, c.advertises)
		}
		if xdpProgID(t, c.iface) != 0 {
			t.Errorf("%s: the trial left an XDP program attached", c.iface)
		}
	}
}
