package owners

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

const (
	hex64 = "4f2b1c7e9a0d3b5c6e8f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
	uid   = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
)

// The expected values are read off the paths by hand: the runtimes' documented cgroup names.
func TestParse(t *testing.T) {
	for _, c := range []struct {
		path string
		want Info
	}{
		{"/", Info{}},
		{"/system.slice/nginx.service", Info{Unit: "nginx.service"}},
		{"/user.slice/user-1000.slice/session-2.scope", Info{Unit: "session-2.scope"}},
		{"/system.slice/docker-" + hex64 + ".scope", Info{Container: stages.Container{Runtime: "docker", ID: hex64}}},
		{"/docker/" + hex64, Info{Container: stages.Container{Runtime: "docker", ID: hex64}}},
		{"/system.slice/cri-containerd-" + hex64 + ".scope", Info{Container: stages.Container{Runtime: "containerd", ID: hex64}}},
		{"/machine.slice/libpod-" + hex64 + ".scope", Info{Container: stages.Container{Runtime: "podman", ID: hex64}}},
		{"/machine.slice/libpod-conmon-" + hex64 + ".scope", Info{Unit: "libpod-conmon-" + hex64 + ".scope"}},
		{"/lxc/web1", Info{Container: stages.Container{Runtime: "lxc", ID: "web1"}}},
		{"/lxc.payload.web1/init.scope", Info{Container: stages.Container{Runtime: "lxc", ID: "web1"}}},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_4e5f_6a7b_8c9d_0e1f2a3b4c5d.slice/cri-containerd-" + hex64 + ".scope",
			Info{Container: stages.Container{Runtime: "containerd", ID: hex64, Pod: uid}}},
		{"/kubepods/burstable/pod" + uid + "/" + hex64, Info{Container: stages.Container{ID: hex64, Pod: uid}}},
		{"/system.slice/docker-notanid.scope", Info{Unit: "docker-notanid.scope"}},
		{"/podcast.service", Info{Unit: "podcast.service"}},
		{"/chains-test/x", Info{}},
	} {
		c.want.Path = c.path
		if got := Parse(c.path); got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.path, got, c.want)
		}
	}
}

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// A directory tree stands in for the hierarchy: a cgroup's id is its directory's inode number.
func TestResolverWalksBoundedAndRewalks(t *testing.T) {
	root := t.TempDir()
	svc := filepath.Join(root, "system.slice", "nginx.service")
	if err := os.MkdirAll(svc, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(100, 0)
	r := NewResolver(Config{Root: root, CacheSize: 2, Rewalk: time.Second})
	r.now = func() time.Time { return now }

	in, ok := r.Lookup(ino(t, svc), 0)
	if !ok || in.Path != "/system.slice/nginx.service" || in.Unit != "nginx.service" {
		t.Fatalf("Lookup(nginx.service) = %+v, %v", in, ok)
	}
	if in, ok := r.Lookup(ino(t, root), 0); !ok || in.Path != "/" {
		t.Fatalf("Lookup(root) = %+v, %v", in, ok)
	}
	// A cgroup made after the walk: not found until Rewalk has passed.
	late := filepath.Join(root, "late")
	if err := os.Mkdir(late, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup(ino(t, late), 0); ok {
		t.Fatal("found a directory made after the walk, before Rewalk passed")
	}
	if r.Walks != 1 {
		t.Fatalf("%d walks, want 1", r.Walks)
	}
	now = now.Add(time.Second)
	if in, ok := r.Lookup(ino(t, late), 0); !ok || in.Path != "/late" {
		t.Fatalf("Lookup(late) after Rewalk = %+v, %v", in, ok)
	}
	// Three cgroups through a cache of two: one eviction, as the exit table says.
	if r.Evicted != 1 {
		t.Fatalf("%d evicted, want 1", r.Evicted)
	}
	if got, want := r.Tables(), (stages.TableStats{Name: "cgroups", Flag: "--max-cgroups", Len: 2, Peak: 2, Max: 2, Evicted: 1}); len(got) != 1 || got[0] != want {
		t.Fatalf("Tables() = %+v, want %+v", got, want)
	}
	if _, ok := r.Lookup(12345678901, 0); ok {
		t.Fatal("found an id that is no directory")
	}

	// MaxDirs bounds a walk: with 1, only the root is read.
	b := NewResolver(Config{Root: root, MaxDirs: 1})
	if _, ok := b.Lookup(ino(t, svc), 0); ok {
		t.Fatal("a walk bounded to 1 directory read more")
	}
}

func TestStageFillsKnownOwnersOnly(t *testing.T) {
	root := t.TempDir()
	svc := filepath.Join(root, "a.service")
	if err := os.Mkdir(svc, 0o755); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(Config{Root: root})
	known := &stages.Packet{Owner: stages.Owner{PID: 42, CgroupID: ino(t, svc)}}
	none := &stages.Packet{Owner: stages.Owner{CgroupID: ino(t, svc), Cgroup: "stale"}}
	var got []*stages.Packet
	for p := range r.Stage()(func(y func(*stages.Packet) bool) { _ = y(known) && y(none) }) {
		got = append(got, p)
	}
	if len(got) != 2 || known.Owner.Cgroup != "/a.service" || known.Owner.Unit != "a.service" {
		t.Fatalf("known owner: %+v", known.Owner)
	}
	if none.Owner.Cgroup != "" || none.Owner.Unit != "" {
		t.Fatalf("no process, yet cgroup %q unit %q", none.Owner.Cgroup, none.Owner.Unit)
	}
}

// /proc/self/cgroup is the oracle of this process's cgroup: with its pid, the resolver finds
// it without a walk, in a hierarchy where it exists.
func TestResolverReadsProcCgroup(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	var path string
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			path = p
		}
	}
	root := t.TempDir()
	dir := filepath.Join(root, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := NewResolver(Config{Root: root, Rewalk: time.Hour})
	r.lastWalk = time.Now() // no walk may find it
	if in, ok := r.Lookup(ino(t, dir), uint32(os.Getpid())); !ok || in.Path != path {
		t.Fatalf("Lookup with pid = %+v, %v; want %q", in, ok, path)
	}
	if _, ok := r.Lookup(ino(t, root)+1000000, uint32(os.Getpid())); ok {
		t.Fatal("a pid whose cgroup is another id was taken for it")
	}
}
