package sensor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inVethNetns moves the test, locked to its thread, into a network namespace of its own holding
// a veth pair, both ends up, and returns their names. Everything is undone when the test ends.
func inVethNetns(t *testing.T) (v0, v1 string) {
	t.Helper()
	n := sensortest.NewNetns(t)
	v0, v1 = sensortest.IfName(t, "v0"), sensortest.IfName(t, "v1")
	n.AddVeth(t, v0, v1, nil)
	n.Enter(t)
	return v0, v1
}

func passPrograms(t *testing.T) (xdp, tc *ebpf.Program) {
	t.Helper()
	var err error
	xdp, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xdp_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xdp.Close() })
	tc, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "tc_unspec", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	return xdp, tc
}

func progID(t *testing.T, p *ebpf.Program) uint32 {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

// xdpProgID returns the id of the XDP program attached to the interface, 0 if none.
func xdpProgID(t *testing.T, name string) uint32 {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil {
		return x.ProgId
	}
	return 0
}

// tcxEgressIDs returns the ids of the programs on the TCX egress hook of the interface.
func tcxEgressIDs(t *testing.T, name string) []uint32 {
	t.Helper()
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifi.Index, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for _, p := range res.Programs {
		ids = append(ids, uint32(p.ID))
	}
	return ids
}

func egressFilters(t *testing.T, name string) []netlink.Filter {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := netlink.FilterList(l, netlink.HANDLE_MIN_EGRESS)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func hasClsact(t *testing.T, name string) bool {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := netlink.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return true
		}
	}
	return false
}

