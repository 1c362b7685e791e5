package main

import (
	"fmt"
	"time"

	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
	"github.com/urfave/cli/v2"
)

// The Zeek-schema logs beside the printed view (--log-dir): package zeeklog.
const (
	flagLogDir      = "log-dir"
	flagLogSize     = "log-rotate-size"
	flagLogInterval = "log-rotate-interval"
)

// zeekFlags are the Zeek logs' flags, among the outputs' (attach and read).
func zeekFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagLogDir, Usage: "write Zeek-schema logs (conn, dns, http, ssl, weird: JSON lines) to `DIR`"},
		&cli.Int64Flag{Name: flagLogSize, Usage: "rotate a log once it holds `BYTES` (0: never by size)"},
		&cli.DurationFlag{Name: flagLogInterval, Value: time.Hour, Usage: "rotate the logs at each multiple of this `DURATION` of the packets' time (0: never by time); a rotated log is KIND.YYYY-MM-DD-HH-MM-SS.log"},
	}
}

// checkZeekFlags checks the Zeek logs' values (bad usage, exit 2).
func checkZeekFlags(c *cli.Context) error {
	if c.Int64(flagLogSize) < 0 {
		return usageErrorf("--%s must not be negative", flagLogSize)
	}
	if c.Duration(flagLogInterval) < 0 {
		return usageErrorf("--%s must not be negative", flagLogInterval)
	}
	if c.String(flagLogDir) == "" && (c.IsSet(flagLogSize) || c.IsSet(flagLogInterval)) {
		return usageErrorf("--%s and --%s need --%s", flagLogSize, flagLogInterval, flagLogDir)
	}
	return nil
}

// buildZeek adds the Zeek logs' sink to the outputs when --log-dir asks for it.
func (o *outputs) buildZeek(c *cli.Context) error {
	dir := c.String(flagLogDir)
	if dir == "" {
		return nil
	}
	z, err := zeeklog.New(zeeklog.Config{Dir: dir, MaxSize: c.Int64(flagLogSize), Every: c.Duration(flagLogInterval)})
	if err != nil {
		return fmt.Errorf("--%s: %w", flagLogDir, err)
	}
	o.list = append(o.list, z)
	return nil
}
