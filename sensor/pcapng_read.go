package sensor

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
)

// A pcapng reader that holds each interface in 12 bytes (pcapgo's NgReader keeps some 850
// bytes per interface description block, and a stream of them alone grows without bound).
// It reads the blocks as pcapgo does, so that it gives the same packets and fails on the same
// files (a differential test and a fuzz target hold it to that), with errors that say where:
// section header blocks in both byte orders (version 1.0 only; the section length, -1 or not,
// is a hint and not used), interface description blocks (if_name, if_description, if_filter,
// if_os, if_tsresol in powers of 10 and of 2, if_tsoffset), enhanced, simple and the obsolete
// packet blocks; interface statistics and name resolution blocks are checked and dropped;
// other blocks (decryption secrets, custom, unknown) are skipped. As in pcapgo, a block's
// trailing length is not compared with its leading one.

// DefaultMaxInterfaces is the most interface description blocks a pcapng section may hold
// (read --max-interfaces): 12 bytes each, 48 MiB at the bound, names apart. 4M is four times
// the 1M-block stream the README measures, and far past any capture's interfaces.
const DefaultMaxInterfaces = 1 << 22

// maxIfaceStrings bounds the bytes of a section's interface names, descriptions, filters and
// OS names (each kept once when interfaces in a row repeat them).
const maxIfaceStrings = 64 << 20

// ErrTooManyInterfaces says a pcapng section declares more interfaces than the bound.
type ErrTooManyInterfaces struct{ Max int }

// Error names the bound and the flag that raises it.
func (e ErrTooManyInterfaces) Error() string {
	return fmt.Sprintf("the pcapng section declares more than %d interfaces (interface description blocks): "+
		"more than any capture has; raise --max-interfaces to read it", e.Max)
}

// errNgVersion is pcapgo's ErrNgVersionMismatch, word for word.
var errNgVersion = errors.New("Unknown pcapng Version in Section Header")

const (
	ngBlockSHB = 0x0a0d0d0a
	ngBlockIDB = 1
	ngBlockPB  = 2 // the obsolete packet block
	ngBlockSPB = 3
	ngBlockNRB = 4
	ngBlockISB = 5
	ngBlockEPB = 6
	ngBOM      = 0x1a2b3c4d
)

// ngIface is one interface description: extra is 1 + the offset in the section's arena of its
// timestamp offset and strings, 0 when it has neither.
type ngIface struct {
	snap  uint32
	extra uint32
	link  uint16
	resol uint8
}

// ngChunk is how many interfaces a chunk of the table holds (48 KiB).
const ngChunk = 1 << 12

type ngReader struct {
	r       *bufio.Reader
	big     bool
	typ     uint32 // the current block's type
	left    uint32 // bytes of the current block not read yet (its trailing length included)
	at      int64  // where the current block starts
	pos     int64  // bytes read
	max     int
	n       int         // interfaces in this section
	ifaces  [][]ngIface // in chunks of ngChunk: the table grows without copying
	arena   [][]byte    // the section's interface extras: uvarint tsoffset, then 4 × (uvarint length, bytes)
	last    uint32      // extra of the last interface that had one
	lastLen int         // and the length of its record
	hdr     [24]byte
	opt     []byte
	strs    [4][]byte // if_name, if_description, if_filter, if_os of the block being read
	rec     []byte
	buf     []byte
	ci      gopacket.CaptureInfo
}

func newNgReader(r *bufio.Reader, max int) (*ngReader, error) {
	ng := &ngReader{r: r, max: max}
	if err := ng.block(); err != nil {
		return nil, err
	}
	if ng.typ != ngBlockSHB {
		return nil, fmt.Errorf("Unknown magic %x", ng.typ)
	}
	if err := ng.section(); err != nil {
		return nil, err
	}
	return ng, nil
}

