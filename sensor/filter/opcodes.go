package filter

// Classic BPF opcode fields (pcap/bpf.h), for reading what pcap_compile made.
const (
	classMask = 0x07
	classLD   = 0x00
	classLDX  = 0x01
	classST   = 0x02
	classSTX  = 0x03
	classALU  = 0x04
	classJMP  = 0x05
	classRET  = 0x06
	classMISC = 0x07

	sizeMask = 0x18
	sizeW    = 0x00
	sizeH    = 0x08
	sizeB    = 0x10

	modeMask = 0xe0
	modeIMM  = 0x00
	modeABS  = 0x20
	modeIND  = 0x40
	modeMEM  = 0x60
	modeLEN  = 0x80
	modeMSH  = 0xa0

	opMask = 0xf0
	aluADD = 0x00
	aluSUB = 0x10
	aluMUL = 0x20
	aluDIV = 0x30
	aluOR  = 0x40
	aluAND = 0x50
	aluLSH = 0x60
	aluRSH = 0x70
	aluNEG = 0x80
	aluMOD = 0x90
	aluXOR = 0xa0

	jmpJA   = 0x00
	jmpJEQ  = 0x10
	jmpJGT  = 0x20
	jmpJGE  = 0x30
	jmpJSET = 0x40

	srcMask = 0x08
	srcK    = 0x00
	srcX    = 0x08

	retMask = 0x18
	retK    = 0x00
	retA    = 0x10

	miscMask = 0xf8
	miscTAX  = 0x00
	miscTXA  = 0x80

	memWords = 16 // BPF_MEMWORDS: the scratch memory M[0..15]
)

// loadSize is the byte width of a load's size field.
func loadSize(op uint16) int {
	switch op & sizeMask {
	case sizeH:
		return 2
	case sizeB:
		return 1
	}
	return 4
}
