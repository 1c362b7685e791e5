package sensortest

// Network namespaces for end-to-end tests. Each test makes its own, named so that commands
// reach them with `ip netns exec` and Go code with Do or Enter; the names carry the test
// process's pid and a counter, so concurrent runs never meet, and a run that was killed before
// its cleanup leaves namespaces the next run removes, once their owner is gone. Model:
// cilium/ebpf internal/testutils/netns_linux.go (Do on a thread of its own).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsPrefix starts the name of every namespace these helpers make: cstest-PID-N.
const netnsPrefix = "cstest-"

var (
	netnsSeq   atomic.Int32
	netnsMade  sync.Map // names this process made
	staleOnce  sync.Once
	staleNetns = regexp.MustCompile(`^` + netnsPrefix + `(\d+)-\d+$`)
)

// Netns is a network namespace one test made; it is deleted when the test ends, however it
// ends, after the processes started in it are killed.
type Netns struct {
	Name string // the name `ip netns exec` takes
	h    netns.NsHandle
	nl   *netlink.Handle
}

// NewNetns makes a fresh network namespace for t, with its loopback up. It gates t with
// RequireEndToEnd (and needs the ip command), and removes namespaces that killed runs of these
// tests left behind.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireEndToEnd(t)
	RequireTools(t, "ip")
	staleOnce.Do(func() { removeStaleNetns(t) })
	n := &Netns{Name: fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), netnsSeq.Add(1)), h: netns.None()}
	if out, err := run(10*time.Second, "ip", "netns", "add", n.Name); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", n.Name, err, out)
	}
	netnsMade.Store(n.Name, true)
	t.Cleanup(func() { n.close(t) })
	var err error
	if n.h, err = netns.GetFromName(n.Name); err != nil {
		t.Fatalf("open namespace %s: %v", n.Name, err)
	}
	if n.nl, err = netlink.NewHandleAt(n.h); err != nil {
		t.Fatalf("netlink in %s: %v", n.Name, err)
	}
	lo, err := n.nl.LinkByName("lo")
	if err == nil {
		err = n.nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("%s: loopback up: %v", n.Name, err)
	}
	return n
}

func (n *Netns) close(t testing.TB) {
	if n.nl != nil {
		n.nl.Close()
	}
	n.h.Close()
	if out, err := run(10*time.Second, "ip", "netns", "del", n.Name); err != nil {
		t.Errorf("ip netns del %s: %v\n%s", n.Name, err, out)
	}
}

// Netlink returns a netlink handle that works in the namespace without moving any thread.
func (n *Netns) Netlink() *netlink.Handle { return n.nl }

// Do runs f on an OS thread of its own inside the namespace and returns f's error. The calling
// goroutine stays where it is; a thread that cannot be moved back is discarded, never reused.
// f must not call runtime.LockOSThread or t.Fatal.
func (n *Netns) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			errc <- fmt.Errorf("enter %s: %w (thread discarded)", n.Name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave %s: %w (thread discarded)", n.Name, err)
			return // the goroutine ends locked: Go ends its thread with it
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Enter moves the test's goroutine, locked to its thread, into the namespace until the test
// ends, for tests whose every step (netlink, attach, helpers calling t.Fatal) works in it.
// Goroutines the test starts run elsewhere: use Do for them.
func (n *Netns) Enter(t testing.TB) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	if err := netns.Set(n.h); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("enter %s: %v", n.Name, err)
	}
	t.Cleanup(func() {
		defer orig.Close()
		if err := netns.Set(orig); err != nil {
			t.Errorf("leave %s: %v (the thread stays locked and ends with the test)", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
	})
}

// Command returns cmd args... to be run in the namespace (through ip netns exec, which also
// shows the namespace's own /sys/class/net); killed if the test process dies first.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Run runs a command in the namespace, bounded by timeout, and returns its combined output.
func (n *Netns) Run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// MustRun runs a command in the namespace (20 s at most) and fails t if it fails.
func (n *Netns) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Run(t, 20*time.Second, name, args...)
	if err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return out
}

// Proc is a process started in a namespace for the length of a test.
type Proc struct {
	*exec.Cmd
	done chan struct{}
	err  error
}

// Start starts a long-running command in the namespace with the given stdout and stderr (nil:
// discarded). When the test ends the process is killed, if still running, and waited for.
func (n *Netns) Start(t testing.TB, stdout, stderr io.Writer, name string, args ...string) *Proc {
	t.Helper()
	cmd := n.Command(context.Background(), name, args...)
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	return StartProc(t, cmd)
}