func TestAttachBothAndDetach(t *testing.T) {
	v0, v1 := inVethNetns(t)
	xdp, tc := passPrograms(t)
	a, err := Attach(xdp, tc, []string{v0, v1}, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Ifaces) != 2 || a.Ifaces[0].XDP == "" || a.Ifaces[0].TC != "tcx" {
		t.Fatalf("attachments %+v", a.Ifaces)
	}
	for _, n := range []string{v0, v1} {
		if got := xdpProgID(t, n); got != progID(t, xdp) {
			t.Errorf("%s: XDP program id %d, want ours %d", n, got, progID(t, xdp))
		}
		if ids := tcxEgressIDs(t, n); len(ids) != 1 || ids[0] != progID(t, tc) {
			t.Errorf("%s: TCX egress programs %v, want [%d]", n, ids, progID(t, tc))
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, n := range []string{v0, v1} {
		if got := xdpProgID(t, n); got != 0 {
			t.Errorf("%s: XDP program %d still attached after Close", n, got)
		}
		if ids := tcxEgressIDs(t, n); len(ids) != 0 {
			t.Errorf("%s: TCX egress programs %v still attached after Close", n, ids)
		}
	}
}

func TestAttachModesAndDirections(t *testing.T) {
	v0, _ := inVethNetns(t)
	xdp, tc := passPrograms(t)
	for _, c := range []struct {
		opts    AttachOptions
		xdp, tc string
	}{
		{AttachOptions{Hooks: HookIn, XDPMode: XDPGeneric}, "generic", ""},
		{AttachOptions{Hooks: HookIn, XDPMode: XDPNative}, "native", ""},
		{AttachOptions{Hooks: HookIn}, "native", ""}, // veth has native XDP
		{AttachOptions{Hooks: HookOut}, "", "tcx"},
		{AttachOptions{Hooks: HookOut, TCMode: TCClsact}, "", "clsact"},
	} {
		a, err := Attach(xdp, tc, []string{v0}, c.opts)
		if err != nil {
			t.Fatalf("%+v: %v", c.opts, err)
		}
		if got := a.Ifaces[0]; got.XDP != c.xdp || got.TC != c.tc {
			t.Errorf("%+v: got xdp=%q tc=%q, want %q %q", c.opts, got.XDP, got.TC, c.xdp, c.tc)
		}
		if c.xdp == "" && xdpProgID(t, v0) != 0 {
			t.Errorf("%+v: XDP attached although only egress was asked for", c.opts)
		}
		if c.tc == "" && (len(tcxEgressIDs(t, v0)) != 0 || len(egressFilters(t, v0)) != 0) {
			t.Errorf("%+v: egress attached although only ingress was asked for", c.opts)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if c.tc == "clsact" && hasClsact(t, v0) {
			t.Errorf("the clsact qdisc we created is still there after Close")
		}
	}
}

func TestAttachNoSuchInterface(t *testing.T) {
	v0, _ := inVethNetns(t)
	xdp, tc := passPrograms(t)
	_, err := Attach(xdp, tc, []string{v0, "nosuch0"}, AttachOptions{})
	if err == nil || !strings.Contains(err.Error(), `no such interface "nosuch0"`) {
		t.Fatalf("error %v, want one naming nosuch0", err)
	}
	// veth0 was attached before the failure: it must have been undone.
	if xdpProgID(t, v0) != 0 || len(tcxEgressIDs(t, v0)) != 0 {
		t.Fatal("a failed Attach left " + v0 + " attached")
	}
}

func TestAttachForeignXDP(t *testing.T) {
	v0, _ := inVethNetns(t)
	xdp, tc := passPrograms(t)
	foreign, _ := passPrograms(t)
	l, err := netlink.LinkByName(v0)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []struct {
		flags uint32
		ours  XDPMode
	}{{unix.XDP_FLAGS_DRV_MODE, XDPAuto}, {unix.XDP_FLAGS_SKB_MODE, XDPAuto}, {unix.XDP_FLAGS_SKB_MODE, XDPNative}} {
		// A legacy (netlink) attach, as `ip link set dev veth0 xdp obj ...` does.
		if err := netlink.LinkSetXdpFdWithFlags(l, foreign.FD(), int(mode.flags)); err != nil {
			t.Fatal(err)
		}
		_, err = Attach(xdp, tc, []string{v0}, AttachOptions{XDPMode: mode.ours})
		if err == nil {
			t.Fatalf("flags %#x: attach succeeded over a foreign XDP program", mode.flags)
		}
		msg := err.Error()
		t.Logf("flags %#x: %s", mode.flags, msg)
		for _, want := range []string{"someone else", "bpftool net show dev " + v0, "xdp off", "xdp_pass"} {
			if !strings.Contains(msg, want) {
				t.Errorf("flags %#x: error does not say %q:\n%s", mode.flags, want, msg)
			}
		}
		if got := xdpProgID(t, v0); got != progID(t, foreign) {
			t.Errorf("flags %#x: foreign program replaced or removed (now %d)", mode.flags, got)
		}
		if ids := tcxEgressIDs(t, v0); len(ids) != 0 {
			t.Errorf("flags %#x: failed attach left TCX programs %v", mode.flags, ids)
		}
		if err := netlink.LinkSetXdpFdWithFlags(l, -1, int(mode.flags)); err != nil {
			t.Fatal(err)
		}
	}
	// A foreign bpf_link gives the same clear error.
	fl, err := link.AttachXDP(link.XDPOptions{Program: foreign, Interface: l.Attrs().Index})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	if _, err := Attach(xdp, tc, []string{v0}, AttachOptions{}); err == nil || !strings.Contains(err.Error(), "someone else") {
		t.Fatalf("over a foreign XDP link: %v", err)
	}
}

// TestClsactForeignFilterSurvives puts someone else's clsact qdisc and egress filter on the
// interface, attaches and detaches in both TC modes, and checks that both are untouched.
func TestClsactForeignFilterSurvives(t *testing.T) {
	v0, _ := inVethNetns(t)
	xdp, tc := passPrograms(t)
	_, foreign := passPrograms(t)
	l, err := netlink.LinkByName(v0)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.QdiscAdd(&netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}); err != nil {
		t.Fatal(err)
	}
	theirs := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_MIN_EGRESS,
			Handle: 1, Priority: 1, Protocol: unix.ETH_P_ALL},
		Fd: foreign.FD(), Name: "someone-else", DirectAction: true,
	}
	if err := netlink.FilterAdd(theirs); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []TCMode{TCAuto, TCClsact} {
		a, err := Attach(xdp, tc, []string{v0}, AttachOptions{TCMode: mode})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if mode == TCClsact && len(egressFilters(t, v0)) != 2 {
			t.Errorf("%s: want their filter and ours, have %d", mode, len(egressFilters(t, v0)))
		}
		if err := a.Close(); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if !hasClsact(t, v0) {
			t.Fatalf("%s: their clsact qdisc is gone", mode)
		}
		fs := egressFilters(t, v0)
		if len(fs) != 1 || fs[0].(*netlink.BpfFilter).Name != "someone-else" || fs[0].Attrs().Priority != 1 {
			t.Fatalf("%s: after detach egress filters are %+v, want only theirs", mode, fs)
		}
	}
}

