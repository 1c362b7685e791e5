package names

import (
	"context"
	"iter"
	"net/netip"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// The held queue of the reverse-DNS stage: packets waiting, in order and for at most
// ResolverConfig.Wait, for the names of their addresses.

// settle re-checks a held packet's pending names; it reports whether none is pending now.
func (r *Resolver) settle(h *heldPacket) bool {
	if h.gen == r.gen {
		return !h.waitSrc && !h.waitDst
	}
	h.gen = r.gen
	if h.waitSrc {
		if e, ok := r.answered(h.p.Src); ok {
			r.setSrc(&h.p, e)
			h.waitSrc = false
		}
	}
	if h.waitDst {
		if e, ok := r.answered(h.p.Dst); ok {
			r.setDst(&h.p, e)
			h.waitDst = false
		}
	}
	return !h.waitSrc && !h.waitDst
}

// answered returns a's entry once its lookup has ended: from the front cache, which takes
// every answer, or the cache.
func (r *Resolver) answered(a netip.Addr) (rdnsEntry, bool) {
	if f := &r.front[frontIndex(a)]; f.addr == a && f.outcome != stages.RDNSPending {
		return f.rdnsEntry, true
	}
	if e, ok := r.cache.Peek(a); ok && e.outcome != stages.RDNSPending {
		return e, true
	}
	return rdnsEntry{}, false
}

// heldPayload is the payload room each held packet starts with; larger payloads (DNS, TLS,
// HTTP heads) grow their own buffer once.
const heldPayload = 128

// newSlab allocates every held-packet slot at once, with its payload room in one arena: two
// allocations instead of two per slot the first time the queue fills.
func (r *Resolver) newSlab() []*heldPacket {
	r.slab = make([]heldPacket, len(r.held))
	arena := make([]byte, len(r.held)*heldPayload)
	free := make([]*heldPacket, len(r.held))
	for i := range r.slab {
		r.slab[i].buf = arena[i*heldPayload : i*heldPayload : (i+1)*heldPayload]
		free[i] = &r.slab[i]
	}
	return free
}

// hold copies p (the source reuses it) to the tail of the held queue.
func (r *Resolver) hold(p *stages.Packet, waitSrc, waitDst bool) {
	if len(r.free) == 0 && r.slab == nil {
		r.free = r.newSlab()
	}
	var h *heldPacket
	if k := len(r.free); k > 0 {
		h = r.free[k-1]
		r.free = r.free[:k-1]
	} else {
		h = &heldPacket{}
	}
	h.p = *p
	h.buf = h.p.CopyBytes(h.buf)
	h.deadline = r.now + int64(r.cfg.Wait)
	h.gen = r.gen
	h.waitSrc, h.waitDst = waitSrc, waitDst
	r.held[(r.head+r.n)%len(r.held)] = h
	r.n++
	r.stats.Held++
	if r.n > r.stats.MaxHeld {
		r.stats.MaxHeld = r.n
	}
}

// release yields held packets from the head while they are settled or past their deadline.
// With full set (the held queue is full: names come slower than packets), it gives up waiting
// for every lookup in flight and yields every held packet. It returns false when the consumer
// stopped.
func (r *Resolver) release(yield func(*stages.Packet) bool, full bool) bool {
	if full {
		r.givenUp = r.now
	}
	for r.n > 0 {
		h := r.held[r.head]
		ready := r.settle(h)
		if !ready && (h.deadline <= r.now || full) {
			ready = true
			r.stats.Expired++
			if full && h.deadline > r.now && !r.hurried.Load() {
				r.stats.Overflowed++
			}
		}
		if !ready {
			return true
		}
		r.held[r.head] = nil
		r.head = (r.head + 1) % len(r.held)
		r.n--
		ok := yield(&h.p)
		r.free = append(r.free, h)
		if !ok {
			return false
		}
	}
	return true
}

func (r *Resolver) runSync(src iter.Seq[*stages.Packet], yield func(*stages.Packet) bool) {
	for p := range src {
		// The clock is read every 64 packets or when the capture time's second changes: clock
		// reads cost more than the rest of a cache hit. (A file source delivers 64 packets in
		// microseconds; live sources run in runLive, which reads the clock on every event.)
		r.ticks++
		if sec := p.Time.Unix(); r.ticks&63 == 0 || sec != r.lastSec {
			r.lastSec = sec
			r.now = r.clock()
			if r.ticks&4095 == 0 {
				r.syncStats()
			}
		}
		r.drain()
		ws, wd := r.annotate(p)
		if r.n > 0 && !r.release(yield, false) {
			return
		}
		if r.n == 0 && !ws && !wd {
			if !yield(p) {
				return
			}
			continue
		}
		if r.n == len(r.held) && !r.release(yield, true) {
			return
		}
		r.hold(p, ws, wd)
	}
	r.flush(yield)
}

// flush waits (at most Wait past the last packet held, and not at all once Hurry was called)
// for the held packets' names and yields them.
func (r *Resolver) flush(yield func(*stages.Packet) bool) {
	timer := time.NewTimer(r.cfg.Wait)
	defer timer.Stop()
	for r.n > 0 {
		r.now = r.clock()
		r.drain()
		if !r.release(yield, r.hurried.Load()) {
			return
		}
		if r.n == 0 {
			return
		}
		wait := time.Duration(r.held[r.head].deadline - r.now)
		timer.Reset(max(wait, 0))
		select {
		case res := <-r.results:
			r.apply(res)
		case <-timer.C:
		case <-r.hurry:
		}
	}
}

// Hurry makes the stage stop waiting for names: the packets it holds go out now with what is
// known (their addresses' classes, RDNSPending), and no packet waits from then on. A stop
// calls it, so that what is held is printed at once. It may be called from any goroutine.
func (r *Resolver) Hurry() {
	r.hurryOnce.Do(func() {
		r.hurried.Store(true)
		close(r.hurry)
	})
}

// runLive pulls the blocking source from a goroutine, so held packets are released on time
// even when no packet follows.
func (r *Resolver) runLive(ctx context.Context, src iter.Seq[*stages.Packet], yield func(*stages.Packet) bool) {
	total := len(r.held)
	pool := make(chan *heldPacket, total)
	// A fresh set of slots: a feeder of an earlier run may still hold some of the old ones.
	for _, h := range r.newSlab() {
		pool <- h
	}
	r.free = r.free[:0]
	in := make(chan *heldPacket, total)
	go func() {
		defer close(in)
		for p := range src {
			var h *heldPacket
			select {
			case h = <-pool:
			case <-ctx.Done():
				return
			}
			h.p = *p
			h.buf = h.p.CopyBytes(h.buf)
			select {
			case in <- h:
			case <-ctx.Done():
				return
			}
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	out := yield
	hurry := r.hurry
	for {
		// Return released slots to the feeder's pool.
		for _, h := range r.free {
			pool <- h
		}
		r.free = r.free[:0]
		if r.n > 0 {
			timer.Reset(max(time.Duration(r.held[r.head].deadline-r.clock()), 0))
		}
		select {
		case h, ok := <-in:
			if !ok {
				r.flush(out)
				return
			}
			r.now = r.clock()
			if r.ticks++; r.ticks&4095 == 0 {
				r.syncStats()
			}
			r.drain()
			ws, wd := r.annotate(&h.p)
			if !r.release(out, r.n == len(r.held)) {
				return
			}
			h.deadline = r.now + int64(r.cfg.Wait)
			h.gen = r.gen
			h.waitSrc, h.waitDst = ws, wd
			if r.n == len(r.held) && !r.release(out, true) {
				return
			}
			r.held[(r.head+r.n)%len(r.held)] = h
			r.n++
			if ws || wd {
				r.stats.Held++
			}
			r.stats.MaxHeld = max(r.stats.MaxHeld, r.n)
			if !r.release(out, false) {
				return
			}
		case res := <-r.results:
			r.now = r.clock()
			r.apply(res)
			r.drain()
			if !r.release(out, false) {
				return
			}
		case <-timer.C:
			r.now = r.clock()
			if !r.release(out, false) {
				return
			}
		case <-hurry:
			hurry = nil // once: from now on release gives up on every lookup
			r.now = r.clock()
			if !r.release(out, true) {
				return
			}
		}
	}
}
