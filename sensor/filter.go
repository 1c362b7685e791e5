package sensor

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/sensor/filter"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// KernelFilter is a filter expression for Load to put into both programs (bpf/filter.h): a
// packet it rejects is counted (CNT_XDP_FILTERED, CNT_TC_FILTERED, filtered_by_iface) and
// costs nothing more.
type KernelFilter struct {
	// Prog is the expression compiled for the frames the programs see: Ethernet when live; the
	// capture file's link type in a replay.
	Prog *filter.Program
	// Replay loads the programs for read --kernel: the filter reads the file's frame, its
	// link header and wire length from the filter_replay map (see filter.Target).
	Replay bool
	// LinkHdr and Shift describe, in a replay, how the file's frame maps onto the replayed one
	// (filter.Target).
	LinkHdr, Shift int
}

// stubName is the function whose body the translation replaces (bpf/filter.h).
const stubName = "filter_frame"

// FilterTooComplexError is Load's error when the kernel's verifier refuses the programs with a
// filter: they load without one, so it is the expression that is too large or too complex.
type FilterTooComplexError struct {
	Expr string
	Log  []string // the verifier's last lines
}

// verifierTail is how many of the verifier's last lines FilterTooComplexError keeps.
const verifierTail = 8

// Error says that the verifier refused the filter, with the last lines of its log.
func (e *FilterTooComplexError) Error() string {
	return fmt.Sprintf("filter %q is too large or too complex for the kernel's verifier, which refused it; its last lines:\n  %s",
		e.Expr, strings.Join(e.Log, "\n  "))
}

// Unwrap makes errors.Is(err, filter.ErrSyntax) true: the expression is bad input.
func (e *FilterTooComplexError) Unwrap() error { return filter.ErrSyntax }

// explainFilterError turns a verifier rejection of programs that carry a filter into a
// FilterTooComplexError with the verifier's last lines; other errors pass through.
func explainFilterError(err error, f *KernelFilter) error {
	var ve *ebpf.VerifierError
	if f == nil || !errors.As(err, &ve) {
		return err
	}
	log := ve.Log
	for len(log) > 0 && strings.TrimSpace(log[len(log)-1]) == "" {
		log = log[:len(log)-1]
	}
	if len(log) > verifierTail {
		log = log[len(log)-verifierTail:]
	}
	return &FilterTooComplexError{Expr: f.Prog.Expr, Log: log}
}

// injectFilter translates f for each program and puts it in place of the stub's body, and
// switches filter_cfg on.
func injectFilter(spec *ebpf.CollectionSpec, f *KernelFilter) error {
	if f.Prog == nil {
		return errors.New("a kernel filter without a program")
	}
	for _, p := range []struct {
		name string
		hook filter.Hook
	}{{gen.SensorProgXdpSensor, filter.HookXDP}, {gen.SensorProgTcSensor, filter.HookTC}} {
		ps, ok := spec.Programs[p.name]
		if !ok {
			return fmt.Errorf("the BPF object has no program %s", p.name)
		}
		t := filter.Target{Hook: p.hook, Replay: f.Replay, LinkHdr: f.LinkHdr, Shift: f.Shift}
		if filter.HasLoops(f.Prog.Insns) {
			t.Loops = loopsFor(p.hook)
		}
		code, err := filter.ToEBPF(f.Prog.Insns, t)
		if err != nil {
			return fmt.Errorf("filter %q: %w", f.Prog.Expr, err)
		}
		insns, err := replaceFunction(ps.Instructions, stubName, code)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		ps.Instructions = insns
	}
	v, ok := spec.Variables[gen.SensorVarFilterCfg]
	if !ok {
		return errors.New("the BPF object has no filter_cfg variable")
	}
	replay := uint8(0)
	if f.Replay {
		replay = 1
	}
	if err := v.Set(gen.SensorFilterConfig{On: 1, Replay: replay}); err != nil {
		return fmt.Errorf("setting filter_cfg: %w", err)
	}
	return nil
}

// replaceFunction returns insns with the body of function name (from its symbol to the next
// symbol) replaced by code. The first instruction keeps the old one's metadata: the symbol,
// and the BTF function and line information the kernel wants at every function's start.
func replaceFunction(insns asm.Instructions, name string, code asm.Instructions) (asm.Instructions, error) {
	start := -1
	for i, ins := range insns {
		if ins.Symbol() == name {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no function %s to put the filter in", name)
	}
	end := start + 1
	for end < len(insns) && insns[end].Symbol() == "" {
		end++
	}
	if len(code) == 0 {
		return nil, errors.New("empty filter code")
	}
	out := make(asm.Instructions, 0, len(insns)-(end-start)+len(code))
	out = append(out, insns[:start]...)
	out = append(out, code[0].WithMetadata(insns[start].Metadata))
	out = append(out, code[1:]...)
	out = append(out, insns[end:]...)
	return out, nil
}

// loopsFor chooses how the translation for hook ends protochain's loops (filter.Loops):
// may_goto where the kernel has it, except in tc_sensor, where a loop that reads past the
// pulled head calls bpf_skb_load_bytes, and this kernel's verifier (6.18) fails with EFAULT on
// a helper call inside a may_goto loop of a subprogram: there the walk is counted and bounded
// by filter.MaxBackwardJumps.
func loopsFor(hook filter.Hook) filter.Loops {
	if hook == filter.HookXDP && haveMayGoto() {
		return filter.LoopsMayGoto
	}
	return filter.LoopsCounted
}

var mayGoto struct {
	once sync.Once
	ok   bool
}

// haveMayGoto probes once whether the kernel takes the may_goto instruction (Linux 6.9+).
func haveMayGoto() bool {
	mayGoto.once.Do(func() {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.XDP,
			Instructions: asm.Instructions{
				{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.JCOND).SetSource(asm.ImmSource), Src: asm.PseudoMayGoto},
				asm.Mov.Imm(asm.R0, 2),
				asm.Return(),
			},
			License: "Dual BSD/GPL",
		})
		if err == nil {
			prog.Close()
			mayGoto.ok = true
		}
	})
	return mayGoto.ok
}