func TestParseFlags(t *testing.T) {
	if h, err := ParseHooks("in"); err != nil || h != HookIn {
		t.Error(h, err)
	}
	if _, err := ParseHooks("sideways"); err == nil {
		t.Error("ParseHooks accepted sideways")
	}
	if m, err := ParseXDPMode("generic"); err != nil || m != XDPGeneric || m.String() != "generic" {
		t.Error(m, err)
	}
	if m, err := ParseTCMode("clsact"); err != nil || m != TCClsact || m.String() != "clsact" {
		t.Error(m, err)
	}
	if _, err := ParseTCMode("tc"); err == nil {
		t.Error("ParseTCMode accepted tc")
	}
}

func TestExplain(t *testing.T) {
	if Explain(nil) != nil {
		t.Fatal("Explain(nil) != nil")
	}
	plain := errors.New("plain")
	if Explain(plain) != plain {
		t.Fatal("Explain changed an error it has nothing to say about")
	}
	err := Explain(&ebpf.VerifierError{Cause: unix.EACCES, Log: []string{"0: R1 invalid mem access", "processed 3 insns"}})
	if !strings.Contains(err.Error(), "R1 invalid mem access") || !strings.Contains(err.Error(), "processed 3 insns") {
		t.Fatalf("verifier log not in the message: %v", err)
	}
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		t.Fatal("verifier error no longer reachable with errors.As")
	}
}

func TestExplainPermission(t *testing.T) {
	err := Explain(fmt.Errorf("create link: %w", unix.EPERM))
	if os.Geteuid() == 0 {
		if m := MissingCaps(); m != nil {
			t.Fatalf("root lacks %v", m)
		}
		return
	}
	for _, c := range []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "sudo"} {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("EPERM as uid %d: message does not name %s: %v", os.Geteuid(), c, err)
		}
	}
}

func TestExplainOldKernel(t *testing.T) {
	defer func(r, b func() error) { probeRingBuf, probeBTF = r, b }(probeRingBuf, probeBTF)
	notSupported := func() error { return ebpf.ErrNotSupported }
	ok := func() error { return nil }
	loadErr := fmt.Errorf("map events: %w", ebpf.ErrNotSupported)

	probeRingBuf, probeBTF = notSupported, ok
	if err := Explain(loadErr); !strings.Contains(err.Error(), "Linux 5.8 or later") || !errors.Is(err, ebpf.ErrNotSupported) {
		t.Errorf("no ring buffer: %v", err)
	}
	probeRingBuf, probeBTF = ok, notSupported
	if err := Explain(loadErr); !strings.Contains(err.Error(), "CONFIG_DEBUG_INFO_BTF") {
		t.Errorf("no BTF: %v", err)
	}
	probeRingBuf, probeBTF = ok, ok
	if err := Explain(loadErr); err != loadErr {
		t.Errorf("a kernel with both: %v", err)
	}
}

// TestTCXFallback: in auto mode the clsact fallback is taken on ErrNotSupported (a kernel
// without TCX) and on nothing else; in tcx mode never.
func TestTCXFallback(t *testing.T) {
	v0, _ := inVethNetns(t)
	xdp, tc := passPrograms(t)
	defer func(f func(link.TCXOptions) (link.Link, error)) { attachTCX = f }(attachTCX)

	attachTCX = func(link.TCXOptions) (link.Link, error) {
		return nil, fmt.Errorf("attach tcx link: %w", ebpf.ErrNotSupported)
	}
	a, err := Attach(xdp, tc, []string{v0}, AttachOptions{Hooks: HookOut})
	if err != nil {
		t.Fatal(err)
	}
	if a.Ifaces[0].TC != "clsact" || len(egressFilters(t, v0)) != 1 {
		t.Errorf("without TCX: egress %q, %d filters; want clsact and ours", a.Ifaces[0].TC, len(egressFilters(t, v0)))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Attach(xdp, tc, []string{v0}, AttachOptions{Hooks: HookOut, TCMode: TCX}); err == nil || !strings.Contains(err.Error(), "--tc-mode clsact") {
		t.Errorf("tcx mode without TCX: %v", err)
	}

	attachTCX = func(link.TCXOptions) (link.Link, error) {
		return nil, fmt.Errorf("attach tcx link: %w", unix.EBUSY)
	}
	if _, err := Attach(xdp, tc, []string{v0}, AttachOptions{Hooks: HookOut}); err == nil || !errors.Is(err, unix.EBUSY) {
		t.Errorf("TCX failing for another reason must not fall back: %v", err)
	}
	if hasClsact(t, v0) || len(egressFilters(t, v0)) != 0 {
		t.Error("a clsact qdisc or filter was left behind")
	}
}
