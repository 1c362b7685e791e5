package filter

import "github.com/cilium/ebpf/asm"

// Packet loads. A classic load reads big-endian bytes of the frame at a constant offset (ld
// [k], ldx 4*([k]&0xf)) or at X+k (ld [x+k]), and rejects the frame when they are not all in
// it. Translated, a load reads the linear frame directly after a bounds check against
// data_end that the verifier can follow. What it does when the bytes are not there depends on
// the hook: xdp_sensor's frame is all linear, so the frame is rejected, as libpcap would;
// tc_sensor's skb is linear only as far as tc_sensor pulled it (TC_PULL_LEN), so the bytes are
// fetched with bpf_skb_load_bytes, which fails (and rejects) only past the end of the skb. In
// a replay the offsets are those of the file's frame, mapped onto filter_replay's link_hdr and
// the replayed frame (Target).

func sizeOf(n int) asm.Size {
	switch n {
	case 1:
		return asm.Byte
	case 2:
		return asm.Half
	}
	return asm.Word
}

// toHost turns the big-endian value loaded into dst into a number.
func (b *builder) toHost(dst asm.Register, size int) {
	if size > 1 {
		b.emit(asm.HostTo(asm.BE, dst, sizeOf(size)))
	}
}

// slowPath says whether bytes past the linear part are fetched with bpf_skb_load_bytes.
func (b *builder) slowPath() bool { return b.t.Hook == HookTC && !b.t.Replay }

// loadConst loads size bytes at constant offset k of the frame (as the program sees it) into dst.
func (b *builder) loadConst(dst asm.Register, size int, k uint32) {
	if !b.t.Replay {
		b.loadData(dst, size, k)
		return
	}
	h := uint32(b.t.LinkHdr)
	switch {
	case uint64(k)+uint64(size) <= uint64(h):
		b.emit(asm.LoadMem(dst, rReplay, int16(replayLinkHdr+k), sizeOf(size)))
		b.toHost(dst, size)
	case k >= h:
		b.loadData(dst, size, uint32(min(uint64(k-h)+uint64(b.t.Shift), 0xffffffff)))
	default: // across the end of the link header: byte by byte
		for j := uint32(0); j < uint32(size); j++ {
			if k+j < h {
				b.emit(asm.LoadMem(rT2, rReplay, int16(replayLinkHdr+k+j), asm.Byte))
			} else {
				b.loadData(rT2, 1, k+j-h+uint32(b.t.Shift))
			}
			b.merge(dst, rT2, j)
		}
	}
}

// merge puts byte j of a value being built from single bytes into dst.
func (b *builder) merge(dst, byteReg asm.Register, j uint32) {
	if j == 0 {
		b.emit(asm.Mov.Reg32(dst, byteReg))
		return
	}
	b.emit(asm.LSh.Imm32(dst, 8), asm.Or.Reg32(dst, byteReg))
}

// loadData loads size bytes at constant offset off of the kernel's frame into dst.
func (b *builder) loadData(dst asm.Register, size int, off uint32) {
	if uint64(off)+uint64(size) > maxPacketOff {
		// Beyond what a packet pointer may reach; only the skb can have it.
		if b.slowPath() {
			b.emit(asm.Mov.Imm32(rT1, int32(off)))
			b.skbLoad(dst, size)
		} else {
			b.jmp(b.reject, false)
		}
		return
	}
	if b.slowPath() && b.inLoop {
		b.emit(asm.Mov.Imm32(rT1, int32(off)))
		b.skbLoad(dst, size)
		return
	}
	slow, done := b.newLabel(), b.newLabel()
	b.emit(
		asm.Mov.Reg(rT2, rData),
		asm.Add.Imm(rT2, int32(off)),
		asm.Mov.Reg(rT0, rT2),
		asm.Add.Imm(rT0, int32(size)),
	)
	b.jcc(asm.JumpClass, asm.JGT, rT0, rDataEnd, 0, true, slow, true)
	b.emit(asm.LoadMem(dst, rT2, 0, sizeOf(size)))
	b.toHost(dst, size)
	if !b.slowPath() {
		b.jmp(done, true)
		b.mark(slow)
		b.jmp(b.reject, false)
		b.mark(done)
		return
	}
	b.jmp(done, true)
	b.mark(slow)
	b.emit(asm.Mov.Imm32(rT1, int32(off)))
	b.skbLoad(dst, size)
	b.mark(done)
}

