package sensor

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// XDPMode says how xdp_sensor is attached to an interface's ingress.
type XDPMode uint8

// XDP attach modes.
const (
	XDPAuto    XDPMode = iota // native (driver) mode, else generic (skb) mode
	XDPNative                 // driver mode only
	XDPGeneric                // generic (skb) mode only
)

var xdpModeNames = [...]string{"auto", "native", "generic"}

// String returns auto, native or generic.
func (m XDPMode) String() string {
	if int(m) < len(xdpModeNames) {
		return xdpModeNames[m]
	}
	return fmt.Sprintf("XDPMode(%d)", m)
}

// ParseXDPMode parses auto, native or generic.
func ParseXDPMode(s string) (XDPMode, error) {
	for i, n := range xdpModeNames {
		if s == n {
			return XDPMode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown XDP mode %q: want auto, native or generic", s)
}

// TCMode says how tc_sensor is attached to an interface's egress.
type TCMode uint8

// TC attach modes.
const (
	TCAuto   TCMode = iota // TCX, else (kernel without TCX) a filter on a clsact qdisc
	TCX                    // TCX link only (Linux 6.6+)
	TCClsact               // clsact qdisc + bpf filter only (no bpf_link: a killed process leaves it behind)
)

var tcModeNames = [...]string{"auto", "tcx", "clsact"}

// String returns auto, tcx or clsact.
func (m TCMode) String() string {
	if int(m) < len(tcModeNames) {
		return tcModeNames[m]
	}
	return fmt.Sprintf("TCMode(%d)", m)
}

// ParseTCMode parses auto, tcx or clsact.
func ParseTCMode(s string) (TCMode, error) {
	for i, n := range tcModeNames {
		if s == n {
			return TCMode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown TC mode %q: want auto, tcx or clsact", s)
}

// Hooks selects the directions to watch: ingress (XDP), egress (TC) or both.
type Hooks uint8

// Hook bits.
const (
	HookIn   Hooks = 1 << 0 // ingress: xdp_sensor
	HookOut  Hooks = 1 << 1 // egress: tc_sensor
	HookBoth       = HookIn | HookOut
)

// ParseHooks parses the --direction flag: in, out or both.
func ParseHooks(s string) (Hooks, error) {
	switch s {
	case "in":
		return HookIn, nil
	case "out":
		return HookOut, nil
	case "both", "":
		return HookBoth, nil
	}
	return 0, fmt.Errorf("unknown direction %q: want in, out or both", s)
}

// String returns in, out or both.
func (h Hooks) String() string {
	switch h {
	case HookIn:
		return "in"
	case HookOut:
		return "out"
	case HookBoth:
		return "both"
	}
	return "none"
}

// AttachOptions says where and how to attach.
type AttachOptions struct {
	Hooks   Hooks   // directions to watch; zero means both
	XDPMode XDPMode // ingress attach mode
	TCMode  TCMode  // egress attach mode
}

// Attachment is one interface the sensor is attached to, and how.
type Attachment struct {
	Iface   string // interface name
	Ifindex int    // interface index
	XDP     string // "native" or "generic"; "" when ingress is not watched
	TC      string // "tcx" or "clsact"; "" when egress is not watched
	// Warnings are things the user should know, e.g. filters a killed chains-sensor left.
	Warnings []string
}

// Attached holds everything Attach attached; Close detaches it all.
type Attached struct {
	Ifaces []Attachment
	xdp    *ebpf.Program
	tc     *ebpf.Program
	opts   AttachOptions
	mu     sync.Mutex
	// closers are each interface's detach functions, by index, in attach order; order is
	// the order the interfaces were attached in.
	closers map[int][]func() error
	order   []int
}

// Close detaches everything, in the reverse order of attaching. It is safe to call twice.
func (a *Attached) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for i := len(a.order) - 1; i >= 0; i-- {
		errs = append(errs, a.detachLocked(a.order[i]))
	}
	a.order = nil
	return errors.Join(errs...)
}

// Detach detaches the interface of index idx alone (one that disappeared: what the kernel
// already removed with it is not an error). It is safe to call for an index not attached.
func (a *Attached) Detach(idx int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.detachLocked(idx)
	a.order = slices.DeleteFunc(a.order, func(i int) bool { return i == idx })
	return err
}

func (a *Attached) detachLocked(idx int) error {
	cl := a.closers[idx]
	delete(a.closers, idx)
	var errs []error
	for i := len(cl) - 1; i >= 0; i-- {
		if err := cl[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reattach attaches the programs again, as Attach did, to the interface called name (one that
// disappeared and came back: its index is new).
func (a *Attached) Reattach(name string) (Attachment, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, err := a.attachOne(a.xdp, a.tc, name, a.opts)
	if err != nil {
		a.detachLocked(at.Ifindex)
		return at, err
	}
	a.order = append(a.order, at.Ifindex)
	a.Ifaces = append(a.Ifaces, at)
	return at, nil
}

// Attach attaches xdp (ingress) and tc (egress) to each named interface, as opts say. Either
// program may be nil when its hook is not selected. On error everything attached so far is
// detached again and the error names the fix.
func Attach(xdp, tc *ebpf.Program, ifaces []string, opts AttachOptions) (*Attached, error) {
	if opts.Hooks == 0 {
		opts.Hooks = HookBoth
	}
	if len(ifaces) == 0 {
		return nil, errors.New("no interface to attach to")
	}
	if opts.Hooks&HookIn != 0 && xdp == nil {
		return nil, errors.New("ingress selected but no XDP program given")
	}
	if opts.Hooks&HookOut != 0 && tc == nil {
		return nil, errors.New("egress selected but no TC program given")
	}
	a := &Attached{xdp: xdp, tc: tc, opts: opts, closers: map[int][]func() error{}}
	for _, name := range ifaces {
		at, err := a.attachOne(xdp, tc, name, opts)
		if at.Ifindex != 0 {
			a.order = append(a.order, at.Ifindex)
		}
		if err != nil {
			a.Close()
			return nil, err
		}
		a.Ifaces = append(a.Ifaces, at)
	}
	return a, nil
}

// LookupInterface returns the index of the named interface, or an error that says how to list them.
func LookupInterface(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("no such interface %q (list them with `ip link`; in another network "+
			"namespace, run chains-sensor inside it with `ip netns exec NS`)", name)
	}
	return ifi.Index, nil
}

func (a *Attached) attachOne(xdp, tc *ebpf.Program, name string, opts AttachOptions) (Attachment, error) {
	at := Attachment{Iface: name}
	idx, err := LookupInterface(name)
	if err != nil {
		return at, err
	}
	at.Ifindex = idx
	if opts.Hooks&HookIn != 0 {
		l, mode, err := attachXDP(xdp, name, idx, opts.XDPMode)
		if err != nil {
			return at, err
		}
		a.closers[idx] = append(a.closers[idx], l.Close)
		at.XDP = mode
	}
	if opts.Hooks&HookOut != 0 {
		closer, mode, err := attachEgress(tc, name, idx, opts.TCMode)
		if err != nil {
			return at, err
		}
		a.closers[idx] = append(a.closers[idx], closer)
		at.TC = mode
		if mode == "clsact" {
			at.Warnings = append(at.Warnings, staleFilters(name, idx, tc)...)
		}
	}
	return at, nil
}

// attachXDP attaches prog with a bpf_link in the given mode; auto tries native, then generic.
func attachXDP(prog *ebpf.Program, name string, idx int, mode XDPMode) (link.Link, string, error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: flags})
	}
	var (
		l   link.Link
		err error
	)
	switch mode {
	case XDPNative:
		l, err = try(link.XDPDriverMode)
		if err == nil {
			return l, "native", nil
		}
	case XDPGeneric:
		l, err = try(link.XDPGenericMode)
		if err == nil {
			return l, "generic", nil
		}
	default:
		l, err = try(link.XDPDriverMode)
		if err == nil {
			return l, "native", nil
		}
		if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EPERM) {
			var gerr error
			if l, gerr = try(link.XDPGenericMode); gerr == nil {
				return l, "generic", nil
			}
			err = fmt.Errorf("native: %w; generic: %w", err, gerr)
		}
	}
	return nil, "", xdpError(err, name, idx, mode)
}

// xdpError explains a failed XDP attach: someone else's program, missing privileges, no driver support.
func xdpError(err error, name string, idx int, mode XDPMode) error {
	base := fmt.Errorf("attach xdp_sensor to %s ingress (%s mode): %w", name, mode, err)
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		return &explained{base, foreignXDP(name, idx)}
	}
	if errors.Is(err, unix.EOPNOTSUPP) && mode == XDPNative {
		return &explained{base, fmt.Sprintf("the driver of %s has no native XDP: use --xdp-mode generic (or auto)", name)}
	}
	return Explain(base)
}

// foreignXDP describes the XDP program already attached to the interface and how to remove it.
func foreignXDP(name string, idx int) string {
	what := "another XDP program"
	if l, err := netlink.LinkByIndex(idx); err == nil && l.Attrs().Xdp != nil && l.Attrs().Xdp.ProgId != 0 {
		x := l.Attrs().Xdp
		what = fmt.Sprintf("XDP program id %d", x.ProgId)
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId)); err == nil {
			if info, err := p.Info(); err == nil && info.Name != "" {
				what += fmt.Sprintf(" (%q)", info.Name)
			}
			p.Close()
		}
		what += " in " + xdpAttachModeName(x.AttachMode) + " mode"
	}
	return fmt.Sprintf("%s already has %s attached by someone else; chains-sensor never replaces it. "+
		"Find its owner with `bpftool net show dev %s`, detach it there (a legacy attach: `ip link set dev %s xdp off`), "+
		"or watch only egress with --direction out", name, what, name, name)
}

