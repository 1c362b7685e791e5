package filter

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/net/bpf"
)

// Hook is the kernel program a translation runs in.
type Hook int

// The two sensor programs.
const (
	HookXDP Hook = iota // xdp_sensor: ingress, struct xdp_md, the whole frame linear
	HookTC              // tc_sensor: egress, struct __sk_buff, only the pulled head linear
)

// Target says where translated code runs and where it finds the bytes the classic program
// reads. The zero value is xdp_sensor on a live Ethernet interface.
type Target struct {
	Hook Hook
	// Replay is read --kernel: the frame comes from a capture file through BPF_PROG_TEST_RUN,
	// wrapped in a synthetic Ethernet header when the file's link type is not Ethernet. The
	// program was compiled for the file's link type, so it reads the file's frame: its first
	// LinkHdr bytes (the link header the wrapper replaced) from filter_replay's link_hdr, the
	// rest from the replayed frame Shift bytes in (after the synthetic header), and the wire
	// length from filter_replay's wire_len (the test run's frame is the captured part).
	Replay  bool
	LinkHdr int // bytes of link header held in filter_replay (0 for Ethernet and raw IP)
	Shift   int // bytes in front of the link-layer payload in the replayed frame (14 when wrapped)
	Loops   Loops
}

// ReplayHdrMax is the size of filter_replay's link_hdr (FILTER_HDR_MAX in bpf/filter.h).
const ReplayHdrMax = 64

// Loops is how the translation bounds the loops of `protochain`, which libpcap compiles to
// backward jumps (one per header walked). The verifier must see that a loop ends.
type Loops int

const (
	// LoopsMayGoto ends loops with the may_goto instruction (Linux 6.9+): the kernel stops a
	// loop after millions of rounds, so the walk goes as far as the packet does, as in
	// libpcap's interpreter; X is capped at a backward jump (see maxLoopX) so that the
	// verifier sees the rounds converge.
	LoopsMayGoto Loops = iota
	// LoopsCounted counts the backward jumps and rejects the frame past MaxBackwardJumps.
	// Each round costs the verifier more than the last, so the bound is low: a packet with
	// more headers than that before the protocol sought is rejected where tcpdump selects it.
	LoopsCounted
)

// MaxBackwardJumps is the bound of LoopsCounted: at 16 rounds `ip6 protochain 6` costs
// tc_sensor's verification some 80k instructions, at 32 some 350k, a third of what the
// verifier allows a program.
const MaxBackwardJumps = 16

// maxLoopX caps X at a backward jump (larger rejects): a bound that stays the same from round
// to round lets the verifier find a round's state within an earlier one's. No packet reaches
// it: X is an offset no more than 2 KiB past a byte just read from the frame.
const maxLoopX = 0x7fffffff

// The calling convention of filter_frame (bpf/filter.h) and the registers of the translation.
// Classic BPF's A and X live in callee-saved registers, so they survive the helper call of
// tc_sensor's slow path; R1-R5 keep the arguments and are spilled around that call.
const (
	rCtx     = asm.R1 // struct xdp_md * or struct __sk_buff *
	rData    = asm.R2 // first byte of the frame
	rDataEnd = asm.R3 // end of its linear part
	rLen     = asm.R4 // wire length (`len`)
	rReplay  = asm.R5 // struct filter_replay * (replay), else 0
	rA       = asm.R6
	rX       = asm.R7
	rT1      = asm.R8 // scratch: offsets
	rT2      = asm.R9 // scratch: pointers, bytes
	rT0      = asm.R0 // scratch: end pointers
)

// Stack layout of the translation (below R10). M[0..15] is classic BPF's scratch memory.
const (
	stackMem      = -64  // M[k] at stackMem + 4k
	stackBackJump = -72  // backward jumps taken so far (u64)
	stackSpill    = -80  // R1..R5 at stackSpill - 8(i-1), around bpf_skb_load_bytes
	stackLoadBuf  = -120 // bpf_skb_load_bytes writes here
)

