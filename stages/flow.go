package stages

import (
	"iter"
	"net/netip"
	"time"
)

// FlowEnd says why a flow was reported as finished.
type FlowEnd uint8

// Reasons a flow ends.
const (
	FlowRunning FlowEnd = iota // not finished
	FlowFIN                    // TCP: both sides sent FIN
	FlowRST                    // TCP: a side sent RST
	FlowIdle                   // no packet for the idle timeout
	FlowActive                 // open longer than the active timeout: reported, then counted afresh
	FlowEvicted                // pushed out of a full table
	FlowFlushed                // the input ended
)

var flowEndNames = [...]string{"running", "fin", "rst", "idle", "active", "evicted", "eof"}

// String returns the lower-case name of the reason.
func (e FlowEnd) String() string {
	if int(e) < len(flowEndNames) {
		return flowEndNames[e]
	}
	return "unknown"
}

// TCPState is the connection state a TCP flow reached.
type TCPState uint8

// TCP states, in the order a connection goes through them.
const (
	TCPNone        TCPState = iota // no handshake seen (or not TCP)
	TCPSynSent                     // the originator's SYN
	TCPSynAck                      // the responder's SYN-ACK
	TCPEstablished                 // the handshake completed, or data went both ways
	TCPClosing                     // one side sent FIN
	TCPClosed                      // both sides sent FIN
	TCPReset                       // a side sent RST
)

var tcpStateNames = [...]string{"none", "syn_sent", "syn_ack", "established", "closing", "closed", "reset"}

// String returns the lower-case name of the state.
func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "unknown"
}

// flowKey is a flow's 5-tuple in canonical order: endpoint a is the smaller (address, port).
type flowKey struct {
	a, b   [16]byte
	ap, bp uint16
	proto  uint8
}

// Flow is a bidirectional flow: the packets of one 5-tuple both ways. Direction 0 goes from
// the originator (Src) to the responder (Dst), direction 1 back. For ICMP, the ports are
// Community ID's: the type and the counterpart type or the code.
type Flow struct {
	ID               uint64 // serial number, from 1, unique within the table's life
	Proto            uint8
	Src, Dst         netip.Addr // originator and responder
	SrcPort, DstPort uint16
	OneWay           bool      // ICMP message without a counterpart type
	FirstNs, LastNs  int64     // first and last packet time, Unix nanoseconds
	Packets          [2]uint64 // per direction
	Bytes            [2]uint64 // wire bytes per direction
	PayloadBytes     [2]uint64 // transport payload bytes per direction, as declared
	TCPFlags         [2]uint8  // TCP flags seen per direction, ORed
	State            TCPState
	End              FlowEnd // why it finished (FlowRunning until then)

	key        flowKey
	origIsA    bool
	closed     bool // FIN from both sides or RST: ends after Linger without packets
	prev, next *Flow
	dirs       [2]direction
	cid        string
}

// First returns the time of the flow's first packet.
func (f *Flow) First() time.Time { return time.Unix(0, f.FirstNs) }

// Last returns the time of the flow's latest packet.
func (f *Flow) Last() time.Time { return time.Unix(0, f.LastNs) }

// Duration returns the time from the first to the latest packet.
func (f *Flow) Duration() time.Duration { return time.Duration(f.LastNs - f.FirstNs) }

// CommunityID returns the flow's Community ID v1 (seed 0), computed once.
func (f *Flow) CommunityID() string {
	if f.cid == "" {
		f.cid = CommunityID(0, f.Src, f.Dst, f.SrcPort, f.DstPort, f.Proto, f.OneWay)
	}
	return f.cid
}

// AppendCommunityID appends the flow's Community ID v1 (seed 0) to b without keeping it.
func (f *Flow) AppendCommunityID(b []byte) []byte {
	if f.cid != "" {
		return append(b, f.cid...)
	}
	return AppendCommunityID(b, 0, f.Src, f.Dst, f.SrcPort, f.DstPort, f.Proto, f.OneWay)
}

// FlowConfig configures a FlowTable. The zero value is usable: defaults apply.
type FlowConfig struct {
	MaxFlows      int           // table capacity; the least recently seen flow is evicted (default 65536)
	IdleTimeout   time.Duration // a flow ends after this long without packets (default 2m)
	ActiveTimeout time.Duration // a longer flow is reported and counted afresh (default 30m)
	Linger        time.Duration // a closed or reset flow stays this long for stragglers (default 10s)
	StreamBytes   int           // leading bytes reassembled per direction (default 16 KiB)
	StreamBudget  int           // bytes of all reassembly buffers together (default 64 MiB)
	// OnEnd, when set, is called for every flow that finishes, with End set. f is valid
	// during the call only.
	OnEnd func(f *Flow)
	// Handlers read the application layer (see Handler), at most MaxHandlers, in this order.
	Handlers []Handler
}

