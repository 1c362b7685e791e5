package main

import (
	"errors"
	"fmt"
	"io"
	"os"

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
	} else if built, cfg, berr := chainFromFlags(c, false); berr != nil {
		err = berr
	} else {
		err = readFile(c, name, built, cfg, &src)
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
	if _, err := stages.Run(src.Packets(), built.Stage, built.Sink, cfg.Count); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		return fmt.Errorf("writing the output: %w", err)
	}
	return src.Err()
}
