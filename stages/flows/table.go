// Package flows keeps the flow table: the bidirectional flows of the packets it sees (counts,
// TCP state, timeouts, a bound with eviction), the Community ID of each, and the reassembly of
// TCP directions. It knows the application decoders only through the Handler interface they
// register with (Config.Handlers): it hands them payloads on their own, or, for a direction a
// handler accepts, the direction's bytes in sequence order through a window the handler
// consumes message by message (Stream). A direction's start is judged on AcceptBytes of it,
// however its first segments cut them; a direction no handler reads is judged again at each
// segment.
//
// A new consumer of flows is a Handler (a protocol decoder) or an OnEnd function (a sink of
// finished flows, a metrics exporter); neither needs a change here.
package flows

import (
	"iter"
	"net/netip"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// flowKey is a flow's 5-tuple in canonical order: endpoint a is the smaller (address, port).
type flowKey struct {
	a, b   [16]byte
	ap, bp uint16
	proto  uint8
}

// flow is a flow in the table: the part stages.Packet.Flow shows, and the table's own.
type flow struct {
	stages.Flow
	key        flowKey
	origIsA    bool
	closed     bool // FIN from both sides or RST: ends after Linger without packets
	prev, next *flow
	dirs       [2]direction
}

// Config configures a Table. The zero value is usable: defaults apply.
type Config struct {
	MaxFlows      int           // table capacity; the least recently seen flow is evicted (default 65536)
	IdleTimeout   time.Duration // a flow ends after this long without packets (default 2m)
	ActiveTimeout time.Duration // a longer flow is reported and counted afresh (default 30m)
	Linger        time.Duration // a closed or reset flow stays this long for stragglers (default 10s)
	StreamBytes   int           // the window a handler reads a direction through (default 16 KiB)
	StreamBudget  int           // bytes of all reassembly buffers together (default 64 MiB)
	// OnEnd, when set, is called for every flow that finishes, with End set. f is valid
	// during the call only.
	OnEnd func(f *stages.Flow)
	// Handlers read the application layer (see Handler), at most MaxHandlers, in this order.
	Handlers []Handler
	// Track, when set, says which packets the table keeps flows for; the others go to the
	// handlers on their own, without a flow. nil tracks every IP packet.
	Track func(p *stages.Packet) bool
}

// Defaults of Config.
const (
	DefaultMaxFlows      = 65536
	DefaultIdleTimeout   = 2 * time.Minute
	DefaultActiveTimeout = 30 * time.Minute
	DefaultLinger        = 10 * time.Second
	DefaultStreamBytes   = 16 << 10
	DefaultStreamBudget  = 64 << 20
)

func (c *Config) defaults() {
	if c.MaxFlows <= 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ActiveTimeout <= 0 {
		c.ActiveTimeout = DefaultActiveTimeout
	}
	if c.Linger <= 0 {
		c.Linger = DefaultLinger
	}
	if c.StreamBytes <= 0 {
		c.StreamBytes = DefaultStreamBytes
	}
	if c.StreamBudget <= 0 {
		c.StreamBudget = DefaultStreamBudget
	}
}

// Stats counts what a Table did.
type Stats struct {
	Flows         uint64 // flows created
	Ended         uint64 // flows reported finished (every stages.FlowEnd reason)
	Evicted       uint64 // flows pushed out of the full table
	Expired       uint64 // flows ended by the idle timeout
	Active        int    // flows in the table now
	Max           int    // the table's bound (Config.MaxFlows, or its default)
	Streams       uint64 // streams begun (a direction's start judged, or a handler reading from a segment on)
	StreamsDenied uint64 // streams ended because the budget could not give their window a buffer
	StreamBytes   int    // bytes held by reassembly buffers now
}

// Table tracks bidirectional flows in a bounded table. It is the state behind the flows
// stage; it is not safe for concurrent use.
type Table struct {
	cfg        Config
	m          map[flowKey]*flow
	head, tail *flow // least recently seen at the tail
	free       []*flow
	bufs       [][]byte  // free stream buffers
	streams    []*Stream // free streams
	nextID     uint64
	stats      Stats
}

// New returns an empty table with cfg (defaults filled in). Its map grows as flows come: a
// table that tracks DNS over TCP alone stays small and costs nothing to make.
func New(cfg Config) *Table {
	cfg.defaults()
	if len(cfg.Handlers) > MaxHandlers {
		panic("stages: more than MaxHandlers flow handlers")
	}
	return &Table{cfg: cfg, m: make(map[flowKey]*flow, min(cfg.MaxFlows, 1024))}
}

// Stats returns the counters so far.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Active, s.Max = len(t.m), t.cfg.MaxFlows
	return s
}

