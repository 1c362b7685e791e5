package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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
	app := newApp(stdout, stderr)
	err := app.Run(flagsFirst(app, args))
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

// flagsFirst moves a command's flags that come after its other arguments before them, as
// getopt lets tcpdump take them (`read FILE -w OUT`, `attach -i eth0 icmp -w -`): urfave/cli
// stops at the first argument that is not a flag. Only words that name one of the command's
// flags move (with the value a flag takes); "--" ends the flags, and every other word (a
// filter expression's "-" among them) keeps its place.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return args
	}
	var cmd *cli.Command
	for _, c := range app.Commands {
		if c.Name == args[1] || slices.Contains(c.Aliases, args[1]) {
			cmd = c
		}
	}
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, rest []string
	for i := 2; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		tv, known := takesValue[name]
		if !strings.HasPrefix(a, "-") || a == "-" || !known {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		if tv && !hasValue && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return append(append(args[:2:2], flags...), rest...)
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
		lines := c.App.Writer
		if c.String(flagWrite) == "-" {
			lines = c.App.ErrWriter
		}
		cfg.Color = cfg.Format == sinks.FormatText && os.Getenv("NO_COLOR") == "" && isTerminal(lines)
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
// stdout (buffered; flushed on a timer when live), or to stderr when -w - has stdout, or
// nowhere with -q; capture, when set, is the -w sink beside it, and the outputs (--publish,
// the Zeek logs when they come) are beside it too. Close the pipeline at the end: it flushes, and closes the outputs.
func chainFromFlags(c *cli.Context, live bool, capture *sinks.CaptureConfig, ifaces ...classify.Interface) (*views.Pipeline, *outputs, error) {
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
	cfg.Capture, cfg.Quiet = capture, c.Bool(flagQuiet)
	w := c.App.Writer
	if c.String(flagWrite) == "-" {
		w = c.App.ErrWriter
	}
	out := sinks.NewOutput(w, live)
	b, err := views.Build(cfg, out)
	if err != nil {
		out.Close()
		outs.close()
		return nil, nil, err
	}
	outs.setPipeline(b)
	return b, outs, nil
}