// loadIndirect loads size bytes at X+k of the frame (as the program sees it) into dst.
func (b *builder) loadIndirect(dst asm.Register, size int, k uint32) {
	if k > maxIndirectBase {
		b.jmp(b.reject, false) // past any frame, whatever X is
		return
	}
	b.emit(asm.Mov.Reg(rT1, rX)) // X is a zero-extended 32-bit value: X+k cannot wrap here
	if k != 0 {
		b.emit(asm.Add.Imm(rT1, int32(k)))
	}
	if !b.t.Replay || b.t.LinkHdr == 0 {
		if b.t.Replay && b.t.Shift != 0 {
			b.emit(asm.Add.Imm(rT1, int32(b.t.Shift)))
		}
		b.loadDataAt(dst, size)
		return
	}
	// A replay with a link header in filter_replay: each byte from where it is.
	h := int64(b.t.LinkHdr)
	for j := uint32(0); j < uint32(size); j++ {
		data, merge := b.newLabel(), b.newLabel()
		b.emit(asm.Mov.Reg(rT0, rT1))
		if j > 0 {
			b.emit(asm.Add.Imm(rT0, int32(j)))
		}
		b.jcc(asm.JumpClass, asm.JGE, rT0, 0, h, false, data, true)
		b.emit(
			asm.Mov.Reg(rT2, rReplay),
			asm.Add.Reg(rT2, rT0),
			asm.LoadMem(rT2, rT2, replayLinkHdr, asm.Byte),
		)
		b.jmp(merge, true)
		b.mark(data)
		b.emit(asm.Add.Imm(rT0, int32(int64(b.t.Shift)-h)))
		b.jcc(asm.JumpClass, asm.JGT, rT0, 0, maxPacketOff-1, false, b.reject, false)
		b.emit(
			asm.Mov.Reg(rT2, rData),
			asm.Add.Reg(rT2, rT0),
			asm.Mov.Reg(rT0, rT2),
			asm.Add.Imm(rT0, 1),
		)
		b.jcc(asm.JumpClass, asm.JGT, rT0, rDataEnd, 0, true, b.reject, false)
		b.emit(asm.LoadMem(rT2, rT2, 0, asm.Byte))
		b.mark(merge)
		b.merge(dst, rT2, j)
	}
}

// loadDataAt loads size bytes at the offset in rT1 of the kernel's frame into dst.
func (b *builder) loadDataAt(dst asm.Register, size int) {
	if b.slowPath() && b.inLoop {
		b.jcc(asm.JumpClass, asm.JGT, rT1, 0, maxIndirectBase, false, b.reject, false)
		b.skbLoad(dst, size)
		return
	}
	slow, done := b.newLabel(), b.newLabel()
	// Bounded, so that the verifier lets it move a packet pointer.
	b.jcc(asm.JumpClass, asm.JGT, rT1, 0, int64(maxPacketOff-size), false, slow, true)
	b.emit(
		asm.Mov.Reg(rT2, rData),
		asm.Add.Reg(rT2, rT1),
		asm.Mov.Reg(rT0, rT2),
		asm.Add.Imm(rT0, int32(size)),
	)
	b.jcc(asm.JumpClass, asm.JGT, rT0, rDataEnd, 0, true, slow, true)
	b.emit(asm.LoadMem(dst, rT2, 0, sizeOf(size)))
	b.toHost(dst, size)
	b.jmp(done, true)
	b.mark(slow)
	if b.slowPath() {
		// bpf_skb_load_bytes takes a 32-bit offset and refuses those above INT_MAX.
		b.jcc(asm.JumpClass, asm.JGT, rT1, 0, maxIndirectBase, false, b.reject, false)
		b.skbLoad(dst, size)
	} else {
		b.jmp(b.reject, false)
	}
	b.mark(done)
}

// skbLoad fetches size bytes at the offset in rT1 with bpf_skb_load_bytes into dst, rejecting
// the frame when the skb does not have them. A and X are in callee-saved registers; the
// arguments of filter_frame are spilled around the call.
func (b *builder) skbLoad(dst asm.Register, size int) {
	args := []asm.Register{asm.R1, asm.R2, asm.R3, asm.R4, asm.R5}
	for i, r := range args {
		b.emit(asm.StoreMem(asm.R10, int16(stackSpill-8*i), r, asm.DWord))
	}
	b.emit(
		asm.Mov.Reg(asm.R2, rT1),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, stackLoadBuf),
		asm.Mov.Imm(asm.R4, int32(size)),
		asm.FnSkbLoadBytes.Call(),
	)
	for i, r := range args {
		b.emit(asm.LoadMem(r, asm.R10, int16(stackSpill-8*i), asm.DWord))
	}
	b.jcc(asm.JumpClass, asm.JNE, asm.R0, 0, 0, false, b.reject, false)
	b.emit(asm.LoadMem(dst, asm.R10, stackLoadBuf, sizeOf(size)))
	b.toHost(dst, size)
}
