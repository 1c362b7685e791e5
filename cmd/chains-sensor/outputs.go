package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/chains-sensor/chains-sensor/stages/fleet"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/urfave/cli/v2"
)

// The outputs beside the printed view: --publish (the fleet's JetStream stream); --metrics
// serves what every part counts.
const (
	flagPublish      = "publish"
	flagHost         = "host"
	flagPubKinds     = "publish-kinds"
	flagStream       = "stream"
	flagReplicas     = "stream-replicas"
	flagStreamAge    = "stream-max-age"
	flagStreamBytes  = "stream-max-bytes"
	flagDupWindow    = "duplicate-window"
	flagPubBuffer    = "publish-buffer"
	flagPubDrain     = "publish-drain"
	flagSpoolDir     = "spool-dir"
	flagSpoolMax     = "spool-max"
	flagMetrics      = "metrics"
	defaultSpoolSize = 256 << 20
)

// outputFlags are the flags of the outputs beside the view, shared by attach and read.
func outputFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: flagPublish, Usage: "send packets, flows, DNS, HTTP and TLS records as JSON to the JetStream stream of the NATS servers `nats://HOST:PORT[,...]`"},
		&cli.StringFlag{Name: flagHost, Usage: "the host `NAME` in the records' subjects (chains.NAME.KIND) [the host name]"},
		&cli.StringFlag{Name: flagPubKinds, Value: "all", Usage: "the `KINDS` of records to send: all, or some of packet,flow,dns,http,tls"},
		&cli.StringFlag{Name: flagStream, Value: fleet.DefaultStream, Usage: "the JetStream stream `NAME` (made when it is not there, taking chains.>)"},
		&cli.IntFlag{Name: flagReplicas, Value: 1, Usage: "replicas (`N`) of the stream when it is made (at most the cluster's nodes)"},
		&cli.DurationFlag{Name: flagStreamAge, Value: fleet.DefaultMaxAge, Usage: "a made stream keeps records this `DURATION`"},
		&cli.Int64Flag{Name: flagStreamBytes, Value: fleet.DefaultStreamBytes, Usage: "a made stream keeps this many `BYTES` at most (the oldest go first)"},
		&cli.DurationFlag{Name: flagDupWindow, Value: fleet.DefaultDuplicates, Usage: "a made stream stores a record sent again within this `DURATION` once (its message ID)"},
		&cli.IntFlag{Name: flagPubBuffer, Value: fleet.DefaultMaxRecords, Usage: "`N` records wait in memory at most for the servers (then the spool, then they are dropped, counted)"},
		&cli.DurationFlag{Name: flagPubDrain, Value: fleet.DefaultDrain, Usage: "at exit, wait this `DURATION` at most for the servers to take what waits (the rest goes to the spool)"},
		&cli.StringFlag{Name: flagSpoolDir, Usage: "spool records the servers do not take to `DIR` (sent first by the next run); none: they wait in memory only"},
		&cli.StringFlag{Name: flagMetrics, Usage: "serve Prometheus metrics at `HOST:PORT`/metrics (:9477: every address)"},
		&cli.Int64Flag{Name: flagSpoolMax, Value: defaultSpoolSize, Usage: "the spool holds `BYTES` at most (then records are dropped, counted)"},
	}, zeekFlags()...)
}

// outputs are what a run has beside the view's sink: built from the flags, closed by the
// view's pipeline (its sink closes them), their counters shown before the counters line.
type outputs struct {
	list    []views.Output
	pub     *fleet.Publisher
	js      *fleet.JetStream
	metrics *metricsServer
	drain   time.Duration // the publisher's
}

// buildOutputs makes the outputs the flags ask for (configFromFlags has checked their values);
// stderr hears their warnings.
func buildOutputs(c *cli.Context, stderr io.Writer) (*outputs, error) {
	o := &outputs{}
	if addr := c.String(flagMetrics); addr != "" {
		m, err := startMetrics(addr)
		if err != nil {
			return nil, err
		}
		o.metrics = m
	}
	if err := o.buildZeek(c); err != nil {
		o.close()
		return nil, err
	}
	if u := c.String(flagPublish); u != "" {
		if err := o.buildPublisher(c, u, stderr); err != nil {
			o.close()
			return nil, err
		}
	}
	return o, nil
}

// setPipeline gives the metrics the chain, once built.
func (o *outputs) setPipeline(p *views.Pipeline) {
	if o.metrics != nil {
		o.metrics.col.set(func(c *sensorCollector) { c.pipeline = p })
	}
}

// grace is how much longer than the chain the outputs may take to close at exit.
func (o *outputs) grace() time.Duration {
	if o == nil {
		return 0
	}
	return o.drain
}

