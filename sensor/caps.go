package sensor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Capability bit numbers (linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// capNames lists the capabilities the live sensor needs, in the order error messages name them.
var capNames = []struct {
	bit  uint
	name string
}{{capBPF, "CAP_BPF"}, {capNetAdmin, "CAP_NET_ADMIN"}, {capPerfmon, "CAP_PERFMON"}}

// effectiveCaps returns the effective capability set of this process from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// MissingCaps names the capabilities the live sensor needs (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)
// that this process lacks. CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as the kernel
// allows. It returns nil when nothing is missing or the set cannot be read.
func MissingCaps() []string {
	caps, err := effectiveCaps()
	if err != nil {
		return nil
	}
	has := func(bit uint) bool { return caps&(1<<bit) != 0 }
	var missing []string
	for _, c := range capNames {
		if has(c.bit) || (c.bit != capNetAdmin && has(capSysAdmin)) {
			continue
		}
		missing = append(missing, c.name)
	}
	return missing
}

// privilegeHint says how to get the privileges that are missing, or "" if none are.
func privilegeHint() string {
	missing := MissingCaps()
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("missing %s: run as root (sudo) or grant them with "+
		"`sudo setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(command -v chains-sensor)`",
		strings.Join(missing, ", "))
}

// Explain wraps an error from loading or attaching the sensor with what to do about it: the
// missing capabilities on EPERM, the kernel version needed for ring buffers, how to get BTF, and
// the complete verifier log on a verifier rejection. It returns nil for nil and keeps the
// original error reachable with errors.Is and errors.As.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return &explained{err, fmt.Sprintf("the kernel verifier rejected the program; "+
			"please report this with the log below and `uname -r`:\n%+v", ve)}
	}
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		if hint := privilegeHint(); hint != "" {
			return &explained{err, hint}
		}
		return &explained{err, "permission denied although CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON " +
			"are present: check kernel.unprivileged_bpf_disabled, lockdown (/sys/kernel/security/lockdown) " +
			"and the memlock limit (ulimit -l)"}
	}
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
		if probeRingBuf() != nil {
			return &explained{err, "this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF): Linux 5.8 or later is needed"}
		}
		if probeBTF() != nil {
			return &explained{err, "this kernel has no BTF (/sys/kernel/btf/vmlinux): use a kernel built with " +
				"CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2020 are)"}
		}
	}
	return err
}

// Kernel probes Explain uses; variables so that tests can play an old kernel.
var (
	probeRingBuf = func() error { return features.HaveMapType(ebpf.RingBuf) }
	probeBTF     = func() error { _, err := btf.LoadKernelSpec(); return err }
)

// explained is an error with a hint naming the fix; the cause stays reachable with errors.Is/As.
type explained struct {
	err  error
	hint string
}

// Error is the cause, then the fix on a line of its own.
func (e *explained) Error() string { return e.err.Error() + "\n  fix: " + e.hint }

// Unwrap returns the cause.
func (e *explained) Unwrap() error { return e.err }