// StartProc starts cmd (made with Command, its output set as wanted) and, when the test ends,
// kills it if still running and waits for it (10 s at most).
func StartProc(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s still running 10s after SIGKILL", cmd.Args[0])
		}
	})
	return p
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is what Wait returned; valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// WaitFor waits at most d for the process to end and reports whether it did.
func (p *Proc) WaitFor(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// AddVeth makes a veth pair, name in n and peer in peerNs (nil: n too), both up.
func (n *Netns) AddVeth(t testing.TB, name, peer string, peerNs *Netns) {
	t.Helper()
	if peerNs == nil {
		peerNs = n
	}
	for _, s := range []string{name, peer} {
		if len(s) > unix.IFNAMSIZ-1 {
			t.Fatalf("interface name %q is longer than %d bytes", s, unix.IFNAMSIZ-1)
		}
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(peerNs.h)}
	if err := n.nl.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s (%s) - %s (%s): %v", name, n.Name, peer, peerNs.Name, err)
	}
	for _, e := range []struct {
		ns   *Netns
		name string
	}{{n, name}, {peerNs, peer}} {
		l, err := e.ns.nl.LinkByName(e.name)
		if err == nil {
			err = e.ns.nl.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("%s up in %s: %v", e.name, e.ns.Name, err)
		}
	}
}

// AddAddr adds an address in CIDR notation to the interface (IPv6 without duplicate address
// detection, so it is usable at once).
func (n *Netns) AddAddr(t testing.TB, iface, cidr string) {
	t.Helper()
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if addr.IP.To4() == nil {
		addr.Flags |= unix.IFA_F_NODAD
	}
	l, err := n.nl.LinkByName(iface)
	if err == nil {
		err = n.nl.AddrAdd(l, addr)
	}
	if err != nil {
		t.Fatalf("%s: address %s on %s: %v", n.Name, cidr, iface, err)
	}
}

// Pair is two namespaces joined by a veth: A (IfA, V4A, V6A), where the sensor and the servers
// go, and B (IfB, V4B, V6B), the clients' side. The addresses are the same in every pair (each
// pair is a world of its own); the interface names are unique.
type Pair struct {
	A, B           *Netns
	IfA, IfB       string
	V4A, V4B, V4BC string // IPv4 addresses in 10.77.0.0/24, and its broadcast address
	V6A, V6B       string // IPv6 addresses in fd77::/64
}

// NewPair makes two namespaces joined by a veth, addressed, with multicast from B routed out
// through the veth, and waits (bounded) until B reaches A.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	RequireEndToEnd(t)
	RequireTools(t, "ping")
	p := &Pair{A: NewNetns(t), B: NewNetns(t),
		V4A: "10.77.0.1", V4B: "10.77.0.2", V4BC: "10.77.0.255", V6A: "fd77::1", V6B: "fd77::2"}
	p.IfA, p.IfB = IfName(t, "a"), IfName(t, "b")
	p.A.AddVeth(t, p.IfA, p.IfB, p.B)
	p.A.AddAddr(t, p.IfA, p.V4A+"/24")
	p.B.AddAddr(t, p.IfB, p.V4B+"/24")
	p.A.AddAddr(t, p.IfA, p.V6A+"/64")
	p.B.AddAddr(t, p.IfB, p.V6B+"/64")
	lb, err := p.B.nl.LinkByName(p.IfB)
	if err == nil {
		_, mcast, _ := net.ParseCIDR("224.0.0.0/4")
		err = p.B.nl.RouteAdd(&netlink.Route{LinkIndex: lb.Attrs().Index, Dst: mcast})
	}
	if err != nil {
		t.Fatalf("multicast route in %s: %v", p.B.Name, err)
	}
	for i := 0; ; i++ {
		if _, err := p.B.Run(t, 5*time.Second, "ping", "-c1", "-W1", p.V4A); err == nil {
			return p
		}
		if i == 20 {
			t.Fatalf("the veth %s - %s does not carry traffic", p.IfA, p.IfB)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var ifSeq atomic.Int32

// IfName returns an interface name unique to this process and call, ending in suffix:
// csPID-Nsuffix, at most 15 bytes.
func IfName(t testing.TB, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("cs%d-%d%s", os.Getpid(), ifSeq.Add(1), suffix)
	if len(name) > unix.IFNAMSIZ-1 {
		t.Fatalf("interface name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	return name
}

// removeStaleNetns deletes the namespaces that runs of these tests, killed before their
// cleanup, left behind: those whose pid no longer runs. Processes still inside them were
// started by those runs and are killed first. Namespaces of live runs, and every namespace
// not named by these helpers, are left alone.
func removeStaleNetns(t testing.TB) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return // none made yet
	}
	for _, e := range entries {
		if !ownerGone(e.Name()) {
			continue
		}
		if out, err := run(10*time.Second, "ip", "netns", "pids", e.Name()); err == nil {
			for _, f := range strings.Fields(out) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		out, err := run(10*time.Second, "ip", "netns", "del", e.Name())
		switch {
		case err == nil:
			t.Logf("removed the stale namespace %s of an earlier, killed run", e.Name())
		case !isGone(e.Name()): // a concurrent run may have removed it first
			t.Logf("stale namespace %s: ip netns del: %v %s", e.Name(), err, out)
		}
	}
}

// ownerGone reports whether name is a namespace these helpers made for a process that no
// longer runs: its pid is gone, or it is this process's pid (reused) and this process did not
// make it.
func ownerGone(name string) bool {
	m := staleNetns.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		_, ours := netnsMade.Load(name)
		return !ours
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func isGone(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return errors.Is(err, os.ErrNotExist)
}

// run runs a command in this namespace, bounded by timeout.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
