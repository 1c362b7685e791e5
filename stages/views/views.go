// Package views is the one place that builds a chain. A view is a way of looking at the
// packets (--view): one entry of List, naming the sink it ends in and whether it reads the
// application layer. Build turns a Config (the command line's flags, resolved) into a Pipeline:
// every stage the view and the flags ask for, in their order, each given its own part of the
// Config, and the view's sink at the end.
//
// A new view is one more entry in List (and, when it prints something new, one more sink in
// package sinks); a new stage is one more step in Build.
package views

import (
	"fmt"
	"iter"
	"net/netip"
	"strings"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/owners"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// Config holds everything a chain is built from: the shared flags, resolved, and each stage's
// own settings. Build reads it; nothing writes back.
type Config struct {
	View     string               // --view: a name in List ("" is DefaultView)
	Format   sinks.Format         // -o
	UTC      bool                 // --utc
	Color    bool                 // --color, resolved against the terminal
	Live     bool                 // the source is live: flush on a timer, hold packets on a timer
	Count    uint64               // -c N: Pipeline.Run stops after N packets (0: no limit)
	Ifaces   []classify.Interface // the watched interfaces (their prefixes are internal)
	Internal []netip.Prefix       // --internal
	NoDNS    bool                 // -n: no names at all, only address classes
	Names    names.Mode           // --names: names from DNS answers on the wire, PTR lookups, or both
	RDNS     names.ResolverConfig // the reverse-DNS stage (Live is set from Live)
	WireSize int                  // --wire-names: names learned from DNS answers kept at most (0: names.DefaultWireSize)
	Flows    flows.Config         // the flow table of the views that read the application layer
	DNS      protocols.DNSConfig  // the DNS decoder
	QUIC     protocols.QUICConfig // the QUIC decoder of the App views
	// Capture, when set, writes every packet's frame to a pcapng file (-w) beside the view's
	// sink; with comments the application layer runs whatever the view, so that each
	// packet's comment says what the decoders found.
	Capture *sinks.CaptureConfig
	// Quiet leaves the view's sink out (-q): nothing is printed, only captured.
	Quiet bool
	// Owners, when set, names the cgroup, container and unit of each packet's process (live
	// capture with process attribution).
	Owners *owners.Resolver
	// Outputs run beside the view's sink (the fleet's publisher, the Zeek logs): each is handed
	// every packet after the view's sink, and every finished flow when it is a
	// sinks.FlowWriter. One that reads the application layer makes the chain run it whatever
	// the view.
	Outputs []Output
	// CountStages counts the packets each stage passes on, and the packets the sink got, as
	// more of the chain's Counters (stage_packets_NAME), for the metrics.
	CountStages bool
}

// Output is an output beside the view's sink.
type Output interface {
	sinks.Sink
	// App says the output reads the application layer (flows, DNS, HTTP, TLS).
	App() bool
}

// View is one entry of List.
type View struct {
	Name string // --view value
	Doc  string // one line for --help
	// App says the view reads the application layer: the flow table and the DNS, HTTP and
	// TLS decoders run before its sink.
	App bool
	// Sink makes the view's sink. A sinks.FlowWriter is also handed every finished flow.
	Sink func(out *sinks.Output, opt sinks.Options) sinks.Sink
}

// DefaultView is the view used when Config.View is "".
const DefaultView = "net_watch"

// List holds the views, the default first.
var List = []View{
	{Name: "net_watch", Doc: "one line per packet: who talks to whom (the default)",
		Sink: func(out *sinks.Output, opt sinks.Options) sinks.Sink {
			if opt.Format == sinks.FormatJSON {
				return sinks.NewJSON(out, opt)
			}
			return sinks.NewNetWatch(out, opt)
		}},
	{Name: "packets", Doc: "a block per packet with every layer, as the original PacketPrinter",
		Sink: func(out *sinks.Output, opt sinks.Options) sinks.Sink {
			if opt.Format == sinks.FormatJSON {
				return sinks.NewJSON(out, opt)
			}
			return sinks.NewPackets(out, opt)
		}},
	{Name: "urlwatch", Doc: "a line per HTTP request or response and per TLS or QUIC hello (SNI, ALPN, versions, JA4/JA4S)", App: true,
		Sink: func(out *sinks.Output, opt sinks.Options) sinks.Sink { return sinks.NewURLWatch(out, opt) }},
	{Name: "weird-dns", Doc: "each weird DNS message: why it is weird, its queries and answers", App: true,
		Sink: func(out *sinks.Output, opt sinks.Options) sinks.Sink { return sinks.NewWeirdDNS(out, opt) }},
	{Name: "flows", Doc: "a line per finished flow: packets and bytes each way, TCP state, Community ID", App: true,
		Sink: func(out *sinks.Output, opt sinks.Options) sinks.Sink { return sinks.NewFlows(out, opt) }},
}

// Names returns the names of the views in List.
func Names() []string {
	names := make([]string, len(List))
	for i, v := range List {
		names[i] = v.Name
	}
	return names
}

// Lookup returns the view called name.
func Lookup(name string) (View, bool) {
	for _, v := range List {
		if v.Name == name {
			return v, true
		}
	}
	return View{}, false
}

// Pipeline is a built chain: the stages, the sink at their end, and the packet limit.
type Pipeline struct {
	Stage   stages.Stage   // every stage, in order
	Sink    sinks.Sink     // the view's sink, with the capture sink and Config.Outputs beside it
	Capture *sinks.Capture // the capture sink (-w), or nil
	count   uint64
	rdns    *names.Resolver // nil without PTR lookups
	// reporters are the stages' states with bounded tables (stages.StatsReporter).
	reporters []stages.StatsReporter
	dns       *protocols.DNSTracker // the flow table's DNS decoder, or nil
	stages    *stageCounts          // with Config.CountStages, else nil
	pub       publication           // Tables and Counters as last published (Published)
}

// Build builds the chain of cfg.View writing to out:
//
//	interface names, classes | reverse DNS | flows with decoders | wire names | sink [+ capture]
//
// Each packet goes through every stage after the reverse-DNS stage (the only one that holds
// packets back) before the next one does, so a name learned from a DNS answer names the packets
// from it on, a wire name wins over a PTR name, and a packet's Flow is still its own when the
// sink prints it. DNS is decoded once,
// by the flow table's DNS handler, whatever the view and --names: the views that read the
// application layer run every decoder over every flow; the others, when --names learns from
// the wire, only the DNS decoder, with flows kept for DNS over TCP alone.
func Build(cfg *Config, out *sinks.Output) (*Pipeline, error) {
	name := cfg.View
	if name == "" {
		name = DefaultView
	}
	v, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown view %q (views: %s)", name, strings.Join(Names(), ", "))
	}
	pl := &Pipeline{count: cfg.Count}
	if cfg.CountStages {
		pl.stages = &stageCounts{}
	}
	var chain []stages.Stage
	add := func(name string, st stages.Stage) {
		if pl.stages != nil {
			st = pl.stages.counted(name, st)
		}
		chain = append(chain, st)
	}
	if len(cfg.Ifaces) > 0 {
		names := make(map[uint32]string, len(cfg.Ifaces))
		for _, it := range cfg.Ifaces {
			names[uint32(it.Index)] = it.Name
		}
		add("ifaces", ifaceNames(names))
	}
	if cfg.Owners != nil {
		add("owners", cfg.Owners.Stage())
	}
	add("classify", classify.Stage(classify.NewClassifier(cfg.Internal, cfg.Ifaces)))

	// Names: PTR lookups name public addresses (--names ptr or both), the DNS answers seen on
	// the wire name the addresses they resolve (wire or both); a wire name wins over a PTR
	// name. Both only for public addresses: internal and special ones show their class.
	var wire *names.Wire
	var rdns *names.Resolver
	if !cfg.NoDNS && cfg.Names != names.ModeWire {
		rc := cfg.RDNS
		rc.Live = cfg.Live
		r, err := names.NewResolver(rc)
		if err != nil {
			return nil, err
		}
		rdns = r
		add("rdns", r.Stage())
	}
	var reporters []stages.StatsReporter
	if cfg.Owners != nil {
		reporters = append(reporters, cfg.Owners)
	}
	if rdns != nil {
		reporters = append(reporters, rdns)
	}
	if !cfg.NoDNS && cfg.Names != names.ModePTR {
		wire = names.NewWire(cfg.WireSize, 0)
		reporters = append(reporters, wireTables{wire})
	}

	var sink sinks.Sink
	var capt *sinks.Capture
	if !cfg.Quiet {
		sink = v.Sink(out, sinks.Options{Format: cfg.Format, UTC: cfg.UTC, Color: cfg.Color})
	} else {
		out.Close()
	}
	tee := sinks.Tee{}
	if cfg.Capture != nil {
		// The capture first: the evidence is written even when the lines cannot be.
		capt = sinks.NewCapture(*cfg.Capture)
		tee = append(tee, capt)
	}
	if sink != nil {
		tee = append(tee, sink)
	}
	app := v.App || (cfg.Capture != nil && cfg.Capture.Comments)
	for _, o := range cfg.Outputs {
		tee = append(tee, o)
		app = app || o.App()
	}
	if len(tee) == 1 {
		sink = tee[0]
	} else {
		sink = tee
	}
	var dnsT *protocols.DNSTracker
	switch fc := cfg.Flows; {
	case app:
		if fw, ok := sink.(sinks.FlowWriter); ok {
			fc.OnEnd = fw.WriteFlow
		}
		t, dns, quic := newApp(fc, cfg.DNS, cfg.QUIC)
		reporters = append(reporters, flowTables{t: t, dns: dns, quic: quic})
		add("flows", t.Stage())
		dnsT = dns
	case wire != nil:
		fc.Track = protocols.OverTCP
		dns := protocols.NewDNSTracker(cfg.DNS)
		fc.Handlers = []flows.Handler{dns}
		t := flows.New(fc)
		reporters = append(reporters, flowTables{t: t, dns: dns})
		add("flows", t.Stage())
		dnsT = dns
	}
	if wire != nil {
		add("wire_names", wire.Stage(func(c stages.Class) bool { return c == stages.ClassPublic }))
	}
	if pl.stages != nil {
		reporters = append(reporters, pl.stages)
	}
	pl.Stage, pl.Sink, pl.Capture = stages.Chain(chain...), sink, capt
	pl.rdns, pl.reporters, pl.dns = rdns, reporters, dnsT
	pl.publish() // nothing runs yet: the tables may be read here
	return pl, nil
}

