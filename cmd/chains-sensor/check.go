package main

import (
	"errors"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/urfave/cli/v2"
)

// checkCommand is `chains-sensor check [--direction D] [IFACE]`: what this kernel and these
// privileges support, and what is missing.
func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "say what this kernel and these privileges support, and what is missing",
		ArgsUsage: "[IFACE] (default: the interface of the default route)",
		Description: "Probes the BPF ring buffer, BTF, BPF_PROG_TEST_RUN, the sensor programs against the\n" +
			"verifier, and on the interface: native XDP, generic XDP, TCX and clsact, each by attaching a\n" +
			"pass-through program for an instant (a native attach that works resets the link of some\n" +
			"NICs for a moment, as attach itself does). Exits 1 if something required for the given\n" +
			"--direction is missing.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "direction", Value: "both", Usage: "what attach would watch: `in`, out or both"},
		},
		Action: func(c *cli.Context) error {
			hooks, err := sensor.ParseHooks(c.String("direction"))
			if err != nil {
				return err
			}
			if c.NArg() > 1 {
				return errors.New("check takes at most one interface")
			}
			iface := c.Args().First()
			if iface == "" {
				iface, _ = sensor.DefaultInterface() // none: only the kernel-wide checks
			}
			rs := sensor.Check(sensor.CheckOptions{
				Iface: iface,
				Hooks: hooks,
				Load:  func() (*sensor.Objects, error) { return sensor.Load(sensor.Config{}) },
			})
			if !sensor.WriteCheckTable(c.App.Writer, rs) {
				return reportedError{errors.New("check: something required is missing")}
			}
			return nil
		},
	}
}