// Len returns how many flows the table holds.
func (t *Table) Len() int { return len(t.m) }

// Stage returns the stage that runs packets through t. When the input ends (or the consumer
// stops), every flow still running is reported with stages.FlowFlushed.
func (t *Table) Stage() stages.Stage {
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		return func(yield func(*stages.Packet) bool) {
			defer t.Flush()
			for p := range src {
				t.Process(p)
				if !yield(p) {
					return
				}
			}
		}
	}
}

// Flush reports every running flow with stages.FlowFlushed and empties the table.
func (t *Table) Flush() {
	for f := t.tail; f != nil; f = t.tail {
		end := stages.FlowFlushed
		if f.closed {
			end = f.End
		}
		t.remove(f, end)
	}
}

// Process assigns p to its flow (creating it), counts it, and hands its payload to the
// handlers: through the reassembly of its direction, or on its own.
func (t *Table) Process(p *stages.Packet) {
	p.Flow, p.FlowReply = nil, false
	if (t.cfg.Track != nil && !t.cfg.Track(p)) || p.IPVersion == 0 || !p.Src.IsValid() || !p.Dst.IsValid() ||
		(p.IPFlags&stages.IPFlagFragment != 0 && p.FragOff != 0) {
		if len(p.Payload) != 0 {
			t.lone(p)
		}
		return
	}
	now := p.Time.UnixNano()
	t.expire(now)
	sport, dport, oneWay := p.SrcPort, p.DstPort, false
	switch p.Proto {
	case stages.ProtoTCP, stages.ProtoUDP, stages.ProtoSCTP:
	case stages.ProtoICMP, stages.ProtoICMPv6:
		sport, dport, oneWay = ICMPPorts(p.Proto == stages.ProtoICMPv6, p.ICMPType, p.ICMPCode)
	default:
		sport, dport = 0, 0
	}
	key, srcIsA := makeFlowKey(p.Src, p.Dst, sport, dport, p.Proto)
	f := t.m[key]
	syn := p.Proto == stages.ProtoTCP && p.TCPFlags&(stages.TCPSyn|stages.TCPAck) == stages.TCPSyn
	if f != nil && f.closed && syn {
		t.remove(f, f.End) // a new connection on the same tuple
		f = nil
	}
	if f != nil && !f.closed && now-f.FirstNs >= int64(t.cfg.ActiveTimeout) {
		t.report(f, stages.FlowActive)
		f.restart(now, t.newID())
	}
	if f == nil {
		f = t.create(key, srcIsA, p, sport, dport, oneWay, now)
	} else {
		t.touch(f)
	}
	dir := 0
	if srcIsA != f.origIsA {
		dir = 1
	}
	if now > f.LastNs {
		f.LastNs = now
	}
	f.Packets[dir]++
	if !f.Owner.Known() && p.Owner.Known() {
		f.Owner = p.Owner
	}
	f.Bytes[dir] += uint64(p.WireLen)
	f.PayloadBytes[dir] += uint64(p.PayloadLen)
	f.IPBytes[dir] += ipBytes(p)
	p.Flow, p.FlowReply = &f.Flow, dir == 1
	history(&f.Flow, p, dir == 1)
	if p.Proto == stages.ProtoTCP {
		t.tcp(f, dir, p)
	} else {
		t.lone(p)
	}
	if !f.closed && (f.State == stages.TCPClosed || f.State == stages.TCPReset) {
		// Reported when it leaves the table, Linger later: the last ACK and stragglers count.
		f.closed, f.End = true, stages.FlowFIN
		if f.State == stages.TCPReset {
			f.End = stages.FlowRST
		}
	}
}

