//go:build cgo

package filter

/*
#cgo LDFLAGS: -lpcap
#include <stdio.h>
#include <stdlib.h>
#include <pcap/pcap.h>

// compile_dead compiles expr for a capture of linktype that is not open (pcap_open_dead), as
// tcpdump compiles for the file or interface it has, optimised as tcpdump does by default.
static int compile_dead(int linktype, int snaplen, const char *expr, bpf_u_int32 netmask,
			struct bpf_program *prog, char *errbuf, size_t errlen)
{
	pcap_t *p = pcap_open_dead(linktype, snaplen);

	if (p == NULL) {
		snprintf(errbuf, errlen, "pcap_open_dead(%d) failed", linktype);
		return -1;
	}
	if (pcap_compile(p, prog, expr, 1, netmask) != 0) {
		snprintf(errbuf, errlen, "%s", pcap_geterr(p));
		pcap_close(p);
		return -1;
	}
	pcap_close(p);
	return 0;
}

// compile_file compiles expr as tcpdump compiles it for a capture file of linktype (a
// LINKTYPE_ value): against a savefile handle, opened on a file header in memory, so that
// libpcap says what it says of files (inbound/outbound "not supported ... when reading
// savefiles", before anything else of the expression).
static int compile_file(int linktype, int snaplen, const char *expr, struct bpf_program *prog,
			char *errbuf, size_t errlen)
{
	unsigned char hdr[24] = { 0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0 };
	char ebuf[PCAP_ERRBUF_SIZE];
	FILE *f;
	pcap_t *p;
	int i;

	for (i = 0; i < 4; i++) {
		hdr[16 + i] = (unsigned)snaplen >> (8 * i);
		hdr[20 + i] = (unsigned)linktype >> (8 * i);
	}
	f = fmemopen(hdr, sizeof(hdr), "rb");
	if (f == NULL) {
		snprintf(errbuf, errlen, "fmemopen failed");
		return -1;
	}
	p = pcap_fopen_offline(f, ebuf); // closes f with the handle
	if (p == NULL) {
		fclose(f);
		snprintf(errbuf, errlen, "%s", ebuf);
		return -1;
	}
	if (pcap_compile(p, prog, expr, 1, 0) != 0) {
		snprintf(errbuf, errlen, "%s", pcap_geterr(p));
		pcap_close(p);
		return -1;
	}
	pcap_close(p);
	return 0;
}

// match runs prog over a frame with libpcap's interpreter, as tcpdump does when it reads a file.
static int match(const struct bpf_program *prog, const u_char *data, bpf_u_int32 caplen,
		 bpf_u_int32 wirelen)
{
	struct pcap_pkthdr h = { .caplen = caplen, .len = wirelen };

	return pcap_offline_filter(prog, &h, data);
}
*/
import "C"

import (
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/net/bpf"
)

// cProgram is a struct bpf_program in C memory, filled by pcap_compile.
type cProgram = C.struct_bpf_program

// compileMu serialises pcap_compile: libpcap's parser was not reentrant before 1.8, and
// compiling is rare.
var compileMu sync.Mutex

// Compile compiles expr with libpcap for frames of link type lt (a DLT_ value), with the
// IPv4 netmask `ip broadcast` needs (tcpdump passes 0 when reading a file and the
// interface's netmask when live). An expression libpcap refuses comes back as a
// *CompileError with libpcap's message (errors.Is ErrSyntax).
func Compile(expr string, lt int, netmask uint32) (*Program, error) {
	return compile(expr, lt, netmask, false)
}

// CompileFile compiles expr as tcpdump does for a capture file of linktype (a LINKTYPE_ value,
// as the file records it): netmask 0, and libpcap's refusals of what a file cannot carry.
func CompileFile(expr string, linktype int) (*Program, error) {
	return compile(expr, linktype, 0, true)
}

func compile(expr string, lt int, netmask uint32, file bool) (*Program, error) {
	cexpr := C.CString(expr)
	defer C.free(unsafe.Pointer(cexpr))
	var errbuf [C.PCAP_ERRBUF_SIZE]C.char
	cp := (*C.struct_bpf_program)(C.calloc(1, C.sizeof_struct_bpf_program))
	compileMu.Lock()
	var rc C.int
	if file {
		rc = C.compile_file(C.int(lt), C.int(Snaplen), cexpr, cp, &errbuf[0], C.size_t(len(errbuf)))
		lt = DLT(lt)
	} else {
		rc = C.compile_dead(C.int(lt), C.int(Snaplen), cexpr, C.bpf_u_int32(netmask), cp, &errbuf[0], C.size_t(len(errbuf)))
	}
	compileMu.Unlock()
	if rc != 0 {
		C.free(unsafe.Pointer(cp))
		return nil, &CompileError{Expr: expr, Msg: C.GoString(&errbuf[0])}
	}
	p := &Program{Expr: expr, LinkType: lt, c: cp}
	insns := unsafe.Slice(cp.bf_insns, int(cp.bf_len))
	p.Insns = make([]bpf.RawInstruction, len(insns))
	for i, in := range insns {
		p.Insns[i] = bpf.RawInstruction{Op: uint16(in.code), Jt: uint8(in.jt), Jf: uint8(in.jf), K: uint32(in.k)}
	}
	runtime.AddCleanup(p, func(cp *C.struct_bpf_program) {
		C.pcap_freecode(cp)
		C.free(unsafe.Pointer(cp))
	}, cp)
	return p, nil
}

// Match reports whether the program selects frame (the bytes as captured, wireLen long on the
// wire), with libpcap's interpreter: the selection tcpdump makes when it reads a file.
func (p *Program) Match(frame []byte, wireLen int) bool {
	var one [1]byte
	data := (*C.u_char)(unsafe.Pointer(&one[0]))
	if len(frame) > 0 {
		data = (*C.u_char)(unsafe.Pointer(&frame[0]))
	}
	ok := C.match(p.c, data, C.bpf_u_int32(len(frame)), C.bpf_u_int32(max(wireLen, len(frame)))) != 0
	runtime.KeepAlive(p)
	runtime.KeepAlive(frame)
	return ok
}

func linkTypeDescription(lt int) string {
	return C.GoString(C.pcap_datalink_val_to_description_or_dlt(C.int(lt)))
}
