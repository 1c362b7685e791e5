// Package names gives addresses their names: Resolver, the non-blocking reverse-DNS (PTR)
// stage, and Wire, the names that DNS answers seen on the wire give (its stage learns them from
// the decoded responses and shows them). Names are kept as DNS presents them; the sinks
// escape them for the terminal. A new source of names is one more stage here, set into the
// chain by package views.
package names

import (
	"fmt"
	"iter"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Mode says where the net_watch line takes an address's name from (`--names`).
type Mode uint8

// Names modes.
const (
	ModeBoth Mode = iota // the name seen in DNS answers on the wire, else a PTR lookup (default)
	ModeWire             // only names seen on the wire; no PTR lookups (a sensor that sends nothing)
	ModePTR              // only PTR lookups
)

// ParseMode parses the value of `--names`: wire, ptr or both ("" means both).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "both":
		return ModeBoth, nil
	case "wire":
		return ModeWire, nil
	case "ptr":
		return ModePTR, nil
	}
	return ModeBoth, fmt.Errorf("--names %q: want wire, ptr or both", s)
}

// Wire remembers the names that DNS answers seen on the wire give to addresses: an A or
// AAAA answer names its address with the question's name (the name the client asked for, even
// when CNAMEs led to the address). Only an answer the DNS decoder matched to a query the
// sensor saw teaches a name (same id, same question, from the address and port the query went
// to, within the query's timeout: stages.DNSInfo.Matched): anyone can send a response, and an
// unsolicited one must not rename an address. It is bounded (an LRU of its size) and safe for
// concurrent use.
type Wire struct {
	cache  *lru.Cache[netip.Addr, wireName]
	size   int
	minTTL time.Duration
	added  atomic.Bool // a name was ever added: until then Lookup takes no lock
	stats  struct{ learned, evicted, unmatched atomic.Uint64 }
	peak   atomic.Int64 // the most names held at once
}

// WireStats counts what a Wire did.
type WireStats struct {
	Learned   uint64 // names added (an address named again counts again)
	Names     int    // addresses named now
	Evicted   uint64 // names pushed out of the full table
	Unmatched uint64 // responses with A or AAAA answers not learned: matched to no query
}

type wireName struct {
	name    string
	expires time.Time
}

// DefaultWireSize is the capacity NewWire uses for a size of 0.
const DefaultWireSize = 65536

// NewWire returns a table of at most size names (0: DefaultWireSize). A name is kept for
// its record's TTL, but never less than minTTL (0: 10 minutes), because connections outlive TTLs.
func NewWire(size int, minTTL time.Duration) *Wire {
	if size <= 0 {
		size = DefaultWireSize
	}
	if minTTL <= 0 {
		minTTL = 10 * time.Minute
	}
	w := &Wire{size: size, minTTL: minTTL}
	w.cache, _ = lru.NewWithEvict(size, func(netip.Addr, wireName) { w.stats.evicted.Add(1) }) // size > 0: never fails
	return w
}

// Stats returns the counters so far.
func (w *Wire) Stats() WireStats {
	return WireStats{Learned: w.stats.learned.Load(), Names: w.cache.Len(), Evicted: w.stats.evicted.Load(),
		Unmatched: w.stats.unmatched.Load()}
}

// Lookup returns the name the wire gave to a, if one is known and has not expired at now
// (packet time; the zero time skips the expiry check). It does not allocate.
func (w *Wire) Lookup(a netip.Addr, now time.Time) (string, bool) {
	if w == nil || !w.added.Load() {
		return "", false
	}
	// Peek takes the read lock only; the LRU order is that of learning, which suits names
	// that are kept for their TTL anyway.
	n, ok := w.cache.Peek(a.Unmap())
	if !ok {
		return "", false
	}
	if !now.IsZero() && now.After(n.expires) {
		return "", false
	}
	return n.name, true
}

// Len returns how many addresses have a name.
func (w *Wire) Len() int { return w.cache.Len() }

