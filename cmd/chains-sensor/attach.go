package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/urfave/cli/v2"
)

// attachCommand is `chains-sensor attach [flags] [IFACE...]`: the live sensor.
func attachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "watch interfaces live (both directions), one line per packet",
		ArgsUsage: "[IFACE...] | -i IFACE [-i IFACE...] [EXPRESSION...]",
		Description: "Attaches xdp_sensor to each interface's ingress and tc_sensor to its egress, prints what\n" +
			"they see until interrupted (SIGINT, SIGTERM) or -c N packets, detaches, and prints the\n" +
			"counters to stderr, ending with `<N> packets seen, <M> recorded, <L> lost`.\n" +
			"Without -i the words after the flags are interface names (none: the interface of the\n" +
			"default route); with -i, as in tcpdump, they are a filter expression.\n" +
			filterHelp + "\n" +
			"Needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; `chains-sensor check` says what is missing.",
		Flags:  append(append(append(append(sharedFlags(), attachFlags()...), filterFlags()...), writeFlags()...), outputFlags()...),
		Action: runAttach,
	}
}

func attachFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: flagIface, Aliases: []string{"interface"}, Usage: "watch `IFACE` (repeat for more); the words after the flags are then a filter expression"},
		&cli.StringFlag{Name: "direction", Value: "both", Usage: "watch `in` (ingress, XDP), out (egress, TC) or both"},
		&cli.StringFlag{Name: "xdp-mode", Value: "auto", Usage: "XDP attach `mode`: auto (native, else generic), native or generic"},
		&cli.StringFlag{Name: "tc-mode", Value: "auto", Usage: "egress attach `mode`: auto (TCX, else clsact), tcx or clsact"},
		&cli.IntFlag{Name: "stats-interval", Usage: "print the counters to stderr every `SECONDS` (0: only on exit)"},
		&cli.UintFlag{Name: "ring-size", Value: sensor.DefaultRingSize >> 20, Usage: "ring buffer size in `MiB` (a power of two)"},
		&cli.UintFlag{Name: "wakeup-bytes", Usage: "let the kernel wake the reader only each time another `BYTES` (a power of two) wait in the ring (0: the kernel's own policy)"},
		&cli.UintFlag{Name: "snap-small", Value: sensor.DefaultSnapSmall, Usage: "payload `BYTES` kept of ordinary packets"},
		&cli.UintFlag{Name: "snap-large", Value: sensor.DefaultSnapLarge, Usage: "payload `BYTES` kept of DNS, TLS handshakes and HTTP heads"},
		noDecapFlag(),
	}
}

// noDecapFlag is attach's and read's --no-decap.
func noDecapFlag() cli.Flag {
	return &cli.BoolFlag{Name: "no-decap", Usage: "enter no tunnel: show VXLAN, Geneve, GRE, ERSPAN, IP-in-IP and GTP-U packets as their outer packet"}
}

// attachSettings are the attach-only flags, checked.
type attachSettings struct {
	ifaces        []string
	attach        sensor.AttachOptions
	load          sensor.Config
	statsInterval time.Duration
	expr          string         // the filter expression ("" for none)
	write         *writeSettings // -w, or nil
}