// AppStage is the application layer the App views run: the flow table with the DNS, HTTP,
// TLS and QUIC decoders as its handlers.
func AppStage(fc flows.Config, dc protocols.DNSConfig) stages.Stage {
	t, _, _ := newApp(fc, dc, protocols.QUICConfig{})
	return t.Stage()
}

// newApp makes the flow table of the App views, with its handlers.
func newApp(fc flows.Config, dc protocols.DNSConfig, qc protocols.QUICConfig) (*flows.Table, *protocols.DNSTracker, *protocols.QUICHandler) {
	dns := protocols.NewDNSTracker(dc)
	quic := protocols.NewQUICHandler(qc)
	fc.Handlers = []flows.Handler{dns, protocols.HTTPHandler{}, &protocols.TLSHandler{}, quic}
	return flows.New(fc), dns, quic
}

// Run pulls src through the chain into the sink until src ends, the sink fails, or Config.Count
// packets were written. It returns how many packets the sink got. It does not close the sink.
func (p *Pipeline) Run(src iter.Seq[*stages.Packet]) (uint64, error) {
	var n uint64
	defer p.publish()
	for pk := range p.Stage(src) {
		if err := p.Sink.Write(pk); err != nil {
			return n, err
		}
		n++
		p.stages.sink(n)
		p.tick(pk)
		if p.count != 0 && n >= p.count {
			break
		}
	}
	return n, nil
}

// Close closes the sink: it prints what it still holds and flushes the output.
func (p *Pipeline) Close() error { return p.Sink.Close() }

// ifaceNames returns a stage that fills Packet.Iface from Packet.Ifindex when the source left it
// empty.
func ifaceNames(names map[uint32]string) stages.Stage {
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		return func(yield func(*stages.Packet) bool) {
			for p := range src {
				if p.Iface == "" {
					p.Iface = names[p.Ifindex]
				}
				if !yield(p) {
					return
				}
			}
		}
	}
}
