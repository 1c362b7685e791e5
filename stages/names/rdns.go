package names

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/miekg/dns"
)

// ResolverConfig configures the reverse-DNS stage. Zero fields take the defaults in brackets.
type ResolverConfig struct {
	Servers    []string      // DNS servers "host:port" (--dns-server); [from ResolvConf]
	ResolvConf string        // [/etc/resolv.conf]
	HostsFile  string        // [/etc/hosts]; "-" reads none
	Wait       time.Duration // longest a packet is held back for its names [DefaultWait]
	Timeout    time.Duration // per query and server [DefaultTimeout]
	Workers    int           // DNS queries running at once at most [32]
	Queue      int           // the in-flight table: lookups requested and not yet applied at most [DefaultQueue]
	CacheSize  int           // cached names and failures [DefaultCacheSize]
	MaxHeld    int           // packets held back at most [DefaultMaxHeld]
	MinTTL     time.Duration // shortest time a name is cached [10s]
	MaxTTL     time.Duration // longest time a name is cached [1h]
	NegTTL     time.Duration // how long a failure without SOA is cached [60s]
	Rate       int           // lookups started per second at most, in bursts of as many [DefaultRate]
	Live       bool          // the source blocks (ring buffer): hold packets with a timer, not on the next packet
}

// Defaults of ResolverConfig, which the command line's flags show.
const (
	DefaultWait      = 200 * time.Millisecond
	DefaultTimeout   = time.Second
	DefaultQueue     = 1024
	DefaultCacheSize = 65536
	DefaultMaxHeld   = 4096
	// DefaultRate bounds the PTR queries a scan makes the sensor send: a scan of a /16 is
	// 65536 lookups, which at a fast resolver's pace cost more than every packet of it.
	DefaultRate = 5000
)

func (c *ResolverConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defi := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Wait, DefaultWait)
	def(&c.Timeout, DefaultTimeout)
	def(&c.MinTTL, 10*time.Second)
	def(&c.MaxTTL, time.Hour)
	def(&c.NegTTL, 60*time.Second)
	defi(&c.Workers, 32)
	defi(&c.Queue, DefaultQueue)
	defi(&c.CacheSize, DefaultCacheSize)
	defi(&c.MaxHeld, DefaultMaxHeld)
	defi(&c.Rate, DefaultRate)
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	if c.HostsFile == "" {
		c.HostsFile = "/etc/hosts"
	}
}

// ResolverStats counts what the reverse-DNS stage did. Read it with Resolver.Stats.
type ResolverStats struct {
	Lookups     uint64 // queries started
	CacheHits   uint64 // addresses answered from the cache (a stale name served while refreshed included)
	Answers     uint64 // names found
	Failures    uint64 // lookups that found no name (Outcomes says how each ended)
	Dropped     uint64 // lookups not started because the in-flight table was full (retried by later packets)
	RateLimited uint64 // lookups not started because Rate was spent (retried by later packets)
	Held        uint64 // packets held back waiting for a name
	Expired     uint64 // held packets released before their name arrived (by the bounded wait, a full queue or a stop)
	Overflowed  uint64 // of those, released because the held queue was full (MaxHeld)
	Evicted     uint64 // cache entries pushed out by its bound (CacheSize)
	MaxInFlight int    // most lookups requested and not yet applied (queued, running or answered)
	MaxQueries  int    // most DNS queries running at once (at most Workers)
	MaxHeld     int    // most packets held back at once
	CacheLen    int    // names and failures cached now
	InFlight    int    // lookups requested and not yet applied now
	// Outcomes counts the lookups that ended by how they ended (stages.RDNSName,
	// RDNSNXDomain, RDNSTimeout, ...).
	Outcomes [stages.NumRDNS]uint64
	// Config is the configuration the stage ran with (defaults filled in), for the bounds.
	Config ResolverConfig
}

type rdnsEntry struct {
	name    string      // sanitized name, stages.NXDomain, or "" (no name: the address keeps its class)
	outcome stages.RDNS // how the lookup ended; RDNSPending in the front cache: a lookup is pending, do not wait
	expires int64       // monotonic nanoseconds; 0 never (hosts file)
}

// frontSize is the number of slots of the direct-mapped cache that spares hot addresses the LRU's
// map lookup and list update.
const frontSize = 1024

type frontEntry struct {
	addr netip.Addr
	rdnsEntry
}

func frontIndex(a netip.Addr) int {
	if a.Is4() {
		b := a.As4()
		return int((uint64(binary.LittleEndian.Uint32(b[:]))*0x9e3779b97f4a7c15)>>54) & (frontSize - 1)
	}
	b := a.As16()
	hi := binary.LittleEndian.Uint64(b[:8])
	lo := binary.LittleEndian.Uint64(b[8:])
	return int(((hi^lo)*0x9e3779b97f4a7c15)>>54) & (frontSize - 1)
}

