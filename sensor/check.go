package sensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// CheckStatus is the outcome of one check.
type CheckStatus uint8

// Check outcomes.
const (
	CheckOK      CheckStatus = iota // supported
	CheckMissing                    // not supported: the Fix says what to do
	CheckUnknown                    // could not be found out (usually: needs privileges)
	CheckInfo                       // informational only
)

var checkStatusNames = [...]string{"yes", "MISSING", "unknown", "-"}

// String returns yes, MISSING, unknown or -.
func (s CheckStatus) String() string { return checkStatusNames[s] }

// CheckResult is one row of `chains-sensor check`.
type CheckResult struct {
	Name     string      // what was checked
	Status   CheckStatus // outcome
	Detail   string      // what was found
	Fix      string      // what to do when Status is CheckMissing or CheckUnknown
	Required bool        // the sensor cannot run (as asked) without it
}

// CheckOptions say what the sensor would be asked to do.
type CheckOptions struct {
	Iface string // interface to check the hooks on ("" skips the per-interface checks)
	Hooks Hooks  // directions that would be watched (0: both)
	// Load, if not nil, loads the sensor programs (normally Load); the check reports whether
	// the verifier accepts them and uses them for the test run.
	Load func() (*Objects, error)
}

// Check probes what this kernel and these privileges allow: privileges, BPF ring buffer, BTF,
// BPF_PROG_TEST_RUN, the sensor programs passing the verifier, XDP native and generic on the
// interface, TCX and clsact on its egress. Per-interface probes attach a pass-through program
// for an instant (native and generic XDP, TCX, a clsact qdisc only if none is there) and detach
// it. A native XDP attach that works resets the link of some NICs for a moment, as attach
// itself does; one that fails changes nothing.
func Check(opts CheckOptions) []CheckResult {
	if opts.Hooks == 0 {
		opts.Hooks = HookBoth
	}
	var rs []CheckResult
	add := func(r CheckResult) { rs = append(rs, r) }

	add(checkPrivileges())
	if v, err := features.LinuxVersionCode(); err == nil {
		add(CheckResult{Name: "kernel", Status: CheckInfo, Detail: fmt.Sprintf("%d.%d.%d (ring buffer needs 5.8, TCX 6.6)", v>>16, v>>8&0xff, v&0xff)})
	}
	add(probe("BPF ring buffer", true, features.HaveMapType(ebpf.RingBuf), "Linux 5.8 or later"))
	add(checkBTF())
	add(probe("XDP programs", true, features.HaveProgramType(ebpf.XDP), "Linux 4.8 or later with CONFIG_BPF_SYSCALL"))
	add(probe("TC programs", opts.Hooks&HookOut != 0, features.HaveProgramType(ebpf.SchedCLS), "a kernel with CONFIG_NET_CLS_BPF"))

	xdp, tc, perr := passThroughPrograms()
	if perr == nil {
		defer xdp.Close()
		defer tc.Close()
	}
	add(checkTestRun(xdp, perr))
	if opts.Load != nil {
		objs, err := opts.Load()
		if err == nil {
			objs.Close()
			add(CheckResult{Name: "sensor programs load", Status: CheckOK, Detail: "xdp_sensor and tc_sensor pass the verifier", Required: true})
		} else {
			add(unknownOrMissing(CheckResult{Name: "sensor programs load", Required: true}, Explain(err)))
		}
	}
	for _, r := range checkOwner(opts.Load != nil) {
		add(r)
	}
	if opts.Iface == "" {
		return rs
	}
	idx, err := LookupInterface(opts.Iface)
	if err != nil {
		add(CheckResult{Name: "interface " + opts.Iface, Status: CheckMissing, Detail: "not found", Fix: err.Error(), Required: true})
		return rs
	}
	in, out := opts.Hooks&HookIn != 0, opts.Hooks&HookOut != 0
	add(checkXDPHookFree(opts.Iface, idx, in))
	add(checkXDPNative(opts.Iface, idx, xdp, perr))
	add(checkXDPGeneric(opts.Iface, idx, xdp, perr))
	tcx := checkTCX(opts.Iface, idx, tc, perr)
	add(tcx)
	cls := checkClsact(opts.Iface, idx, tc, perr)
	add(cls)
	if out {
		add(either("egress hook (TCX or clsact)", tcx.Status, cls.Status, "see the TCX and clsact rows"))
	}
	if in {
		var native, generic CheckStatus
		for _, r := range rs {
			switch {
			case strings.HasPrefix(r.Name, "XDP native"):
				native = r.Status
			case strings.HasPrefix(r.Name, "XDP generic"):
				generic = r.Status
			}
		}
		add(either("ingress hook (XDP native or generic)", native, generic, "see the XDP rows"))
	}
	return rs
}

