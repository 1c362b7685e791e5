package names

import (
	"encoding/binary"
	"math/bits"
	"net/netip"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// The reverse-DNS cache: bounded, and scan-resistant. A plain LRU smaller than a scan that
// cycles through its addresses evicts every name just before it is needed again, so every
// packet costs a lookup; this one keeps a stable set instead. It is W-TinyLFU's shape
// (Einziger, Friedman, Manes: "TinyLFU: A Highly Efficient Cache Admission Policy", 2017): a
// small LRU window takes every new entry; one the window pushes out enters the main LRU only
// if it has been asked for more often than the main LRU's own victim, as a count-min sketch
// with periodic halving estimates. A scan's addresses, each asked for as often as the next,
// cannot push out what the cache holds; addresses that come back more often than the
// residents do get in.

// nameCache is not safe for concurrent use: it belongs to the stage's goroutine.
type nameCache struct {
	window, main   *simplelru.LRU[netip.Addr, rdnsEntry]
	sketch         sketch
	size, mainSize int
	// candidate is set by the window's eviction callback for Add to judge.
	candidate     netip.Addr
	candidateVal  rdnsEntry
	haveCandidate bool
	evicted       uint64 // entries the bound pushed out (a main victim, or a candidate refused)
}

// newNameCache returns a cache of at most size entries (size >= 1).
func newNameCache(size int) *nameCache {
	c := &nameCache{size: size}
	win := max(size/16, 1)
	if size < 16 {
		win = size // too small to split: a plain LRU
	}
	c.window, _ = simplelru.NewLRU[netip.Addr, rdnsEntry](win, func(k netip.Addr, v rdnsEntry) {
		c.candidate, c.candidateVal, c.haveCandidate = k, v, true
	})
	if m := size - win; m > 0 {
		c.main, _ = simplelru.NewLRU[netip.Addr, rdnsEntry](m, nil)
		c.mainSize = m
	}
	c.sketch.init(size)
	return c
}

// Get returns a's entry and counts the request (the sketch's frequency).
func (c *nameCache) Get(a netip.Addr) (rdnsEntry, bool) {
	c.sketch.add(a)
	if e, ok := c.window.Get(a); ok {
		return e, true
	}
	if c.main != nil {
		return c.main.Get(a)
	}
	return rdnsEntry{}, false
}

// Peek returns a's entry without counting or reordering.
func (c *nameCache) Peek(a netip.Addr) (rdnsEntry, bool) {
	if e, ok := c.window.Peek(a); ok {
		return e, true
	}
	if c.main != nil {
		return c.main.Peek(a)
	}
	return rdnsEntry{}, false
}

// Add stores a's entry (replacing one it has).
func (c *nameCache) Add(a netip.Addr, e rdnsEntry) {
	if c.main != nil && c.main.Contains(a) {
		c.main.Add(a, e)
		return
	}
	c.window.Add(a, e)
	if !c.haveCandidate {
		return
	}
	c.haveCandidate = false
	cand, val := c.candidate, c.candidateVal
	if c.main == nil {
		c.evicted++
		return
	}
	if c.main.Len() < c.mainSize {
		c.main.Add(cand, val)
		return
	}
	victim, _, _ := c.main.GetOldest()
	if c.sketch.estimate(cand) > c.sketch.estimate(victim) {
		c.main.RemoveOldest()
		c.main.Add(cand, val)
	}
	c.evicted++ // the victim or the candidate: one entry left the cache
}

// Len returns the number of entries.
func (c *nameCache) Len() int {
	n := c.window.Len()
	if c.main != nil {
		n += c.main.Len()
	}
	return n
}

// sketch is a count-min sketch of 4-bit counters (four rows, one 64-bit word per row and
// entry group), halved every 10 * size additions so that old popularity fades.
type sketch struct {
	rows      [4][]uint64 // 16 counters of 4 bits per word
	mask      uint64      // counters per row - 1
	additions int
	resetAt   int
}

func (s *sketch) init(size int) {
	n := uint64(1) << bits.Len64(uint64(max(size, 16))-1) // counters per row, a power of two >= size
	for i := range s.rows {
		s.rows[i] = make([]uint64, n/16)
	}
	s.mask = n - 1
	s.resetAt = 10 * max(size, 16)
}

var sketchSeeds = [4]uint64{0x9e3779b97f4a7c15, 0xc2b2ae3d27d4eb4f, 0x165667b19e3779f9, 0xd6e8feb86659fd93}

func addrHash(a netip.Addr) uint64 {
	b := a.As16()
	h := binary.LittleEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(b[8:])
	h ^= h >> 31
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

func (s *sketch) slot(h uint64, row int) (word, shift uint64) {
	i := (h ^ sketchSeeds[row]) * sketchSeeds[(row+1)&3]
	i = (i >> 32) & s.mask
	return i / 16, (i % 16) * 4
}

func (s *sketch) add(a netip.Addr) {
	h := addrHash(a)
	for r := range s.rows {
		w, sh := s.slot(h, r)
		if (s.rows[r][w]>>sh)&15 < 15 {
			s.rows[r][w] += 1 << sh
		}
	}
	if s.additions++; s.additions >= s.resetAt {
		s.halve()
	}
}

func (s *sketch) estimate(a netip.Addr) uint64 {
	h := addrHash(a)
	m := uint64(15)
	for r := range s.rows {
		w, sh := s.slot(h, r)
		m = min(m, (s.rows[r][w]>>sh)&15)
	}
	return m
}

// halve divides every counter by two (each 4-bit counter keeps its upper three bits).
func (s *sketch) halve() {
	for r := range s.rows {
		for i, w := range s.rows[r] {
			s.rows[r][i] = (w >> 1) & 0x7777777777777777
		}
	}
	s.additions /= 2
}
