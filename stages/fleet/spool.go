package fleet

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Spool is the bounded on-disk queue of records the log has not taken: segment files in one
// directory (NNNNNNNNNNNN.spool), each a sequence of frames
//
//	length uint32 | crc32c uint32 | idLen uint8 | id | subjectLen uint16 | subject | data
//
// (big-endian; the length and CRC cover what follows them). Records are appended to the last
// segment and read from the first; a segment is removed once every record read from it was
// acknowledged. A frame that is cut short or fails its CRC (a crash mid-write, a damaged disk)
// ends its segment: it and the rest of that segment are counted as damaged, never sent. The
// directory's segments outlive the process: the next run sends them first.
type Spool struct {
	dir      string
	limit    int64 // bytes of all segments at most
	segMax   int64
	segs     []*segment // oldest first; the last is written to
	bytes    int64
	damaged  uint64
	w        *bufio.Writer
	wf       *os.File
	r        *bufio.Reader
	rf       *os.File
	rseg     *segment // the segment being read
	nextNum  uint64
	buffered int // records appended and not yet read
}

type segment struct {
	num    uint64
	path   string
	size   int64
	read   int  // records read from it
	acked  int  // of those, acknowledged (or given up)
	done   bool // read to its end, and no longer written to
	queued int  // records written to it and not read yet
}

const spoolExt = ".spool"

// OpenSpool opens (making it) a spool directory holding at most limit bytes. Segments a
// previous run left are kept, to be read first; Pending counts their records.
func OpenSpool(dir string, limit int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, limit: limit, segMax: min(8<<20, limit/4+1)}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, spoolExt) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, spoolExt), 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		seg := &segment{num: n, path: filepath.Join(dir, name), size: info.Size()}
		seg.queued = countFrames(seg.path)
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
		s.buffered += seg.queued
		s.nextNum = max(s.nextNum, n+1)
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].num < s.segs[j].num })
	for _, seg := range s.segs {
		seg.done = true // old segments are not written to again
	}
	return s, nil
}

// countFrames counts the whole frames of a segment (up to the first damaged one).
func countFrames(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	r := bufio.NewReader(f)
	n := 0
	for {
		if _, err := readFrame(r); err != nil {
			return n
		}
		n++
	}
}

// Bytes returns the bytes the segments take now.
func (s *Spool) Bytes() int64 { return s.bytes }

// Pending returns the records written and not yet read.
func (s *Spool) Pending() int { return s.buffered }

// Damaged returns the records found damaged (never sent).
func (s *Spool) Damaged() uint64 { return s.damaged }

// ErrSpoolFull is Append's error when the record does not fit the bound.
var ErrSpoolFull = errors.New("spool full")

