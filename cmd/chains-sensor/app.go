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
	"github.com/chains-sensor/chains-sensor/stages/owners"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// newApp builds the command-line application writing to stdout and stderr.
func newApp(stdout, stderr io.Writer) *cli.App {
	cmds := commands()
	for _, cmd := range cmds {
		// A flag that does not parse: the error and the command's usage, on stderr.
		cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			fmt.Fprintf(stderr, "chains-sensor %s: %v\n\n", cmd.Name, err)
			cli.HelpPrinter(stderr, cli.CommandHelpTemplate, cmd)
			return reportedError{usageError{err}}
		}
	}
	return &cli.App{
		Name:      "chains-sensor",
		Usage:     "who talks to whom: packets parsed in the kernel, enriched and printed in user space",
		Commands:  cmds,
		Writer:    stdout,
		ErrWriter: stderr,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("no command %q (commands: read, attach, check; --help lists them)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			fmt.Fprintf(stderr, "chains-sensor: %v\n\n", err)
			cli.HelpPrinter(stderr, cli.AppHelpTemplate, c.App)
			return reportedError{usageError{err}}
		},
		// Errors are printed by run, exit codes decided there: never os.Exit inside the app.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// run runs the application and returns the exit status: the one place errors become exit
// statuses (exitStatus).
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(flagsFirst(app, args))
	var rep reportedError
	if err != nil && !errors.As(err, &rep) {
		fmt.Fprintf(stderr, "chains-sensor: %v\n", err)
		if badUsage(err) && len(args) > 1 {
			fmt.Fprintf(stderr, "(`chains-sensor %s --help` shows the usage)\n", args[1])
		}
	}
	return exitStatus(err)
}

// exitStatus maps the error a command returned to the exit status (DESIGN.md): 0 when the
// run ended as asked (nil: end of input, -c N, a signal), 2 for bad usage (a flag, a value, a
// filter expression: usageError, filter.ErrSyntax), 1 for any other error.
func exitStatus(err error) int {
	switch {
	case err == nil:
		return exitOK
	case badUsage(err):
		return exitUsage
	}
	return exitError
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

// usageError is bad usage: a flag or value the command cannot take. It exits 2, before
// anything is attached or read, with no counters line.
type usageError struct{ error }

// Unwrap returns the error the value gave.
func (u usageError) Unwrap() error { return u.error }

// usageErrorf is a usageError with a message.
func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// asUsage marks err (if any) as bad usage.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// Shared flag names (DESIGN.md): every command that prints packets takes them.
const (
	flagNoDNS      = "n"
	flagCount      = "c"
	flagOutput     = "o"
	flagView       = "view"
	flagDNSServer  = "dns-server"
	flagUTC        = "utc"
	flagColor      = "color"
	flagInternal   = "internal"
	flagRDNSWait   = "rdns-wait"
	flagNames      = "names"
	flagMaxFlows   = "max-flows"
	flagWireNames  = "wire-names"
	flagFlowIdle   = "flow-idle"
	flagFlowAct    = "flow-active"
	flagDNSQueue   = "dns-max-pending"
	flagDNSClients = "dns-max-clients"
	flagQUICConns  = "quic-max-handshakes"
	flagDNSMatch   = "dns-match-timeout"

	flagRDNSCache    = "rdns-cache"
	flagRDNSInflight = "rdns-max-inflight"
	flagRDNSHeld     = "rdns-max-held"
	flagRDNSTimeout  = "rdns-timeout"
	flagRDNSRate     = "rdns-rate"
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
		&cli.StringFlag{Name: flagNames, Value: "both", Usage: "name public addresses from DNS answers seen on the `wire` (only answers to queries seen: wire alone sends no lookup), from PTR lookups (ptr), or both (a wire name wins)"},
		&cli.DurationFlag{Name: flagRDNSWait, Value: names.DefaultWait, Usage: "longest wait (`DURATION`) of a packet for its reverse-DNS name"},
		&cli.DurationFlag{Name: flagRDNSTimeout, Value: names.DefaultTimeout, Usage: "how long (`DURATION`) a PTR query waits for each server's answer (then the address shows its class, and JSON says \"timeout\")"},
		&cli.IntFlag{Name: flagRDNSCache, Value: names.DefaultCacheSize, Usage: "`N` reverse-DNS names and failures cached at most (scan-resistant: addresses seen once do not push out those seen again)"},
		&cli.IntFlag{Name: flagRDNSInflight, Value: names.DefaultQueue, Usage: "`N` PTR lookups waiting or running at most (an address past it is looked up when it comes again)"},
		&cli.IntFlag{Name: flagRDNSRate, Value: names.DefaultRate, Usage: "`N` PTR lookups started per second at most (a scan of many addresses costs no more than that; the others are looked up when they come again)"},
		&cli.IntFlag{Name: flagRDNSHeld, Value: names.DefaultMaxHeld, Usage: "`N` packets held back for their names at most (past it they are printed with what is known)"},
		&cli.IntFlag{Name: flagWireNames, Value: names.DefaultWireSize, Usage: "`N` names learned from DNS answers on the wire kept at most (the oldest learned is evicted)"},
		&cli.IntFlag{Name: flagMaxFlows, Value: flows.DefaultMaxFlows, Usage: "`N` flows kept at most by urlwatch, weird-dns and flows (the least recently seen is evicted, and reported by flows)"},
		&cli.DurationFlag{Name: flagFlowIdle, Value: flows.DefaultIdleTimeout, Usage: "a flow ends after this `DURATION` without a packet"},
		&cli.DurationFlag{Name: flagFlowAct, Value: flows.DefaultActiveTimeout, Usage: "a flow open longer than `DURATION` is reported and counted afresh"},
		&cli.IntFlag{Name: flagDNSQueue, Value: protocols.DefaultMaxPending, Usage: "`N` DNS queries waiting for their response at most (a new one evicts the oldest, counted at exit)"},
		&cli.IntFlag{Name: flagDNSClients, Value: protocols.DefaultMaxClients, Usage: "`N` DNS clients tracked for NXDOMAIN bursts at most (a new one evicts the one heard of least recently, counted at exit)"},
		&cli.IntFlag{Name: flagQUICConns, Value: protocols.DefaultQUICConns, Usage: "`N` QUIC handshakes followed at once at most by the App views (a new one evicts the oldest, counted at exit)"},
		&cli.DurationFlag{Name: flagDNSMatch, Value: protocols.DefaultMatchTimeout, Usage: "how long (`DURATION`) a DNS query waits for its response"},
	}
}

