package stages

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// Config holds the settings every view shares: the command line's shared flags, resolved.
type Config struct {
	NoDNS     bool           // -n: no reverse DNS
	Count     uint64         // -c N: stop after N packets (0: no limit); the caller enforces it with Run
	Format    string         // -o: "text" or "json"
	View      string         // --view: a registered view name
	DNSServer string         // --dns-server HOST:PORT; "" uses resolv.conf
	UTC       bool           // --utc
	Color     bool           // --color, resolved against the terminal
	Internal  []netip.Prefix // --internal
	Ifaces    []Interface    // the watched interfaces (their prefixes are internal)
	Live      bool           // the source is a live capture: flush on a timer, hold packets on a timer
	RDNS      RDNSConfig     // reverse-DNS tuning; Servers and Live are filled from the fields above
	TagFuncs  []TagFunc      // user tag functions, run after reverse DNS (see NewTag)
	Names     NamesMode      // --names: names from DNS answers on the wire, PTR lookups, or both
}

// Built holds what a view built: the chain to run, the sink at its end, and the resolver (nil
// with -n) for its statistics.
type Built struct {
	Stage    Stage
	Sink     Sink
	Resolver *Resolver
}

// View is a way of looking at the packets: a chain and a sink. Views register themselves with
// RegisterView (typically in an init function) and are chosen with --view. A view that prints
// its own objects appends its stages to base and returns its own Sink; it honours cfg.Format
// ("json": one object a line) and cfg.Color, and writes through out (buffered, flushed on a
// timer when live). Its Sink's Close prints what it still holds (open flows) and closes out:
//
//	func init() {
//		RegisterView(View{Name: "flows", Doc: "a line per finished flow",
//			Build: func(cfg *Config, base Stage, out *Output) (Stage, Sink, error) {
//				ft := NewFlowTable(...)
//				return Chain(base, ft.Stage()), newFlowSink(ft, cfg, out), nil
//			}})
//	}
type View struct {
	Name string // --view value
	Doc  string // one line for --help
	// Build returns the view's chain and sink. base is the shared front of every chain
	// (domains, then reverse DNS unless -n); a view appends its own stages to it.
	Build func(cfg *Config, base Stage, out *Output) (Stage, Sink, error)
}

var views = struct {
	sync.Mutex
	m map[string]View
}{m: map[string]View{}}

// RegisterView adds a view; it panics on a duplicate name (a programming error).
func RegisterView(v View) {
	views.Lock()
	defer views.Unlock()
	if _, dup := views.m[v.Name]; dup {
		panic("stages: view " + v.Name + " registered twice")
	}
	views.m[v.Name] = v
}

// LookupView returns the view registered under name.
func LookupView(name string) (View, bool) {
	views.Lock()
	defer views.Unlock()
	v, ok := views.m[name]
	return v, ok
}

// ViewNames returns the registered view names, sorted.
func ViewNames() []string {
	views.Lock()
	defer views.Unlock()
	var names []string
	for n := range views.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// DefaultView is the view used when --view is not given.
const DefaultView = "net_watch"

// BaseChain builds the front every view shares: Meta (interface names from cfg.Ifaces, when
// given), the Domains stage (classes, class names, direction tags), unless cfg.NoDNS the
// reverse-DNS stage, and the user's tag functions (cfg.TagFuncs).
func BaseChain(cfg *Config) (Stage, *Resolver, error) {
	cls := NewClassifier(cfg.Internal, cfg.Ifaces)
	front := Domains(cls)
	if len(cfg.Ifaces) > 0 {
		names := make(map[uint32]string, len(cfg.Ifaces))
		for _, it := range cfg.Ifaces {
			names[uint32(it.Index)] = it.Name
		}
		front = Chain(Meta(names), front)
	}
	var tags []Stage
	if len(cfg.TagFuncs) > 0 {
		tags = append(tags, Tag(cfg.TagFuncs...))
	}
	if cfg.NoDNS {
		return Chain(append([]Stage{front}, tags...)...), nil, nil
	}
	// Names: the DNS answers seen on the wire name the addresses they resolve (--names wire or
	// both), PTR lookups name the rest (ptr or both); a wire name wins over a PTR name. Both
	// only for public addresses: internal and special ones show their class.
	chain := []Stage{front}
	var wire *WireNames
	if cfg.Names != NamesPTR {
		wire = NewWireNames(0, 0)
		chain = append(chain, DNS(DNSConfig{Names: wire}))
	}
	var r *Resolver
	if cfg.Names != NamesWire {
		rc := cfg.RDNS
		if cfg.DNSServer != "" {
			rc.Servers = []string{cfg.DNSServer}
		}
		rc.Live = cfg.Live
		var err error
		if r, err = NewResolver(rc); err != nil {
			return nil, nil, err
		}
		chain = append(chain, r.Stage())
	}
	if wire != nil {
		chain = append(chain, PreferWireNames(wire, func(c Class) bool { return c == ClassPublic }))
	}
	return Chain(append(chain, tags...)...), r, nil
}

// Build builds cfg.View (DefaultView when empty) writing to out.
func Build(cfg *Config, out *Output) (*Built, error) {
	name := cfg.View
	if name == "" {
		name = DefaultView
	}
	v, ok := LookupView(name)
	if !ok {
		return nil, fmt.Errorf("unknown view %q (views: %v)", name, ViewNames())
	}
	switch cfg.Format {
	case "", "text", "json":
	default:
		return nil, fmt.Errorf("unknown output format %q (text or json)", cfg.Format)
	}
	base, res, err := BaseChain(cfg)
	if err != nil {
		return nil, err
	}
	st, sink, err := v.Build(cfg, base, out)
	if err != nil {
		return nil, fmt.Errorf("view %s: %w", name, err)
	}
	return &Built{Stage: st, Sink: sink, Resolver: res}, nil
}

// PacketSink returns the per-packet sink for cfg: JSON lines with -o json, else text.
func PacketSink(cfg *Config, out *Output, text Sink) Sink {
	if cfg.Format == "json" {
		return NewJSONSink(out, cfg.UTC)
	}
	return text
}

func init() {
	RegisterView(View{
		Name: "net_watch",
		Doc:  "one line per packet: who talks to whom (the default)",
		Build: func(cfg *Config, base Stage, out *Output) (Stage, Sink, error) {
			return base, PacketSink(cfg, out, NewNetWatchSink(out, cfg.UTC, cfg.Color)), nil
		},
	})
	RegisterView(View{
		Name: "packets",
		Doc:  "a block per packet with every layer, as the original PacketPrinter",
		Build: func(cfg *Config, base Stage, out *Output) (Stage, Sink, error) {
			return base, PacketSink(cfg, out, NewPacketsSink(out, cfg.UTC, cfg.Color)), nil
		},
	})
}
