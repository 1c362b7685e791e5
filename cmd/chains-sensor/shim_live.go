package main

// TEMPORARY (branch live-c): a main and the shared flags, until helper A's main.go and shared
// flags land (stages-a). At that merge this file is deleted and attachCommand/checkCommand are
// wired into their main; runAttach only needs sharedFlags() and stagesConfig(c).

import (
	"fmt"
	"os"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:     "chains-sensor",
		Usage:    "who talks to whom, one line per packet",
		Commands: []*cli.Command{attachCommand(), checkCommand()},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "chains-sensor:", err)
		os.Exit(1)
	}
}

func sharedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "n", Usage: "no reverse DNS"},
		&cli.Uint64Flag{Name: "c", Usage: "stop after `N` packets"},
		&cli.StringFlag{Name: "o", Value: "text", Usage: "output: text or json"},
		&cli.StringFlag{Name: "view", Value: stages.DefaultView},
		&cli.StringFlag{Name: "dns-server", Usage: "`HOST:PORT`"},
		&cli.BoolFlag{Name: "utc"},
		&cli.StringFlag{Name: "internal", Usage: "`CIDR,...` also internal"},
	}
}

func stagesConfig(c *cli.Context, live bool, ifaces []stages.Interface) (*stages.Config, error) {
	internal, err := stages.ParsePrefixes(c.String("internal"))
	if err != nil {
		return nil, err
	}
	return &stages.Config{
		NoDNS: c.Bool("n"), Count: c.Uint64("c"), Format: c.String("o"), View: c.String("view"),
		DNSServer: c.String("dns-server"), UTC: c.Bool("utc"), Internal: internal, Ifaces: ifaces, Live: live,
	}, nil
}