// configFromFlags resolves the shared flags into a views.Config. live says the source is a
// live capture; ifaces are the watched interfaces (their prefixes count as internal). A value
// it refuses is bad usage (usageError).
func configFromFlags(c *cli.Context, live bool, ifaces ...classify.Interface) (*views.Config, error) {
	cfg := &views.Config{
		NoDNS:  c.Bool(flagNoDNS),
		Count:  c.Uint64(flagCount),
		View:   c.String(flagView),
		UTC:    c.Bool(flagUTC),
		Ifaces: ifaces,
		Live:   live,
	}
	if _, ok := views.Lookup(cfg.View); !ok {
		return nil, usageErrorf("--%s %q: want %s", flagView, cfg.View, strings.Join(views.Names(), ", "))
	}
	if s := c.String(flagDNSServer); c.IsSet(flagDNSServer) {
		srv, err := parseServer(flagDNSServer, s)
		if err != nil {
			return nil, err
		}
		cfg.RDNS.Servers = []string{srv}
	}
	mode, err := names.ParseMode(c.String(flagNames))
	if err != nil {
		return nil, asUsage(err)
	}
	cfg.Names = mode
	ints := []struct {
		dst    *int
		name   string
		lo, hi int
	}{
		{&cfg.Flows.MaxFlows, flagMaxFlows, 1, 1 << 24},
		{&cfg.WireSize, flagWireNames, 1, 1 << 24},
		{&cfg.DNS.MaxPending, flagDNSQueue, 1, 1 << 24},
		{&cfg.DNS.MaxClients, flagDNSClients, 1, 1 << 24},
		{&cfg.QUIC.MaxConns, flagQUICConns, 1, 1 << 24},
		{&cfg.RDNS.CacheSize, flagRDNSCache, 1, 1 << 24},
		{&cfg.RDNS.Queue, flagRDNSInflight, 1, 1 << 20},
		{&cfg.RDNS.MaxHeld, flagRDNSHeld, 1, 1 << 20},
		{&cfg.RDNS.Rate, flagRDNSRate, 1, 1 << 20},
	}
	for _, f := range ints {
		if *f.dst, err = intIn(c, f.name, f.lo, f.hi); err != nil {
			return nil, err
		}
	}
	durs := []struct {
		dst    *time.Duration
		name   string
		lo, hi time.Duration
	}{
		{&cfg.RDNS.Wait, flagRDNSWait, time.Millisecond, time.Minute},
		{&cfg.RDNS.Timeout, flagRDNSTimeout, time.Millisecond, time.Minute},
		{&cfg.Flows.IdleTimeout, flagFlowIdle, time.Millisecond, 7 * 24 * time.Hour},
		{&cfg.Flows.ActiveTimeout, flagFlowAct, time.Millisecond, 7 * 24 * time.Hour},
		{&cfg.DNS.MatchTimeout, flagDNSMatch, time.Nanosecond, time.Hour},
	}
	for _, f := range durs {
		if *f.dst, err = durationIn(c, f.name, f.lo, f.hi); err != nil {
			return nil, err
		}
	}
	if cfg.Format, err = sinks.ParseFormat(c.String(flagOutput)); err != nil {
		return nil, asUsage(err)
	}
	for _, s := range c.StringSlice(flagInternal) {
		p, err := classify.ParsePrefixes(s)
		if err != nil {
			return nil, usageErrorf("--%s: %w", flagInternal, err)
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
		return nil, oneOf(flagColor, c.String(flagColor), "auto", "always", "never")
	}
	if err := checkOutputFlags(c); err != nil {
		return nil, err
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
// the Zeek logs of --log-dir) are beside it too; own, when set, names the cgroups of the
// packets' processes. Close the pipeline at the end: it flushes, and closes the outputs.
func chainFromFlags(c *cli.Context, live bool, capture *sinks.CaptureConfig, own *owners.Resolver, ifaces ...classify.Interface) (*views.Pipeline, *outputs, error) {
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
	cfg.Capture, cfg.Quiet, cfg.Owners = capture, c.Bool(flagQuiet), own
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
