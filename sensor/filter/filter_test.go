package filter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/net/bpf"
)

func TestExpression(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("# comment\ntcp port 80 # web\n\tor udp\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("# nothing\n\n"), 0o644)
	for _, c := range []struct {
		words      []string
		flag, file string
		want       string
		bad        bool
	}{
		{words: []string{"tcp", "port", "80"}, want: "tcp port 80"},
		{words: []string{"tcp port 80"}, want: "tcp port 80"},
		{flag: " udp ", want: "udp"},
		{file: file, want: "tcp port 80 or udp"},
		{},
		{words: []string{"tcp"}, flag: "udp", bad: true},
		{flag: "udp", file: file, bad: true},
		{file: filepath.Join(dir, "missing"), bad: true},
		{file: empty, bad: true},
	} {
		got, err := Expression(c.words, c.flag, c.file)
		if c.bad {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("%+v: %q, %v; want an ErrSyntax", c, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%+v: %q, %v; want %q", c, got, err, c.want)
		}
	}
}

// TestCompileErrors: libpcap's own messages, as tcpdump prints them (tcpdump 4.99, libpcap 1.10).
func TestCompileErrors(t *testing.T) {
	for expr, msg := range map[string]string{
		"tcp port":        "syntax error",
		"host 999.1.1.1":  "invalid IPv4 address '999.1.1.1'",
		"tcp and udp":     "expression rejects all packets",
		"ip[0] / 0 = 1":   "division by zero",
		"portrange 90-80": "", // libpcap swaps the ends
	} {
		_, err := Compile(expr, LinkEthernet, 0)
		var ce *CompileError
		if msg == "" {
			if err != nil {
				t.Errorf("%q: %v", expr, err)
			}
			continue
		}
		if !errors.As(err, &ce) || !strings.Contains(ce.Msg, msg) || !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: %v; want %q", expr, err, msg)
		}
	}
	// Link-type specific: Ethernet addresses on Linux cooked captures.
	if _, err := Compile("ether host 1:2:3:4:5:6", 113, 0); err == nil || !strings.Contains(err.Error(), "ethernet addresses supported only on") {
		t.Errorf("ether host on LINUX_SLL: %v", err)
	}
}

func TestForFiles(t *testing.T) {
	for expr, bad := range map[string]bool{"inbound": true, "ifindex 3": true, "tcp": false} {
		p, err := Compile(expr, LinkEthernet, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = p.ForFiles()
		if bad != (err != nil) || (bad && !strings.Contains(err.Error(), "not supported on Ethernet when reading savefiles")) {
			t.Errorf("%q: %v", expr, err)
		}
	}
	// In a Linux cooked header the direction is part of the frame.
	p, err := Compile("inbound", 113, 0)
	if err != nil || p.ForFiles() != nil || len(p.Ancillary()) != 0 {
		t.Errorf("inbound on LINUX_SLL: %v", err)
	}
}

func TestDLT(t *testing.T) {
	for lt, dlt := range map[int]int{1: 1, 101: 12, 113: 113, 276: 276, 228: 228, 0: 0} {
		if got := DLT(lt); got != dlt {
			t.Errorf("DLT(%d) = %d, want %d", lt, got, dlt)
		}
	}
}

// TestMatch: libpcap's interpreter on hand-made frames, `len` from the wire length.
func TestMatch(t *testing.T) {
	// Ethernet, IPv4, UDP 1234 -> 53.
	frame := []byte{
		0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00,
		0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0x04, 0xd2, 0, 53, 0, 8, 0, 0,
	}
	for expr, want := range map[string]bool{
		"udp port 53": true, "tcp": false, "src host 10.0.0.1": true, "greater 100": true, "less 100": false,
		"udp[0:2] = 1234": true, "ip[100] = 0": false,
	} {
		p, err := Compile(expr, LinkEthernet, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Match(frame, 1000); got != want {
			t.Errorf("%q: %v, want %v", expr, got, want)
		}
	}
}

// TestTranslateRefuses: what ToEBPF cannot translate is an ErrUnsupported, not a bad program.
func TestTranslateRefuses(t *testing.T) {
	for name, prog := range map[string][]bpf.RawInstruction{
		"empty":           nil,
		"jump past end":   {{Op: classJMP | jmpJEQ, Jt: 5}, {Op: classRET, K: 1}},
		"scratch word 16": {{Op: classLD | modeMEM, K: 16}, {Op: classRET, K: 1}},
		"vlan ancillary":  {{Op: classLD | sizeB | modeABS, K: skfAdOff + 44}, {Op: classRET | retA}},
		"bad opcode":      {{Op: 0xff}, {Op: classRET, K: 1}},
		"self loop":       {{Op: classJMP | jmpJA, K: 0xffffffff}, {Op: classRET, K: 1}},
	} {
		if _, err := ToEBPF(prog, Target{}); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v", name, err)
		}
	}
	p, _ := Compile("inbound", LinkEthernet, 0)
	if _, err := ToEBPF(p.Insns, Target{Replay: true}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ancillary data in a replay: %v", err)
	}
}

// TestLongJumps: a program whose translation is longer than a 16-bit jump reaches is
// translated with gotol, and every jump lands inside it. (libpcap's optimiser takes minutes
// over an expression that long, so the classic program is made here: loads and compares of
// the first bytes, then accept.)
func TestLongJumps(t *testing.T) {
	// ldb [0]; jeq #0xff, to 2, else to 3; 2: ja to the end; 3...: the long chain; ret #1
	prog := []bpf.RawInstruction{
		{Op: classLD | sizeB | modeABS},
		{Op: classJMP | jmpJEQ, K: 0xff, Jt: 0, Jf: 1},
		{Op: classJMP | jmpJA},
	}
	for i := 0; i < 5000; i++ {
		prog = append(prog,
			bpf.RawInstruction{Op: classLD | sizeB | modeABS, K: uint32(i % 60)},
			bpf.RawInstruction{Op: classJMP | jmpJEQ, K: uint32(i % 256)}) // both ways on
	}
	prog = append(prog, bpf.RawInstruction{Op: classRET, K: 1})
	prog[2].K = uint32(len(prog) - 1 - 3)
	code, err := ToEBPF(prog, Target{Hook: HookTC})
	if err != nil {
		t.Fatal(err)
	}
	long := 0
	for i, ins := range code {
		if !ins.OpCode.Class().IsJump() || ins.OpCode.JumpOp() == asm.Exit || ins.OpCode.JumpOp() == asm.Call {
			continue
		}
		off := int(ins.Offset)
		if ins.OpCode.Class() == asm.Jump32Class && ins.OpCode.JumpOp() == asm.Ja {
			off = int(ins.Constant)
			long++
		}
		if to := i + 1 + off; to < 0 || to >= len(code) {
			t.Fatalf("instruction %d (%v) jumps to %d of %d", i, ins, to, len(code))
		}
	}
	if len(code) <= 32767 || long == 0 {
		t.Errorf("%d instructions, %d long jumps: the test does not test long jumps", len(code), long)
	}
	// Classic instruction 2 jumps to the accept: the one gotol to it.
	toAccept := 0
	for i, ins := range code {
		if ins.OpCode.Class() == asm.Jump32Class && ins.OpCode.JumpOp() == asm.Ja {
			if to := code[i+1+int(ins.Constant)]; to.OpCode == asm.Mov.Imm32(asm.R0, 1).OpCode && to.Constant == 1 && to.Dst == asm.R0 {
				toAccept++
			}
		}
	}
	if toAccept == 0 {
		t.Error("no long jump reaches the accept")
	}
}