type rdnsResult struct {
	addr    netip.Addr
	name    string // "" means failure
	outcome stages.RDNS
	ttl     time.Duration
	at      int64 // monotonic nanoseconds when the answer came
}

// Resolver is the non-blocking reverse-DNS stage. Its cache belongs to the goroutine that runs
// the stage; lookups run in a bounded pool of workers that report back over a channel, so a
// cached name costs two map lookups and no allocation, and a slow or dead server only ever
// delays a packet by ResolverConfig.Wait.
type Resolver struct {
	cfg    ResolverConfig
	hosts  map[netip.Addr]string
	client *dns.Client

	cache    *nameCache
	front    *[frontSize]frontEntry // direct-mapped cache in front of the LRU
	inflight map[netip.Addr]int64   // address -> when its lookup started
	givenUp  int64                  // packets no longer wait for lookups started at or before this
	gen      uint64                 // results applied so far: held packets re-check only when it moves
	reqs     chan netip.Addr
	results  chan rdnsResult

	held    []*heldPacket // FIFO ring of packets waiting for names
	head, n int
	free    []*heldPacket
	slab    []heldPacket // the slots, allocated together when first needed

	base    time.Time
	now     int64
	ticks   uint32
	lastSec int64

	stats  ResolverStats // owned by the stage goroutine
	inFl   int
	tokens float64 // lookups that may start now (Rate per second, at most Rate)
	filled int64   // when tokens was last refilled

	active, maxActive atomic.Int64 // DNS queries running now, and at most

	mu  sync.Mutex
	pub ResolverStats // published copy of stats

	hurry     chan struct{} // closed by Hurry
	hurried   atomic.Bool
	hurryOnce sync.Once
}

type heldPacket struct {
	p        stages.Packet
	buf      []byte
	deadline int64
	gen      uint64 // Resolver.gen when the names were last looked at
	waitSrc  bool
	waitDst  bool
}

// NewResolver reads the hosts file and the resolver configuration and returns the stage
// state. Run it as a stage with Stage; one Resolver serves one chain at a time.
func NewResolver(cfg ResolverConfig) (*Resolver, error) {
	cfg.setDefaults()
	r := &Resolver{cfg: cfg, hosts: map[netip.Addr]string{}, base: time.Now(), hurry: make(chan struct{})}
	if len(r.cfg.Servers) == 0 {
		cc, err := dns.ClientConfigFromFile(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("reverse DNS: read %s: %w (use --dns-server or -n)", cfg.ResolvConf, err)
		}
		for _, s := range cc.Servers {
			r.cfg.Servers = append(r.cfg.Servers, net.JoinHostPort(s, cc.Port))
		}
		if len(r.cfg.Servers) == 0 {
			return nil, fmt.Errorf("reverse DNS: no nameserver in %s (use --dns-server or -n)", cfg.ResolvConf)
		}
	} else {
		for i, s := range r.cfg.Servers {
			if _, _, err := net.SplitHostPort(s); err != nil {
				r.cfg.Servers[i] = net.JoinHostPort(s, "53")
			}
		}
	}
	if cfg.HostsFile != "-" {
		if err := r.readHosts(cfg.HostsFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("reverse DNS: %w", err)
		}
	}
	r.cache = newNameCache(r.cfg.CacheSize)
	r.front = new([frontSize]frontEntry)
	r.client = &dns.Client{Net: "udp", Timeout: r.cfg.Timeout, UDPSize: 1232}
	r.held = make([]*heldPacket, r.cfg.MaxHeld)
	return r, nil
}

func (r *Resolver) readHosts(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		a = a.Unmap().WithZone("")
		if _, dup := r.hosts[a]; !dup {
			r.hosts[a] = cleanName(fields[1])
		}
	}
	return sc.Err()
}

// Stats returns the counters as last published: when the stage ends and every 4096 packets.
func (r *Resolver) Stats() ResolverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pub
}

// Tables describes the stage's bounded tables (stages.StatsReporter): the cache, the
// in-flight table and the held queue.
func (r *Resolver) Tables() []stages.TableStats {
	st := r.Stats()
	c := st.Config
	return []stages.TableStats{
		{Name: "rdns_cache", Flag: "--rdns-cache", Len: st.CacheLen, Peak: st.CacheLen, Max: c.CacheSize, Evicted: int64(st.Evicted)},
		{Name: "rdns_inflight", Flag: "--rdns-max-inflight", Len: st.InFlight, Peak: st.MaxInFlight, Max: c.Queue, Evicted: int64(st.Dropped)},
		{Name: "rdns_held", Flag: "--rdns-max-held", Len: 0, Peak: st.MaxHeld, Max: c.MaxHeld, Evicted: int64(st.Overflowed)},
	}
}