// Size returns the most names the table holds.
func (w *Wire) Size() int { return w.size }

// Peak returns the most names the table has held at once.
func (w *Wire) Peak() int { return int(w.peak.Load()) }

// Evicted returns how many names were pushed out to make room for others.
func (w *Wire) Evicted() int64 { return int64(w.stats.evicted.Load()) }

// Add names a for ttl from now.
func (w *Wire) Add(a netip.Addr, name string, ttl time.Duration, now time.Time) {
	if ttl < w.minTTL {
		ttl = w.minTTL
	}
	w.cache.Add(a.Unmap(), wireName{name: name, expires: now.Add(ttl)}) // an eviction is counted by the cache's callback
	if n := int64(w.cache.Len()); n > w.peak.Load() {
		w.peak.Store(n) // Add's callers are one stage goroutine: no lost update
	}
	w.added.Store(true)
	w.stats.learned.Add(1)
}

// Learn takes the A and AAAA answers of a successful response matched to its query (others
// teach nothing: an unmatched one is counted). The name given to an address is the question's
// name when the answer's owner is that name or is reached from it through the message's CNAME
// answers; otherwise the owner's name.
func (w *Wire) Learn(info *stages.DNSInfo, now time.Time) {
	if w == nil || !info.Response || info.Rcode != 0 {
		return
	}
	if !info.Matched {
		for _, r := range info.Answers {
			if r.Type == 1 || r.Type == 28 {
				w.stats.unmatched.Add(1)
				break
			}
		}
		return
	}
	qname := ""
	if len(info.Questions) > 0 {
		qname = info.Questions[0].Name
	}
	for _, r := range info.Answers {
		if r.Type != 1 && r.Type != 28 { // A, AAAA
			continue
		}
		a := r.Addr
		if !a.IsValid() {
			continue
		}
		name := r.Name
		if qname != "" && reachesViaCNAME(info.Answers, qname, r.Name) {
			name = qname
		}
		w.Add(a, name, time.Duration(r.TTL)*time.Second, now)
	}
}

// reachesViaCNAME reports whether owner is from or is reached from it by following CNAME
// answers (at most 8 steps; names compare case-insensitively).
func reachesViaCNAME(answers []stages.DNSRecord, from, owner string) bool {
	cur := from
	for step := 0; step < 8; step++ {
		if equalFoldASCII(cur, owner) {
			return true
		}
		next := ""
		for _, r := range answers {
			if r.Type == 5 && equalFoldASCII(r.Name, cur) { // CNAME
				next = r.Data
				break
			}
		}
		if next == "" {
			return false
		}
		cur = next
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Stage returns the stage of the wire names: it learns the names of every successful DNS
// response the chain decoded and matched to its query (Packet.DNS: see Learn), then sets SrcDomain and DstDomain to the
// name DNS answers on the wire gave the address, when there is one and named(class) says the
// address is one a name should show for (nil: every address). It goes after the stage that
// decodes DNS, and after the reverse-DNS stage, so that a wire name wins over a PTR name. For
// net_watch, named is `c == ClassPublic`: the addresses that would get a PTR lookup, while
// internal and special ones keep their class. It does not allocate.
func (w *Wire) Stage(named func(stages.Class) bool) stages.Stage {
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		return func(yield func(*stages.Packet) bool) {
			for p := range src {
				for d := p.DNS; d != nil; d = d.Next {
					w.Learn(d, p.Time)
				}
				if p.IPVersion != 0 {
					if named == nil || named(p.SrcClass) {
						if n, ok := w.Lookup(p.Src, p.Time); ok {
							p.SrcDomain = n
						}
					}
					if named == nil || named(p.DstClass) {
						if n, ok := w.Lookup(p.Dst, p.Time); ok {
							p.DstDomain = n
						}
					}
				}
				if !yield(p) {
					return
				}
			}
		}
	}
}