func (ng *ngReader) u16(b []byte) uint16 {
	if ng.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (ng *ngReader) u32(b []byte) uint32 {
	if ng.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (ng *ngReader) u64(b []byte) uint64 {
	if ng.big {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}

// read fills b from the stream; the end of the file here is unexpected.
func (ng *ngReader) read(b []byte) error {
	n, err := io.ReadFull(ng.r, b)
	ng.pos += int64(n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// discard skips n bytes of the stream.
func (ng *ngReader) discard(n uint32) error {
	k, err := ng.r.Discard(int(n))
	ng.pos += int64(k)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// take counts n bytes out of the current block; a block too short for them is an error
// (where pcapgo's count wraps and it reads on into the next blocks until the file ends).
func (ng *ngReader) take(n uint32, what string) error {
	if ng.left < n {
		return fmt.Errorf("the pcapng block at byte %d (type %#x) ends before its %s", ng.at, ng.typ, what)
	}
	ng.left -= n
	return nil
}

// block reads the type and length of the next block (and a section header's byte order).
func (ng *ngReader) block() error {
	ng.at = ng.pos
	n, err := io.ReadFull(ng.r, ng.hdr[:8])
	ng.pos += int64(n)
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return io.EOF // the only place a file may end
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	ng.typ = ng.u32(ng.hdr[0:4])
	fixed := uint32(8)
	if ng.typ == ngBlockSHB {
		if err := ng.read(ng.hdr[8:12]); err != nil {
			return err
		}
		switch uint32(ngBOM) {
		case binary.BigEndian.Uint32(ng.hdr[8:12]):
			ng.big = true
		case binary.LittleEndian.Uint32(ng.hdr[8:12]):
			ng.big = false
		default:
			return errors.New("Wrong byte order value in Section Header")
		}
		fixed = 12
	}
	total := ng.u32(ng.hdr[4:8])
	if total < fixed {
		return fmt.Errorf("the pcapng block at byte %d (type %#x) says it is %d bytes long, shorter than its header", ng.at, ng.typ, total)
	}
	ng.left = total - fixed
	return nil
}

// option reads the next option of the current block; end says there are no more (the end of
// options, or only the block's trailing length left).
func (ng *ngReader) option() (code uint16, val []byte, end bool, err error) {
	if ng.left == 4 {
		return 0, nil, true, nil
	}
	if err := ng.take(4, "option header"); err != nil {
		return 0, nil, false, err
	}
	if err := ng.read(ng.hdr[:4]); err != nil {
		return 0, nil, false, err
	}
	code, n := ng.u16(ng.hdr[0:2]), uint32(ng.u16(ng.hdr[2:4]))
	if code == 0 {
		if n != 0 {
			return 0, nil, false, errors.New("End of Options must be zero length")
		}
		return 0, nil, true, nil
	}
	pad := (4 - n&3) & 3
	if ng.left < n+pad {
		return 0, nil, false, fmt.Errorf("the pcapng block at byte %d (type %#x) ends before its option %d (%d bytes)", ng.at, ng.typ, code, n)
	}
	ng.left -= n + pad
	if cap(ng.opt) < int(n) {
		ng.opt = make([]byte, n)
	}
	val = ng.opt[:n]
	if err := ng.read(val); err != nil {
		return 0, nil, false, err
	}
	return code, val, false, ng.discard(pad)
}

// skipOptions reads the rest of the block's options, for their errors, and then the block.
func (ng *ngReader) skipOptions() error {
	for {
		_, _, end, err := ng.option()
		if err != nil {
			return err
		}
		if end {
			return ng.discard(ng.left)
		}
	}
}

// section reads a section header block after its first 12 bytes: a new set of interfaces.
func (ng *ngReader) section() error {
	if len(ng.ifaces) > 1 {
		ng.ifaces = ng.ifaces[:1] // the other chunks go with the section
	}
	ng.n, ng.last = 0, 0
	if len(ng.arena) > 0 { // the chunks past the first go with the section
		ng.arena = append(ng.arena[:0], ng.arena[0][:0])
	}
	if err := ng.read(ng.hdr[:12]); err != nil {
		return err
	}
	if ng.u16(ng.hdr[0:2]) != 1 || ng.u16(ng.hdr[2:4]) != 0 {
		return errNgVersion
	}
	if err := ng.take(12, "version and section length"); err != nil {
		return err
	}
	return ng.skipOptions()
}

// ngTime is the clock of a timestamp resolution: ticks per second and how to make nanoseconds
// of the ticks past a second (as pcapgo computes them, overflow included).
type ngTime struct{ mask, up, down uint64 }

var ngClocks = func() (t [256]ngTime) {
	for r := range 256 {
		if r&0x7f > 63 {
			continue // refused by idb
		}
		mask := uint64(1)
		if r&0x80 != 0 {
			mask <<= uint(r & 0x7f)
		} else {
			for range r & 0x7f {
				mask *= 10
			}
		}
		t[r] = ngTime{mask, 1, 1}
		if mask < 1e9 {
			t[r].up = 1e9 / mask
		} else {
			t[r].down = mask / 1e9
		}
	}
	return t
}()

// idb reads an interface description block after its type and length.
func (ng *ngReader) idb() error {
	if err := ng.take(8, "link type and snap length"); err != nil {
		return err
	}
	if err := ng.read(ng.hdr[:8]); err != nil {
		return err
	}
	ifc := ngIface{link: ng.u16(ng.hdr[0:2]), snap: ng.u32(ng.hdr[4:8])}
	var tsoff uint64
	for i := range ng.strs {
		ng.strs[i] = ng.strs[i][:0]
	}
	for {
		code, val, end, err := ng.option()
		if err != nil {
			return err
		}
		if end {
			break
		}
		switch code {
		case 2: // if_name
			ng.strs[0] = append(ng.strs[0][:0], val...)
		case 3: // if_description
			ng.strs[1] = append(ng.strs[1][:0], val...)
		case 12: // if_os
			ng.strs[3] = append(ng.strs[3][:0], val...)
		case 11: // if_filter: the first byte is its type
			if len(val) >= 1 {
				ng.strs[2] = append(ng.strs[2][:0], val[1:]...)
			}
		case 14: // if_tsoffset
			if len(val) >= 8 {
				tsoff = ng.u64(val[:8])
			}
		case 9: // if_tsresol
			if len(val) >= 1 {
				ifc.resol = val[0]
			}
		}
	}
	if err := ng.discard(ng.left); err != nil {
		return err
	}
	if ifc.resol == 0 {
		ifc.resol = 6
	}
	if e := ifc.resol & 0x7f; e > 63 {
		if ifc.resol&0x80 != 0 {
			return fmt.Errorf("Timestamp resolution 2^-%d is too high", e)
		}
		return fmt.Errorf("Timestamp resolution 10^-%d is too high", e)
	}
	if ng.n >= ng.max {
		return ErrTooManyInterfaces{ng.max}
	}
	if err := ng.keepExtra(&ifc, tsoff); err != nil {
		return err
	}
	if ng.n/ngChunk == len(ng.ifaces) {
		ng.ifaces = append(ng.ifaces, make([]ngIface, ngChunk))
	}
	*ng.iface(ng.n) = ifc
	ng.n++
	return nil
}

// isb reads an interface statistics block, for its errors: the counts are not kept.
func (ng *ngReader) isb() error {
	if err := ng.take(12, "interface id and timestamp"); err != nil {
		return err
	}
	if err := ng.read(ng.hdr[:12]); err != nil {
		return err
	}
	if err := ng.checkID(int(ng.u32(ng.hdr[0:4]))); err != nil {
		return err
	}
	return ng.skipOptions()
}

func (ng *ngReader) checkID(id int) error {
	if id >= ng.n {
		return fmt.Errorf("the pcapng block at byte %d (type %#x) names interface %d, and the section has declared %d",
			ng.at, ng.typ, id, ng.n)
	}
	return nil
}

// nrb reads a name resolution block's records, for their errors (as pcapgo reads them,
// records cut short by the block's end included): the names are not kept.
func (ng *ngReader) nrb() error {
	for ng.left > 0 {
		if err := ng.take(4, "name record header"); err != nil {
			return err
		}
		if err := ng.read(ng.hdr[:4]); err != nil {
			return err
		}
		typ, n := ng.u16(ng.hdr[0:2]), min(uint32(ng.u16(ng.hdr[2:4])), ng.left)
		pad := (4 - n&3) & 3
		if typ == 0 {
			break
		}
		if addr := [5]uint32{0, 4, 16, 6, 8}[min(typ, 4)]; typ <= 4 && n < addr {
			return fmt.Errorf("name record of type %d is too short for its address", typ)
		}
		if err := ng.take(n+pad, "name record"); err != nil {
			return err
		}
		if err := ng.discard(n + pad); err != nil {
			return err
		}
	}
	return ng.discard(ng.left)
}

// next reads blocks up to the next packet and returns it: its bytes are valid until the next
// call.
func (ng *ngReader) next() ([]byte, gopacket.CaptureInfo, error) {
	for {
		if err := ng.block(); err != nil {
			return nil, gopacket.CaptureInfo{}, err
		}
		var err error
		switch ng.typ {
		case ngBlockEPB, ngBlockPB, ngBlockSPB:
			return ng.packet()
		case ngBlockIDB:
			err = ng.idb()
		case ngBlockISB:
			err = ng.isb()
		case ngBlockSHB:
			err = ng.section()
		case ngBlockNRB:
			err = ng.nrb()
		default:
			err = ng.discard(ng.left)
		}
		if err != nil {
			return nil, gopacket.CaptureInfo{}, err
		}
	}
}

// packet reads an enhanced, simple or obsolete packet block after its type and length.
func (ng *ngReader) packet() ([]byte, gopacket.CaptureInfo, error) {
	var ci gopacket.CaptureInfo
	fail := func(err error) ([]byte, gopacket.CaptureInfo, error) { return nil, gopacket.CaptureInfo{}, err }
	if ng.typ == ngBlockSPB {
		if err := ng.take(4, "original length"); err != nil {
			return fail(err)
		}
		if err := ng.read(ng.hdr[:4]); err != nil {
			return fail(err)
		}
		ci.Length = int(ng.u32(ng.hdr[:4]))
		ci.CaptureLength = ci.Length
		if ng.n == 0 {
			return fail(errors.New("a simple packet block before any interface description block"))
		}
		if s := ng.iface(0).snap; s != 0 && uint32(ci.CaptureLength) > s {
			ci.CaptureLength = int(s)
		}
	} else {
		if err := ng.take(20, "packet header"); err != nil {
			return fail(err)
		}
		if err := ng.read(ng.hdr[:20]); err != nil {
			return fail(err)
		}
		id := int(ng.u32(ng.hdr[0:4]))
		if ng.typ == ngBlockPB {
			id = int(ng.u16(ng.hdr[0:2]))
		}
		if err := ng.checkID(id); err != nil {
			return fail(err)
		}
		ci.InterfaceIndex = id
		ts := uint64(ng.u32(ng.hdr[4:8]))<<32 | uint64(ng.u32(ng.hdr[8:12]))
		clk := ngClocks[ng.iface(id).resol]
		ci.Timestamp = time.Unix(int64(ts/clk.mask+ng.tsoffset(id)), int64(ts%clk.mask*clk.up/clk.down)).UTC()
		ci.CaptureLength = int(ng.u32(ng.hdr[12:16]))
		ci.Length = int(ng.u32(ng.hdr[16:20]))
	}
	n := uint32(ci.CaptureLength)
	if ng.left < n {
		return fail(fmt.Errorf("the pcapng block at byte %d (type %#x) ends before its %d captured bytes", ng.at, ng.typ, n))
	}
	ng.left -= n
	data, err := ng.data(int(n))
	if err != nil {
		return fail(err)
	}
	pad := (4 - n&3) & 3
	if err := ng.take(pad, "padding"); err != nil {
		return fail(err)
	}
	if err := ng.discard(pad); err != nil {
		return fail(err)
	}
	if ng.typ == ngBlockEPB {
		err = ng.skipOptions()
	} else {
		err = ng.discard(ng.left)
	}
	if err != nil {
		return fail(err)
	}
	return data, ci, nil
}

// data reads n packet bytes into the reader's buffer, which grows with the bytes that come
// rather than with the length the file claims.
func (ng *ngReader) data(n int) ([]byte, error) {
	const step = 1 << 18
	if n <= cap(ng.buf) {
		ng.buf = ng.buf[:n]
		return ng.buf, ng.read(ng.buf)
	}
	b := ng.buf[:0]
	for len(b) < n {
		k := min(n-len(b), max(step, len(b)))
		if cap(b)-len(b) < k {
			nb := make([]byte, len(b), len(b)+k)
			copy(nb, b)
			b = nb
		}
		if err := ng.read(b[len(b) : len(b)+k]); err != nil {
			return nil, err
		}
		b = b[:len(b)+k]
	}
	ng.buf = b
	return b, nil
}