const (
	maxPacketOff    = 0xffff // the verifier's bound on a packet pointer's offset
	packetHost      = 0      // PACKET_HOST: the pkttype xdp_sensor's packets have
	packetOutgoing  = 4      // PACKET_OUTGOING: the pkttype of tc_sensor's (egress) packets
	xdpMdIfindex    = 12     // offsetof(struct xdp_md, ingress_ifindex)
	skBuffIfindex   = 40     // offsetof(struct __sk_buff, ifindex)
	replayWireLen   = 0      // offsetof(struct filter_replay, wire_len)
	replayLinkHdr   = 4      // offsetof(struct filter_replay, link_hdr)
	maxIndirectBase = 0x7fffffff
)

// ErrUnsupported is returned for a classic program ToEBPF cannot translate.
var ErrUnsupported = errors.New("filter program not translatable to eBPF")

// errLong asks for a retranslation with long jumps.
var errLong = errors.New("jump out of 16-bit range")

// ToEBPF translates a classic BPF program (as pcap_compile makes it) into the body of
// filter_frame for target: it returns non-zero in R0 when the program accepts the frame, 0
// when it rejects it, with the semantics of libpcap's interpreter (a load past the end of the
// frame rejects; so does a division by zero; shifts by 32 or more give 0).
func ToEBPF(insns []bpf.RawInstruction, t Target) (asm.Instructions, error) {
	if err := validate(insns, t); err != nil {
		return nil, err
	}
	out, err := translate(insns, t, false)
	if errors.Is(err, errLong) {
		out, err = translate(insns, t, true)
	}
	return out, err
}

// validate checks what translate relies on: known opcodes, jumps inside the program, scratch
// words that exist.
func validate(insns []bpf.RawInstruction, t Target) error {
	if len(insns) == 0 {
		return fmt.Errorf("%w: empty program", ErrUnsupported)
	}
	if t.Replay && (t.LinkHdr < 0 || t.LinkHdr > ReplayHdrMax || t.Shift < 0 || t.Shift > maxPacketOff) {
		return fmt.Errorf("%w: replay layout %d/%d out of range", ErrUnsupported, t.LinkHdr, t.Shift)
	}
	n := len(insns)
	for i, ins := range insns {
		bad := func(why string) error {
			return fmt.Errorf("%w: instruction %d (%v): %s", ErrUnsupported, i, ins.Disassemble(), why)
		}
		switch ins.Op & classMask {
		case classLD, classLDX:
			switch ins.Op & modeMask {
			case modeMEM:
				if ins.K >= memWords {
					return bad("no such scratch word")
				}
			case modeABS:
				if ins.Op&classMask == classLDX {
					return bad("unknown opcode")
				}
				if ins.K >= skfAdOff {
					if t.Replay {
						return bad("Linux ancillary data in a capture file")
					}
					if n := ins.K - skfAdOff; n != skfAdPkttype && n != skfAdIfindex {
						return bad(fmt.Sprintf("Linux ancillary data %d is not supported", n))
					}
				}
			case modeIND:
				if ins.Op&classMask == classLDX {
					return bad("unknown opcode")
				}
			case modeMSH:
				if ins.Op&classMask == classLD || ins.Op&sizeMask != sizeB {
					return bad("unknown opcode")
				}
			case modeIMM, modeLEN:
			default:
				return bad("unknown addressing mode")
			}
		case classST, classSTX:
			if ins.K >= memWords {
				return bad("no such scratch word")
			}
		case classJMP:
			if ins.Op&opMask == jmpJA {
				to := i + 1 + int(int32(ins.K))
				if to < 0 || to >= n || to == i {
					return bad("jump outside the program")
				}
				continue
			}
			if i+1+int(ins.Jt) >= n || i+1+int(ins.Jf) >= n {
				return bad("jump outside the program")
			}
			switch ins.Op & opMask {
			case jmpJEQ, jmpJGT, jmpJGE, jmpJSET:
			default:
				return bad("unknown jump")
			}
		case classALU:
			switch ins.Op & opMask {
			case aluADD, aluSUB, aluMUL, aluDIV, aluOR, aluAND, aluLSH, aluRSH, aluNEG, aluMOD, aluXOR:
			default:
				return bad("unknown arithmetic")
			}
		case classRET:
			if ins.Op&retMask != retK && ins.Op&retMask != retA {
				return bad("unknown return")
			}
		case classMISC:
			if ins.Op&miscMask != miscTAX && ins.Op&miscMask != miscTXA {
				return bad("unknown opcode")
			}
		}
	}
	return nil
}

