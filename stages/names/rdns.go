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
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/miekg/dns"
)

// ResolverConfig configures the reverse-DNS stage. Zero fields take the defaults in brackets.
type ResolverConfig struct {
	Servers    []string      // DNS servers "host:port" (--dns-server); [from ResolvConf]
	ResolvConf string        // [/etc/resolv.conf]
	HostsFile  string        // [/etc/hosts]; "-" reads none
	Wait       time.Duration // longest a packet is held back for its names [200ms]
	Timeout    time.Duration // per query and server [1s]
	Workers    int           // lookups in flight at most [32]
	Queue      int           // lookups waiting for a worker at most [1024]
	CacheSize  int           // cached names and failures [16384]
	MaxHeld    int           // packets held back at most [4096]
	MinTTL     time.Duration // shortest time a name is cached [10s]
	MaxTTL     time.Duration // longest time a name is cached [1h]
	NegTTL     time.Duration // how long a failure without SOA is cached [60s]
	Live       bool          // the source blocks (ring buffer): hold packets with a timer, not on the next packet
}

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
	def(&c.Wait, 200*time.Millisecond)
	def(&c.Timeout, time.Second)
	def(&c.MinTTL, 10*time.Second)
	def(&c.MaxTTL, time.Hour)
	def(&c.NegTTL, 60*time.Second)
	defi(&c.Workers, 32)
	defi(&c.Queue, 1024)
	defi(&c.CacheSize, 16384)
	defi(&c.MaxHeld, 4096)
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
	Answers     uint64 // names found
	Failures    uint64 // NXDOMAIN, no PTR, errors and timeouts
	Dropped     uint64 // lookups not started because the queue was full (retried by later packets)
	Held        uint64 // packets held back waiting for a name
	Expired     uint64 // held packets released by the bounded wait before their name arrived
	MaxInFlight int    // most lookups requested and not yet applied (queued, running or answered)
	MaxQueries  int    // most DNS queries running at once (at most Workers)
	MaxHeld     int    // most packets held back at once
	CacheLen    int    // names and failures cached now
}

type rdnsEntry struct {
	name    string // sanitized name, stages.NXDomain, or "" (front cache: lookup pending, do not wait)
	expires int64  // monotonic nanoseconds; 0 never (hosts file)
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
	addr netip.Addr
	name string // "" means failure
	ttl  time.Duration
	at   int64 // monotonic nanoseconds when the answer came
}

// Resolver is the non-blocking reverse-DNS stage. Its cache belongs to the goroutine that runs
// the stage; lookups run in a bounded pool of workers that report back over a channel, so a
// cached name costs two map lookups and no allocation, and a slow or dead server only ever
// delays a packet by ResolverConfig.Wait.
type Resolver struct {
	cfg    ResolverConfig
	hosts  map[netip.Addr]string
	client *dns.Client

	cache    *simplelru.LRU[netip.Addr, rdnsEntry]
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

	stats ResolverStats // owned by the stage goroutine
	inFl  int

	active, maxActive atomic.Int64 // DNS queries running now, and at most

	mu  sync.Mutex
	pub ResolverStats // published copy of stats
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
	r := &Resolver{cfg: cfg, hosts: map[netip.Addr]string{}, base: time.Now()}
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
	cache, err := simplelru.NewLRU[netip.Addr, rdnsEntry](r.cfg.CacheSize, nil)
	if err != nil {
		return nil, fmt.Errorf("reverse DNS cache: %w", err)
	}
	r.cache = cache
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

func (r *Resolver) clock() int64 { return int64(time.Since(r.base)) }

// Stage returns the reverse-DNS stage: for each public address, the cached name (or nxdomain,
// which also sets stages.TagNXDomain); on a miss a lookup starts and the packet is held back until its
// names are known or ResolverConfig.Wait has passed. Order is preserved.
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
	r.reqs = make(chan netip.Addr, r.cfg.Queue)
	r.results = make(chan rdnsResult, r.cfg.Queue+r.cfg.Workers)
	r.inflight = make(map[netip.Addr]int64)
	r.givenUp = -1 << 62
	clear(r.held) // a run the consumer stopped early may have left packets held
	r.head, r.n, r.inFl = 0, 0, 0
	r.now = r.clock()
	for range r.cfg.Workers {
		go r.worker(ctx)
	}
}

func (r *Resolver) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-r.reqs:
			n := r.active.Add(1)
			for m := r.maxActive.Load(); n > m && !r.maxActive.CompareAndSwap(m, n); m = r.maxActive.Load() {
			}
			res := r.lookup(ctx, a)
			r.active.Add(-1)
			res.at = r.clock()
			select {
			case r.results <- res:
			case <-ctx.Done():
				return
			}
		}
	}
}

