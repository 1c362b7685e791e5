// Package owners fills in what a packet's owner's cgroup says: the kernel records the cgroup
// v2 id of the process that owns the packet's local socket (stages.Owner.CgroupID); this stage
// finds the cgroup's path below the cgroup v2 root, and from the path the container (docker,
// containerd, CRI-O, podman, LXC, a Kubernetes pod) or the systemd unit it runs in.
package owners

import (
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Defaults of Config.
const (
	DefaultCacheSize = 4096   // cgroups whose path and meaning are kept
	DefaultMaxDirs   = 100000 // directories one walk of the hierarchy reads at most
	DefaultRewalk    = time.Second
)

// Config is the resolver's: where the hierarchy is and its bounds.
type Config struct {
	Root      string        // the cgroup v2 root directory as this process opens it ("": resolve nothing)
	CacheSize int           // cgroups kept (0: DefaultCacheSize); the LRU's evictions are counted
	MaxDirs   int           // directories a walk reads at most (0: DefaultMaxDirs)
	Rewalk    time.Duration // at most one walk per Rewalk, on a cgroup not known yet (0: DefaultRewalk)
}

// Info is what a cgroup path says.
type Info struct {
	Path      string
	Container stages.Container
	Unit      string
}

// Resolver maps cgroup ids to their Info. Not safe for concurrent use.
type Resolver struct {
	cfg      Config
	cache    *lru.Cache[uint64, Info]
	walked   map[uint64]string // inode to path, from the last walk
	lastWalk time.Time
	// Evicted counts the cgroups the cache dropped; Walks the walks of the hierarchy.
	Evicted, Walks uint64
	peak           int // the most cgroups cached at once
	now            func() time.Time
}

// Tables reports the cgroup cache, its bound (--max-cgroups) and its evictions
// (stages.StatsReporter). Like Lookup, it belongs to the chain's goroutine.
func (r *Resolver) Tables() []stages.TableStats {
	return []stages.TableStats{{Name: "cgroups", Flag: "--max-cgroups", Len: r.cache.Len(), Peak: r.peak, Max: r.cfg.CacheSize, Evicted: int64(r.Evicted)}}
}

// Counters reports the walks of the cgroup hierarchy.
func (r *Resolver) Counters() []stages.Counter {
	return []stages.Counter{{Name: "cgroup_walks", Value: r.Walks}}
}

// NewResolver returns a resolver of the hierarchy at cfg.Root.
func NewResolver(cfg Config) *Resolver {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.MaxDirs <= 0 {
		cfg.MaxDirs = DefaultMaxDirs
	}
	if cfg.Rewalk <= 0 {
		cfg.Rewalk = DefaultRewalk
	}
	r := &Resolver{cfg: cfg, now: time.Now}
	r.cache, _ = lru.NewWithEvict(cfg.CacheSize, func(uint64, Info) { r.Evicted++ })
	return r
}

// Lookup returns the Info of the cgroup with id, and whether it was found. pid, when not 0,
// is a process that ran in it: while it lives, /proc/PID/cgroup names the cgroup at once
// (checked against id: it may have moved); otherwise a walk of the hierarchy finds it.
func (r *Resolver) Lookup(id uint64, pid uint32) (Info, bool) {
	if r.cfg.Root == "" || id == 0 {
		return Info{}, false
	}
	if in, ok := r.cache.Get(id); ok {
		return in, true
	}
	if p, ok := r.procCgroup(id, pid); ok {
		in := Parse(p)
		r.cache.Add(id, in)
		r.peak = max(r.peak, r.cache.Len())
		r.peak = max(r.peak, r.cache.Len())
		return in, true
	}
	p, ok := r.walked[id]
	if !ok && r.now().Sub(r.lastWalk) >= r.cfg.Rewalk {
		r.walk()
		p, ok = r.walked[id]
	}
	if !ok {
		return Info{}, false
	}
	in := Parse(p)
	r.cache.Add(id, in)
	r.peak = max(r.peak, r.cache.Len())
	return in, true
}

// procCgroup reads the cgroup v2 path of process pid ("0::/path" in /proc/PID/cgroup) and
// returns it when its directory is the cgroup id.
func (r *Resolver) procCgroup(id uint64, pid uint32) (string, bool) {
	if pid == 0 {
		return "", false
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/cgroup")
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		p, ok := strings.CutPrefix(line, "0::")
		if !ok || !strings.HasPrefix(p, "/") {
			continue
		}
		p = strings.TrimSuffix(p, " (deleted)")
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(r.cfg.Root, p), &st) == nil && st.Ino == id {
			return p, true
		}
	}
	return "", false
}

