package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
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
		Flags:  append(append(append(append(append(sharedFlags(), attachFlags()...), ownerFlags()...), filterFlags()...), writeFlags()...), outputFlags()...),
		Action: runAttach,
	}
}

func attachFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: flagIface, Aliases: []string{"interface"}, Usage: "watch `IFACE` (repeat for more); the words after the flags are then a filter expression"},
		&cli.StringFlag{Name: "direction", Value: "both", Usage: "watch `in` (ingress, XDP), out (egress, TC) or both"},
		&cli.StringFlag{Name: "xdp-mode", Value: "auto", Usage: "XDP attach `mode`: auto (native, else generic), native or generic"},
		&cli.StringFlag{Name: "tc-mode", Value: "auto", Usage: "egress attach `mode`: auto (TCX, else clsact), tcx or clsact"},
		&cli.Int64Flag{Name: "stats-interval", Usage: "print the counters to stderr every `SECONDS` (0: only on exit; at most a day)"},
		&cli.Uint64Flag{Name: "ring-size", Value: sensor.DefaultRingSize >> 20, Usage: "ring buffer size in `MiB` (a power of two)"},
		&cli.Uint64Flag{Name: "wakeup-bytes", Usage: "let the kernel wake the reader only each time another `BYTES` (a power of two) wait in the ring (0: the kernel's own policy)"},
		&cli.Uint64Flag{Name: "snap-small", Value: sensor.DefaultSnapSmall, Usage: "payload `BYTES` kept of ordinary packets"},
		&cli.Uint64Flag{Name: "snap-large", Value: sensor.DefaultSnapLarge, Usage: "payload `BYTES` kept of DNS, TLS handshakes and HTTP heads"},
		&cli.Uint64Flag{Name: "follow-flows", Value: sensor.DefaultFollowFlows, Usage: "TCP directions whose continuation segments get the large class at once: the kernel's follow table's `BOUND` (the oldest are evicted, counted at exit)"},
		&cli.Uint64Flag{Name: "follow-bytes", Value: sensor.DefaultFollowBytes, Usage: "follow at most `BYTES` of a TCP direction's message (HTTP head, TLS record) or first bytes"},
		&cli.BoolFlag{Name: "no-follow", Usage: "give continuation segments the small class: only a segment that starts a TLS record or an HTTP head is captured whole"},
		&cli.BoolFlag{Name: "reattach", Usage: "attach again to a watched interface that disappears and comes back under its name (else the run ends once none is left)"},
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
	reattach      bool
	json          bool           // -o json: the exit statistics as JSON too
	expr          string         // the filter expression ("" for none)
	write         *writeSettings // -w, or nil
	maxCgroups    int            // --max-cgroups: the cgroup cache's bound
}

