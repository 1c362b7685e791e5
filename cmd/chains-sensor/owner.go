package main

import (
	"fmt"
	"io"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages/owners"
	"github.com/urfave/cli/v2"
)

// ownerFlags are attach's process attribution flags.
func ownerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "no-processes", Usage: "do not name the local process of each packet (process attribution: cgroup v2 socket hooks and tracepoints)"},
		&cli.UintFlag{Name: "max-sockets", Value: sensor.DefaultMaxSockets, Usage: "sockets whose process is kept in the kernel (an LRU table; evictions are counted)"},
		&cli.UintFlag{Name: "max-cgroups", Value: owners.DefaultCacheSize, Usage: "`N` cgroups whose path, container and unit are kept at most (an LRU; evictions are counted)"},
		&cli.UintFlag{Name: "max-owner-flows", Value: sensor.DefaultMaxFlows, Usage: "flows that lead ingress packets to their socket (an LRU table; evictions are counted)"},
		&cli.UintFlag{Name: "pid", Usage: "keep only packets of the process `PID` (in the kernel; packets of no known process are dropped)"},
		&cli.StringFlag{Name: "comm", Usage: "keep only packets of processes whose command name is `NAME` (at most 15 bytes, as ps -o comm shows it)"},
		&cli.StringFlag{Name: "cgroup", Usage: "keep only packets of processes in the cgroup v2 `PATH` or below it (/system.slice/nginx.service, or a directory under the cgroup2 mount)"},
	}
}

// parseOwnerFlags sets s.load.Owner unless --no-processes.
func parseOwnerFlags(c *cli.Context, s *attachSettings) error {
	if c.Bool("no-processes") {
		for _, f := range []string{"pid", "comm", "cgroup"} {
			if c.IsSet(f) {
				return usageError{fmt.Errorf("--%s needs process attribution, which --no-processes turns off", f)}
			}
		}
		return nil
	}
	oc := &sensor.OwnerConfig{}
	if v := c.Uint("pid"); c.IsSet("pid") {
		if v == 0 || v > 1<<22 {
			return usageError{fmt.Errorf("--pid %d: want a process id from 1 to %d", v, 1<<22)}
		}
		oc.Filter.PID = uint32(v)
	}
	if v := c.String("comm"); c.IsSet("comm") {
		if v == "" || len(v) > 15 {
			return usageError{fmt.Errorf("--comm %q: want 1 to 15 bytes (the kernel keeps no more of a command name)", v)}
		}
		oc.Filter.Comm = v
	}
	if v := c.String("cgroup"); c.IsSet("cgroup") {
		root, err := sensor.CgroupV2Root()
		if err != nil {
			return fmt.Errorf("--cgroup: %w", err)
		}
		if oc.Filter.Cgroup, err = sensor.ResolveCgroup(root, v); err != nil {
			return fmt.Errorf("--cgroup: %w", err)
		}
	}
	for _, f := range []struct {
		name string
		to   *uint32
	}{{"max-sockets", &oc.MaxSockets}, {"max-owner-flows", &oc.MaxFlows}} {
		v := c.Uint(f.name)
		if v == 0 || v > 1<<24 {
			return usageError{fmt.Errorf("--%s %d: want 1 to %d", f.name, v, 1<<24)}
		}
		*f.to = uint32(v)
	}
	v := c.Uint("max-cgroups")
	if v == 0 || v > 1<<24 {
		return usageError{fmt.Errorf("--max-cgroups %d: want 1 to %d", v, 1<<24)}
	}
	s.maxCgroups = int(v)
	s.load.Owner = oc
	return nil
}

// ownerResolver returns the cgroup resolver of the views when attribution is asked for and
// a cgroup v2 hierarchy is there (nil otherwise: the lines then show pid and command only).
func ownerResolver(s *attachSettings) *owners.Resolver {
	if s.load.Owner == nil {
		return nil
	}
	root, err := sensor.CgroupV2Root()
	if err != nil {
		return nil
	}
	return owners.NewResolver(owners.Config{Root: root.Dir, CacheSize: s.maxCgroups})
}

// loadWithOwner loads the sensor and, when attribution is asked for, attaches its socket
// hooks. When they cannot be loaded or attached, the sensor loads without them and says at
// start that attribution is off (and why): packets then name no process.
func loadWithOwner(cfg sensor.Config, stderr io.Writer) (*sensor.Objects, *sensor.OwnerLinks, error) {
	if cfg.Owner == nil {
		objs, err := sensor.Load(cfg)
		return objs, nil, err
	}
	objs, err := sensor.Load(cfg)
	if err == nil {
		var l *sensor.OwnerLinks
		if l, err = sensor.AttachOwner(objs); err == nil {
			fmt.Fprintf(stderr, "process attribution on: socket hooks on the cgroup v2 root %s\n", l.Root.MountPoint)
			return objs, l, nil
		}
		objs.Close()
	}
	if cfg.Owner.Filter.On() {
		return nil, nil, fmt.Errorf("--pid, --comm and --cgroup need process attribution, which is not available here: %w", err)
	}
	fmt.Fprintf(stderr, "warning: process attribution off (packets name no process): %v\n", err)
	cfg.Owner = nil
	objs, err = sensor.Load(cfg)
	return objs, nil, err
}