// either sums up two ways to the same hook: usable if one works, unknown if one could not be
// found out, else missing.
func either(name string, a, b CheckStatus, fix string) CheckResult {
	r := CheckResult{Name: name, Required: true}
	switch {
	case a == CheckOK || b == CheckOK:
		r.Status, r.Detail = CheckOK, "usable"
	case a == CheckUnknown || b == CheckUnknown:
		r.Status, r.Detail = CheckUnknown, "not known"
	default:
		r.Status, r.Detail, r.Fix = CheckMissing, "neither way works", fix
	}
	return r
}

// WriteCheckTable prints the results as a table, then one line per missing requirement with its
// fix. It returns false if a required check is missing or unknown.
func WriteCheckTable(w io.Writer, rs []CheckResult) bool {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSUPPORTED\tDETAIL")
	for _, r := range rs {
		name := r.Name
		if r.Required {
			name += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, r.Status, r.Detail)
	}
	tw.Flush()
	fmt.Fprintln(w, "(* required for what was asked)")
	ok := true
	var fixes []string
	for _, r := range rs {
		if r.Status == CheckMissing || r.Status == CheckUnknown {
			if r.Required {
				ok = false
			}
			if r.Fix != "" {
				fixes = append(fixes, fmt.Sprintf("  %s: %s", r.Name, r.Fix))
			}
		}
	}
	if len(fixes) > 0 {
		fmt.Fprintln(w, "\nMissing or unknown, and how to fix it:")
		for _, f := range fixes {
			fmt.Fprintln(w, f)
		}
	}
	if ok {
		fmt.Fprintln(w, "\nchains-sensor can run here.")
	} else {
		fmt.Fprintln(w, "\nchains-sensor cannot run here as asked.")
	}
	return ok
}

func checkPrivileges() CheckResult {
	r := CheckResult{Name: "privileges", Required: true}
	missing := MissingCaps()
	switch {
	case len(missing) == 0 && os.Geteuid() == 0:
		r.Status, r.Detail = CheckOK, "root"
	case len(missing) == 0:
		r.Status, r.Detail = CheckOK, "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"
	default:
		r.Status, r.Detail, r.Fix = CheckMissing, "missing "+strings.Join(missing, ", "), privilegeHint()
	}
	return r
}

func checkBTF() CheckResult {
	r := CheckResult{Name: "kernel BTF", Detail: "/sys/kernel/btf/vmlinux"}
	if _, err := btf.LoadKernelSpec(); err != nil {
		r.Status, r.Detail = CheckMissing, err.Error()
		r.Fix = "a kernel built with CONFIG_DEBUG_INFO_BTF=y; the sensor programs do not need it today (no CO-RE)"
		return r
	}
	r.Status = CheckOK
	return r
}

func probe(name string, required bool, err error, needs string) CheckResult {
	r := CheckResult{Name: name, Required: required}
	if err == nil {
		r.Status = CheckOK
		return r
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		r.Status, r.Detail, r.Fix = CheckMissing, "not supported by this kernel", "needs "+needs
		return r
	}
	return unknownOrMissing(r, err)
}

