package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// flagMaxIfaces bounds the interface blocks of a pcapng section.
const flagMaxIfaces = "max-interfaces"

func readCommand() *cli.Command {
	return &cli.Command{
		Name:      "read",
		Usage:     "print the packets of a pcap or pcapng file (- for stdin)",
		ArgsUsage: "FILE|- [EXPRESSION...]",
		Description: "Reads a pcap or pcapng file (- for standard input) through the chain, as attach prints a\n" +
			"live capture. " + filterHelp + "\n" +
			"A file's expression is compiled for its link type (per interface in a pcapng file) and\n" +
			"selects what tcpdump -r selects: with libpcap's interpreter, or with --kernel in xdp_sensor\n" +
			"and tc_sensor, which then read the file's link header although they parse the frame\n" +
			"behind a synthetic Ethernet header.",
		Flags: append(append(append(sharedFlags(),
			&cli.BoolFlag{Name: "kernel", Usage: "parse each frame with xdp_sensor through BPF_PROG_TEST_RUN instead of the Go twin (needs root)"},
			&cli.IntFlag{Name: flagMaxIfaces, Value: sensor.DefaultMaxInterfaces, Usage: "`N` interfaces a pcapng section may declare at most (more: an error; each costs its description in memory)"},
			noDecapFlag(),
		), filterFlags()...), append(writeFlags(), outputFlags()...)...),
		Action: runRead,
	}
}

// runRead reads one capture through the chain. Bad usage (a flag, a value, the expression)
// exits 2 before anything is read, with no counters line; otherwise, whatever happens, stderr
// ends with the counters line, and a damaged file prints what could be read, then the error
// naming the packet, exit 1. A signal stops the reading: what is held is printed, exit 0.
func runRead(c *cli.Context) error {
	if c.NArg() < 1 {
		return usageErrorf("read takes a FILE (or - for stdin), and after it an optional filter expression")
	}
	name := c.Args().First()
	expr, err := expressionOf(c, c.Args().Tail())
	if err != nil {
		return err
	}
	if _, err := intIn(c, flagMaxIfaces, 1, 1<<24); err != nil {
		return err
	}
	ws, err := parseWriteFlags(c)
	if err != nil {
		return err
	}
	rc, err := readCapture(c, ws, name)
	if err != nil {
		return err
	}
	chain, outs, err := chainFromFlags(c, stdinIsLive(name), rc.config, nil)
	if err != nil {
		if rc.w != nil {
			rc.w.Close()
		}
		return err
	}
	rc.chain = chain
	var ff *sensor.FileFilter
	if expr != "" {
		ff = sensor.NewFileFilter(expr)
	}
	defer outs.closeMetrics() // the last thing the run does
	lc := newLifecycle(c.App.ErrWriter)
	lc.Closer("", func() error { return outputError(chain.Close()) })
	lc.drain = outs.grace() // closing the chain drains the publisher
	var src *sensor.FileSource
	counters := func(w io.Writer) {
		var n sensor.FileCounts
		if src != nil {
			n = src.Counts()
		}
		printCounts(w, ff != nil, n.Filtered, n.Recorded, n.Seen-n.Filtered-n.Recorded)
	}
	lc.lastWords = counters
	final := func(w io.Writer) {
		if src != nil {
			printSkipped(w, c, name, src)
		}
		writeChainStats(w, chain, c.String(flagOutput) == "json")
		outs.writeLines(w)
		counters(w)
	}
	if stdinIsLive(name) {
		watchOutput(c.App.Writer, lc.Fail)
	}
	err = readFile(c, name, chain, ff, lc, &src, rc)
	return lc.finish("read "+name, err, final)
}

// readCaptureOut is read's -w: the writer, and what its interface blocks and statistics are
// made of (the capture read, the chain's capture sink), set as they come.
type readCaptureOut struct {
	w      *pcapng.Writer
	config *sinks.CaptureConfig
	capt   *sensor.Capture
	chain  *views.Pipeline
}

// readCapture opens read's -w file (nothing without -w). Each interface of the file read is
// described as the file describes it, with -s as its snap length when that is shorter; its
// statistics say how many of its packets were written.
func readCapture(c *cli.Context, ws *writeSettings, name string) (*readCaptureOut, error) {
	rc := &readCaptureOut{}
	if ws == nil {
		return rc, nil
	}
	stats := func() []pcapng.Stats {
		if rc.chain == nil || rc.chain.Capture == nil {
			return nil
		}
		var s []pcapng.Stats
		for _, n := range rc.chain.Capture.Written() {
			s = append(s, pcapng.Stats{Has: pcapng.HasDelivered, Delivered: n})
		}
		return s
	}
	w, err := openWriter(c, ws, "read from "+name, false, stats)
	if err != nil {
		return nil, err
	}
	rc.w = w
	rc.config = captureConfig(ws, w, false, func(ifindex uint32) pcapng.Interface {
		var d sensor.CaptureInterface
		if rc.capt != nil {
			d = rc.capt.Interface(int(ifindex))
		}
		snap := ws.snapLen
		if d.SnapLen != 0 {
			snap = min(snap, d.SnapLen)
		}
		return pcapng.Interface{Name: d.Name, Description: d.Description, Filter: d.Filter, OS: d.OS,
			LinkType: uint16(d.LinkType), SnapLen: snap}
	})
	return rc, nil
}

