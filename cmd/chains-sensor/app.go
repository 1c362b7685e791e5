package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// newApp builds the command-line application writing to stdout and stderr.
func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "chains-sensor",
		Usage:     "who talks to whom: packets parsed in the kernel, enriched and printed in user space",
		Commands:  commands(),
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are printed by run, exit codes decided there: never os.Exit inside the app.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// run runs the application and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	err := newApp(stdout, stderr).Run(args)
	if err == nil {
		return 0
	}
	var rep reportedError
	if !errors.As(err, &rep) {
		fmt.Fprintf(stderr, "chains-sensor: %v\n", err)
	}
	if badUsage(err) {
		return 2
	}
	return 1
}

// reportedError is an error the command already printed (before its closing counters line).
type reportedError struct{ error }

// Unwrap lets errors.Is see the cause (bad usage exits 2).
func (r reportedError) Unwrap() error { return r.error }

// Shared flag names (DESIGN.md): every command that prints packets takes them.
const (
	flagNoDNS     = "n"
	flagCount     = "c"
	flagOutput    = "o"
	flagView      = "view"
	flagDNSServer = "dns-server"
	flagUTC       = "utc"
	flagColor     = "color"
	flagInternal  = "internal"
	flagRDNSWait  = "rdns-wait"
	flagNames     = "names"
)

// sharedFlags returns the flags every packet-printing command takes.
func sharedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagNoDNS, Aliases: []string{"no-dns"}, Usage: "no reverse DNS: show address classes only"},
		&cli.Uint64Flag{Name: flagCount, Aliases: []string{"count"}, Usage: "stop after `N` packets (0: no limit)"},
		&cli.StringFlag{Name: flagOutput, Aliases: []string{"output"}, Value: "text", Usage: "output `FORMAT`: text or json"},
		&cli.StringFlag{Name: flagView, Value: stages.DefaultView, Usage: "`VIEW`: " + strings.Join(stages.ViewNames(), ", ")},
		&cli.StringFlag{Name: flagDNSServer, Usage: "reverse DNS through `HOST:PORT` instead of resolv.conf's servers"},
		&cli.BoolFlag{Name: flagUTC, Usage: "print times in UTC instead of local time"},
		&cli.StringFlag{Name: flagColor, Aliases: []string{"colour"}, Value: "auto", Usage: "colour: `auto`, always or never"},
		&cli.StringSliceFlag{Name: flagInternal, Usage: "more internal networks: `CIDR,...`"},
		&cli.StringFlag{Name: flagNames, Value: "both", Usage: "name public addresses from DNS answers seen on the `wire`, from PTR lookups (ptr), or both (a wire name wins)"},
		&cli.DurationFlag{Name: flagRDNSWait, Value: 200 * time.Millisecond, Usage: "longest a packet waits for its reverse-DNS name"},
	}
}

// configFromFlags resolves the shared flags into a stages.Config. live says the source is a
// live capture; ifaces are the watched interfaces (their prefixes count as internal).
func configFromFlags(c *cli.Context, live bool, ifaces ...stages.Interface) (*stages.Config, error) {
	cfg := &stages.Config{
		NoDNS:     c.Bool(flagNoDNS),
		Count:     c.Uint64(flagCount),
		Format:    c.String(flagOutput),
		View:      c.String(flagView),
		DNSServer: c.String(flagDNSServer),
		UTC:       c.Bool(flagUTC),
		Ifaces:    ifaces,
		Live:      live,
	}
	names, err := stages.ParseNamesMode(c.String(flagNames))
	if err != nil {
		return nil, err
	}
	cfg.Names = names
	cfg.RDNS.Wait = c.Duration(flagRDNSWait)
	if cfg.RDNS.Wait <= 0 {
		return nil, fmt.Errorf("--%s must be positive", flagRDNSWait)
	}
	switch cfg.Format {
	case "text", "json":
	default:
		return nil, fmt.Errorf("-o %q: the output format is text or json", cfg.Format)
	}
	for _, s := range c.StringSlice(flagInternal) {
		p, err := stages.ParsePrefixes(s)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagInternal, err)
		}
		cfg.Internal = append(cfg.Internal, p...)
	}
	switch c.String(flagColor) {
	case "always":
		cfg.Color = true
	case "never":
	case "auto":
		cfg.Color = cfg.Format == "text" && os.Getenv("NO_COLOR") == "" && isTerminal(c.App.Writer)
	default:
		return nil, fmt.Errorf("--%s %q: auto, always or never", flagColor, c.String(flagColor))
	}
	return cfg, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// chainFromFlags builds the chain and sink the shared flags ask for, writing to the app's
// stdout (buffered; flushed on a timer when live). Close the sink at the end: it flushes.
// The returned Built also carries the reverse-DNS resolver (nil with -n) for its statistics.
func chainFromFlags(c *cli.Context, live bool, ifaces ...stages.Interface) (*stages.Built, *stages.Config, error) {
	cfg, err := configFromFlags(c, live, ifaces...)
	if err != nil {
		return nil, nil, err
	}
	out := stages.NewOutput(c.App.Writer, live)
	b, err := stages.Build(cfg, out)
	if err != nil {
		out.Close()
		return nil, nil, err
	}
	return b, cfg, nil
}
