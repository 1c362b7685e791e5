package sensor

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Scanners of the capture stream, between the input and pcapgo: they follow the record or
// block boundaries as the bytes pass, to see what pcapgo does not keep or does not bound.
// pcapScan keeps the raw timestamp fields of the last pcap record header (pcapgo multiplies
// the fraction in 32 bits and lets time.Unix carry an impossible fraction into the seconds);
// ngScan counts the interface description blocks of each pcapng section and stops the
// stream past a bound (pcapgo keeps every one, some 800 bytes each, and reads blocks until a
// packet comes: a stream of interface blocks alone would grow without bound).

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

// pcapng block types the scanner knows.
const (
	ngBlockSHB = 0x0a0d0d0a
	ngBlockIDB = 0x00000001
)

// DefaultMaxInterfaces is the most interface description blocks a pcapng section may hold
// (read --max-interfaces).
const DefaultMaxInterfaces = 4096

// ngScan follows a pcapng stream block by block.
type ngScan struct {
	r     io.Reader
	order binary.ByteOrder
	hdr   [12]byte
	pos   int    // header bytes gathered of the block starting
	left  uint64 // bytes of the current block still to pass
	lost  bool   // a length pcapgo will refuse: stop following, pcapgo says what is wrong
	ifs   int    // interface blocks in this section
	max   int
	err   error
}

func newNgScan(r io.Reader, max int) *ngScan {
	return &ngScan{r: r, order: binary.LittleEndian, max: max}
}

// ErrTooManyInterfaces says a pcapng section declares more interfaces than the bound.
type ErrTooManyInterfaces struct{ Max int }

func (e ErrTooManyInterfaces) Error() string {
	return fmt.Sprintf("the pcapng section declares more than %d interfaces (interface description blocks): "+
		"more than any capture has; raise --max-interfaces to read it", e.Max)
}

func (s *ngScan) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.scan(p[:n])
	return n, err
}

func (s *ngScan) scan(b []byte) {
	for len(b) > 0 && !s.lost {
		if s.left > 0 {
			k := min(s.left, uint64(len(b)))
			s.left -= k
			b = b[k:]
			continue
		}
		need := 8
		if s.pos >= 4 && binary.LittleEndian.Uint32(s.hdr[:4]) == ngBlockSHB {
			need = 12 // the byte-order magic follows the length
		}
		k := copy(s.hdr[s.pos:need], b)
		s.pos += k
		b = b[k:]
		if s.pos < need {
			continue
		}
		if s.pos == 8 && binary.LittleEndian.Uint32(s.hdr[:4]) == ngBlockSHB {
			continue // gather the byte-order magic
		}
		typ := s.order.Uint32(s.hdr[:4])
		if typ == ngBlockSHB {
			if binary.BigEndian.Uint32(s.hdr[8:12]) == 0x1a2b3c4d {
				s.order = binary.BigEndian
			} else {
				s.order = binary.LittleEndian
			}
			s.ifs = 0
		} else if typ == ngBlockIDB {
			s.ifs++
			if s.ifs > s.max {
				s.err = ErrTooManyInterfaces{s.max}
			}
		}
		length := uint64(s.order.Uint32(s.hdr[4:8]))
		if length < 12 || length%4 != 0 {
			s.lost = true
			return
		}
		s.left = length - uint64(s.pos)
		s.pos = 0
	}
}
