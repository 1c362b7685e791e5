package stages

import "bytes"

// Owner is the process that owns a packet's local socket: the kernel's record of it (PID, UID,
// Comm, CgroupID), and what the cgroup's path says (Cgroup, Container, Unit, filled in user
// space from CgroupID by package owners).
type Owner struct {
	PID      uint32   // thread group id: the process id; 0 when no process is known
	UID      uint32   // real user id
	Comm     [16]byte // command name, NUL-padded, as the kernel keeps it
	CgroupID uint64   // cgroup v2 id: the inode number of the cgroup's directory

	Cgroup    string    // the cgroup's path below the cgroup v2 root ("" when not resolved)
	Container Container // the container the cgroup path names (zero: none)
	Unit      string    // the systemd unit it names, e.g. "nginx.service" ("" none, or a container)
}

// Known reports whether the packet names a process: a socket of user space owns it.
func (o *Owner) Known() bool { return o.PID != 0 }

// CommBytes returns the command name without its NUL padding (aliasing o).
func (o *Owner) CommBytes() []byte {
	if i := bytes.IndexByte(o.Comm[:], 0); i >= 0 {
		return o.Comm[:i]
	}
	return o.Comm[:]
}

// Container is what a cgroup path says of a container.
type Container struct {
	Runtime string // docker, containerd, cri-o, podman, lxc
	ID      string // the container's id (docker's, containerd's: 64 hex digits)
	Pod     string // the Kubernetes pod's UID, when the cgroup is a pod's
}

// Known reports whether the cgroup path names a container or a pod.
func (c *Container) Known() bool { return c.ID != "" || c.Pod != "" }
