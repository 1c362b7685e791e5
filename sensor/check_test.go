package sensor

import (
	"bytes"
	"strings"
	"testing"
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