// unknownOrMissing reports a probe that failed: unknown when for lack of privileges, else missing.
func unknownOrMissing(r CheckResult, err error) CheckResult {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		r.Status, r.Detail = CheckUnknown, "needs privileges to find out"
		if len(MissingCaps()) == 0 {
			// Privileged, and still refused: lockdown, a sysctl or an LSM.
			r.Fix = strings.TrimPrefix(strings.TrimSpace(Explain(err).Error()[len(err.Error()):]), "fix: ")
		}
		return r
	}
	r.Status, r.Detail = CheckMissing, firstLine(err.Error())
	if ex := Explain(err); ex != err {
		r.Fix = strings.TrimSpace(ex.Error()[len(err.Error()):])
		r.Fix = strings.TrimPrefix(r.Fix, "fix: ")
	}
	if r.Fix == "" {
		r.Fix = err.Error()
	}
	return r
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// passThroughPrograms returns an XDP program that passes every packet and a TC program that
// returns TC_ACT_UNSPEC, for probing the hooks.
func passThroughPrograms() (xdp, tc *ebpf.Program, err error) {
	xdp, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "chains_check", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		return nil, nil, err
	}
	tc, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "chains_check", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		xdp.Close()
		return nil, nil, err
	}
	return xdp, tc, nil
}

func checkTestRun(xdp *ebpf.Program, perr error) CheckResult {
	r := CheckResult{Name: "BPF_PROG_TEST_RUN", Detail: "for `read --kernel` and the kernel tests"}
	if perr != nil {
		return unknownOrMissing(r, perr)
	}
	ret, err := xdp.Run(&ebpf.RunOptions{Data: make([]byte, 64)})
	if err == nil && ret == 2 {
		r.Status = CheckOK
		return r
	}
	if err == nil {
		err = fmt.Errorf("test program returned %d, want 2", ret)
	}
	return probe(r.Name, false, err, "Linux 4.12 or later")
}

func checkXDPHookFree(name string, idx int, required bool) CheckResult {
	r := CheckResult{Name: "XDP hook free on " + name, Required: required}
	l, err := netlink.LinkByIndex(idx)
	if err != nil {
		return unknownOrMissing(r, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.ProgId != 0 {
		r.Status, r.Detail = CheckMissing, fmt.Sprintf("program id %d attached", x.ProgId)
		r.Fix = foreignXDP(name, idx)
		return r
	}
	r.Status, r.Detail = CheckOK, "no XDP program attached"
	return r
}

// netdev generic netlink family (linux/netdev.h).
const (
	netdevCmdDevGet       = 1
	netdevAttrIfindex     = 1
	netdevAttrXDPFeatures = 3
	netdevXDPActBasic     = 1 << 0
)

// xdpFeatures asks the netdev netlink family which XDP features the driver advertises
// (Linux 6.3+).
func xdpFeatures(idx int) (uint64, error) {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return 0, fmt.Errorf("netdev netlink family (Linux 6.3+): %w", err)
	}
	req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_ACK)
	req.AddData(genlHeader{netdevCmdDevGet, 1})
	req.AddData(nl.NewRtAttr(netdevAttrIfindex, nl.Uint32Attr(uint32(idx))))
	msgs, err := req.Execute(unix.NETLINK_GENERIC, 0)
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofGenlmsg {
			continue
		}
		// Walk the attributes by hand: nl.ParseRouteAttr rejects an unpadded last attribute.
		for b := m[nl.SizeofGenlmsg:]; len(b) >= 4; {
			n := int(binary.NativeEndian.Uint16(b))
			typ := binary.NativeEndian.Uint16(b[2:]) & 0x3fff
			if n < 4 || n > len(b) {
				break
			}
			if typ == netdevAttrXDPFeatures && n == 12 {
				return binary.NativeEndian.Uint64(b[4:]), nil
			}
			b = b[min(len(b), (n+3)&^3):]
		}
	}
	return 0, errors.New("no xdp-features in the answer")
}

// genlHeader is the 4-byte generic netlink header. (nl.Genlmsg serializes 4 bytes from a
// 2-byte struct, so its reserved bytes are whatever follows in memory, and the kernel may
// reject the request.)
type genlHeader struct{ cmd, version uint8 }

// Len is the header's length on the wire.
func (h genlHeader) Len() int { return 4 }

