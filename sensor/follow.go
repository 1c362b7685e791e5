package sensor

import (
	"encoding/binary"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// The twin of bpf/follow.h: message following, the windows of TCP sequence numbers whose
// segments get the large payload class because they continue a TLS record or an HTTP head
// (or the first bytes of a connection). It must decide as the kernel does, frame by frame, so
// that read and read --kernel agree byte for byte: they do while the table is not full (the
// kernel's LRU and this one may evict different entries).

// TCP flags follow_decide reads.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
)

// What opened a window (enum follow_kind).
const (
	followSYN = iota + 1
	followTLS
	followHTTP
	followPrefix
)

type followKey struct {
	src, dst     [16]byte
	sport, dport uint16
}

type followVal struct{ start, end, kind uint32 }

// Follow is the twin's follow map, with the counters the kernel keeps for it.
type Follow struct {
	bytes uint32 // cfg.follow_bytes
	small uint32 // cfg.snap_small
	m     *simplelru.LRU[followKey, *followVal]
	stats FollowStats
}

// FollowStats counts what message following did (the kernel's CNT_FOLLOW_* counters).
type FollowStats struct {
	Opened   uint64 // windows opened
	Closed   uint64 // windows closed: the message done, FIN or RST, passed
	Followed uint64 // packets given the large payload class by a window
	Live     int    // windows open now
	Evicted  uint64 // windows pushed out of the full table: Opened - Closed - Live
}

func newFollow(bytes uint32, small uint16, flows int) *Follow {
	m, _ := simplelru.NewLRU[followKey, *followVal](flows, nil) // flows > 0: never fails
	return &Follow{bytes: bytes, small: uint32(small), m: m}
}

// Stats returns the counters so far.
func (f *Follow) Stats() FollowStats {
	s := f.stats
	s.Live = f.m.Len()
	if n := s.Opened - s.Closed; n >= uint64(s.Live) {
		s.Evicted = n - uint64(s.Live)
	}
	return s
}

// headEnds mirrors follow_head_ends.
func headEnds(frame []byte, r *gen.SensorRecord, c *cursor) bool {
	if c.avail < 4 || c.avail != r.PayloadLen {
		return false
	}
	end := uint32(r.PayloadOff) + c.avail
	return string(frame[end-4:end]) == "\r\n\r\n"
}

// tlsEnd mirrors follow_tls_end.
func tlsEnd(frame []byte, r *gen.SensorRecord, c *cursor) uint32 {
	if c.avail < 5 {
		return 0
	}
	b := frame[r.PayloadOff:]
	if b[0] == 0x14 && b[3] == 0 && b[4] == 1 {
		if c.avail < 11 || b[6] != 0x16 || b[7] != 0x03 {
			return 6
		}
		return 11 + uint32(binary.BigEndian.Uint16(b[9:]))
	}
	return 5 + uint32(binary.BigEndian.Uint16(b[3:]))
}

// prefix mirrors follow_prefix.
func prefix(frame []byte, r *gen.SensorRecord, c *cursor) bool {
	if r.PayloadLen >= 8 || c.avail != r.PayloadLen || c.avail < 1 {
		return false
	}
	switch frame[r.PayloadOff] {
	case 'G', 'P', 'H', 'D', 'O', 'C', 'T', 0x16, 0x14:
		return true
	}
	return false
}

// decide mirrors follow_decide.
func (f *Follow) decide(frame []byte, r *gen.SensorRecord, c *cursor) {
	fl := r.TcpFlags
	seq := r.Seq
	if fl&tcpSYN != 0 {
		seq++
	}
	ln := r.PayloadLen
	var add, kind uint32
	switch {
	case fl&tcpSYN != 0:
		add, kind = f.bytes, followSYN
	case ln != 0 && c.msg == msgTLS:
		if end := tlsEnd(frame, r, c); end > ln {
			add, kind = min(end, f.bytes), followTLS
		}
	case ln != 0 && c.msg == msgHTTPReq:
		if !headEnds(frame, r, c) {
			add, kind = f.bytes, followHTTP
		}
	case ln != 0 && c.msg == msgData && prefix(frame, r, c):
		add, kind = f.bytes, followPrefix
	}
	if add == 0 && fl&(tcpFIN|tcpRST) == 0 && (ln == 0 || c.avail <= f.small) {
		return
	}
	k := followKey{src: r.SrcAddr, dst: r.DstAddr, sport: r.Sport, dport: r.Dport}
	v, _ := f.m.Get(k)
	var span uint32
	in, passed := false, false
	if v != nil {
		span = v.end - v.start
		if ln != 0 && seq-v.start < span {
			in = true
			if !c.large {
				c.large = true
				f.stats.Followed++
			}
			if seq+ln-v.start >= span || (v.kind == followHTTP && add == 0 && headEnds(frame, r, c)) {
				passed = true
			}
		} else if ln != 0 && seq-v.end < 0x80000000 {
			passed = true
		}
	}
	if fl&(tcpFIN|tcpRST) != 0 {
		if f.m.Remove(k) {
			f.stats.Closed++
		}
		return
	}
	if add != 0 {
		switch {
		case v != nil && in:
			if seq+add-v.start > span {
				v.end = seq + add
			}
			v.kind = kind
		case v != nil:
			v.start, v.end, v.kind = seq, seq+add, kind
		default:
			f.m.Add(k, &followVal{start: seq, end: seq + add, kind: kind})
			f.stats.Opened++
		}
		if ln != 0 && kind == followSYN && !c.large {
			c.large = true
			f.stats.Followed++
		}
		return
	}
	if passed && f.m.Remove(k) {
		f.stats.Closed++
	}
}
