package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/urfave/cli/v2"
)

func readCommand() *cli.Command {
	return &cli.Command{
		Name:      "read",
		Usage:     "print the packets of a pcap or pcapng file (- for stdin)",
		ArgsUsage: "FILE|-",
		Flags: append(sharedFlags(),
			&cli.BoolFlag{Name: "kernel", Usage: "parse each frame with xdp_sensor through BPF_PROG_TEST_RUN instead of the Go twin (needs root)"},
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
	} else if chain, berr := chainFromFlags(c, stdinIsLive(name)); berr != nil {
		err = berr
	} else {
		err = readFile(c, name, chain, &src)
	}
	var recorded, lost uint64
	if src != nil {
		recorded, lost = src.Recorded, src.Seen-src.Recorded
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

func readFile(c *cli.Context, name string, chain *views.Pipeline, srcOut **sensor.FileSource) (err error) {
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
	var rep *sensor.Replayer
	if c.Bool("kernel") {
		objs, err := sensor.Load(sensor.Config{})
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
	src := sensor.NewFileSource(capt, sensor.NewTwin(sensor.Config{}), rep)
	*srcOut = src
	if _, err := chain.Run(src.Packets()); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		return fmt.Errorf("writing the output: %w", err)
	}
	return src.Err()
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
