package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/urfave/cli/v2"
)

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
			noDecapFlag(),
		), filterFlags()...), append(writeFlags(), outputFlags()...)...),
		Action: runRead,
	}
}

// runRead reads one capture through the chain. Whatever happens, stderr ends with the counters
// line; a damaged file prints what could be read, then the error naming the packet, exit 1.
func runRead(c *cli.Context) error {
	name := c.Args().First()
	var src *sensor.FileSource
	var err error
	var ff *sensor.FileFilter
	var outs *outputs
	if c.NArg() < 1 {
		err = errors.New("takes a FILE (or - for stdin), and after it an optional filter expression")
	} else if expr, ferr := expressionOf(c, c.Args().Tail()); ferr != nil {
		err = ferr
	} else if ws, werr := parseWriteFlags(c); werr != nil {
		err = werr
	} else if rc, cerr := readCapture(c, ws, name); cerr != nil {
		err = cerr
	} else if chain, o, berr := chainFromFlags(c, stdinIsLive(name), rc.config); berr != nil {
		if rc.w != nil {
			rc.w.Close()
		}
		err = berr
	} else {
		outs = o
		if expr != "" {
			ff = sensor.NewFileFilter(expr)
		}
		rc.chain = chain
		err = readFile(c, name, chain, ff, &src, rc)
		if fileLimitReached(err) {
			err = nil
		}
	}
	var filtered, recorded, lost uint64
	if src != nil {
		filtered, recorded = src.Filtered, src.Recorded
		lost = src.Seen - src.Filtered - src.Recorded
		printSkipped(c, name, src)
	}
	if err != nil {
		what := "read"
		if c.NArg() >= 1 {
			what += " " + name
		}
		fmt.Fprintf(c.App.ErrWriter, "chains-sensor: %s: %v\n", what, err)
	}
	for _, l := range outs.lines() {
		fmt.Fprintln(c.App.ErrWriter, l)
	}
	printCounts(c.App.ErrWriter, ff != nil, filtered, recorded, lost)
	outs.closeMetrics()
	if err != nil {
		return reportedError{err}
	}
	return nil
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

func readFile(c *cli.Context, name string, chain *views.Pipeline, ff *sensor.FileFilter, srcOut **sensor.FileSource, rc *readCaptureOut) (err error) {
	defer func() {
		if cerr := chain.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("writing the output: %w", cerr)
		}
	}()
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	capt, err := sensor.OpenCapture(r)
	if err != nil {
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
	if c.Bool("kernel") {
		// Programs are loaded as frames need them (per link type with a filter).
		reps := sensor.NewReplayers(load, ff)
		defer reps.Close()
		src.SetFilter(ff, reps)
	} else {
		src.SetFilter(ff, nil)
	}
	*srcOut = src
	if _, err := chain.Run(src.Packets()); err != nil {
		if errors.Is(err, os.ErrClosed) || fileLimitReached(err) {
			return nil
		}
		var fe *pcapng.FileError
		if errors.As(err, &fe) {
			return err // it names the capture file
		}
		return fmt.Errorf("writing the output: %w", err)
	}
	return src.Err()
}

// printSkipped says on stderr what of the file went unparsed by the kernel or unread: frames
// of no packet (counted apart from the packets seen), and with --kernel the frames the Go twin
// parsed because BPF_PROG_TEST_RUN cannot take them.
func printSkipped(c *cli.Context, name string, src *sensor.FileSource) {
	skipped := src.Skipped()
	reasons := make([]string, 0, len(skipped))
	for r := range skipped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(c.App.ErrWriter, "chains-sensor: read %s: %d skipped: %s\n", name, skipped[r], r)
	}
	if c.Bool("kernel") {
		fmt.Fprintf(c.App.ErrWriter, "chains-sensor: read %s: %d frames went to the Go twin, which BPF_PROG_TEST_RUN cannot take: %d outside 14 to %d bytes, %d outgoing frames it will not make an skb of, %d whose link header the kernel filter cannot be given\n",
			name, src.TwinFallbacks, src.TwinFrameSize, sensor.MaxReplayFrame, src.TwinSkbRefused, src.TwinFilterHeader)
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