// Defaults of FlowConfig.
const (
	DefaultMaxFlows     = 65536
	DefaultStreamBytes  = 16 << 10
	DefaultStreamBudget = 64 << 20
)

func (c *FlowConfig) defaults() {
	if c.MaxFlows <= 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	if c.ActiveTimeout <= 0 {
		c.ActiveTimeout = 30 * time.Minute
	}
	if c.Linger <= 0 {
		c.Linger = 10 * time.Second
	}
	if c.StreamBytes <= 0 {
		c.StreamBytes = DefaultStreamBytes
	}
	if c.StreamBudget <= 0 {
		c.StreamBudget = DefaultStreamBudget
	}
}

// FlowStats counts what a FlowTable did.
type FlowStats struct {
	Flows         uint64 // flows created
	Ended         uint64 // flows reported finished (every FlowEnd reason)
	Evicted       uint64 // flows pushed out of the full table
	Expired       uint64 // flows ended by the idle timeout
	Active        int    // flows in the table now
	Streams       uint64 // directions whose bytes were reassembled
	StreamsDenied uint64 // directions not reassembled because the budget was spent
	StreamBytes   int    // bytes held by reassembly buffers now
}

// FlowTable tracks bidirectional flows in a bounded table. It is the state behind the flows
// stage; it is not safe for concurrent use.
type FlowTable struct {
	cfg        FlowConfig
	m          map[flowKey]*Flow
	head, tail *Flow // least recently seen at the tail
	free       []*Flow
	bufs       [][]byte
	nextID     uint64
	stats      FlowStats
}

// NewFlowTable returns an empty table with cfg (defaults filled in).
func NewFlowTable(cfg FlowConfig) *FlowTable {
	cfg.defaults()
	if len(cfg.Handlers) > MaxHandlers {
		panic("stages: more than MaxHandlers flow handlers")
	}
	return &FlowTable{cfg: cfg, m: make(map[flowKey]*Flow, min(cfg.MaxFlows, 1<<16))}
}

// Flows returns the flows stage over a new table: every IP packet gets Packet.Flow.
func Flows(cfg FlowConfig) Stage { return NewFlowTable(cfg).Stage() }

// Stats returns the counters so far.
func (t *FlowTable) Stats() FlowStats {
	s := t.stats
	s.Active = len(t.m)
	return s
}

// Len returns how many flows the table holds.
func (t *FlowTable) Len() int { return len(t.m) }