func makeFlowKey(src, dst netip.Addr, sport, dport uint16, proto uint8) (flowKey, bool) {
	s, d := src.As16(), dst.As16()
	srcIsA := true
	switch c := compare16(&s, &d); {
	case c > 0, c == 0 && sport > dport:
		srcIsA = false
	}
	if srcIsA {
		return flowKey{a: s, b: d, ap: sport, bp: dport, proto: proto}, true
	}
	return flowKey{a: d, b: s, ap: dport, bp: sport, proto: proto}, false
}

func compare16(a, b *[16]byte) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (t *Table) newID() uint64 {
	t.nextID++
	return t.nextID
}

// create adds a flow for p, evicting the least recently seen one when the table is full.
func (t *Table) create(key flowKey, srcIsA bool, p *stages.Packet, sport, dport uint16, oneWay bool, now int64) *flow {
	for len(t.m) >= t.cfg.MaxFlows && t.tail != nil {
		t.stats.Evicted++
		t.remove(t.tail, stages.FlowEvicted)
	}
	var f *flow
	if n := len(t.free); n > 0 {
		f = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		f = new(flow)
	}
	*f = flow{Flow: stages.Flow{ID: t.newID(), Proto: p.Proto, Src: p.Src, Dst: p.Dst, SrcPort: sport, DstPort: dport,
		OneWay: oneWay, FirstNs: now, LastNs: now}, key: key, origIsA: srcIsA}
	// The first packet seen is not always the originator's: a SYN-ACK, or a packet from a
	// well-known port to an ephemeral one, comes from the responder.
	if (p.Proto == stages.ProtoTCP && p.TCPFlags&(stages.TCPSyn|stages.TCPAck) == stages.TCPSyn|stages.TCPAck) ||
		((p.Proto == stages.ProtoTCP || p.Proto == stages.ProtoUDP) && p.SrcPort < 1024 && p.DstPort >= 1024 &&
			p.TCPFlags&stages.TCPSyn == 0) {
		f.Src, f.Dst, f.SrcPort, f.DstPort = p.Dst, p.Src, dport, sport
		f.origIsA = !srcIsA
	}
	t.m[key] = f
	t.stats.Flows++
	t.pushFront(f)
	return f
}

// restart begins a new reporting period of f (after an active timeout).
func (f *flow) restart(now int64, id uint64) {
	f.ID, f.FirstNs, f.LastNs, f.End = id, now, now, stages.FlowRunning
	f.Packets, f.Bytes, f.PayloadBytes, f.TCPFlags = [2]uint64{}, [2]uint64{}, [2]uint64{}, [2]uint8{}
	f.IPBytes, f.History = [2]uint64{}, [12]byte{}
}

// ipBytes is p's IP-level length (Flow.IPBytes): IPv4's total length, IPv6's payload length
// and fixed header.
func ipBytes(p *stages.Packet) uint64 {
	if p.IPVersion == 6 {
		return uint64(p.IPLen) + 40
	}
	return uint64(p.IPLen)
}

