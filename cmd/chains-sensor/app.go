package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/views"
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
	if badUsage(err) || errors.Is(err, errUsage) {
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
	flagMaxFlows  = "max-flows"
	flagFlowIdle  = "flow-idle"
	flagFlowAct   = "flow-active"
	flagDNSQueue  = "dns-max-pending"
	flagDNSMatch  = "dns-match-timeout"
)

// sharedFlags returns the flags every packet-printing command takes.
func sharedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagNoDNS, Aliases: []string{"no-dns"}, Usage: "no reverse DNS: show address classes only"},
		&cli.Uint64Flag{Name: flagCount, Aliases: []string{"count"}, Usage: "stop after `N` packets (0: no limit)"},
		&cli.StringFlag{Name: flagOutput, Aliases: []string{"output"}, Value: "text", Usage: "output `FORMAT`: text or json"},
		&cli.StringFlag{Name: flagView, Value: views.DefaultView, Usage: "`VIEW`: " + strings.Join(views.Names(), ", ")},
		&cli.StringFlag{Name: flagDNSServer, Usage: "reverse DNS through `HOST:PORT` instead of resolv.conf's servers"},
		&cli.BoolFlag{Name: flagUTC, Usage: "print times in UTC instead of local time"},
		&cli.StringFlag{Name: flagColor, Aliases: []string{"colour"}, Value: "auto", Usage: "colour: `auto`, always or never"},
		&cli.StringSliceFlag{Name: flagInternal, Usage: "more internal networks: `CIDR,...`"},
		&cli.StringFlag{Name: flagNames, Value: "both", Usage: "name public addresses from DNS answers seen on the `wire`, from PTR lookups (ptr), or both (a wire name wins)"},
		&cli.DurationFlag{Name: flagRDNSWait, Value: 200 * time.Millisecond, Usage: "longest wait (`DURATION`) of a packet for its reverse-DNS name"},
		&cli.IntFlag{Name: flagMaxFlows, Value: flows.DefaultMaxFlows, Usage: "`N` flows kept at most by urlwatch, weird-dns and flows (the least recently seen is evicted, and reported by flows)"},
		&cli.DurationFlag{Name: flagFlowIdle, Value: flows.DefaultIdleTimeout, Usage: "a flow ends after this `DURATION` without a packet"},
		&cli.DurationFlag{Name: flagFlowAct, Value: flows.DefaultActiveTimeout, Usage: "a flow open longer than `DURATION` is reported and counted afresh"},
		&cli.IntFlag{Name: flagDNSQueue, Value: protocols.DefaultMaxPending, Usage: "`N` DNS queries waiting for their response at most (the rest are not matched)"},
		&cli.DurationFlag{Name: flagDNSMatch, Value: protocols.DefaultMatchTimeout, Usage: "how long (`DURATION`) a DNS query waits for its response"},
	}
}

// configFromFlags resolves the shared flags into a views.Config. live says the source is a
// live capture; ifaces are the watched interfaces (their prefixes count as internal).
func configFromFlags(c *cli.Context, live bool, ifaces ...classify.Interface) (*views.Config, error) {
	cfg := &views.Config{
		NoDNS:  c.Bool(flagNoDNS),
		Count:  c.Uint64(flagCount),
		View:   c.String(flagView),
		UTC:    c.Bool(flagUTC),
		Ifaces: ifaces,
		Live:   live,
	}
	if s := c.String(flagDNSServer); s != "" {
		cfg.RDNS.Servers = []string{s}
	}
	mode, err := names.ParseMode(c.String(flagNames))
	if err != nil {
		return nil, err
	}
	cfg.Names = mode
	cfg.RDNS.Wait = c.Duration(flagRDNSWait)
	cfg.Flows.MaxFlows = c.Int(flagMaxFlows)
	cfg.Flows.IdleTimeout = c.Duration(flagFlowIdle)
	cfg.Flows.ActiveTimeout = c.Duration(flagFlowAct)
	cfg.DNS.MaxPending = c.Int(flagDNSQueue)
	cfg.DNS.MatchTimeout = c.Duration(flagDNSMatch)
	for name, positive := range map[string]bool{flagRDNSWait: cfg.RDNS.Wait > 0, flagMaxFlows: cfg.Flows.MaxFlows > 0,
		flagFlowIdle: cfg.Flows.IdleTimeout > 0, flagFlowAct: cfg.Flows.ActiveTimeout > 0,
		flagDNSQueue: cfg.DNS.MaxPending > 0, flagDNSMatch: cfg.DNS.MatchTimeout > 0} {
		if !positive {
			return nil, fmt.Errorf("--%s must be positive", name)
		}
	}
	if cfg.Format, err = sinks.ParseFormat(c.String(flagOutput)); err != nil {
		return nil, err
	}
	for _, s := range c.StringSlice(flagInternal) {
		p, err := classify.ParsePrefixes(s)
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
		cfg.Color = cfg.Format == sinks.FormatText && os.Getenv("NO_COLOR") == "" && isTerminal(c.App.Writer)
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
// stdout (buffered; flushed on a timer when live), with the outputs beside it (--publish,
// --log-dir). Close the pipeline at the end: it flushes, and closes the outputs.
func chainFromFlags(c *cli.Context, live bool, ifaces ...classify.Interface) (*views.Pipeline, *outputs, error) {
	cfg, err := configFromFlags(c, live, ifaces...)
	if err != nil {
		return nil, nil, err
	}
	outs, err := buildOutputs(c, c.App.ErrWriter)
	if err != nil {
		return nil, nil, err
	}
	cfg.Outputs = outs.list
	cfg.CountStages = outs.metrics != nil
	out := sinks.NewOutput(c.App.Writer, live)
	b, err := views.Build(cfg, out)
	if err != nil {
		out.Close()
		outs.close()
		return nil, nil, err
	}
	outs.setPipeline(b)
	return b, outs, nil
}