func xdpAttachModeName(m uint32) string {
	switch m {
	case nlXDPAttachedDrv:
		return "native"
	case nlXDPAttachedSkb:
		return "generic"
	case nlXDPAttachedHw:
		return "offload"
	case nlXDPAttachedMulti:
		return "multi"
	}
	return "unknown"
}

// XDP_ATTACHED_* of linux/if_link.h.
const (
	nlXDPAttachedDrv   = 1
	nlXDPAttachedSkb   = 2
	nlXDPAttachedHw    = 3
	nlXDPAttachedMulti = 4
)

// attachEgress attaches prog to the egress of the interface with TCX or a clsact filter.
func attachEgress(prog *ebpf.Program, name string, idx int, mode TCMode) (func() error, string, error) {
	if mode != TCClsact {
		l, err := attachTCX(link.TCXOptions{Interface: idx, Program: prog, Attach: ebpf.AttachTCXEgress})
		if err == nil {
			return l.Close, "tcx", nil
		}
		if mode == TCX || !errors.Is(err, ebpf.ErrNotSupported) {
			base := fmt.Errorf("attach tc_sensor to %s egress with TCX: %w", name, err)
			if errors.Is(err, ebpf.ErrNotSupported) {
				return nil, "", &explained{base, "this kernel has no TCX (Linux 6.6+): use --tc-mode clsact or auto"}
			}
			return nil, "", Explain(base)
		}
	}
	closer, err := attachClsact(prog, idx)
	if err != nil {
		return nil, "", Explain(fmt.Errorf("attach tc_sensor to %s egress with a clsact filter: %w", name, err))
	}
	return closer, "clsact", nil
}