// Serialize returns the header's bytes, reserved bytes zero.
func (h genlHeader) Serialize() []byte { return []byte{h.cmd, h.version, 0, 0} }

// checkXDPNative says native XDP is usable only when a trial attach in driver mode worked: a
// driver may advertise XDP and still refuse it (virtio_net without enough queues, a veth whose
// peer's MTU is too large), and attach would then fall back to generic.
func checkXDPNative(name string, idx int, prog *ebpf.Program, perr error) CheckResult {
	r := CheckResult{Name: "XDP native on " + name}
	driver := ""
	if d, err := os.Readlink("/sys/class/net/" + name + "/device/driver"); err == nil {
		driver = filepath.Base(d)
	} else if l, err := netlink.LinkByIndex(idx); err == nil {
		driver = l.Type()
		if driver == "device" && l.Attrs().EncapType != "" {
			driver = l.Attrs().EncapType // "loopback"
		}
	}
	advertised := "features unknown"
	if feats, err := xdpFeatures(idx); err == nil {
		advertised = fmt.Sprintf("advertises XDP features %#x", feats)
		if feats&netdevXDPActBasic == 0 {
			advertised = "advertises no XDP"
		}
	}
	if perr != nil {
		return unknownOrMissing(r, perr)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPDriverMode})
	if err == nil {
		l.Close()
		r.Status, r.Detail = CheckOK, fmt.Sprintf("trial attach and detach worked (driver %s)", driver)
		return r
	}
	switch {
	case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
		r.Status, r.Detail, r.Fix = CheckMissing, "hook taken by another program", foreignXDP(name, idx)
		return r
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return unknownOrMissing(r, err)
	}
	r.Status = CheckMissing
	r.Detail = fmt.Sprintf("trial attach failed: %s (driver %s %s)", unwrapErrno(err), driver, advertised)
	r.Fix = "attach falls back to generic XDP here (--xdp-mode auto or generic), at a higher cost per packet"
	return r
}

// unwrapErrno returns the errno inside err, if any, else err itself, as text.
func unwrapErrno(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return firstLine(err.Error())
}

func checkXDPGeneric(name string, idx int, prog *ebpf.Program, perr error) CheckResult {
	r := CheckResult{Name: "XDP generic on " + name}
	if perr != nil {
		return unknownOrMissing(r, perr)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPGenericMode})
	if err != nil {
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			r.Status, r.Detail, r.Fix = CheckMissing, "hook taken by another program", foreignXDP(name, idx)
			return r
		}
		return unknownOrMissing(r, err)
	}
	l.Close()
	r.Status, r.Detail = CheckOK, "trial attach and detach worked"
	return r
}

func checkTCX(name string, idx int, prog *ebpf.Program, perr error) CheckResult {
	r := CheckResult{Name: "TCX egress on " + name}
	if perr != nil {
		return unknownOrMissing(r, perr)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: idx, Program: prog, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			r.Status, r.Detail, r.Fix = CheckMissing, "this kernel has no TCX", "Linux 6.6+; until then the clsact fallback is used"
			return r
		}
		return unknownOrMissing(r, err)
	}
	l.Close()
	r.Status, r.Detail = CheckOK, "trial attach and detach worked (bpf_link)"
	return r
}

func checkClsact(name string, idx int, prog *ebpf.Program, perr error) CheckResult {
	r := CheckResult{Name: "clsact egress on " + name}
	if perr != nil {
		return unknownOrMissing(r, perr)
	}
	closer, err := attachClsact(prog, idx)
	if err != nil {
		r = unknownOrMissing(r, err)
		if r.Status == CheckMissing {
			r.Fix = "a kernel with CONFIG_NET_SCH_INGRESS (clsact) and CONFIG_NET_CLS_BPF"
		}
		return r
	}
	if err := closer(); err != nil {
		r.Status, r.Detail = CheckMissing, "detach failed: "+err.Error()
		return r
	}
	r.Status, r.Detail = CheckOK, "trial filter added and removed (fallback: no bpf_link, stays if killed)"
	return r
}