func parseAttachFlags(c *cli.Context) (*attachSettings, error) {
	s := &attachSettings{ifaces: c.Args().Slice()}
	var words []string
	if dashI := c.StringSlice(flagIface); len(dashI) > 0 {
		s.ifaces, words = dashI, c.Args().Slice()
	}
	expr, err := expressionOf(c, words)
	if err != nil {
		return nil, err
	}
	s.expr = expr
	if s.write, err = parseWriteFlags(c); err != nil {
		return nil, err
	}
	if s.attach.Hooks, err = sensor.ParseHooks(c.String("direction")); err != nil {
		return nil, err
	}
	if s.attach.XDPMode, err = sensor.ParseXDPMode(c.String("xdp-mode")); err != nil {
		return nil, err
	}
	if s.attach.TCMode, err = sensor.ParseTCMode(c.String("tc-mode")); err != nil {
		return nil, err
	}
	if n := c.Int("stats-interval"); n < 0 {
		return nil, fmt.Errorf("--stats-interval %d: want 0 or more seconds", n)
	} else {
		s.statsInterval = time.Duration(n) * time.Second
	}
	ring := c.Uint("ring-size")
	if ring == 0 || ring&(ring-1) != 0 || ring > 1<<10 {
		return nil, fmt.Errorf("--ring-size %d: want a power of two from 1 to 1024 (MiB)", ring)
	}
	for _, f := range []string{"snap-small", "snap-large"} {
		if v := c.Uint(f); v == 0 || v > sensor.SnapMax {
			return nil, fmt.Errorf("--%s %d: want 1 to %d", f, v, sensor.SnapMax)
		}
	}
	s.load = sensor.Config{
		SnapSmall:   uint16(c.Uint("snap-small")),
		SnapLarge:   uint16(c.Uint("snap-large")),
		WakeupBytes: uint32(c.Uint("wakeup-bytes")),
		RingSize:    uint32(ring) << 20,
		NoDecap:     c.Bool("no-decap"),
	}
	if s.write != nil {
		// -w: every record carries its frame, up to the snap length (at most what a record carries).
		s.load.FrameSnap = min(s.write.snapLen, sensor.FrameMax)
	}
	if len(s.ifaces) == 0 {
		def, err := sensor.DefaultInterface()
		if err != nil {
			return nil, err
		}
		s.ifaces = []string{def}
	}
	// The expression before the interfaces: a bad one is bad usage whatever they are.
	if s.load.Filter, err = liveFilter(expr, s.ifaces); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	uniq := s.ifaces[:0]
	for _, n := range s.ifaces {
		if _, err := sensor.LookupInterface(n); err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			uniq = append(uniq, n)
		}
	}
	s.ifaces = uniq
	return s, nil
}

func runAttach(c *cli.Context) error {
	s, err := parseAttachFlags(c)
	if err != nil {
		return err
	}
	if missing := sensor.MissingCaps(); len(missing) > 0 {
		return fmt.Errorf("attach needs %s, which this process lacks: run as root (sudo), or grant "+
			"them with `sudo setcap cap_bpf,cap_net_admin,cap_perfmon+ep %s`",
			strings.Join(missing, ", "), os.Args[0])
	}
	ifaces, err := classify.LocalInterfaces(s.ifaces...)
	if err != nil {
		return err
	}
	lc, err := newLiveCapture(c, s)
	if err != nil {
		return err
	}
	var capture *sinks.CaptureConfig
	if lc != nil {
		capture = lc.config
	}
	chain, outs, err := chainFromFlags(c, true, capture, ifaces...)
	if err != nil {
		if lc != nil {
			lc.w.Close()
		}
		return err
	}
	return attachAndWatch(c.Context, s, chain, lc, outs, c.App.ErrWriter)
}