// label names a place in the output; labels below len(insns) are the classic instructions.
type label int

type fixup struct {
	at    int   // index of the jump instruction
	to    label // its target
	local bool  // inside one classic instruction's code: always short
}

// builder assembles the output: instructions, labels and the jumps to resolve.
type builder struct {
	t      Target
	long   bool // jumps between classic instructions as `gotol` (the program is too long)
	out    asm.Instructions
	at     map[label]int
	fix    []fixup
	next   label
	accept label
	reject label
	// inLoop says the instruction being translated is inside a loop (protochain's): there
	// tc_sensor reads every byte with bpf_skb_load_bytes, so that each way round the loop is
	// one path for the verifier, not one per linear-or-not load.
	inLoop bool
}

func (b *builder) newLabel() label { b.next++; return b.next - 1 }
func (b *builder) mark(l label)    { b.at[l] = len(b.out) }
func (b *builder) emit(ins ...asm.Instruction) {
	b.out = append(b.out, ins...)
}

func jumpIns(class asm.Class, op asm.JumpOp, src asm.Source, dst, srcReg asm.Register, imm int64) asm.Instruction {
	return asm.Instruction{OpCode: asm.OpCode(class).SetJumpOp(op).SetSource(src), Dst: dst, Src: srcReg, Constant: imm}
}

// jmp emits an unconditional jump to l.
func (b *builder) jmp(l label, local bool) {
	if b.long && !local {
		b.fix = append(b.fix, fixup{at: len(b.out), to: l})
		b.emit(jumpIns(asm.Jump32Class, asm.Ja, asm.ImmSource, 0, 0, 0))
		return
	}
	b.fix = append(b.fix, fixup{at: len(b.out), to: l, local: true})
	b.emit(jumpIns(asm.JumpClass, asm.Ja, asm.ImmSource, 0, 0, 0))
}

// jcc emits a conditional jump to l: class JumpClass compares 64 bits, Jump32Class the low 32.
func (b *builder) jcc(class asm.Class, op asm.JumpOp, dst asm.Register, src asm.Register, imm int64, useReg bool, l label, local bool) {
	source := asm.ImmSource
	if useReg {
		source = asm.RegSource
	} else {
		src = 0
	}
	if b.long && !local {
		// jcc +1; ja +1; gotol l
		b.emit(asm.Instruction{OpCode: asm.OpCode(class).SetJumpOp(op).SetSource(source), Dst: dst, Src: src, Constant: imm, Offset: 1})
		b.emit(asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Ja), Offset: 1})
		b.jmp(l, false)
		return
	}
	b.fix = append(b.fix, fixup{at: len(b.out), to: l, local: true})
	b.emit(asm.Instruction{OpCode: asm.OpCode(class).SetJumpOp(op).SetSource(source), Dst: dst, Src: src, Constant: imm})
}

// used says whether a jump goes to l.
func (b *builder) used(l label) bool {
	for _, f := range b.fix {
		if f.to == l {
			return true
		}
	}
	return false
}

