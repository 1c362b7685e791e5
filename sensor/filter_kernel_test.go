package sensor_test

import (
	"errors"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/filter"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"golang.org/x/net/bpf"
)

// TestFilterLongJumps: a classic program whose translation needs 32-bit jumps (gotol) loads
// and selects as written: frames starting with 0xff jump over a 10000-instruction chain to
// accept, the others go down the chain to reject.
func TestFilterLongJumps(t *testing.T) {
	sensortest.RequireBPF(t)
	const (
		ldb  = 0x00 | 0x10 | 0x20 // BPF_LD|BPF_B|BPF_ABS
		jeq  = 0x05 | 0x10        // BPF_JMP|BPF_JEQ|BPF_K
		ja   = 0x05               // BPF_JMP|BPF_JA
		retK = 0x06               // BPF_RET|BPF_K
	)
	prog := []bpf.RawInstruction{{Op: ldb}, {Op: jeq, K: 0xff, Jt: 0, Jf: 1}, {Op: ja}}
	for i := 0; i < 5000; i++ {
		prog = append(prog, bpf.RawInstruction{Op: ldb, K: uint32(i % 60)}, bpf.RawInstruction{Op: jeq, K: uint32(i % 256)})
	}
	prog = append(prog, bpf.RawInstruction{Op: retK, K: 0}, bpf.RawInstruction{Op: retK, K: 1})
	prog[2].K = uint32(len(prog) - 1 - 3)
	_, rep := loadWith(t, sensor.Config{IngressOnly: true, RingSize: 1 << 16,
		Filter: &sensor.KernelFilter{Prog: &filter.Program{Expr: "(synthetic)", LinkType: filter.LinkEthernet, Insns: prog}}})
	frame := make([]byte, 64)
	for first, keep := range map[byte]bool{0xff: true, 0x00: false, 0x42: false} {
		frame[0] = first
		_, err := rep.Replay(frame, sensor.Meta{})
		if got := err == nil; got != keep || (err != nil && !errors.Is(err, sensor.ErrFiltered)) {
			t.Errorf("frame starting %#x: kept %v (%v), want %v", first, got, err, keep)
		}
	}
}