// attachTCX is link.AttachTCX; a variable so that tests can play a kernel without TCX.
var attachTCX = link.AttachTCX

// clsactFilterName is the name our clsact filters carry, so that people (and we) can tell them apart.
const clsactFilterName = "chains-sensor"

// attachClsact makes sure the interface has a clsact qdisc (creating one only if none is there)
// and adds a direct-action bpf filter on its egress at a priority nobody uses. The returned
// closer deletes only that filter, and the qdisc only if we created it and it holds no other
// filter.
func attachClsact(prog *ebpf.Program, idx int) (func() error, error) {
	lnk, err := netlink.LinkByIndex(idx)
	if err != nil {
		return nil, fmt.Errorf("look up interface %d: %w", idx, err)
	}
	qdiscs, err := netlink.QdiscList(lnk)
	if err != nil {
		return nil, fmt.Errorf("list qdiscs: %w", err)
	}
	haveClsact := false
	for _, q := range qdiscs {
		if q.Type() == "clsact" {
			haveClsact = true
		}
	}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	createdQdisc := false
	if !haveClsact {
		// QdiscAdd uses NLM_F_EXCL: it never replaces a qdisc that appeared meanwhile.
		if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("add clsact qdisc: %w", err)
		} else if err == nil {
			createdQdisc = true
		}
	}
	undoQdisc := func() error {
		if !createdQdisc {
			return nil
		}
		filters, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_EGRESS)
		if linkGone(err) {
			return nil // the device went, and its qdisc with it
		}
		if err != nil {
			return fmt.Errorf("list egress filters: %w", err)
		}
		ingress, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_INGRESS)
		if err != nil {
			return fmt.Errorf("list ingress filters: %w", err)
		}
		if len(filters)+len(ingress) > 0 {
			return nil // someone else put a filter on the qdisc we made: it stays
		}
		if err := netlink.QdiscDel(qdisc); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) && !linkGone(err) {
			return fmt.Errorf("delete the clsact qdisc we added: %w", err)
		}
		return nil
	}
	prio, err := freePriority(lnk)
	if err != nil {
		undoQdisc()
		return nil, err
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: idx,
			Parent:    netlink.HANDLE_MIN_EGRESS,
			Handle:    1,
			Priority:  prio,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           prog.FD(),
		Name:         clsactFilterName,
		DirectAction: true,
	}
	// FilterAdd uses NLM_F_EXCL: it fails rather than replace a filter at the same priority.
	if err := netlink.FilterAdd(filter); err != nil {
		undoQdisc()
		return nil, fmt.Errorf("add bpf filter at priority %d: %w", prio, err)
	}
	progInfo, _ := prog.Info()
	return func() error {
		var errs []error
		if isOurFilter(lnk, prio, progInfo) {
			if err := netlink.FilterDel(filter); err != nil && !errors.Is(err, unix.ENOENT) && !linkGone(err) {
				errs = append(errs, fmt.Errorf("delete our clsact filter (priority %d): %w", prio, err))
			}
		}
		errs = append(errs, undoQdisc())
		return errors.Join(errs...)
	}, nil
}

