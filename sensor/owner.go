package sensor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Default sizes of process attribution's tables (bpf/owner.h); each is an LRU hash.
const (
	DefaultMaxSockets = 65536 // owner_sock: sockets whose owner is known
	DefaultMaxFlows   = 65536 // owner_flow: flows (5-tuples) that lead ingress packets to a socket
	DefaultMaxBound   = 4096  // owner_bound: bound UDP ports
)

// OwnerConfig turns process attribution on (Config.Owner).
type OwnerConfig struct {
	// Netns is the cookie of the network namespace whose sockets are tracked: the one the
	// sensor's interfaces are in (0: this process's, NetnsCookie).
	Netns uint64
	// Filter keeps only the packets of a matching owner (the zero value: every packet).
	Filter OwnerFilter
	// Table sizes (0: DefaultMaxSockets, DefaultMaxFlows, DefaultMaxBound).
	MaxSockets, MaxFlows, MaxBound uint32
}

// OwnerFilter is attach's --pid, --comm and --cgroup: a packet passes when its owner matches
// every one that is set. Packets of no process never pass a filter that is on.
type OwnerFilter struct {
	PID    uint32  // the process (thread group) id
	Comm   string  // the command name, at most 15 bytes
	Cgroup *Cgroup // the cgroup, or one below it
}

// On reports whether the filter is set.
func (f OwnerFilter) On() bool { return f.PID != 0 || f.Comm != "" || f.Cgroup != nil }

// Cgroup is a cgroup v2 directory: its path below the hierarchy's root, its id (the
// directory's inode number) and its depth (the root is 0).
type Cgroup struct {
	Path  string
	ID    uint64
	Level uint8
}

// maxCgroupLevel bounds a cgroup's depth (the kernel's cgroup.max.depth is unlimited by
// default, but no hierarchy in use nests this deep).
const maxCgroupLevel = 255

func setOwner(spec *ebpf.CollectionSpec, oc *OwnerConfig) error {
	if oc == nil {
		// The programs reference the tables even with attribution off: keep them tiny.
		for _, m := range []string{gen.SensorMapOwnerSock, gen.SensorMapOwnerFlow, gen.SensorMapOwnerBound} {
			spec.Maps[m].MaxEntries = 1
		}
		return nil
	}
	netns := oc.Netns
	if netns == 0 {
		var err error
		if netns, err = NetnsCookie(); err != nil {
			return err
		}
	}
	if len(oc.Filter.Comm) > 15 {
		return fmt.Errorf("command name %q is longer than 15 bytes: the kernel keeps no more", oc.Filter.Comm)
	}
	c := gen.SensorOwnerConfig{On: 1, Netns: netns, Pid: oc.Filter.PID}
	if oc.Filter.On() {
		c.Filter = 1
	}
	for i := 0; i < len(oc.Filter.Comm); i++ {
		c.Comm[i] = int8(oc.Filter.Comm[i])
	}
	if cg := oc.Filter.Cgroup; cg != nil {
		c.CgroupId, c.CgroupLevel = cg.ID, cg.Level
	}
	v, ok := spec.Variables[gen.SensorVarOwnerCfg]
	if !ok {
		return errors.New("the BPF object has no owner_cfg variable")
	}
	if err := v.Set(c); err != nil {
		return fmt.Errorf("setting owner_cfg: %w", err)
	}
	for m, n := range map[string]uint32{gen.SensorMapOwnerSock: oc.MaxSockets, gen.SensorMapOwnerFlow: oc.MaxFlows, gen.SensorMapOwnerBound: oc.MaxBound} {
		if n != 0 {
			spec.Maps[m].MaxEntries = n
		}
	}
	return nil
}

// filtering reports whether the programs drop packets: a filter expression or an owner filter.
func (o *Objects) filtering() bool {
	return o.Config.Filter != nil || (o.Config.Owner != nil && o.Config.Owner.Filter.On())
}

// NetnsCookie returns the cookie of this thread's network namespace (SO_NETNS_COOKIE, Linux
// 5.14+), the number the kernel's bpf_get_netns_cookie gives for its sockets.
func NetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("a socket to read the network namespace cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("the network namespace cookie (SO_NETNS_COOKIE, Linux 5.14+): %w", err)
	}
	return c, nil
}

// CgroupRoot is where the cgroup v2 hierarchy is: Dir opens its root directory from this
// process, MountPoint is where it is mounted in the mount namespace that has it (the same
// path, unless this process's namespace has no cgroup2 mount: `ip netns exec` mounts a fresh
// /sys without it, and the hierarchy is then reached through init's, /proc/1/root, or, when
// that is denied, through a private mount of its own: Dir is then /proc/self/fd/N).
type CgroupRoot struct {
	Dir, MountPoint string
}

// privateRoot is the cgroup v2 root mounted in a mount namespace of its own (privateCgroupRoot),
// kept open for the life of the process.
var privateRoot struct {
	once sync.Once
	f    *os.File
	err  error
}

