package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/urfave/cli/v2"
)

func readCommand() *cli.Command {
	return &cli.Command{
		Name:      "read",
		Usage:     "print the packets of a pcap or pcapng file (- for stdin)",
		ArgsUsage: "FILE|-",
		Flags: append(sharedFlags(),
			&cli.BoolFlag{Name: "kernel", Usage: "parse each frame with xdp_sensor through BPF_PROG_TEST_RUN instead of the Go twin (needs root)"},
			noDecapFlag(),
		),
		Action: runRead,
	}
}

// runRead reads one capture through the chain. Whatever happens, stderr ends with the counters
// line; a damaged file prints what could be read, then the error naming the packet, exit 1.
func runRead(c *cli.Context) error {
	name := c.Args().First()
	var src *sensor.FileSource
	var err error
	if c.NArg() != 1 {
		err = fmt.Errorf("takes one FILE (or - for stdin), got %d arguments", c.NArg())
	} else if built, cfg, berr := chainFromFlags(c, stdinIsLive(name)); berr != nil {
		err = berr
	} else {
		err = readFile(c, name, built, cfg, &src)
	}
	var recorded, lost uint64
	if src != nil {
		recorded, lost = src.Recorded, src.Seen-src.Recorded
		printSkipped(c, name, src)
	}
	if err != nil {
		what := "read"
		if c.NArg() == 1 {
			what += " " + name
		}
		fmt.Fprintf(c.App.ErrWriter, "chains-sensor: %s: %v\n", what, err)
	}
	printCounts(c.App.ErrWriter, recorded, lost)
	if err != nil {
		return reportedError{err}
	}
	return nil
}

func readFile(c *cli.Context, name string, built *stages.Built, cfg *stages.Config, srcOut **sensor.FileSource) (err error) {
	defer func() {
		if cerr := built.Sink.Close(); cerr != nil && err == nil {
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
	load := sensor.Config{NoDecap: c.Bool("no-decap")}
	var rep *sensor.Replayer
	if c.Bool("kernel") {
		objs, err := sensor.Load(load)
		if err != nil {
			return fmt.Errorf("--kernel: %w", err)
		}
		defer objs.Close()
		rep, err = sensor.NewReplayer(objs)
		if err != nil {
			return fmt.Errorf("--kernel: %w", err)
		}
		defer rep.Close()
	}
	src := sensor.NewFileSource(capt, sensor.NewTwin(load), rep)
	*srcOut = src
	if _, err := stages.Run(src.Packets(), built.Stage, built.Sink, cfg.Count); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil
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
		fmt.Fprintf(c.App.ErrWriter, "chains-sensor: read %s: %d frames went to the Go twin, which BPF_PROG_TEST_RUN cannot take: %d outside 14 to %d bytes, %d outgoing frames it will not make an skb of\n",
			name, src.TwinFallbacks, src.TwinFallbacks-src.TwinSkbRefused, sensor.MaxReplayFrame, src.TwinSkbRefused)
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
