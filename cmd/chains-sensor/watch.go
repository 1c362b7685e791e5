package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/chains-sensor/chains-sensor/stages/fleet"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/urfave/cli/v2"
)

const (
	flagDurable = "durable"
	flagSince   = "since"
	flagWindow  = "window"
	flagKinds   = "kinds"
)

// watchCommand is `chains-sensor watch nats://HOST:PORT[,...]`: the fleet's lines, merged in
// time order, from the stream the sensors publish to.
func watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "print the fleet's net_watch lines, each with its host, from the JetStream stream the sensors publish to",
		ArgsUsage: "nats://HOST:PORT[,nats://HOST:PORT...]",
		Description: "A durable consumer (--durable) reads the stream: a later watch with the same name goes on\n" +
			"where this one stopped; --since replays from a time (the consumer is made afresh). Records of\n" +
			"several hosts are held --window and printed in the order of their times. A message that is no\n" +
			"record is counted and skipped, and a record stored twice is printed once. The counters go to\n" +
			"stderr at the end (SIGINT, SIGTERM or -c).\n\n" +
			"A line: YYYY-MM-DD HH:MM:SS HOST - <the net_watch line after its time>; with --kinds other\n" +
			"than packet: YYYY-MM-DD HH:MM:SS HOST KIND <the -o json object>; -o json prints each record\n" +
			"as stored (the envelope with host, run, seq, kind, ts, line and data).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagStream, Value: fleet.DefaultStream, Usage: "the JetStream stream `NAME`"},
			&cli.StringFlag{Name: flagDurable, Usage: "the consumer's durable `NAME` [watch-<this host>]"},
			&cli.StringFlag{Name: flagSince, Usage: "replay from `TIME` (RFC 3339, or a duration ago: 10m)"},
			&cli.DurationFlag{Name: flagWindow, Value: fleet.DefaultMergeWindow, Usage: "hold records this `DURATION` to print them in time order"},
			&cli.StringFlag{Name: flagKinds, Value: fleet.KindPacket, Usage: "the `KINDS` of records to print: all, or some of packet,flow,dns,http,tls"},
			&cli.Uint64Flag{Name: flagCount, Aliases: []string{"count"}, Usage: "stop after `N` records (0: no limit)"},
			&cli.StringFlag{Name: flagOutput, Aliases: []string{"output"}, Value: "text", Usage: "output `FORMAT`: text or json"},
			&cli.BoolFlag{Name: flagUTC, Usage: "print times in UTC instead of local time"},
		},
		Action: runWatch,
	}
}

// watchSettings are watch's flags, checked.
type watchSettings struct {
	urls  []string
	cfg   fleet.WatchConfig
	count uint64
	json  bool
	utc   bool
}

func parseWatchFlags(c *cli.Context, now time.Time) (*watchSettings, error) {
	if c.NArg() != 1 {
		return nil, usageErrorf("watch takes one argument: nats://HOST:PORT[,...]")
	}
	urls, err := fleet.ParseURLs(c.Args().First())
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	s := &watchSettings{urls: urls, count: c.Uint64(flagCount), utc: c.Bool(flagUTC)}
	switch f, err := sinks.ParseFormat(c.String(flagOutput)); {
	case err != nil:
		return nil, usageErrorf("-%s: %v", flagOutput, err)
	default:
		s.json = f == sinks.FormatJSON
	}
	kinds, err := fleet.ParseKinds(c.String(flagKinds))
	if err != nil {
		return nil, usageErrorf("--%s: %v", flagKinds, err)
	}
	durable := c.String(flagDurable)
	if durable == "" {
		h, _ := os.Hostname()
		durable = fleet.DurableName(h)
	} else if fleet.HostToken(durable) != durable {
		return nil, usageErrorf("--%s %q: letters, digits, - and _ only", flagDurable, durable)
	}
	if st := c.String(flagStream); st == "" || strings.ContainsAny(st, ".*> \t") {
		return nil, usageErrorf("--%s %q: a stream name has no dots, wildcards or spaces", flagStream, st)
	}
	if c.Duration(flagWindow) <= 0 {
		return nil, usageErrorf("--%s must be positive", flagWindow)
	}
	s.cfg = fleet.WatchConfig{Stream: c.String(flagStream), Durable: durable, Kinds: kinds, Window: c.Duration(flagWindow)}
	if v := c.String(flagSince); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			s.cfg.Since = now.Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			s.cfg.Since = t
		} else {
			return nil, usageErrorf("--%s %q: want an RFC 3339 time (2006-01-02T15:04:05Z) or a duration ago (10m)", flagSince, v)
		}
	}
	return s, nil
}