// CgroupV2Root returns where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo
// (else init's, /proc/1/mountinfo): /sys/fs/cgroup on a unified system,
// /sys/fs/cgroup/unified on a hybrid one. It is not found by a fixed path.
func CgroupV2Root() (CgroupRoot, error) {
	var first error
	for _, pid := range []string{"self", "1"} {
		f, err := os.Open("/proc/" + pid + "/mountinfo")
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		mnt, err := cgroupV2Mount(f)
		f.Close()
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if pid == "self" {
			return CgroupRoot{Dir: mnt, MountPoint: mnt}, nil
		}
		dir := filepath.Join("/proc/1/root", mnt)
		if _, err := os.Stat(dir); err == nil {
			return CgroupRoot{Dir: dir, MountPoint: mnt}, nil
		}
		d, err := privateCgroupRoot()
		if err != nil {
			return CgroupRoot{}, fmt.Errorf("the cgroup v2 hierarchy is mounted at %s in init's mount namespace, not in this one, and neither %s nor a private mount of it can be opened: %w", mnt, dir, err)
		}
		return CgroupRoot{Dir: d, MountPoint: mnt}, nil
	}
	return CgroupRoot{}, first
}

// privateCgroupRoot mounts the cgroup v2 hierarchy in a mount namespace of one locked thread
// (made private first: nothing propagates to the process's own namespace), opens its root and
// returns /proc/self/fd/N, which reaches it from any namespace. The thread ends with its
// namespace; the open directory keeps the mount.
func privateCgroupRoot() (string, error) {
	privateRoot.once.Do(func() {
		tmp, err := os.MkdirTemp("", "chains-cgroup2-")
		if err != nil {
			privateRoot.err = err
			return
		}
		defer os.Remove(tmp)
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				privateRoot.err = fmt.Errorf("unshare the mount namespace: %w", err)
				return
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				privateRoot.err = fmt.Errorf("make the mounts private: %w", err)
				return
			}
			if err := unix.Mount("cgroup2", tmp, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
				privateRoot.err = fmt.Errorf("mount cgroup2: %w", err)
				return
			}
			privateRoot.f, privateRoot.err = os.Open(tmp)
		}()
		<-done
	})
	if privateRoot.err != nil {
		return "", privateRoot.err
	}
	return fmt.Sprintf("/proc/self/fd/%d", privateRoot.f.Fd()), nil
}