// linkGone says err is netlink's answer about a device that no longer exists.
func linkGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.Is(err, unix.ENODEV) || errors.As(err, &nf)
}

// staleFilters describes egress filters named chains-sensor other than ours: left by a
// chains-sensor that was killed (a clsact filter has no bpf_link), or belonging to one that
// still runs. They are not removed: we cannot tell which.
func staleFilters(name string, idx int, ours *ebpf.Program) []string {
	lnk, err := netlink.LinkByIndex(idx)
	if err != nil {
		return nil
	}
	filters, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_EGRESS)
	if err != nil {
		return nil
	}
	var ourID uint32
	if info, err := ours.Info(); err == nil {
		if id, ok := info.ID(); ok {
			ourID = uint32(id)
		}
	}
	var out []string
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if !ok || !strings.HasPrefix(bf.Name, clsactFilterName) || uint32(bf.Id) == ourID {
			continue
		}
		out = append(out, fmt.Sprintf("%s has another chains-sensor egress filter (priority %d, program id %d), "+
			"from a chains-sensor still running or one that was killed; if none runs, remove it with "+
			"`tc filter del dev %s egress prio %d`", name, f.Attrs().Priority, bf.Id, name, f.Attrs().Priority))
	}
	return out
}

// freePriority returns a filter priority on the egress hook that no filter uses, counting down
// from 0xc000 so that ours runs after the filters people add by hand (which start at 1 or 49152).
func freePriority(lnk netlink.Link) (uint16, error) {
	filters, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_EGRESS)
	if err != nil {
		return 0, fmt.Errorf("list egress filters: %w", err)
	}
	used := map[uint16]bool{}
	for _, f := range filters {
		used[f.Attrs().Priority] = true
	}
	for p := uint16(0xc000 - 1); p > 0; p-- {
		if !used[p] {
			return p, nil
		}
	}
	return 0, errors.New("no free filter priority on egress")
}

// isOurFilter reports whether the egress filter at prio is still the one we added: a bpf filter
// named chains-sensor running our program.
func isOurFilter(lnk netlink.Link, prio uint16, info *ebpf.ProgramInfo) bool {
	filters, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_EGRESS)
	if err != nil {
		return false
	}
	for _, f := range filters {
		bf, ok := f.(*netlink.BpfFilter)
		if !ok || f.Attrs().Priority != prio {
			continue
		}
		if !strings.HasPrefix(bf.Name, clsactFilterName) {
			return false
		}
		if info != nil {
			if id, ok := info.ID(); ok && bf.Id != 0 && uint32(id) != uint32(bf.Id) {
				return false
			}
		}
		return true
	}
	return false
}

// DefaultInterface returns the name of the interface of the default route (IPv4, else IPv6).
func DefaultInterface() (string, error) {
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteList(nil, family)
		if err != nil {
			return "", fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
				continue
			}
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if r.LinkIndex == 0 {
				continue
			}
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				continue
			}
			return l.Attrs().Name, nil
		}
	}
	return "", errors.New("no default route, so no default interface: name the interface, e.g. " +
		"`chains-sensor attach eth0` (list them with `ip link`)")
}