func readFile(c *cli.Context, name string, chain *views.Pipeline, ff *sensor.FileFilter, lc *lifecycle, srcOut **sensor.FileSource, rc *readCaptureOut) error {
	in, err := openInput(name)
	if err != nil {
		return err
	}
	defer in.Close()
	// A stop before the file header is read: nothing to print.
	lc.OnStop(in.interrupt)
	capt, err := sensor.OpenCaptureWith(in, sensor.CaptureOptions{MaxInterfaces: c.Int(flagMaxIfaces)})
	if err != nil {
		if lc.stopped() {
			return nil
		}
		return err
	}
	rc.capt = capt
	if ff != nil {
		// As tcpdump: the expression is compiled for the file's link type before any packet.
		if err := ff.Check(capt); err != nil {
			return err
		}
	}
	load := sensor.Config{NoDecap: c.Bool("no-decap")}
	src := sensor.NewFileSource(capt, sensor.NewTwin(load), nil)
	src.Limit(c.Uint64(flagCount))
	if c.Bool("kernel") {
		// Programs are loaded as frames need them (per link type with a filter).
		reps := sensor.NewReplayers(load, ff)
		defer reps.Close()
		src.SetFilter(ff, reps)
	} else {
		src.SetFilter(ff, nil)
	}
	*srcOut = src
	lc.OnStop(func() { src.Stop(); chain.Hurry() })
	if _, err := chain.Run(src.Packets()); err != nil {
		if errors.Is(err, os.ErrClosed) || fileLimitReached(err) {
			return nil
		}
		return outputError(err)
	}
	return src.Err()
}

// input is the file read reads: a file, or standard input. Standard input from a pipe or a
// socket is read through a non-blocking duplicate of fd 0, so that a stop (a signal)
// interrupts a read that waits for the writer (`tcpdump -w - | chains-sensor read -`).
type input struct {
	io.Reader
	f        *os.File
	pollable bool // f's reads can be interrupted (SetReadDeadline)
	restore  func()
}

func openInput(name string) (*input, error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		return &input{Reader: f, f: f, restore: func() {}}, nil
	}
	in := &input{Reader: os.Stdin, restore: func() {}}
	st, err := os.Stdin.Stat()
	if err != nil || st.Mode()&(os.ModeNamedPipe|os.ModeSocket) == 0 {
		return in, nil
	}
	// The descriptor behind os.Stdin (fd 0, or what a test put there), without Fd's side
	// effect of making it blocking.
	fd := -1
	if sc, err := os.Stdin.SyscallConn(); err == nil {
		sc.Control(func(f uintptr) { fd, _ = unix.Dup(int(f)) })
	}
	if fd < 0 {
		return in, nil
	}
	// O_NONBLOCK belongs to the open file, which fd 0 shares: its old state comes back at the end.
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || unix.SetNonblock(fd, true) != nil {
		unix.Close(fd)
		return in, nil
	}
	f := os.NewFile(uintptr(fd), "stdin")
	return &input{Reader: f, f: f, pollable: true, restore: func() {
		if flags&unix.O_NONBLOCK == 0 {
			unix.SetNonblock(fd, false)
		}
	}}, nil
}

// interrupt makes a read waiting for data return at once (a stop).
func (in *input) interrupt() {
	if in.pollable {
		in.f.SetReadDeadline(time.Now())
	}
}

func (in *input) Close() error {
	in.restore() // before f.Close, which frees the descriptor restore uses
	if in.f != nil {
		return in.f.Close()
	}
	return nil
}

// printSkipped says on stderr what of the file went unparsed by the kernel or unread: frames
// of no packet (counted apart from the packets seen), and with --kernel the frames the Go twin
// parsed because BPF_PROG_TEST_RUN cannot take them.
func printSkipped(w io.Writer, c *cli.Context, name string, src *sensor.FileSource) {
	skipped := src.Skipped()
	reasons := make([]string, 0, len(skipped))
	for r := range skipped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "chains-sensor: read %s: %d skipped: %s\n", name, skipped[r], r)
	}
	if c.Bool("kernel") {
		n := src.Counts()
		fmt.Fprintf(w, "chains-sensor: read %s: %d frames went to the Go twin, which BPF_PROG_TEST_RUN cannot take: %d outside 14 to %d bytes, %d outgoing frames it will not make an skb of, %d whose link header the kernel filter cannot be given\n",
			name, n.TwinFallbacks, n.TwinFrameSize, sensor.MaxReplayFrame, n.TwinSkbRefused, n.TwinFilterHeader)
	}
}

// stdinIsLive reports whether FILE is "-" and standard input a pipe or terminal rather than a
// file (`tcpdump -w - | chains-sensor read -`): then the output is flushed on a timer and held
// packets are released on a timer, as for a live capture.
func stdinIsLive(name string) bool {
	if name != "-" {
		return false
	}
	st, err := os.Stdin.Stat()
	return err == nil && !st.Mode().IsRegular()
}