// Counters counts the lookups by outcome, and the packets that left before their name
// (stages.StatsReporter).
func (r *Resolver) Counters() []stages.Counter {
	st := r.Stats()
	out := []stages.Counter{{Name: "rdns_lookups", Value: st.Lookups}, {Name: "rdns_cache_hits", Value: st.CacheHits}, {Name: "rdns_rate_limited", Value: st.RateLimited}}
	for o := stages.RDNSName; o < stages.NumRDNS; o++ {
		if o == stages.RDNSHosts || o == stages.RDNSPending {
			continue
		}
		out = append(out, stages.Counter{Name: "rdns_" + o.String(), Value: st.Outcomes[o]})
	}
	return append(out, stages.Counter{Name: "rdns_held", Value: st.Held},
		stages.Counter{Name: "rdns_released_unnamed", Value: st.Expired})
}

func (r *Resolver) clock() int64 { return int64(time.Since(r.base)) }

// Stage returns the reverse-DNS stage: for each public address, the cached name, or nxdomain
// for an NXDOMAIN answer (which also sets stages.TagNXDomain), or the address's class when the
// lookup failed otherwise (a timeout, a refusal, an unreachable server: Packet.SrcRDNS and
// DstRDNS say which); on a miss a lookup starts and the packet is held back until its names
// are known or ResolverConfig.Wait has passed. Order is preserved.
func (r *Resolver) Stage() stages.Stage {
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		return func(yield func(*stages.Packet) bool) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r.start(ctx)
			if r.cfg.Live {
				r.runLive(ctx, src, yield)
			} else {
				r.runSync(src, yield)
			}
			r.syncStats()
		}
	}
}

func (r *Resolver) start(ctx context.Context) {
	// The in-flight table holds at most Queue lookups (request refuses more), so neither
	// channel can fill: a worker never blocks on an answer.
	r.reqs = make(chan netip.Addr, r.cfg.Queue)
	r.results = make(chan rdnsResult, r.cfg.Queue)
	r.inflight = make(map[netip.Addr]int64)
	r.givenUp = -1 << 62
	clear(r.held) // a run the consumer stopped early may have left packets held
	r.head, r.n, r.inFl = 0, 0, 0
	r.now = r.clock()
	r.tokens, r.filled = float64(r.cfg.Rate), r.now
	for range r.cfg.Workers {
		go r.worker(ctx, r.reqs, r.results)
	}
}