// cgroupV2Mount finds the first cgroup2 mount in a mountinfo listing, preferring one of the
// hierarchy's root ("/") over a mount of a subtree.
func cgroupV2Mount(r io.Reader) (string, error) {
	s := bufio.NewScanner(r)
	sub := ""
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		if fs := strings.Fields(post); len(fs) == 0 || fs[0] != "cgroup2" {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		mnt := unescapeMount(f[4])
		if f[3] == "/" {
			return mnt, nil
		}
		if sub == "" {
			sub = mnt
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	if sub != "" {
		return sub, nil
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted (no cgroup2 in mountinfo): mount one, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ResolveCgroup finds the cgroup at path: a path below the cgroup v2 root as
// /proc/PID/cgroup shows it ("/system.slice/nginx.service"), or a directory under the mount
// point.
func ResolveCgroup(root CgroupRoot, path string) (*Cgroup, error) {
	rel := path
	for _, pre := range []string{root.MountPoint, root.Dir} {
		if r, ok := strings.CutPrefix(filepath.Clean(path), filepath.Clean(pre)); ok && (r == "" || r[0] == '/') {
			rel = r
			break
		}
	}
	rel = "/" + strings.Trim(filepath.Clean("/"+rel), "/")
	dir := filepath.Join(root.Dir, rel)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w (cgroup v2 is mounted at %s)", path, err, root.MountPoint)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("cgroup %s: %s is not a directory", path, dir)
	}
	level := 0
	if rel != "/" {
		level = strings.Count(rel, "/")
	}
	if level > maxCgroupLevel {
		return nil, fmt.Errorf("cgroup %s: %d levels deep, more than %d", path, level, maxCgroupLevel)
	}
	return &Cgroup{Path: rel, ID: st.Ino, Level: uint8(level)}, nil
}

// OwnerLinks are the socket hooks attached for process attribution; Close detaches them.
// Every one is a bpf_link: nothing stays attached when the process ends, however it ends.
type OwnerLinks struct {
	Root  CgroupRoot // the cgroup v2 root the cgroup programs are attached to
	links []link.Link
}

// Close detaches the hooks.
func (l *OwnerLinks) Close() error {
	var errs []error
	for i := len(l.links) - 1; i >= 0; i-- {
		errs = append(errs, l.links[i].Close())
	}
	l.links = nil
	return errors.Join(errs...)
}

// AttachOwner attaches the socket hooks of objs (loaded with Config.Owner): the cgroup
// programs to the cgroup v2 root, the tracepoint programs to their tracepoints.
func AttachOwner(objs *Objects) (*OwnerLinks, error) {
	p := &objs.objs.SensorPrograms
	if p.OwnerSockCreate == nil {
		return nil, errors.New("the sensor was loaded without process attribution (Config.Owner)")
	}
	root, err := CgroupV2Root()
	if err != nil {
		return nil, err
	}
	dir, err := os.Open(root.Dir)
	if err != nil {
		return nil, fmt.Errorf("open the cgroup v2 root: %w", err)
	}
	defer dir.Close()
	l := &OwnerLinks{Root: root}
	for _, c := range []struct {
		prog *ebpf.Program
		at   ebpf.AttachType
	}{
		{p.OwnerSockCreate, ebpf.AttachCGroupInetSockCreate},
		{p.OwnerPostBind4, ebpf.AttachCGroupInet4PostBind},
		{p.OwnerPostBind6, ebpf.AttachCGroupInet6PostBind},
		{p.OwnerConnect4, ebpf.AttachCGroupInet4Connect},
		{p.OwnerConnect6, ebpf.AttachCGroupInet6Connect},
		{p.OwnerSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{p.OwnerSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
		{p.OwnerSockRelease, ebpf.AttachCgroupInetSockRelease},
	} {
		// A bpf_link only, never the legacy attach (it would outlive a killed sensor).
		k, err := link.AttachRawLink(link.RawLinkOptions{Target: int(dir.Fd()), Program: c.prog, Attach: c.at})
		if err != nil {
			l.Close()
			return nil, Explain(fmt.Errorf("attach %s to the cgroup v2 root %s: %w", c.at, root.MountPoint, err))
		}
		l.links = append(l.links, k)
	}
	for _, prog := range []*ebpf.Program{p.OwnerTcpState, p.OwnerSend, p.OwnerRecv} {
		k, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			l.Close()
			return nil, Explain(fmt.Errorf("attach the tracepoint program %s: %w", prog, err))
		}
		l.links = append(l.links, k)
	}
	return l, nil
}

// OwnerTable is one attribution table's account: what the kernel added and removed, what is
// in it now, and so what its LRU evicted to make room (Added - Removed - Present).
type OwnerTable struct {
	Name                             string
	Max                              uint32
	Added, Removed, Present, Evicted uint64
}

// OwnerCounts are process attribution's tables and counters.
type OwnerCounts struct {
	Tables    [3]OwnerTable // sockets, flows, bound ports
	Stale     uint64        // ingress packets whose flow led to a closed socket
	Ambiguous uint64        // ingress packets to a UDP port two live sockets share
}

// ReadOwnerCounts reads the attribution counters and counts the tables' entries (a walk of
// each table: call it at the end of a run or at the stats interval, not per packet).
func ReadOwnerCounts(objs *Objects) (OwnerCounts, error) {
	c, err := ReadCounters(objs)
	if err != nil {
		return OwnerCounts{}, err
	}
	oc := OwnerCounts{Stale: c[gen.SensorCounterKeyCNT_OWNER_STALE], Ambiguous: c[gen.SensorCounterKeyCNT_OWNER_AMBIGUOUS]}
	for i, t := range []struct {
		name     string
		m        *ebpf.Map
		add, rem gen.SensorCounterKey
	}{
		{"sockets", objs.OwnerSock, gen.SensorCounterKeyCNT_OWNER_SOCK_ADDED, gen.SensorCounterKeyCNT_OWNER_SOCK_REMOVED},
		{"flows", objs.OwnerFlow, gen.SensorCounterKeyCNT_OWNER_FLOW_ADDED, gen.SensorCounterKeyCNT_OWNER_FLOW_REMOVED},
		{"bound ports", objs.OwnerBound, gen.SensorCounterKeyCNT_OWNER_BOUND_ADDED, gen.SensorCounterKeyCNT_OWNER_BOUND_REMOVED},
	} {
		n, err := countEntries(t.m)
		if err != nil {
			return oc, fmt.Errorf("counting the %s table: %w", t.name, err)
		}
		ot := OwnerTable{Name: t.name, Max: t.m.MaxEntries(), Added: c[t.add], Removed: c[t.rem], Present: n}
		if ot.Added > ot.Removed+ot.Present {
			ot.Evicted = ot.Added - ot.Removed - ot.Present
		}
		oc.Tables[i] = ot
	}
	return oc, nil
}

// countEntries counts a hash map's keys, at most its size.
func countEntries(m *ebpf.Map) (uint64, error) {
	var n uint64
	key := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	var prev any // nil: the first key
	for n < uint64(m.MaxEntries())+1 {
		err := m.NextKey(prev, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
		copy(key, next)
		prev = key
	}
	return n, nil
}

// WriteOwnerStats prints the attribution tables' line to the counters on stderr.
func WriteOwnerStats(w io.Writer, oc OwnerCounts) {
	var parts []string
	for _, t := range oc.Tables {
		parts = append(parts, fmt.Sprintf("%d/%d %s (%d added, %d removed, %d evicted)", t.Present, t.Max, t.Name, t.Added, t.Removed, t.Evicted))
	}
	fmt.Fprintf(w, "processes: %s; %d to closed sockets, %d to shared ports\n", strings.Join(parts, ", "), oc.Stale, oc.Ambiguous)
}