// history records p's letters of Zeek's conn history (Flow.History), in the order Zeek's TCP
// analyzer looks at a packet: its SYN (S, or H with ACK), FIN, RST, then a pure ACK (A: no
// payload, no other of those flags) or payload (D). UDP: D only, as Zeek's UDP analyzer; other
// protocols none.
func history(f *stages.Flow, p *stages.Packet, reply bool) {
	if p.Proto != stages.ProtoTCP {
		if p.Proto == stages.ProtoUDP && p.PayloadLen > 0 {
			f.AddHistory('D', reply)
		}
		return
	}
	fl := p.TCPFlags
	if fl&stages.TCPSyn != 0 {
		if fl&stages.TCPAck != 0 {
			f.AddHistory('H', reply)
		} else {
			f.AddHistory('S', reply)
		}
	}
	if fl&stages.TCPFin != 0 {
		f.AddHistory('F', reply)
	}
	if fl&stages.TCPRst != 0 {
		f.AddHistory('R', reply)
	}
	switch {
	case p.PayloadLen > 0:
		f.AddHistory('D', reply)
	case fl&(stages.TCPSyn|stages.TCPFin|stages.TCPRst|stages.TCPAck) == stages.TCPAck:
		f.AddHistory('A', reply)
	}
}

// tcp advances the flow's TCP state and hands p's payload on: to the reassembly of its
// direction, or (a RST's payload) on its own.
func (t *Table) tcp(f *flow, dir int, p *stages.Packet) {
	fl := p.TCPFlags
	f.TCPFlags[dir] |= fl
	d := &f.dirs[dir]
	switch {
	case fl&stages.TCPRst != 0:
		f.State = stages.TCPReset
	case fl&stages.TCPSyn != 0:
		d.isn, d.syn = p.Seq, true
		if fl&stages.TCPAck != 0 {
			if f.State < stages.TCPSynAck {
				f.State = stages.TCPSynAck
			}
		} else if f.State < stages.TCPSynSent {
			f.State = stages.TCPSynSent
		}
	}
	if fl&stages.TCPFin != 0 && f.State != stages.TCPReset {
		d.fin = true
		if f.dirs[0].fin && f.dirs[1].fin {
			f.State = stages.TCPClosed
		} else if f.State < stages.TCPClosing {
			f.State = stages.TCPClosing
		}
	} else if f.State < stages.TCPEstablished && fl&stages.TCPSyn == 0 && fl&stages.TCPAck != 0 &&
		(f.State == stages.TCPSynAck || (f.Packets[0] > 0 && f.Packets[1] > 0)) {
		f.State = stages.TCPEstablished
	}
	switch {
	case fl&stages.TCPRst != 0:
		t.lone(p)
	case len(p.Payload) != 0 || (fl&stages.TCPFin != 0 && d.stream != nil):
		t.feed(f, dir, p)
	}
}

// touch moves f to the front of the recency list.
func (t *Table) touch(f *flow) {
	if t.head == f {
		return
	}
	t.unlink(f)
	t.pushFront(f)
}

func (t *Table) pushFront(f *flow) {
	f.prev, f.next = nil, t.head
	if t.head != nil {
		t.head.prev = f
	}
	t.head = f
	if t.tail == nil {
		t.tail = f
	}
}

func (t *Table) unlink(f *flow) {
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		t.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	} else {
		t.tail = f.prev
	}
	f.prev, f.next = nil, nil
}

// expire ends the least recently seen flows whose idle (or linger) time has passed.
func (t *Table) expire(now int64) {
	for f := t.tail; f != nil; f = t.tail {
		limit, end := int64(t.cfg.IdleTimeout), stages.FlowIdle
		if f.closed {
			limit, end = int64(t.cfg.Linger), f.End
		}
		if now-f.LastNs <= limit {
			return
		}
		if !f.closed {
			t.stats.Expired++
		}
		t.remove(f, end)
	}
}

// report tells OnEnd that f finished for reason end.
func (t *Table) report(f *flow, end stages.FlowEnd) {
	t.stats.Ended++
	f.End = end
	if t.cfg.OnEnd != nil {
		t.cfg.OnEnd(&f.Flow)
	}
}

// remove reports f as finished for reason end and takes it out of the table.
func (t *Table) remove(f *flow, end stages.FlowEnd) {
	t.report(f, end)
	t.unlink(f)
	delete(t.m, f.key)
	t.release(&f.dirs[0])
	t.release(&f.dirs[1])
	*f = flow{}
	if len(t.free) < 1024 {
		t.free = append(t.free, f)
	}
}