// runWatch follows the stream until a signal, -c or an error; the counters go to stderr.
func runWatch(c *cli.Context) error {
	s, err := parseWatchFlags(c, time.Now())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	stderr := c.App.ErrWriter
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "watch: "+format+"\n", args...) }
	nc, err := fleet.Connect(s.urls, "chains-sensor watch", logf)
	if err != nil {
		return err
	}
	defer nc.Close()
	if !nc.IsConnected() {
		logf("no NATS server answers at %s yet: waiting", strings.Join(s.urls, ","))
	}
	out := sinks.NewOutput(c.App.Writer, true) // flushed every sinks.FlushInterval
	p := &watchPrinter{out: out, clk: sinks.NewClock(s.utc), json: s.json}
	var given uint64
	st, werr := fleet.Watch(ctx, nc, s.cfg, func(it *fleet.Item) error {
		if err := p.print(it); err != nil {
			return err
		}
		given++
		if s.count != 0 && given >= s.count {
			return fleet.ErrStop
		}
		return nil
	}, logf)
	ferr := out.Close()
	fmt.Fprintln(stderr, st.Line())
	switch {
	case werr != nil && !errors.Is(werr, context.Canceled):
		return werr
	case ferr != nil:
		return fmt.Errorf("writing the output: %w", ferr)
	}
	return nil
}

// watchPrinter prints records as watch's lines.
type watchPrinter struct {
	out  *sinks.Output
	clk  *sinks.Clock
	json bool
	b    []byte
}

func (p *watchPrinter) print(it *fleet.Item) error {
	b := p.b[:0]
	if p.json {
		b = appendJSONSafe(b, it.Raw)
	} else {
		b = p.clk.AppendSeconds(b, it.TS)
		b = append(b, ' ')
		// What a publisher wrote is not trusted: host and line are escaped for the terminal.
		b = append(b, termSafe(it.Host)...)
		if it.Kind == fleet.KindPacket {
			b = append(b, " - "...)
			b = append(b, termSafe(it.Line)...)
		} else {
			b = append(b, ' ')
			b = append(b, termSafe(it.Kind)...)
			b = append(b, ' ')
			b = appendJSONSafe(b, it.Data)
		}
	}
	b = append(b, '\n')
	p.b = b
	return p.out.Write(b)
}

// unsafeRune is a rune a terminal must not get raw: a C0 or C1 control, DEL, a line or
// paragraph separator, a byte-order mark, or a byte of invalid UTF-8.
func unsafeRune(r rune, size int) bool {
	return r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029 || r == 0xfeff ||
		(r == utf8.RuneError && size <= 1)
}

// termSafe returns a publisher's text as it is when a terminal may show it (a sensor's line is
// escaped already: its backslashes stay single), or else escaped by sinks.Text.
func termSafe(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unsafeRune(r, n) {
			return sinks.Text(s)
		}
		i += n
	}
	return s
}

// appendJSONSafe appends JSON that json.Unmarshal accepted, with the runes a terminal must not
// get raw (which JSON allows inside strings: C1 controls, separators, invalid bytes) written as
// \u escapes (an invalid byte as U+FFFD, as encoding/json reads it); the whitespace between
// tokens as spaces: a record is one line.
func appendJSONSafe(b, js []byte) []byte {
	for i := 0; i < len(js); {
		r, n := utf8.DecodeRune(js[i:])
		switch {
		case r < 0x20: // whitespace between tokens (raw controls are no JSON inside strings)
			b = append(b, ' ')
		case unsafeRune(r, n):
			b = fmt.Appendf(b, "\\u%04x", r)
		default:
			b = append(b, js[i:i+n]...)
		}
		i += n
	}
	return b
}