// reachable marks the classic instructions some path from the first reaches; the last entry
// stands for falling off the end of the program.
func reachable(insns []bpf.RawInstruction) []bool {
	n := len(insns)
	seen := make([]bool, n+1)
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[i] {
			continue
		}
		seen[i] = true
		if i == n {
			continue
		}
		ins := insns[i]
		switch ins.Op & classMask {
		case classRET:
		case classJMP:
			if ins.Op&opMask == jmpJA {
				stack = append(stack, i+1+int(int32(ins.K)))
			} else {
				stack = append(stack, i+1+int(ins.Jt), i+1+int(ins.Jf))
			}
		case classALU:
			stack = append(stack, i+1)
			if op := ins.Op & opMask; (op == aluDIV || op == aluMOD) && ins.Op&srcMask == srcK && ins.K == 0 {
				stack = stack[:len(stack)-1] // always rejects
			}
		default:
			stack = append(stack, i+1)
		}
	}
	return seen
}

// resolve fills in every jump's offset.
func (b *builder) resolve() error {
	for _, f := range b.fix {
		to, ok := b.at[f.to]
		if !ok {
			return fmt.Errorf("%w: internal error: label %d not placed", ErrUnsupported, f.to)
		}
		off := to - f.at - 1
		ins := &b.out[f.at]
		if ins.OpCode.Class() == asm.Jump32Class && ins.OpCode.JumpOp() == asm.Ja {
			ins.Constant = int64(off)
			continue
		}
		if off < -32768 || off > 32767 {
			return errLong
		}
		ins.Offset = int16(off)
	}
	return nil
}

func translate(insns []bpf.RawInstruction, t Target, long bool) (asm.Instructions, error) {
	b := &builder{t: t, long: long, at: map[label]int{}, next: label(len(insns))}
	b.accept, b.reject = b.newLabel(), b.newLabel()

	// Prologue: A = X = 0 and the scratch words the program reads zeroed, as in libpcap's
	// interpreter (the verifier also refuses reads of anything unwritten).
	b.emit(asm.Mov.Imm32(rA, 0), asm.Mov.Imm32(rX, 0))
	var memUsed [memWords]bool
	backward := false
	for i, ins := range insns {
		switch {
		case ins.Op&classMask <= classSTX && (ins.Op&classMask >= classST || ins.Op&modeMask == modeMEM):
			memUsed[ins.K] = true
		case ins.Op&classMask == classJMP && ins.Op&opMask == jmpJA && int(int32(ins.K)) < 0:
			backward = true
		}
		_ = i
	}
	for k, used := range memUsed {
		if used {
			b.emit(asm.StoreImm(asm.R10, int16(stackMem+4*k), 0, asm.Word))
		}
	}
	if backward && t.Loops == LoopsCounted {
		b.emit(asm.Instruction{OpCode: asm.StoreImmOp(asm.DWord), Dst: asm.R10, Offset: stackBackJump}) // asm.StoreImm makes no DWord
	}
	if t.Replay {
		b.emit(asm.LoadMem(rLen, rReplay, replayWireLen, asm.Word))
	}

	loop := make([]bool, len(insns))
	for i, ins := range insns {
		if ins.Op&classMask == classJMP && ins.Op&opMask == jmpJA && int(int32(ins.K)) < 0 {
			for j := i + 1 + int(int32(ins.K)); j <= i; j++ {
				loop[j] = true
			}
		}
	}
	reach := reachable(insns)
	for i, ins := range insns {
		if !reach[i] {
			continue // the verifier refuses code that cannot run
		}
		b.mark(label(i))
		b.inLoop = loop[i]
		if err := b.insn(i, ins); err != nil {
			return nil, err
		}
	}
	// Falling off the end rejects, as in libpcap's interpreter.
	if reach[len(insns)] || b.used(b.reject) {
		b.mark(b.reject)
		b.emit(asm.Mov.Imm32(asm.R0, 0), asm.Return())
	}
	if b.used(b.accept) {
		b.mark(b.accept)
		b.emit(asm.Mov.Imm32(asm.R0, 1), asm.Return())
	}
	if err := b.resolve(); err != nil {
		return nil, err
	}
	return b.out, nil
}

