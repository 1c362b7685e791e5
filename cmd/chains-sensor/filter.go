package main

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/filter"
	"github.com/urfave/cli/v2"
)

// Filter expressions on the command line, as tcpdump takes them: the words after the other
// arguments (joined with spaces), or --filter EXPR, or -F FILE.
const (
	flagIface      = "i"
	flagFilter     = "filter"
	flagFilterFile = "F"
)

// filterFlags are the flags of read and attach that give a filter expression.
func filterFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagFilter, Usage: "keep only the packets the pcap-filter `EXPRESSION` selects (as tcpdump; see pcap-filter(7))"},
		&cli.StringFlag{Name: flagFilterFile, Usage: "read the filter expression from `FILE` (as tcpdump -F; # starts a comment)"},
	}
}

// filterHelp is what --help says about expressions.
const filterHelp = "EXPRESSION is a pcap-filter(7) expression, as tcpdump takes it (several words are joined\n" +
	"with spaces; quote it to keep the shell away from ( ) and !), or comes from --filter EXPR or -F FILE.\n" +
	"It is compiled by libpcap and evaluated in the kernel programs before anything else: a packet it\n" +
	"rejects costs no ring-buffer space and no user-space time, and is counted as filtered out; the\n" +
	"closing line then reads `<N> packets seen, <F> filtered out, <M> recorded, <L> lost`.\n" +
	"An expression libpcap refuses, or one too complex for the kernel's verifier, exits 2."

// expressionOf returns the filter expression the command line gives ("" for none).
func expressionOf(c *cli.Context, words []string) (string, error) {
	return filter.Expression(words, c.String(flagFilter), c.String(flagFilterFile))
}

// liveFilter compiles expr for the live interfaces (Ethernet), with the IPv4 netmask of the
// first as `ip broadcast` needs it (tcpdump takes its one interface's; 0 when it has none).
func liveFilter(expr string, ifaces []string) (*sensor.KernelFilter, error) {
	if expr == "" {
		return nil, nil
	}
	p, err := filter.Compile(expr, filter.LinkEthernet, netmaskOf(ifaces[0]))
	if err != nil {
		return nil, err
	}
	if err := checkTranslatable(p); err != nil {
		return nil, err
	}
	return &sensor.KernelFilter{Prog: p}, nil
}

// checkTranslatable translates p once for each program, so that what the translation refuses
// (Linux ancillary data it cannot emulate) is bad usage before anything is loaded.
func checkTranslatable(p *filter.Program) error {
	for _, hook := range []filter.Hook{filter.HookXDP, filter.HookTC} {
		if _, err := filter.ToEBPF(p.Insns, filter.Target{Hook: hook}); err != nil {
			return fmt.Errorf("%w: %w", filter.ErrSyntax, err)
		}
	}
	return nil
}

func netmaskOf(name string) uint32 {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return 0
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && len(n.Mask) == net.IPv4len {
			m := n.Mask
			return uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
		}
	}
	return 0
}

// badUsage says err is the command line's fault (a flag, a value, a filter expression): exit
// status 2.
func badUsage(err error) bool {
	var u usageError
	return errors.Is(err, filter.ErrSyntax) || errors.As(err, &u)
}

// printCounts writes the closing line every command ends stderr with (sensor.CountsLine).
func printCounts(w io.Writer, withFilter bool, filtered, recorded, lost uint64) {
	fmt.Fprintln(w, sensor.CountsLine(withFilter, filtered, recorded, lost))
}