func parseAttachFlags(c *cli.Context) (*attachSettings, error) {
	s := &attachSettings{ifaces: c.Args().Slice(), reattach: c.Bool("reattach")}
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
	// Every value before anything is looked up: a bad one is bad usage (exit 2), whatever the
	// interfaces and privileges.
	if _, err := configFromFlags(c, true); err != nil {
		return nil, err
	}
	if s.attach.Hooks, err = sensor.ParseHooks(c.String("direction")); err != nil {
		return nil, asUsage(err)
	}
	if s.attach.XDPMode, err = sensor.ParseXDPMode(c.String("xdp-mode")); err != nil {
		return nil, asUsage(err)
	}
	if s.attach.TCMode, err = sensor.ParseTCMode(c.String("tc-mode")); err != nil {
		return nil, asUsage(err)
	}
	if s.statsInterval, err = statsInterval(c, "stats-interval"); err != nil {
		return nil, err
	}
	ring := c.Uint64("ring-size")
	if ring == 0 || ring&(ring-1) != 0 || ring > 1<<10 {
		return nil, usageErrorf("--ring-size %d: want a power of two from 1 to 1024 (MiB)", ring)
	}
	for _, f := range []string{"snap-small", "snap-large"} {
		if _, err := uintIn(c, f, 1, sensor.SnapMax); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"follow-flows", "follow-bytes"} {
		if _, err := uintIn(c, f, 1, 1<<24); err != nil {
			return nil, err
		}
	}
	wake := c.Uint64("wakeup-bytes")
	if wake&(wake-1) != 0 || wake >= ring<<20 {
		return nil, usageErrorf("--wakeup-bytes %d: want 0 (the kernel's policy) or a power of two below the ring size (%d MiB)", wake, ring)
	}
	s.load = sensor.Config{
		FollowFlows: uint32(c.Uint64("follow-flows")),
		FollowBytes: uint32(c.Uint64("follow-bytes")),
		NoFollow:    c.Bool("no-follow"),
		SnapSmall:   uint16(c.Uint64("snap-small")),
		SnapLarge:   uint16(c.Uint64("snap-large")),
		WakeupBytes: uint32(wake),
		RingSize:    uint32(ring) << 20,
		NoDecap:     c.Bool("no-decap"),
	}
	if s.write != nil {
		// -w: every record carries its frame, up to the snap length (at most what a record carries).
		s.load.FrameSnap = min(s.write.snapLen, sensor.FrameMax)
	}
	if err := parseOwnerFlags(c, s); err != nil {
		return nil, err
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
	wc, err := newLiveCapture(c, s)
	if err != nil {
		return err
	}
	var capture *sinks.CaptureConfig
	if wc != nil {
		capture = wc.config
	}
	chain, outs, err := chainFromFlags(c, true, capture, ownerResolver(s), ifaces...)
	if err != nil {
		if wc != nil {
			wc.w.Close()
		}
		return err
	}
	s.json = c.String(flagOutput) == "json"
	return attachAndWatch(s, chain, wc, outs, c.App.Writer, c.App.ErrWriter)
}

// attachAndWatch loads and attaches the sensor, runs the chain until a stop (a signal, -c, an
// error, the last interface gone, -W's last file), detaches, drains the ring and prints the
// counters to stderr. Errors before the run are returned; an error that ends the run is
// printed before the counters (reportedError). wc is -w's file, or nil; outs are the outputs
// beside the view (closed with the chain, the metrics last).
func attachAndWatch(s *attachSettings, chain *views.Pipeline, wc *liveCapture, outs *outputs, stdout, stderr io.Writer) error {
	// Signals are caught from the start: one that comes while loading or attaching is
	// handled as soon as the run starts (detach, drain, counters), never by dying half-attached.
	lc := newLifecycle(stderr)
	lc.Closer("", func() error { return outputError(chain.Close()) })
	lc.drain = outs.grace() // closing the chain drains the publisher
	defer outs.closeMetrics()
	started := false
	defer func() {
		if !started {
			lc.abandon()
		}
	}()

	boot, err := sensor.BootTime()
	if err != nil {
		return err
	}
	objs, ownLinks, err := loadWithOwner(s.load, stderr)
	if err != nil {
		return sensor.Explain(err)
	}
	defer objs.Close()
	if ownLinks != nil {
		defer ownLinks.Close()
	}

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

	// Follow the interfaces from before attaching, so that none goes unnoticed.
	links, err := sensor.WatchLinks()
	if err != nil {
		return err
	}
	defer links.Close()

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
	if wc != nil {
		if err := wc.start(chain.Capture, objs, live, att); err != nil {
			return err
		}
	}
	started = true
	if outs.metrics != nil {
		outs.metrics.col.set(func(c *sensorCollector) { c.objs, c.live, c.reader = objs, live, rd })
		defer outs.metrics.col.set(func(c *sensorCollector) { c.objs, c.live, c.reader = nil, nil, nil })
	}

	// A stop detaches (no new records), then lets the reader drain the ring into the chain.
	// If the chain does not finish (a second signal, or 3 s), the rest of the ring is only
	// counted; if even that does not end the run (stdout blocks), the counters are printed
	// with the rest of the ring counted by a fresh reader, and the process exits.
	lc.OnStop(func() { detach(); rd.Stop(); chain.Hurry() })
	lc.OnForce(live.Quiet)
	lc.lastWords = func(w io.Writer) {
		detach()
		rd.Close()
		if err := live.DrainWith(objs.Events); err != nil {
			fmt.Fprintln(w, "chains-sensor: counting the rest of the ring:", err)
		}
		writeLiveStats(w, objs, live, ownLinks != nil)
	}
	watchOutput(stdout, lc.Fail)
	go followLinks(links, s, att, live, lc, wc, stderr)

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
					lc.Locked(func() { writeLiveStats(stderr, objs, live, ownLinks != nil) })
				}
			}
		}()
	}

	_, runErr := chain.Run(live.Packets())
	if fileLimitReached(runErr) {
		lc.Locked(func() { fmt.Fprintf(stderr, "chains-sensor: maximum file limit reached: %d\n", s.write.opt.Count) })
		runErr = nil
	}
	runErr = outputError(runErr)
	if runErr == nil {
		runErr = live.Err()
	}
	// Detach, then read what is left in the ring (not printed past -c) so it is counted.
	lc.Stop()
	if err := live.Drain(); err != nil && runErr == nil {
		runErr = err
	}
	close(statsStop)
	statsWG.Wait()
	return lc.finish("", errors.Join(runErr, detachErr), func(w io.Writer) {
		writeChainStats(w, chain, s.json)
		outs.writeLines(w)
		writeLiveStats(w, objs, live, ownLinks != nil)
	})
}

