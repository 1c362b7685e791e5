package sensor

import (
	"encoding/binary"
	"io"
)

// A scanner of the pcap stream, between the input and pcapgo: it follows the record
// boundaries as the bytes pass, to see what pcapgo does not keep. pcapScan keeps the raw
// timestamp fields of the last pcap record header (pcapgo multiplies the fraction in 32 bits
// and lets time.Unix carry an impossible fraction into the seconds).

// pcapScan follows a pcap stream: the 24-byte file header, then 16-byte record headers each
// followed by its captured bytes. pcapgo reads ahead (its own bufio), so the scanner queues
// the timestamp fields of every record header it has passed, and the capture takes one per
// packet pcapgo returns, in order.
type pcapScan struct {
	r     io.Reader
	order binary.ByteOrder
	pos   int // bytes into the current part (file header, record header or data)
	state int // 0 file header, 1 record header, 2 data
	hdr   [16]byte
	left  uint32  // data bytes of the current record still to pass
	queue []rawTS // timestamp fields of the records passed and not yet taken
	head  int     // queue[head:] are pending
}

// rawTS is a pcap record's timestamp as written: seconds and the fraction (micro- or
// nanoseconds, as the file's magic says).
type rawTS struct{ sec, frac uint32 }

// take returns the timestamp fields of the next record pcapgo returns.
func (s *pcapScan) take() (rawTS, bool) {
	if s.head >= len(s.queue) {
		return rawTS{}, false
	}
	t := s.queue[s.head]
	s.head++
	if s.head > 1024 && s.head*2 > len(s.queue) {
		s.queue = s.queue[:copy(s.queue, s.queue[s.head:])]
		s.head = 0
	}
	return t, true
}

func newPcapScan(r io.Reader, order binary.ByteOrder) *pcapScan {
	return &pcapScan{r: r, order: order}
}

func (s *pcapScan) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.scan(p[:n])
	return n, err
}

func (s *pcapScan) scan(b []byte) {
	for len(b) > 0 {
		switch s.state {
		case 0:
			k := min(24-s.pos, len(b))
			s.pos += k
			b = b[k:]
			if s.pos == 24 {
				s.state, s.pos = 1, 0
			}
		case 1:
			k := copy(s.hdr[s.pos:], b)
			s.pos += k
			b = b[k:]
			if s.pos == 16 {
				s.queue = append(s.queue, rawTS{s.order.Uint32(s.hdr[0:4]), s.order.Uint32(s.hdr[4:8])})
				s.left = s.order.Uint32(s.hdr[8:12])
				s.state, s.pos = 2, 0
				if s.left == 0 {
					s.state = 1
				}
			}
		case 2:
			k := uint32(min(uint64(s.left), uint64(len(b))))
			s.left -= k
			b = b[k:]
			if s.left == 0 {
				s.state = 1
			}
		}
	}
}