// attachAndWatch loads and attaches the sensor, runs the chain until a signal, -c or an error,
// detaches, drains the ring and prints the counters to stderr. Errors before the run are
// returned; an error that ends the run is printed before the counters (reportedError).
func attachAndWatch(ctx context.Context, s *attachSettings, chain *views.Pipeline, lc *liveCapture, outs *outputs, stderr io.Writer) error {
	// The sink is closed once: at the end of the run, or here when the run never starts.
	var sinkOnce sync.Once
	var sinkErr error
	closeSink := func() {
		sinkOnce.Do(func() {
			if err := chain.Close(); err != nil {
				sinkErr = fmt.Errorf("writing the output: %w", err)
			}
		})
	}
	defer closeSink()
	defer outs.closeMetrics()
	var statsMu sync.Mutex // one block of counters at a time on stderr
	finished := false      // the final counters are printed (guarded by statsMu)

	// Catch SIGINT and SIGTERM from the start: one that comes while loading or attaching is
	// handled as soon as the run starts (detach, drain, counters), never by dying half-attached.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	boot, err := sensor.BootTime()
	if err != nil {
		return err
	}
	objs, err := sensor.Load(s.load)
	if err != nil {
		return sensor.Explain(err)
	}
	defer objs.Close()

	// With the kernel's own wake-up policy (wakeup-bytes 0) a lone record wakes the reader at
	// once and Poll is only a safety net; with wakeup-bytes the kernel stays quiet below the
	// threshold, and Poll bounds how long a lone record waits (plus the output's 50 ms flush).
	ropts := sensor.ReaderOptions{Poll: 500 * time.Millisecond}
	if s.load.WakeupBytes != 0 {
		ropts.Poll = 40 * time.Millisecond
	}
	rd, err := sensor.NewReader(objs.Events, ropts)
	if err != nil {
		return err
	}
	defer rd.Close()

	att, err := sensor.Attach(objs.XDP, objs.TC, s.ifaces, s.attach)
	if err != nil {
		return err
	}
	var detachOnce sync.Once
	var detachErr error
	detach := func() { detachOnce.Do(func() { detachErr = att.Close() }) }
	defer detach()

	names := map[uint32]string{}
	for _, a := range att.Ifaces {
		names[uint32(a.Ifindex)] = a.Iface
		fmt.Fprintf(stderr, "attached to %s: ingress %s, egress %s\n", a.Iface, orNone(a.XDP), orNone(a.TC))
		for _, w := range a.Warnings {
			fmt.Fprintln(stderr, "warning:", w)
		}
	}
	live := sensor.NewLive(rd, sensor.Decoder{BootTime: boot, Frames: s.load.FrameSnap != 0}, names)
	if lc != nil {
		if err := lc.start(chain.Capture, objs, live, att); err != nil {
			return err
		}
	}
	if outs.metrics != nil {
		outs.metrics.col.set(func(c *sensorCollector) { c.objs, c.live, c.reader = objs, live, rd })
		defer outs.metrics.col.set(func(c *sensorCollector) { c.objs, c.live, c.reader = nil, nil, nil })
	}

	// Stop on SIGINT or SIGTERM: detach (no new records), then let the reader drain the ring.
	// A second signal, or a chain that does not finish within 3 s, closes the reader outright;
	// if even that does not end the run (say stdout blocks), print the counters and exit.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sig:
		case <-ctx.Done():
		case <-done:
			return
		}
		detach()
		rd.Stop()
		select {
		case <-sig:
		case <-time.After(3 * time.Second):
		case <-done:
			return
		}
		rd.Close()
		select {
		case <-sig:
		case <-time.After(3*time.Second + outs.grace()):
		case <-done:
			return
		}
		statsMu.Lock()
		if finished {
			statsMu.Unlock()
			return // the run printed its counters meanwhile
		}
		fmt.Fprintln(stderr, "chains-sensor: output blocked; exiting without flushing it")
		if k, err := sensor.ReadKernelCounts(objs); err == nil {
			sensor.WriteStats(stderr, k, live.Counts())
		}
		os.Exit(0)
	}()

	statsStop := make(chan struct{})
	var statsWG sync.WaitGroup
	if s.statsInterval > 0 {
		statsWG.Add(1)
		go func() {
			defer statsWG.Done()
			t := time.NewTicker(s.statsInterval)
			defer t.Stop()
			for {
				select {
				case <-statsStop:
					return
				case <-t.C:
					u := live.Counts() // before the kernel counters: seen >= recorded
					k, err := sensor.ReadKernelCounts(objs)
					statsMu.Lock()
					if err != nil {
						fmt.Fprintln(stderr, "stats:", err)
					} else {
						sensor.WriteStats(stderr, k, u)
					}
					statsMu.Unlock()
				}
			}
		}()
	}

	_, runErr := chain.Run(live.Packets())
	if fileLimitReached(runErr) {
		fmt.Fprintf(stderr, "chains-sensor: maximum file limit reached: %d\n", s.write.opt.Count)
		runErr = nil
	}
	if runErr == nil {
		runErr = live.Err()
	}
	// Detach, then read what is left in the ring (not printed past -c) so it is counted.
	detach()
	rd.Stop()
	if err := live.Drain(); err != nil && runErr == nil {
		runErr = err
	}
	close(statsStop)
	statsWG.Wait()
	closeSink()

	u := live.Counts()
	k, kerr := sensor.ReadKernelCounts(objs)
	err = errors.Join(runErr, sinkErr, detachErr, kerr)
	statsMu.Lock()
	defer statsMu.Unlock()
	finished = true
	if err != nil {
		fmt.Fprintf(stderr, "chains-sensor: %v\n", err)
	}
	for _, l := range outs.lines() {
		fmt.Fprintln(stderr, l)
	}
	if kerr != nil {
		// Without the kernel's side, user space's count is all there is: print it as the total.
		printCounts(stderr, false, 0, u.Decoded, u.Undecodable)
	} else {
		sensor.WriteStats(stderr, k, u)
	}
	if err != nil {
		return reportedError{err}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "not watched"
	}
	return s
}