// Stage returns the stage that runs packets through t. When the input ends (or the consumer
// stops), every flow still running is reported with FlowFlushed.
func (t *FlowTable) Stage() Stage {
	return func(src iter.Seq[*Packet]) iter.Seq[*Packet] {
		return func(yield func(*Packet) bool) {
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

// Flush reports every running flow with FlowFlushed and empties the table.
func (t *FlowTable) Flush() {
	for f := t.tail; f != nil; f = t.tail {
		end := FlowFlushed
		if f.closed {
			end = f.End
		}
		t.remove(f, end)
	}
}

// Process assigns p to its flow (creating it), counts it, and hands its payload to the
// handlers: through the reassembly of its direction, or on its own.
func (t *FlowTable) Process(p *Packet) {
	p.Flow, p.FlowReply = nil, false
	if p.IPVersion == 0 || !p.Src.IsValid() || !p.Dst.IsValid() ||
		(p.IPFlags&IPFlagFragment != 0 && p.FragOff != 0) {
		t.lone(p)
		return
	}
	now := p.Time.UnixNano()
	t.expire(now)
	sport, dport, oneWay := p.SrcPort, p.DstPort, false
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
	case ProtoICMP, ProtoICMPv6:
		sport, dport, oneWay = ICMPPorts(p.Proto == ProtoICMPv6, p.ICMPType, p.ICMPCode)
	default:
		sport, dport = 0, 0
	}
	key, srcIsA := makeFlowKey(p.Src, p.Dst, sport, dport, p.Proto)
	f := t.m[key]
	syn := p.Proto == ProtoTCP && p.TCPFlags&(TCPSyn|TCPAck) == TCPSyn
	if f != nil && f.closed && syn {
		t.remove(f, f.End) // a new connection on the same tuple
		f = nil
	}
	if f != nil && !f.closed && now-f.FirstNs >= int64(t.cfg.ActiveTimeout) {
		t.report(f, FlowActive)
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
	f.Bytes[dir] += uint64(p.WireLen)
	f.PayloadBytes[dir] += uint64(p.PayloadLen)
	p.Flow, p.FlowReply = f, dir == 1
	if p.Proto == ProtoTCP {
		t.tcp(f, dir, p)
	} else {
		t.lone(p)
	}
	if !f.closed && (f.State == TCPClosed || f.State == TCPReset) {
		// Reported when it leaves the table, Linger later: the last ACK and stragglers count.
		f.closed, f.End = true, FlowFIN
		if f.State == TCPReset {
			f.End = FlowRST
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

func (t *FlowTable) newID() uint64 {
	t.nextID++
	return t.nextID
}

// create adds a flow for p, evicting the least recently seen one when the table is full.
func (t *FlowTable) create(key flowKey, srcIsA bool, p *Packet, sport, dport uint16, oneWay bool, now int64) *Flow {
	for len(t.m) >= t.cfg.MaxFlows && t.tail != nil {
		t.stats.Evicted++
		t.remove(t.tail, FlowEvicted)
	}
	var f *Flow
	if n := len(t.free); n > 0 {
		f = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		f = new(Flow)
	}
	*f = Flow{ID: t.newID(), Proto: p.Proto, Src: p.Src, Dst: p.Dst, SrcPort: sport, DstPort: dport,
		OneWay: oneWay, FirstNs: now, LastNs: now, key: key, origIsA: srcIsA}
	// The first packet seen is not always the originator's: a SYN-ACK, or a packet from a
	// well-known port to an ephemeral one, comes from the responder.
	if (p.Proto == ProtoTCP && p.TCPFlags&(TCPSyn|TCPAck) == TCPSyn|TCPAck) ||
		((p.Proto == ProtoTCP || p.Proto == ProtoUDP) && p.SrcPort < 1024 && p.DstPort >= 1024 &&
			p.TCPFlags&TCPSyn == 0) {
		f.Src, f.Dst, f.SrcPort, f.DstPort = p.Dst, p.Src, dport, sport
		f.origIsA = !srcIsA
	}
	t.m[key] = f
	t.stats.Flows++
	t.pushFront(f)
	return f
}

// restart begins a new reporting period of f (after an active timeout).
func (f *Flow) restart(now int64, id uint64) {
	f.ID, f.FirstNs, f.LastNs, f.End = id, now, now, FlowRunning
	f.Packets, f.Bytes, f.PayloadBytes, f.TCPFlags = [2]uint64{}, [2]uint64{}, [2]uint64{}, [2]uint8{}
}

// tcp advances the flow's TCP state and hands p's payload on: to the reassembly of its
// direction, or (a RST's payload) on its own.
func (t *FlowTable) tcp(f *Flow, dir int, p *Packet) {
	fl := p.TCPFlags
	f.TCPFlags[dir] |= fl
	d := &f.dirs[dir]
	switch {
	case fl&TCPRst != 0:
		f.State = TCPReset
	case fl&TCPSyn != 0:
		d.isn, d.syn = p.Seq, true
		if fl&TCPAck != 0 {
			if f.State < TCPSynAck {
				f.State = TCPSynAck
			}
		} else if f.State < TCPSynSent {
			f.State = TCPSynSent
		}
	}
	if fl&TCPFin != 0 && f.State != TCPReset {
		d.fin = true
		if f.dirs[0].fin && f.dirs[1].fin {
			f.State = TCPClosed
		} else if f.State < TCPClosing {
			f.State = TCPClosing
		}
	} else if f.State < TCPEstablished && fl&TCPSyn == 0 && fl&TCPAck != 0 &&
		(f.State == TCPSynAck || (f.Packets[0] > 0 && f.Packets[1] > 0)) {
		f.State = TCPEstablished
	}
	switch {
	case len(p.Payload) == 0:
	case fl&TCPRst != 0:
		t.lone(p)
	default:
		t.feed(f, dir, p)
	}
}

// touch moves f to the front of the recency list.
func (t *FlowTable) touch(f *Flow) {
	if t.head == f {
		return
	}
	t.unlink(f)
	t.pushFront(f)
}

func (t *FlowTable) pushFront(f *Flow) {
	f.prev, f.next = nil, t.head
	if t.head != nil {
		t.head.prev = f
	}
	t.head = f
	if t.tail == nil {
		t.tail = f
	}
}

func (t *FlowTable) unlink(f *Flow) {
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
func (t *FlowTable) expire(now int64) {
	for f := t.tail; f != nil; f = t.tail {
		limit, end := int64(t.cfg.IdleTimeout), FlowIdle
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
func (t *FlowTable) report(f *Flow, end FlowEnd) {
	t.stats.Ended++
	f.End = end
	if t.cfg.OnEnd != nil {
		t.cfg.OnEnd(f)
	}
}

// remove reports f as finished for reason end and takes it out of the table.
func (t *FlowTable) remove(f *Flow, end FlowEnd) {
	t.report(f, end)
	t.unlink(f)
	delete(t.m, f.key)
	t.release(&f.dirs[0])
	t.release(&f.dirs[1])
	*f = Flow{}
	if len(t.free) < 1024 {
		t.free = append(t.free, f)
	}
}
