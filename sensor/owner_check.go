package sensor

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
)

// checkOwner is check's rows for process attribution, which the sensor runs without (it then
// says so at start): a cgroup v2 hierarchy, the cgroup socket and tracing program types, and
// the hooks loaded and attached for an instant. None is required.
func checkOwner(load bool) []CheckResult {
	var rs []CheckResult
	cg := CheckResult{Name: "cgroup v2 (process attribution)"}
	if root, err := CgroupV2Root(); err != nil {
		cg.Status, cg.Detail, cg.Fix = CheckMissing, firstLine(err.Error()), "mount cgroup2 (e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`): without it packets name no process"
	} else {
		cg.Status, cg.Detail = CheckOK, "mounted at "+root.MountPoint
	}
	rs = append(rs, cg)
	for _, p := range []struct {
		name string
		typ  ebpf.ProgramType
		why  string
	}{
		{"cgroup socket programs", ebpf.CGroupSock, "Linux 4.10+ with CONFIG_CGROUP_BPF (socket creation, bind and release)"},
		{"cgroup sock_addr programs", ebpf.CGroupSockAddr, "Linux 4.17+ with CONFIG_CGROUP_BPF (connect, sendmsg)"},
	} {
		rs = append(rs, probe(p.name, false, features.HaveProgramType(p.typ), p.why))
	}
	tp := CheckResult{Name: "socket tracepoints (BTF)"}
	if spec, err := btf.LoadKernelSpec(); err != nil {
		tp = unknownOrMissing(tp, err)
	} else {
		var missing []string
		for _, name := range []string{"inet_sock_set_state", "sock_send_length", "sock_recv_length"} {
			if _, err := spec.AnyTypeByName("btf_trace_" + name); err != nil {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			tp.Status, tp.Detail = CheckOK, "inet_sock_set_state, sock_send_length, sock_recv_length"
		} else {
			tp.Status, tp.Detail, tp.Fix = CheckMissing, "not in the kernel's BTF: "+strings.Join(missing, ", "), "Linux 6.3+ with BTF: accepted connections and sockets older than the sensor then name no process"
		}
	}
	rs = append(rs, tp)
	if !load || cg.Status != CheckOK {
		return rs
	}
	r := CheckResult{Name: "process attribution"}
	objs, err := Load(Config{Owner: &OwnerConfig{}})
	if err == nil {
		var l *OwnerLinks
		if l, err = AttachOwner(objs); err == nil {
			l.Close()
		}
		objs.Close()
	}
	if err != nil {
		r = unknownOrMissing(r, Explain(err))
		if r.Fix == "" {
			r.Fix = "attach runs without it and says so: packets then name no process"
		}
		return append(rs, r)
	}
	r.Status, r.Detail = CheckOK, fmt.Sprintf("socket hooks load and attach on the cgroup v2 root (%d sockets, %d flows kept)", DefaultMaxSockets, DefaultMaxFlows)
	return append(rs, r)
}