// lookup asks the servers in turn for the PTR of a.
func (r *Resolver) lookup(ctx context.Context, a netip.Addr) rdnsResult {
	res := rdnsResult{addr: a, ttl: r.cfg.NegTTL}
	arpa, err := dns.ReverseAddr(a.String())
	if err != nil {
		return res
	}
	m := new(dns.Msg)
	m.SetQuestion(arpa, dns.TypePTR)
	for _, srv := range r.cfg.Servers {
		if ctx.Err() != nil {
			return res
		}
		qctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		in, _, err := r.client.ExchangeContext(qctx, m, srv)
		cancel()
		if err != nil || in == nil {
			continue
		}
		name, ttl, asked := ptrAnswer(in, arpa)
		if !asked {
			continue // an answer to another question (its id alone matched): ptr.go
		}
		switch in.Rcode {
		case dns.RcodeSuccess:
			if res.name = cleanName(name); res.name != "" {
				res.ttl = time.Duration(ttl) * time.Second
				return res
			}
			res.ttl = negTTL(in, r.cfg.NegTTL)
			return res
		case dns.RcodeNameError:
			res.ttl = negTTL(in, r.cfg.NegTTL)
			return res
		}
	}
	return res
}

// negTTL is the negative-caching TTL of RFC 2308: the SOA's minimum, capped by its own TTL.
func negTTL(m *dns.Msg, def time.Duration) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
		}
	}
	return def
}

func (r *Resolver) apply(res rdnsResult) {
	delete(r.inflight, res.addr)
	r.gen++
	r.inFl--
	ttl := min(max(res.ttl, r.cfg.MinTTL), r.cfg.MaxTTL)
	name := res.name
	if name == "" {
		name = stages.NXDomain
		r.stats.Failures++
	} else {
		r.stats.Answers++
	}
	e := rdnsEntry{name: name, expires: res.at + int64(ttl)}
	r.cache.Add(res.addr, e)
	if f := &r.front[frontIndex(res.addr)]; f.addr == res.addr {
		f.rdnsEntry = e
	}
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

// name resolves one address from the cache. It returns the name to show and whether the
// packet should wait for a lookup that is now in flight.
func (r *Resolver) name(a netip.Addr) (string, bool) {
	f := &r.front[frontIndex(a)]
	if f.addr == a && (f.expires == 0 || f.expires >= r.now) {
		return f.name, false
	}
	if e, ok := r.cache.Get(a); ok {
		if e.expires != 0 && e.expires < r.now {
			r.request(a) // serve the stale name while it is refreshed
		} else {
			*f = frontEntry{addr: a, rdnsEntry: e}
		}
		return e.name, false
	}
	if h, ok := r.hosts[a]; ok {
		r.cache.Add(a, rdnsEntry{name: h})
		*f = frontEntry{addr: a, rdnsEntry: rdnsEntry{name: h}}
		return h, false
	}
	if start, ok := r.inflight[a]; ok {
		// Wait only while the lookup is young: once it is older than Wait (or the held queue
		// overflowed), packets pass with what is known and the name comes when it comes. The
		// front cache remembers that for a while, so a dead server costs what a cache hit costs.
		if start > r.givenUp && r.now-start < int64(r.cfg.Wait) {
			return "", true
		}
		*f = frontEntry{addr: a, rdnsEntry: rdnsEntry{expires: r.now + int64(r.cfg.Wait)}}
		return "", false
	}
	return "", r.request(a)
}

// request starts a lookup unless one is in flight; false if the queue is full.
func (r *Resolver) request(a netip.Addr) bool {
	if _, ok := r.inflight[a]; ok {
		return true
	}
	select {
	case r.reqs <- a:
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
		var n string
		n, waitSrc = r.name(p.Src)
		if n != "" {
			r.setSrc(p, n)
		}
	}
	if p.DstClass == stages.ClassPublic {
		var n string
		n, waitDst = r.name(p.Dst)
		if n != "" {
			r.setDst(p, n)
		}
	}
	return
}

func (r *Resolver) setSrc(p *stages.Packet, n string) {
	p.SrcDomain = n
	if n == stages.NXDomain {
		p.Tags |= stages.TagNXDomain
	}
}

func (r *Resolver) setDst(p *stages.Packet, n string) {
	p.DstDomain = n
	if n == stages.NXDomain {
		p.Tags |= stages.TagNXDomain
	}
}

func (r *Resolver) syncStats() {
	r.stats.CacheLen = r.cache.Len()
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