// worker runs lookups for one run of the stage: its channels are that run's (a worker of a run
// that ended may still be returning when the next run makes new ones).
func (r *Resolver) worker(ctx context.Context, reqs <-chan netip.Addr, results chan<- rdnsResult) {
	// Each worker keeps one UDP socket per server: a socket made and closed per query costs
	// more than the query (miekg/dns matches each answer to its query by id).
	conns := map[string]*dns.Conn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-reqs:
			n := r.active.Add(1)
			for m := r.maxActive.Load(); n > m && !r.maxActive.CompareAndSwap(m, n); m = r.maxActive.Load() {
			}
			res := r.lookup(ctx, a, conns)
			r.active.Add(-1)
			res.at = r.clock()
			select {
			case results <- res:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (r *Resolver) apply(res rdnsResult) {
	delete(r.inflight, res.addr)
	r.gen++
	r.inFl--
	ttl := min(max(res.ttl, r.cfg.MinTTL), r.cfg.MaxTTL)
	name := res.name
	switch res.outcome {
	case stages.RDNSName:
		r.stats.Answers++
	case stages.RDNSNXDomain:
		name = stages.NXDomain
		r.stats.Failures++
	default:
		name = "" // the address keeps its class; the outcome says why
		r.stats.Failures++
	}
	r.stats.Outcomes[res.outcome]++
	e := rdnsEntry{name: name, outcome: res.outcome, expires: res.at + int64(ttl)}
	r.cache.Add(res.addr, e)
	// The front cache takes every answer: a held packet finds it there even when the
	// cache's admission did not keep it.
	r.front[frontIndex(res.addr)] = frontEntry{addr: res.addr, rdnsEntry: e}
}

// drain applies every result that has arrived, without blocking.
func (r *Resolver) drain() {
	if len(r.results) == 0 {
		return // the common case, without the cost of a select
	}
	for {
		select {
		case res := <-r.results:
			r.apply(res)
		default:
			return
		}
	}
}

// name resolves one address from the cache. It returns the entry to show (name "" keeps the
// class) and whether the packet should wait for a lookup that is now in flight.
func (r *Resolver) name(a netip.Addr) (rdnsEntry, bool) {
	f := &r.front[frontIndex(a)]
	if f.addr == a && (f.expires == 0 || f.expires >= r.now) {
		if r.ticks&63 == 0 && f.outcome != stages.RDNSPending {
			r.cache.Get(a) // now and then, so that a hot address stays in the cache's favour
		}
		if f.outcome != stages.RDNSPending {
			r.stats.CacheHits++
		}
		return f.rdnsEntry, false
	}
	if e, ok := r.cache.Get(a); ok {
		r.stats.CacheHits++
		if e.expires != 0 && e.expires < r.now {
			r.request(a) // serve the stale name while it is refreshed
		} else {
			*f = frontEntry{addr: a, rdnsEntry: e}
		}
		return e, false
	}
	if h, ok := r.hosts[a]; ok {
		e := rdnsEntry{name: h, outcome: stages.RDNSHosts}
		r.cache.Add(a, e)
		*f = frontEntry{addr: a, rdnsEntry: e}
		return e, false
	}
	pending := rdnsEntry{outcome: stages.RDNSPending}
	if start, ok := r.inflight[a]; ok {
		// Wait only while the lookup is young: once it is older than Wait (or the held queue
		// overflowed), packets pass with what is known and the name comes when it comes. The
		// front cache remembers that for a while, so a dead server costs what a cache hit costs.
		if start > r.givenUp && r.now-start < int64(r.cfg.Wait) && !r.hurried.Load() {
			return pending, true
		}
		pending.expires = r.now + int64(r.cfg.Wait)
		*f = frontEntry{addr: a, rdnsEntry: pending}
		return pending, false
	}
	// A packet waits for a new lookup only while the lookups keep up: when Workers of them
	// already wait for a worker (a scan), packets pass with what is known and the names name
	// the packets that come after. A scan then costs what the stage costs, not a lookup per
	// packet on the way out.
	keepUp := len(r.reqs) < r.cfg.Workers
	return pending, r.request(a) && keepUp && !r.hurried.Load()
}

// request starts a lookup unless one is in flight; false if the in-flight table is full.
func (r *Resolver) request(a netip.Addr) bool {
	if _, ok := r.inflight[a]; ok {
		return true
	}
	if r.inFl >= r.cfg.Queue {
		r.stats.Dropped++
		return false
	}
	if r.tokens < 1 {
		r.tokens = min(r.tokens+float64(r.now-r.filled)*float64(r.cfg.Rate)/1e9, float64(r.cfg.Rate))
		r.filled = r.now
		if r.tokens < 1 {
			r.stats.RateLimited++
			return false
		}
	}
	select {
	case r.reqs <- a:
		r.tokens--
		r.inflight[a] = r.now
		r.stats.Lookups++
		r.inFl++
		r.stats.MaxInFlight = max(r.stats.MaxInFlight, r.inFl)
		return true
	default:
		r.stats.Dropped++
		return false
	}
}

// annotate fills the public addresses' domains; it reports which sides wait for a lookup.
func (r *Resolver) annotate(p *stages.Packet) (waitSrc, waitDst bool) {
	if p.SrcClass == stages.ClassPublic {
		var e rdnsEntry
		e, waitSrc = r.name(p.Src)
		r.setSrc(p, e)
	}
	if p.DstClass == stages.ClassPublic {
		var e rdnsEntry
		e, waitDst = r.name(p.Dst)
		r.setDst(p, e)
	}
	return
}

func (r *Resolver) setSrc(p *stages.Packet, e rdnsEntry) {
	p.SrcRDNS = e.outcome
	if e.name != "" {
		p.SrcDomain = e.name
	}
	if e.outcome == stages.RDNSNXDomain {
		p.Tags |= stages.TagNXDomain
	}
}

func (r *Resolver) setDst(p *stages.Packet, e rdnsEntry) {
	p.DstRDNS = e.outcome
	if e.name != "" {
		p.DstDomain = e.name
	}
	if e.outcome == stages.RDNSNXDomain {
		p.Tags |= stages.TagNXDomain
	}
}

func (r *Resolver) syncStats() {
	r.stats.CacheLen = r.cache.Len()
	r.stats.Evicted = r.cache.evicted
	r.stats.InFlight = r.inFl
	r.stats.Config = r.cfg
	r.stats.MaxQueries = int(r.maxActive.Load())
	r.mu.Lock()
	r.pub = r.stats
	r.mu.Unlock()
}

// cleanName is a name from a PTR answer or the hosts file as the resolver keeps it: in the form
// DNSInfo holds names (protocols.DNSName: no trailing dot, odd bytes as miekg/dns presents them),
// at most MaxNameLen bytes (a longer one is cut, ending in "..."). The sinks escape it for the
// terminal.
func cleanName(s string) string {
	s = protocols.DNSName(s)
	if len(s) > MaxNameLen {
		s = s[:MaxNameLen-3] + "..."
	}
	return s
}

// MaxNameLen is the longest name the resolver keeps (a DNS name has at most 253 characters).
const MaxNameLen = 253