// insn emits the code of classic instruction i.
func (b *builder) insn(i int, ins bpf.RawInstruction) error {
	k := ins.K
	switch ins.Op & classMask {
	case classLD, classLDX:
		dst := rA
		if ins.Op&classMask == classLDX {
			dst = rX
		}
		switch ins.Op & modeMask {
		case modeIMM:
			b.emit(asm.Mov.Imm32(dst, int32(k)))
		case modeLEN:
			b.emit(asm.Mov.Reg32(dst, rLen))
		case modeMEM:
			b.emit(asm.LoadMem(dst, asm.R10, int16(stackMem+4*int(k)), asm.Word))
		case modeABS:
			if k >= skfAdOff {
				b.ancillary(k - skfAdOff)
				return nil
			}
			b.loadConst(dst, loadSize(ins.Op), k)
		case modeIND:
			b.loadIndirect(dst, loadSize(ins.Op), k)
		case modeMSH:
			b.loadConst(rX, 1, k)
			b.emit(asm.And.Imm32(rX, 0xf), asm.LSh.Imm32(rX, 2))
		}
	case classST:
		b.emit(asm.StoreMem(asm.R10, int16(stackMem+4*int(k)), rA, asm.Word))
	case classSTX:
		b.emit(asm.StoreMem(asm.R10, int16(stackMem+4*int(k)), rX, asm.Word))
	case classALU:
		b.alu(ins)
	case classJMP:
		b.jump(i, ins)
	case classRET:
		if ins.Op&retMask == retA {
			b.emit(asm.Mov.Reg32(asm.R0, rA), asm.Return())
		} else if k == 0 {
			b.jmp(b.reject, false)
		} else {
			b.jmp(b.accept, false)
		}
	case classMISC:
		if ins.Op&miscMask == miscTAX {
			b.emit(asm.Mov.Reg32(rX, rA))
		} else {
			b.emit(asm.Mov.Reg32(rA, rX))
		}
	}
	return nil
}

// ancillary loads Linux ancillary data n into A: the direction of the hook, the interface.
func (b *builder) ancillary(n uint32) {
	switch n {
	case skfAdPkttype:
		pt := int32(packetHost)
		if b.t.Hook == HookTC {
			pt = packetOutgoing
		}
		b.emit(asm.Mov.Imm32(rA, pt))
	case skfAdIfindex:
		off := int16(xdpMdIfindex)
		if b.t.Hook == HookTC {
			off = skBuffIfindex
		}
		b.emit(asm.LoadMem(rA, rCtx, off, asm.Word))
	}
}

var aluOps = map[uint16]asm.ALUOp{
	aluADD: asm.Add, aluSUB: asm.Sub, aluMUL: asm.Mul, aluDIV: asm.Div, aluOR: asm.Or,
	aluAND: asm.And, aluLSH: asm.LSh, aluRSH: asm.RSh, aluMOD: asm.Mod, aluXOR: asm.Xor,
}

// alu emits 32-bit arithmetic on A, with libpcap's answers where eBPF's differ: a division
// or modulo by zero rejects, a shift by 32 or more gives 0.
func (b *builder) alu(ins bpf.RawInstruction) {
	op := ins.Op & opMask
	if op == aluNEG {
		b.emit(asm.Neg.Imm32(rA, 0))
		return
	}
	a := aluOps[op]
	if ins.Op&srcMask == srcK {
		switch {
		case (op == aluDIV || op == aluMOD) && ins.K == 0:
			b.jmp(b.reject, false)
		case (op == aluLSH || op == aluRSH) && ins.K >= 32:
			b.emit(asm.Mov.Imm32(rA, 0))
		default:
			b.emit(a.Imm32(rA, int32(ins.K)))
		}
		return
	}
	switch op {
	case aluDIV, aluMOD:
		b.jcc(asm.Jump32Class, asm.JEq, rX, 0, 0, false, b.reject, false)
		b.emit(a.Reg32(rA, rX))
	case aluLSH, aluRSH:
		zero, done := b.newLabel(), b.newLabel()
		b.jcc(asm.Jump32Class, asm.JGE, rX, 0, 32, false, zero, true)
		b.emit(a.Reg32(rA, rX))
		b.jmp(done, true)
		b.mark(zero)
		b.emit(asm.Mov.Imm32(rA, 0))
		b.mark(done)
	default:
		b.emit(a.Reg32(rA, rX))
	}
}

