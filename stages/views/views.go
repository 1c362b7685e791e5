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
	"github.com/chains-sensor/chains-sensor/stages/names"
)

// Config holds everything a chain is built from: the shared flags, resolved, and each stage's
// own settings. Build reads it; nothing writes back.
type Config struct {
	View     string               // --view: a name in List ("" is DefaultView)
	Format   string               // -o: "text" or "json", checked by the caller
	UTC      bool                 // --utc
	Color    bool                 // --color, resolved against the terminal
	Live     bool                 // the source is live: flush on a timer, hold packets on a timer
	Count    uint64               // -c N: Pipeline.Run stops after N packets (0: no limit)
	Ifaces   []stages.Interface   // the watched interfaces (their prefixes are internal)
	Internal []netip.Prefix       // --internal
	NoDNS    bool                 // -n: no names at all, only address classes
	Names    names.Mode           // --names: names from DNS answers on the wire, PTR lookups, or both
	RDNS     names.ResolverConfig // the reverse-DNS stage (Live is set from Live)
	Flows    stages.FlowConfig    // the flow table of the views that read the application layer
	DNS      stages.DNSConfig     // the DNS decoder
	TagFuncs []stages.TagFunc     // user tag functions, run after the names
}

// View is one entry of List.
type View struct {
	Name string // --view value
	Doc  string // one line for --help
	// App says the view reads the application layer: the flow table and the DNS, HTTP and
	// TLS decoders run before its sink.
	App bool
	// sink makes the view's sink; with App, st is the application stage the view prints from.
	sink func(cfg *Config, out *stages.Output, app *stages.AppConfig) (stages.Stage, stages.Sink)
}

// DefaultView is the view used when Config.View is "".
const DefaultView = "net_watch"

// List holds the views, the default first.
var List = []View{
	{Name: "net_watch", Doc: "one line per packet: who talks to whom (the default)",
		sink: func(cfg *Config, out *stages.Output, _ *stages.AppConfig) (stages.Stage, stages.Sink) {
			return nil, packetSink(cfg, out, stages.NewNetWatchSink(out, cfg.UTC, cfg.Color))
		}},
	{Name: "packets", Doc: "a block per packet with every layer, as the original PacketPrinter",
		sink: func(cfg *Config, out *stages.Output, _ *stages.AppConfig) (stages.Stage, stages.Sink) {
			return nil, packetSink(cfg, out, stages.NewPacketsSink(out, cfg.UTC, cfg.Color))
		}},
	appView(stages.ViewURLWatch, "a line per HTTP request or response and per TLS hello (SNI, ALPN, versions, JA4/JA4S)"),
	appView(stages.ViewWeirdDNS, "each weird DNS message: why it is weird, its queries and answers"),
	appView(stages.ViewFlows, "a line per finished flow: packets and bytes each way, TCP state, Community ID"),
}

func appView(name, doc string) View {
	return View{Name: name, Doc: doc, App: true,
		sink: func(cfg *Config, out *stages.Output, app *stages.AppConfig) (stages.Stage, stages.Sink) {
			st, sink, _ := stages.NewAppView(name, *app, out,
				stages.AppViewOptions{JSON: cfg.Format == "json", UTC: cfg.UTC, Color: cfg.Color})
			sink.OnClose = out.Close
			return st, sink
		}}
}

// packetSink is the per-packet sink: JSON lines with -o json, else the view's text.
func packetSink(cfg *Config, out *stages.Output, text stages.Sink) stages.Sink {
	if cfg.Format == "json" {
		return stages.NewJSONSink(out, cfg.UTC)
	}
	return text
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
	Stage stages.Stage // every stage, in order
	Sink  stages.Sink  // the view's sink
	count uint64
}

// Build builds the chain of cfg.View writing to out. The application views run the shared
// front (domains, then the names) before their application stage, so that a packet's Flow is
// still its own (not yet recycled for a later flow) when the sink prints the packet.
func Build(cfg *Config, out *stages.Output) (*Pipeline, error) {
	name := cfg.View
	if name == "" {
		name = DefaultView
	}
	v, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown view %q (views: %s)", name, strings.Join(Names(), ", "))
	}
	front, err := frontStages(cfg)
	if err != nil {
		return nil, err
	}
	app := stages.AppConfig{Flows: cfg.Flows, DNS: cfg.DNS}
	st, sink := v.sink(cfg, out, &app)
	if st != nil {
		front = append(front, st)
	}
	return &Pipeline{Stage: stages.Chain(front...), Sink: sink, count: cfg.Count}, nil
}

// frontStages are the stages every view shares: interface names (when the interfaces are
// known), the address classes, then unless -n the names, then the user's tag functions.
func frontStages(cfg *Config) ([]stages.Stage, error) {
	var chain []stages.Stage
	if len(cfg.Ifaces) > 0 {
		names := make(map[uint32]string, len(cfg.Ifaces))
		for _, it := range cfg.Ifaces {
			names[uint32(it.Index)] = it.Name
		}
		chain = append(chain, stages.Meta(names))
	}
	chain = append(chain, stages.Domains(stages.NewClassifier(cfg.Internal, cfg.Ifaces)))
	if !cfg.NoDNS {
		// Names: the DNS answers seen on the wire name the addresses they resolve (--names
		// wire or both), PTR lookups name the rest (ptr or both); a wire name wins over a PTR
		// name. Both only for public addresses: internal and special ones show their class.
		var wire *names.Wire
		if cfg.Names != names.ModePTR {
			wire = names.NewWire(0, 0)
			chain = append(chain, stages.DNS(stages.DNSConfig{}), wire.Learner())
		}
		if cfg.Names != names.ModeWire {
			rc := cfg.RDNS
			rc.Live = cfg.Live
			r, err := names.NewResolver(rc)
			if err != nil {
				return nil, err
			}
			chain = append(chain, r.Stage())
		}
		if wire != nil {
			chain = append(chain, wire.Namer(func(c stages.Class) bool { return c == stages.ClassPublic }))
		}
	}
	if len(cfg.TagFuncs) > 0 {
		chain = append(chain, stages.Tag(cfg.TagFuncs...))
	}
	return chain, nil
}

// Run pulls src through the chain into the sink until src ends, the sink fails, or Config.Count
// packets were written. It returns how many packets the sink got. It does not close the sink.
func (p *Pipeline) Run(src iter.Seq[*stages.Packet]) (uint64, error) {
	var n uint64
	for pk := range p.Stage(src) {
		if err := p.Sink.Write(pk); err != nil {
			return n, err
		}
		n++
		if p.count != 0 && n >= p.count {
			break
		}
	}
	return n, nil
}

// Close closes the sink: it prints what it still holds and flushes the output.
func (p *Pipeline) Close() error { return p.Sink.Close() }