// checkOutputFlags checks the outputs' values before anything is looked up or started (a bad
// one is bad usage, exit 2): --metrics's address, and --publish's settings when it is set.
func checkOutputFlags(c *cli.Context) error {
	if err := checkZeekFlags(c); err != nil {
		return err
	}
	if addr := c.String(flagMetrics); addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return usageErrorf("--%s %q: want HOST:PORT (:9477 for every address)", flagMetrics, addr)
		}
	}
	if c.String(flagPublish) == "" {
		return nil
	}
	if _, err := fleet.ParseURLs(c.String(flagPublish)); err != nil {
		return usageErrorf("--%s: %v", flagPublish, err)
	}
	if _, err := fleet.ParseKinds(c.String(flagPubKinds)); err != nil {
		return usageErrorf("--%s: %v", flagPubKinds, err)
	}
	if host := c.String(flagHost); host != "" && fleet.HostToken(host) != host {
		return usageErrorf("--%s %q: letters, digits, - and _ only (a subject token)", flagHost, host)
	}
	for _, f := range []struct {
		name string
		ok   bool
	}{{flagReplicas, c.Int(flagReplicas) >= 1}, {flagStreamAge, c.Duration(flagStreamAge) > 0},
		{flagStreamBytes, c.Int64(flagStreamBytes) > 0}, {flagDupWindow, c.Duration(flagDupWindow) > 0},
		{flagPubBuffer, c.Int(flagPubBuffer) >= 1}, {flagSpoolMax, c.Int64(flagSpoolMax) > 0}, {flagPubDrain, c.Duration(flagPubDrain) >= 0}} {
		if !f.ok {
			return usageErrorf("--%s must be positive", f.name)
		}
	}
	if s := c.String(flagStream); s == "" || strings.ContainsAny(s, ".*> \t") {
		return usageErrorf("--%s %q: a stream name has no dots, wildcards or spaces", flagStream, s)
	}
	return nil
}

// buildPublisher makes --publish's publisher and sink; checkOutputFlags (in configFromFlags)
// has checked the values.
func (o *outputs) buildPublisher(c *cli.Context, u string, stderr io.Writer) error {
	urls, _ := fleet.ParseURLs(u)
	kinds, _ := fleet.ParseKinds(c.String(flagPubKinds))
	host := c.String(flagHost)
	if host == "" {
		host, _ = os.Hostname()
	}
	host = fleet.HostToken(host)
	pc := fleet.PublisherConfig{MaxRecords: c.Int(flagPubBuffer), Drain: c.Duration(flagPubDrain)}
	if pc.Drain == 0 {
		pc.Drain = time.Millisecond
	}
	if dir := c.String(flagSpoolDir); dir != "" {
		sp, err := fleet.OpenSpool(dir, c.Int64(flagSpoolMax))
		if err != nil {
			return err
		}
		pc.Spool = sp
		if n := sp.Pending(); n > 0 {
			fmt.Fprintf(stderr, "publish: %d records in the spool %s from an earlier run: sent first\n", n, dir)
		}
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "publish: "+format+"\n", args...) }
	nc, err := fleet.Connect(urls, "chains-sensor "+host, logf)
	if err != nil {
		return fmt.Errorf("--%s: %w", flagPublish, err)
	}
	if !nc.IsConnected() {
		fmt.Fprintf(stderr, "warning: publish: no NATS server answers at %s yet: records wait (in memory, then in the spool) and are sent once one does\n", strings.Join(urls, ","))
	}
	o.pub = fleet.NewPublisher(pc)
	sc := fleet.StreamConfig{Name: c.String(flagStream), Replicas: c.Int(flagReplicas), MaxAge: c.Duration(flagStreamAge),
		MaxBytes: c.Int64(flagStreamBytes), Duplicates: c.Duration(flagDupWindow)}
	o.js, err = fleet.NewJetStream(nc, sc, o.pub, logf)
	if err != nil {
		nc.Close()
		return err
	}
	o.pub.Start(o.js)
	o.drain = pc.Drain
	o.list = append(o.list, fleet.NewSink(o.pub, host, kinds))
	if o.metrics != nil {
		o.metrics.col.set(func(c *sensorCollector) { c.pub, c.pubReady = o.pub, o.js.Ready })
	}
	return nil
}

// writeLines prints the outputs' counters, before the counters line at exit.
func (o *outputs) writeLines(w io.Writer) {
	if o != nil && o.pub != nil {
		fmt.Fprintln(w, o.pub.Counters().Line())
	}
}

// close closes the outputs that the pipeline did not (it never ran).
func (o *outputs) close() {
	if o == nil {
		return
	}
	for _, x := range o.list {
		x.Close()
	}
	o.closeMetrics()
}

// closeMetrics stops serving the metrics: the last thing a run does.
func (o *outputs) closeMetrics() {
	if o != nil {
		o.metrics.close()
	}
}
