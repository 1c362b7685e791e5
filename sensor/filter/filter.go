// Package filter holds pcap-filter expressions (the language of tcpdump and pcap-filter(7)):
// libpcap compiles an expression to classic BPF for a link type (cgo; see libpcap.go), libpcap's
// own interpreter matches frames of capture files with it (Program.Match, the selection tcpdump
// makes), and ToEBPF translates it into eBPF instructions that sensor.Load injects into the
// kernel programs' filter_frame stub (bpf/filter.h).
package filter

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/net/bpf"
)

// Link types (DLT_ values) the sensor compiles expressions for.
const (
	LinkEthernet = 1 // DLT_EN10MB: every live interface, and Ethernet capture files
)

// Snaplen is the snapshot length expressions are compiled with, tcpdump's default. libpcap
// makes "accept" return it, so it only has to be non-zero.
const Snaplen = 262144

// Ancillary-data loads (Linux's SKF_AD_OFF + n) that libpcap emits for a live capture: the
// direction of `inbound`/`outbound` and the interface of `ifindex`.
const (
	skfAdOff     = 0xfffff000 // SKF_AD_OFF (-0x1000) as the unsigned k of a load
	skfAdPkttype = 4          // SKF_AD_PKTTYPE
	skfAdIfindex = 8          // SKF_AD_IFINDEX
)

// ErrSyntax wraps every error libpcap gives for an expression: bad usage, exit 2.
var ErrSyntax = errors.New("bad filter expression")

// CompileError is libpcap's refusal of an expression, with libpcap's own message.
type CompileError struct {
	Expr string
	Msg  string // what pcap_geterr said
}

// Error says which expression libpcap refused and why.
func (e *CompileError) Error() string { return fmt.Sprintf("filter %q: %s", e.Expr, e.Msg) }

// Unwrap makes errors.Is(err, ErrSyntax) true.
func (e *CompileError) Unwrap() error { return ErrSyntax }

// Program is an expression compiled by libpcap for one link type.
type Program struct {
	Expr     string
	LinkType int
	Insns    []bpf.RawInstruction // the classic BPF program, as pcap_compile made it
	c        *cProgram            // the same program in C memory, for pcap_offline_filter
}

// Ancillary returns the SKF_AD_* numbers the program loads (sorted, without repeats): data
// that is not in the packet, which libpcap uses for `inbound`, `outbound` and `ifindex` on a
// live Linux capture of a link type that does not carry them in its header.
func (p *Program) Ancillary() []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	for _, ins := range p.Insns {
		if ins.Op&classMask == classLD && ins.Op&modeMask == modeABS && ins.K >= skfAdOff {
			n := ins.K - skfAdOff
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// ForFiles returns an error when p cannot select frames of a capture file: it reads Linux
// ancillary data, which a file does not record. The message is the one tcpdump gives.
func (p *Program) ForFiles() error {
	for _, n := range p.Ancillary() {
		what := fmt.Sprintf("ancillary data %d", n)
		switch n {
		case skfAdPkttype:
			what = "inbound/outbound"
		case skfAdIfindex:
			what = "ifindex"
		}
		return &CompileError{Expr: p.Expr, Msg: fmt.Sprintf("%s not supported on %s when reading savefiles", what, LinkTypeName(p.LinkType))}
	}
	return nil
}

// DLT returns the DLT_ value libpcap compiles for, given the LINKTYPE_ value a capture file
// records: the same number, except the few that differ between platforms (libpcap's
// linktype_to_dlt, for Linux).
func DLT(linktype int) int {
	switch linktype {
	case 100: // LINKTYPE_ATM_RFC1483
		return 11
	case 101: // LINKTYPE_RAW
		return 12
	case 102: // LINKTYPE_SLIP_BSDOS
		return 15
	case 103: // LINKTYPE_PPP_BSDOS
		return 16
	case 106: // LINKTYPE_ATM_CLIP
		return 19
	}
	return linktype
}

// LinkTypeName is libpcap's description of a link type ("Ethernet", "Linux cooked v1", ...).
func LinkTypeName(lt int) string { return linkTypeDescription(lt) }

// Expression joins the words after a command's other arguments into one expression, as tcpdump
// does, or reads it from file (tcpdump's -F: `#` starts a comment to the end of the line).
// Giving it both ways is an error. It returns "" when there is no expression.
func Expression(words []string, flag, file string) (string, error) {
	n := 0
	for _, given := range []bool{len(words) > 0, flag != "", file != ""} {
		if given {
			n++
		}
	}
	if n > 1 {
		return "", fmt.Errorf("%w: give the expression once: as trailing words, with --filter or with -F", ErrSyntax)
	}
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%w: -F: %w", ErrSyntax, err)
		}
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if i := strings.IndexByte(l, '#'); i >= 0 {
				l = l[:i]
			}
			lines = append(lines, l)
		}
		expr := strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
		if expr == "" {
			return "", fmt.Errorf("%w: -F %s holds no expression", ErrSyntax, file)
		}
		return expr, nil
	case flag != "":
		return strings.TrimSpace(flag), nil
	}
	return strings.TrimSpace(strings.Join(words, " ")), nil
}