// walk reads the hierarchy's directories (at most MaxDirs) into walked.
func (r *Resolver) walk() {
	r.lastWalk = r.now()
	r.Walks++
	m := make(map[uint64]string)
	root := filepath.Clean(r.cfg.Root)
	// Through "/.": the root may be a symbolic link (/proc/self/fd/N) to the directory.
	start := root + "/."
	n := 0
	filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // a cgroup that went away meanwhile, a file
		}
		if n++; n > r.cfg.MaxDirs {
			return filepath.SkipAll
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel := strings.TrimPrefix(path, root)
		if path == start || rel == "" {
			rel = "/"
		}
		m[st.Ino] = rel
		return nil
	})
	r.walked = m
}

// Stage fills in p.Owner's Cgroup, Container and Unit for packets whose owner is known.
func (r *Resolver) Stage() stages.Stage {
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		return func(yield func(*stages.Packet) bool) {
			for p := range src {
				o := &p.Owner
				o.Cgroup, o.Container, o.Unit = "", stages.Container{}, ""
				if o.Known() {
					if in, ok := r.Lookup(o.CgroupID, o.PID); ok {
						o.Cgroup, o.Container, o.Unit = in.Path, in.Container, in.Unit
					}
				}
				if !yield(p) {
					return
				}
			}
		}
	}
}

// Parse says what a cgroup path below the cgroup v2 root names: the container of the last
// element that names one (docker-ID.scope, /docker/ID, cri-containerd-ID.scope, crio-ID.scope,
// libpod-ID.scope, /lxc/NAME, lxc.payload.NAME), the Kubernetes pod of a kubepods element
// (pod<UID>, its underscores read as dashes), and, outside containers, the systemd unit: the
// last element ending in .service, else in .scope.
func Parse(path string) Info {
	in := Info{Path: path}
	els := strings.Split(strings.Trim(path, "/"), "/")
	kube := false
	for i, e := range els {
		if strings.HasPrefix(e, "kubepods") {
			kube = true
		}
		if kube {
			if uid, ok := podUID(e); ok {
				in.Container.Pod = uid
				continue
			}
		}
		if rt, id, ok := scopeContainer(e); ok {
			in.Container.Runtime, in.Container.ID = rt, id
			continue
		}
		if i > 0 {
			switch prev := els[i-1]; {
			case prev == "docker" && isHexID(e):
				in.Container.Runtime, in.Container.ID = "docker", e
				continue
			case prev == "lxc" && e != "":
				in.Container.Runtime, in.Container.ID = "lxc", e
				continue
			case kube && in.Container.Pod != "" && isHexID(e):
				in.Container.ID = e // cgroupfs driver: kubepods/QOS/podUID/ID
				continue
			}
		}
		if name, ok := strings.CutPrefix(e, "lxc.payload."); ok && name != "" {
			in.Container.Runtime, in.Container.ID = "lxc", name
		}
	}
	if in.Container.Known() {
		return in
	}
	for i := len(els) - 1; i >= 0; i-- {
		if strings.HasSuffix(els[i], ".service") {
			in.Unit = els[i]
			return in
		}
	}
	for i := len(els) - 1; i >= 0; i-- {
		if strings.HasSuffix(els[i], ".scope") {
			in.Unit = els[i]
			return in
		}
	}
	return in
}

// scopeContainer reads a systemd scope a container runtime made: RUNTIME-ID.scope.
func scopeContainer(e string) (runtime, id string, ok bool) {
	s, ok := strings.CutSuffix(e, ".scope")
	if !ok {
		return "", "", false
	}
	for _, p := range [...]struct{ prefix, runtime string }{
		{"docker-", "docker"}, {"cri-containerd-", "containerd"}, {"crio-", "cri-o"}, {"libpod-", "podman"},
	} {
		if id, ok := strings.CutPrefix(s, p.prefix); ok && isHexID(id) {
			return p.runtime, id, true
		}
	}
	return "", "", false
}

// podUID reads a kubepods element naming a pod: "pod<UID>" (cgroupfs) or
// "kubepods-<qos>-pod<UID with _>.slice" (systemd).
func podUID(e string) (string, bool) {
	e = strings.TrimSuffix(e, ".slice")
	i := strings.LastIndex(e, "pod")
	if i < 0 || (i > 0 && e[i-1] != '-') {
		return "", false
	}
	uid := strings.ReplaceAll(e[i+3:], "_", "-")
	if len(uid) != 36 || strings.Count(uid, "-") != 4 {
		return "", false
	}
	for _, c := range uid {
		if c != '-' && !isHex(byte(c)) {
			return "", false
		}
	}
	return uid, true
}

// isHexID reports whether s is a container id: 64 hex digits.
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