var jumpOps = map[uint16]asm.JumpOp{jmpJEQ: asm.JEq, jmpJGT: asm.JGT, jmpJGE: asm.JGE, jmpJSET: asm.JSet}

// inverse is the jump taken exactly when op's is not (JSET has none).
var inverse = map[asm.JumpOp]asm.JumpOp{asm.JEq: asm.JNE, asm.JGT: asm.JLE, asm.JGE: asm.JLT}

// jump emits classic instruction i, a jump: conditional ones compare the low 32 bits, unsigned,
// as classic BPF does.
func (b *builder) jump(i int, ins bpf.RawInstruction) {
	if ins.Op&opMask == jmpJA {
		to := label(i + 1 + int(int32(ins.K)))
		if int32(ins.K) < 0 {
			b.backwardJump()
		}
		if ins.K != 0 {
			b.jmp(to, false)
		}
		return
	}
	op := jumpOps[ins.Op&opMask]
	useX := ins.Op&srcMask == srcX
	imm := int64(int32(ins.K))
	t, f := label(i+1+int(ins.Jt)), label(i+1+int(ins.Jf))
	switch {
	case ins.Jt == ins.Jf:
		if ins.Jt != 0 {
			b.jmp(t, false)
		}
	case ins.Jf == 0:
		b.jcc(asm.Jump32Class, op, rA, rX, imm, useX, t, false)
	case ins.Jt == 0 && op != asm.JSet:
		b.jcc(asm.Jump32Class, inverse[op], rA, rX, imm, useX, f, false)
	default:
		b.jcc(asm.Jump32Class, op, rA, rX, imm, useX, t, false)
		b.jmp(f, false)
	}
}

// backwardJump emits what goes before a loop's backward jump (protochain's).
func (b *builder) backwardJump() {
	if b.t.Loops == LoopsCounted {
		b.emit(
			asm.LoadMem(rT1, asm.R10, stackBackJump, asm.DWord),
			asm.Add.Imm(rT1, 1),
			asm.StoreMem(asm.R10, stackBackJump, rT1, asm.DWord),
		)
		b.jcc(asm.JumpClass, asm.JGT, rT1, 0, MaxBackwardJumps, false, b.reject, false)
		return
	}
	b.jcc(asm.JumpClass, asm.JGT, rX, 0, maxLoopX, false, b.reject, false)
	// may_goto: to reject when the kernel's loop budget is spent, else on.
	b.fix = append(b.fix, fixup{at: len(b.out), to: b.reject, local: !b.long})
	b.emit(asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.JCOND).SetSource(asm.ImmSource), Src: asm.PseudoMayGoto})
	if b.long {
		// may_goto has a 16-bit offset only: hop over a gotol to reject.
		b.out[len(b.out)-1].Offset = 1
		b.fix = b.fix[:len(b.fix)-1]
		b.emit(asm.Instruction{OpCode: asm.OpCode(asm.JumpClass).SetJumpOp(asm.Ja), Offset: 1})
		b.jmp(b.reject, false)
	}
}

// HasLoops says whether a classic program has backward jumps (libpcap's protochain).
func HasLoops(insns []bpf.RawInstruction) bool {
	for _, ins := range insns {
		if ins.Op&classMask == classJMP && ins.Op&opMask == jmpJA && int32(ins.K) < 0 {
			return true
		}
	}
	return false
}
