package sensor

import (
	"fmt"
	"io"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// PacketDecoder decodes one ring-buffer sample into p. Decoder satisfies it.
type PacketDecoder interface {
	Decode(raw []byte, p *stages.Packet) error
}

// ifaceCount counts the records read for one interface, per direction.
type ifaceCount struct {
	name    string
	in, out atomic.Uint64
	gone    atomic.Bool
}

// Live turns the samples of a Reader into Packets and counts them per interface. Its counts
// may be read (Counts) from any goroutine while Packets is being pulled, and interfaces added
// (AddIface) or marked gone (IfaceGone) meanwhile.
type Live struct {
	r   *Reader
	dec PacketDecoder
	// ifaces maps an interface index to its counts; it is replaced, never changed, so that
	// decode reads it without a lock (AddIface copies it under mu).
	ifaces atomic.Pointer[map[uint32]*ifaceCount]
	mu     sync.Mutex
	order  []uint32 // guarded by mu

	decoded, undecodable, unprinted atomic.Uint64
	quiet                           atomic.Bool
	err                             error
}

// NewLive reads samples from r, decodes them with dec and names their interfaces from names
// (ifindex to name; samples from other interfaces are counted under their index).
func NewLive(r *Reader, dec PacketDecoder, names map[uint32]string) *Live {
	l := &Live{r: r, dec: dec}
	m := map[uint32]*ifaceCount{}
	for idx, n := range names {
		m[idx] = &ifaceCount{name: n}
		l.order = append(l.order, idx)
	}
	slices.Sort(l.order)
	l.ifaces.Store(&m)
	return l
}

// AddIface names the samples of interface idx (one attached after the start: --reattach).
func (l *Live) AddIface(idx uint32, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.ifaces.Load()
	if c := old[idx]; c != nil && c.name == name {
		c.gone.Store(false)
		return
	}
	m := make(map[uint32]*ifaceCount, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[idx] = &ifaceCount{name: name}
	l.ifaces.Store(&m)
	if !slices.Contains(l.order, idx) {
		l.order = append(l.order, idx)
	}
}

// IfaceGone marks interface idx as gone: its counts stay, its stats line says so.
func (l *Live) IfaceGone(idx uint32) {
	if c := (*l.ifaces.Load())[idx]; c != nil {
		c.gone.Store(true)
	}
}

// Quiet makes Packets stop yielding: what is left in the ring is read and counted (as not
// printed) but no longer handed to the chain, so a stop the chain is too slow to follow still
// accounts for every record. It may be called from any goroutine.
func (l *Live) Quiet() { l.quiet.Store(true) }

// Packets yields a Packet per sample, the same Packet each time (reset between yields), with
// Num counting from 1 and Iface set from the names given to NewLive. It ends when the reader
// is stopped or closed, or when the consumer stops; Err then says whether reading failed.
// Samples that do not decode are counted (Counts().Undecodable) and skipped, never silently.
func (l *Live) Packets() iter.Seq[*stages.Packet] {
	return func(yield func(*stages.Packet) bool) {
		var (
			p   stages.Packet
			num uint64
		)
		l.err = l.r.Run(func(raw []byte) bool {
			if !l.decode(raw, &p) {
				return true
			}
			if l.quiet.Load() {
				l.unprinted.Add(1)
				return true
			}
			num++
			p.Num = num
			return yield(&p)
		})
	}
}

// Drain reads what is left in the ring, counting it as Packets would, without yielding it:
// after the consumer stopped (-c N), so that every record is accounted for. Call Reader.Stop
// first (after detaching), so that Drain returns once the ring is empty.
func (l *Live) Drain() error { return l.drainFrom(l.r) }

// DrainWith counts what is left in the ring through a fresh reader on events, when the one
// Packets used is stuck in the chain (a blocked output) and had to be closed: the records
// still in the ring are counted, so the per-interface counts agree with the kernel's. Close
// the first reader and detach the programs first.
func (l *Live) DrainWith(events *ebpf.Map) error {
	r, err := NewReader(events, ReaderOptions{Linger: -1})
	if err != nil {
		return err
	}
	defer r.Close()
	r.Stop()
	return l.drainFrom(r)
}

func (l *Live) drainFrom(r *Reader) error {
	var p stages.Packet
	return r.Run(func(raw []byte) bool {
		if l.decode(raw, &p) {
			l.unprinted.Add(1)
		}
		return true
	})
}

// decode fills p from raw and counts it; false if it does not decode.
func (l *Live) decode(raw []byte, p *stages.Packet) bool {
	p.Reset()
	if err := l.dec.Decode(raw, p); err != nil {
		l.undecodable.Add(1)
		return false
	}
	l.decoded.Add(1)
	if c := (*l.ifaces.Load())[p.Ifindex]; c != nil {
		p.Iface = c.name
		if p.Dir == stages.DirOut {
			c.out.Add(1)
		} else {
			c.in.Add(1)
		}
	}
	return true
}

// Err returns why Packets ended early: a ring-buffer read error, or nil.
func (l *Live) Err() error { return l.err }

// IfaceCounts are the records read for one interface.
type IfaceCounts struct {
	Iface   string
	Ifindex uint32
	In, Out uint64
	Gone    bool // the interface disappeared during the run
}

// LiveCounts are what user space received.
type LiveCounts struct {
	Read        uint64 // samples read from the ring
	Decoded     uint64 // samples decoded into Packets
	Undecodable uint64 // samples that failed to decode: lost in user space
	// Unprinted counts the records read and decoded (so recorded) that the chain was not
	// given: read after -c N was reached, or after a stop the chain was too slow to follow.
	Unprinted uint64
	Ifaces    []IfaceCounts
	Reader    ReaderStats
}

// Counts returns what was received so far.
func (l *Live) Counts() LiveCounts {
	c := LiveCounts{Decoded: l.decoded.Load(), Undecodable: l.undecodable.Load(), Unprinted: l.unprinted.Load(), Reader: l.r.Stats()}
	// Read counts what was read: by Packets' reader, or by DrainWith's (every record that
	// decoded or not went through decode once).
	c.Read = max(c.Reader.Records, c.Decoded+c.Undecodable)
	l.mu.Lock()
	order := slices.Clone(l.order)
	l.mu.Unlock()
	m := *l.ifaces.Load()
	for _, idx := range order {
		ic := m[idx]
		c.Ifaces = append(c.Ifaces, IfaceCounts{Iface: ic.name, Ifindex: idx, In: ic.in.Load(), Out: ic.out.Load(), Gone: ic.gone.Load()})
	}
	return c
}

// KernelCounts are the sensor programs' counters that loss accounting needs, summed over CPUs.
type KernelCounts struct {
	XDPSeen, TCSeen uint64 // packets each program ran on
	Emitted         uint64 // records submitted to the ring
	RingFull        uint64 // records lost: the ring was full
	SnapFailed      uint64 // records that arrived without their payload bytes
	// LostByIfindex is RingFull by interface index.
	LostByIfindex map[uint32]uint64
	// Filter says the programs carry a filter expression; Filtered is how many packets it
	// rejected, FilteredByIfindex the same by interface index.
	Filter            bool
	Filtered          uint64
	FilteredByIfindex map[uint32]uint64
	// Follow is what message following (bpf/follow.h) did, its bound the follow map's size.
	Follow      FollowStats
	FollowBound uint32
}

// Loss is the end-to-end account: every packet the programs saw was either filtered out (by
// the filter expression, in the kernel), recorded (reached user space and was decoded) or
// lost, and each loss has a reason.
type Loss struct {
	Filter                         bool // a filter expression was given
	Seen, Filtered, Recorded, Lost uint64
	RingFull                       uint64 // kernel: ring buffer full
	Undecodable                    uint64 // user space: sample did not decode
	Unread                         uint64 // emitted but not (yet) read: in flight while attached, 0 after a drain
}

// Account balances kernel counters against what user space received. Seen = Filtered +
// Recorded + Lost always holds; Lost = RingFull + Undecodable + Unread holds when the counters
// were read after the programs were detached and the ring drained.
func Account(k KernelCounts, u LiveCounts) Loss {
	l := Loss{Filter: k.Filter, Seen: k.XDPSeen + k.TCSeen, RingFull: k.RingFull, Undecodable: u.Undecodable}
	l.Filtered = min(k.Filtered, l.Seen)
	l.Recorded = min(u.Decoded, l.Seen-l.Filtered)
	l.Lost = l.Seen - l.Filtered - l.Recorded
	if k.Emitted > u.Read {
		l.Unread = k.Emitted - u.Read
	}
	return l
}

// WriteStats prints the per-interface and total counters, ending with the line
// `<N> packets seen, <M> recorded, <L> lost` (CountsLine).
func WriteStats(w io.Writer, k KernelCounts, u LiveCounts) Loss {
	l := Account(k, u)
	for _, ic := range u.Ifaces {
		lost := k.LostByIfindex[ic.Ifindex]
		name := ic.Iface
		if ic.Gone {
			name += " (gone)"
		}
		if k.Filter {
			filtered := k.FilteredByIfindex[ic.Ifindex]
			fmt.Fprintf(w, "%s: %d seen, %d filtered out, %d in and %d out records, %d lost to a full ring buffer\n",
				name, filtered+ic.In+ic.Out+lost, filtered, ic.In, ic.Out, lost)
			continue
		}
		fmt.Fprintf(w, "%s: %d seen, %d in and %d out records, %d lost to a full ring buffer\n",
			name, ic.In+ic.Out+lost, ic.In, ic.Out, lost)
	}
	filtered := ""
	if k.Filter {
		filtered = fmt.Sprintf(" %d filtered out,", k.Filtered)
	}
	fmt.Fprintf(w, "kernel: %d seen (%d ingress, %d egress),%s %d records, %d lost to a full ring buffer, %d without payload\n",
		l.Seen, k.XDPSeen, k.TCSeen, filtered, k.Emitted, k.RingFull, k.SnapFailed)
	if f := k.Follow; f.Opened > 0 {
		fmt.Fprintf(w, "kernel: message following: %d packets followed; %d TCP directions followed, %d done, %d now, %d evicted from the full table (bound %d)\n",
			f.Followed, f.Opened, f.Closed, f.Live, f.Evicted, k.FollowBound)
	}
	rs := u.Reader
	perWake := 0.0
	if rs.Wakeups+rs.Lingers > 0 {
		perWake = float64(rs.Records) / float64(rs.Wakeups+rs.Lingers)
	}
	unprinted := ""
	if u.Unprinted > 0 {
		unprinted = fmt.Sprintf(" (%d of them read after the stop and not printed)", u.Unprinted)
	}
	fmt.Fprintf(w, "user space: %d read%s, %d undecodable, %d unread; %d wake-ups, %d lingers (%.0f records each)\n",
		u.Read, unprinted, u.Undecodable, l.Unread, rs.Wakeups, rs.Lingers, perWake)
	fmt.Fprintln(w, CountsLine(l.Filter, l.Filtered, l.Recorded, l.Lost))
	return l
}

// CountsLine is the line every command ends stderr with: `<N> packets seen, <M> recorded, <L>
// lost` with N = M + L; with a filter expression `<N> packets seen, <F> filtered out, <M>
// recorded, <L> lost` with N = F + M + L.
func CountsLine(filter bool, filtered, recorded, lost uint64) string {
	if filter {
		return fmt.Sprintf("%d packets seen, %d filtered out, %d recorded, %d lost", filtered+recorded+lost, filtered, recorded, lost)
	}
	return fmt.Sprintf("%d packets seen, %d recorded, %d lost", recorded+lost, recorded, lost)
}

// ReadKernelCounts reads the counters loss accounting needs (ReadCounters, summed over CPUs).
func ReadKernelCounts(objs *Objects) (KernelCounts, error) {
	c, err := ReadCounters(objs)
	if err != nil {
		return KernelCounts{}, err
	}
	lost, err := ReadLostByIfindex(objs)
	if err != nil {
		return KernelCounts{}, err
	}
	var filtered map[uint32]uint64
	if objs.Config.Filter != nil {
		if filtered, err = ReadFilteredByIfindex(objs); err != nil {
			return KernelCounts{}, err
		}
	}
	follow, err := ReadFollow(objs, c)
	if err != nil {
		return KernelCounts{}, err
	}
	return KernelCounts{
		Follow:            follow,
		FollowBound:       objs.Config.FollowFlows,
		Filter:            objs.Config.Filter != nil,
		Filtered:          c.Filtered(),
		FilteredByIfindex: filtered,
		XDPSeen:           c.SeenXDP(),
		TCSeen:            c.SeenTC(),
		Emitted:           c.Emitted(),
		RingFull:          c.RingFull(),
		SnapFailed:        c[gen.SensorCounterKeyCNT_SNAP_FAILED],
		LostByIfindex:     lost,
	}, nil
}

// BootTime returns the Unix time of boot in nanoseconds as CLOCK_BOOTTIME sees it, for
// Decoder.BootTime: the kernel stamps records with bpf_ktime_get_boot_ns.
func BootTime() (int64, error) {
	var ts unix.Timespec
	before := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	return before.UnixNano() - ts.Nano(), nil
}