// writeLiveStats prints the counters of a live run: per interface, the kernel's, user
// space's, and the closing counters line.
func writeLiveStats(w io.Writer, objs *sensor.Objects, live *sensor.Live, owners bool) {
	u := live.Counts() // before the kernel counters: seen >= recorded
	k, err := sensor.ReadKernelCounts(objs)
	if err != nil {
		// Without the kernel's side, user space's count is all there is: print it as the total.
		fmt.Fprintln(w, "chains-sensor: reading the kernel's counters:", err)
		printCounts(w, false, 0, u.Decoded, u.Undecodable)
		return
	}
	if owners {
		if oc, err := sensor.ReadOwnerCounts(objs); err == nil {
			sensor.WriteOwnerStats(w, oc)
		}
	}
	sensor.WriteStats(w, k, u)
}

// followLinks reports a watched interface that disappears and releases its hooks; with none
// left the run ends (exit 1) unless --reattach waits for them, and with --reattach an
// interface that comes back under its name is attached again.
func followLinks(links *sensor.LinkWatch, s *attachSettings, att *sensor.Attached, live *sensor.Live, lc *lifecycle, wc *liveCapture, stderr io.Writer) {
	watched := map[int]string{} // ifindex -> name, attached now
	for _, a := range att.Ifaces {
		watched[a.Ifindex] = a.Iface
	}
	say := func(format string, args ...any) {
		lc.Locked(func() { fmt.Fprintf(stderr, "chains-sensor: "+format+"\n", args...) })
	}
	gone := func(idx int, name string) {
		delete(watched, idx)
		live.IfaceGone(uint32(idx))
		if err := att.Detach(idx); err != nil {
			say("releasing the hooks of %s: %v", name, err)
		}
		say("%s (index %d) is gone: its hooks are released", name, idx)
		if len(watched) == 0 && !s.reattach {
			lc.Fail(fmt.Errorf("no watched interface is left (%s is gone; --reattach waits for it to come back)", name))
		}
	}
	// An interface deleted between the lookup and the subscription: its event never comes.
	for idx, name := range watched {
		if !sensor.InterfaceExists(idx) {
			gone(idx, name)
		}
	}
	wanted := map[string]bool{}
	for _, n := range s.ifaces {
		wanted[n] = true
	}
	for {
		select {
		case <-lc.Stopping():
			return
		case ev, ok := <-links.Events:
			if !ok {
				if err := links.Err(); err != nil {
					say("warning: no longer following interface changes: %v", err)
				}
				return
			}
			if name, ok := watched[ev.Ifindex]; ok && ev.Gone {
				gone(ev.Ifindex, name)
				continue
			}
			if ev.Gone || !s.reattach || !wanted[ev.Name] || slices.Contains(slices.Collect(maps.Values(watched)), ev.Name) {
				continue
			}
			a, err := att.Reattach(ev.Name)
			if err != nil {
				say("%s is back, but attaching to it failed: %v", ev.Name, err)
				continue
			}
			watched[a.Ifindex] = a.Iface
			wc.reattached(a)
			live.AddIface(uint32(a.Ifindex), a.Iface)
			say("%s is back (index %d): attached again, ingress %s, egress %s", a.Iface, a.Ifindex, orNone(a.XDP), orNone(a.TC))
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "not watched"
	}
	return s
}