// Append writes r at the end of the spool (buffered: Sync writes it out).
func (s *Spool) Append(r *Record) error {
	if len(r.ID) > 255 || len(r.Subject) > 65535 {
		return fmt.Errorf("spool: record id or subject too long")
	}
	n := int64(4 + 4 + 1 + len(r.ID) + 2 + len(r.Subject) + len(r.Data))
	if s.bytes+n > s.limit {
		return ErrSpoolFull
	}
	if s.w == nil || s.segs[len(s.segs)-1].size+n > s.segMax {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if _, err := writeFrame(s.w, r); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	seg := s.segs[len(s.segs)-1]
	seg.size += n
	seg.queued++
	s.bytes += n
	s.buffered++
	return nil
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// rotate closes the segment being written and starts the next.
func (s *Spool) rotate() error {
	if err := s.closeWriter(); err != nil {
		return err
	}
	seg := &segment{num: s.nextNum, path: filepath.Join(s.dir, fmt.Sprintf("%012d%s", s.nextNum, spoolExt))}
	s.nextNum++
	f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.wf, s.w = f, bufio.NewWriterSize(f, 64<<10)
	s.segs = append(s.segs, seg)
	return nil
}

func (s *Spool) closeWriter() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Flush()
	if cerr := s.wf.Close(); err == nil {
		err = cerr
	}
	s.w, s.wf = nil, nil
	s.segs[len(s.segs)-1].done = true
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Sync writes out what Append buffered.
func (s *Spool) Sync() error {
	if s.w == nil {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Next reads the oldest record not read yet; ok is false when there is none. seg identifies
// the record's segment for Done.
func (s *Spool) Next() (r *Record, seg *segment, ok bool, err error) {
	for s.buffered > 0 {
		if s.rseg == nil {
			s.rseg = s.firstUnread()
			if s.rseg == nil {
				return nil, nil, false, nil
			}
			if s.rseg == s.writing() {
				if err := s.Sync(); err != nil {
					return nil, nil, false, err
				}
			}
			f, err := os.Open(s.rseg.path)
			if err != nil {
				return nil, nil, false, fmt.Errorf("spool: %w", err)
			}
			s.rf, s.r = f, bufio.NewReaderSize(f, 64<<10)
			for i := 0; i < s.rseg.read; i++ { // records read before, by an earlier reader
				readFrame(s.r)
			}
		}
		seg := s.rseg
		if seg.queued == 0 {
			if seg != s.writing() {
				s.finishRead()
				continue
			}
			return nil, nil, false, nil
		}
		if seg == s.writing() {
			if err := s.Sync(); err != nil {
				return nil, nil, false, err
			}
		}
		rec, err := readFrame(s.r)
		if err != nil {
			// Damaged or cut short: the rest of the segment is given up.
			s.damaged += uint64(seg.queued)
			s.buffered -= seg.queued
			seg.queued = 0
			seg.done = true
			if seg == s.writing() {
				s.closeWriter()
			}
			s.finishRead()
			continue
		}
		seg.queued--
		seg.read++
		s.buffered--
		return rec, seg, true, nil
	}
	return nil, nil, false, nil
}

func (s *Spool) writing() *segment {
	if s.w == nil || len(s.segs) == 0 {
		return nil
	}
	return s.segs[len(s.segs)-1]
}

func (s *Spool) firstUnread() *segment {
	for _, seg := range s.segs {
		if seg.queued > 0 {
			return seg
		}
	}
	return nil
}

// finishRead closes the segment being read and removes it if everything read was acked.
func (s *Spool) finishRead() {
	if s.rf != nil {
		s.rf.Close()
	}
	s.rf, s.r = nil, nil
	seg := s.rseg
	s.rseg = nil
	if seg != nil {
		seg.done = seg.done || seg != s.writing()
		s.maybeRemove(seg)
	}
}

// Done says a record read from seg was acknowledged (or will never be sent): a segment whose
// records are all read and done is removed.
func (s *Spool) Done(seg *segment) {
	seg.acked++
	s.maybeRemove(seg)
}

func (s *Spool) maybeRemove(seg *segment) {
	if !seg.done || seg.queued > 0 || seg.acked < seg.read || seg == s.rseg || seg == s.writing() {
		return
	}
	os.Remove(seg.path)
	for i, x := range s.segs {
		if x == seg {
			s.segs = append(s.segs[:i], s.segs[i+1:]...)
			break
		}
	}
	s.bytes -= seg.size
}

// Close writes out what is buffered and closes the files. Segments whose records were all
// acknowledged are removed; others stay for the next run.
func (s *Spool) Close() error {
	err := s.closeWriter()
	if s.rf != nil {
		s.rf.Close()
		s.rf, s.r = nil, nil
	}
	s.rseg = nil
	for _, seg := range append([]*segment(nil), s.segs...) {
		s.maybeRemove(seg)
	}
	return err
}

// RemoveRead rewrites the spool so that only the records not read yet stay in it: called at
// exit after the records read and not acknowledged were appended again, so that what was
// acknowledged is not sent twice by the next run. It returns the records kept.
func (s *Spool) RemoveRead() (int, error) {
	if err := s.closeWriter(); err != nil {
		return 0, err
	}
	if s.rf != nil {
		s.rf.Close()
		s.rf, s.r = nil, nil
	}
	s.rseg = nil
	kept := 0
	for _, seg := range append([]*segment(nil), s.segs...) {
		if seg.read == 0 {
			kept += seg.queued
			continue
		}
		if seg.queued == 0 {
			seg.acked = seg.read
			seg.done = true
			s.maybeRemove(seg)
			continue
		}
		// Copy the unread tail into a new file in place of the segment.
		n, err := s.rewriteTail(seg)
		if err != nil {
			return kept, err
		}
		kept += n
	}
	return kept, nil
}

func (s *Spool) rewriteTail(seg *segment) (int, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for i := 0; i < seg.read; i++ {
		if _, err := readFrame(r); err != nil {
			return 0, nil
		}
	}
	tmp := seg.path + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	n, size := 0, int64(0)
	bw := bufio.NewWriter(out)
	for {
		rec, err := readFrame(r)
		if err != nil {
			break
		}
		m, _ := writeFrame(bw, rec)
		size += m
		n++
	}
	if err := bw.Flush(); err != nil {
		out.Close()
		return 0, fmt.Errorf("spool: %w", err)
	}
	out.Close()
	if err := os.Rename(tmp, seg.path); err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	s.bytes += size - seg.size
	seg.size, seg.read, seg.acked, seg.queued = size, 0, 0, n
	return n, nil
}

func writeFrame(w io.Writer, r *Record) (int64, error) {
	body := make([]byte, 0, 3+len(r.ID)+len(r.Subject)+len(r.Data))
	body = append(body, byte(len(r.ID)))
	body = append(body, r.ID...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(r.Subject)))
	body = append(body, r.Subject...)
	body = append(body, r.Data...)
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(body)))
	binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(body, crcTable))
	if _, err := w.Write(hdr[:]); err != nil {
		return 0, err
	}
	_, err := w.Write(body)
	return int64(8 + len(body)), err
}

// maxFrame bounds a frame's length: a larger one is damage, not a record.
const maxFrame = 16 << 20

var errDamaged = errors.New("damaged spool frame")

func readFrame(r *bufio.Reader) (*Record, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 3 || n > maxFrame {
		return nil, errDamaged
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, errDamaged
	}
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, errDamaged
	}
	idLen := int(body[0])
	if 1+idLen+2 > len(body) {
		return nil, errDamaged
	}
	id := string(body[1 : 1+idLen])
	sl := int(binary.BigEndian.Uint16(body[1+idLen:]))
	rest := body[3+idLen:]
	if sl > len(rest) {
		return nil, errDamaged
	}
	return &Record{ID: id, Subject: string(rest[:sl]), Data: rest[sl:]}, nil
}
