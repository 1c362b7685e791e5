package sensor

import (
	"errors"
	"io"
	"iter"
	"sync/atomic"

	"github.com/chains-sensor/chains-sensor/stages"
)

// noBytes is an empty frame that is not nil: Packet.Frame nil means the source has none.
var noBytes = []byte{}

// FileSource yields the packets of a capture file, each parsed by the Go twin or, with a
// Replayer, by xdp_sensor (tc_sensor for packets the capture marks outgoing) through
// BPF_PROG_TEST_RUN.
type FileSource struct {
	cap    *Capture
	twin   Twin
	rep    *Replayer
	reps   *Replayers
	filter *FileFilter
	dec    Decoder
	buf    []byte
	p      stages.Packet
	err    error
	limit  uint64 // stop after this many Packets (0: no limit)

	stopped                  atomic.Bool
	seen, filtered, recorded atomic.Uint64
	// the kernel's fallbacks to the twin (FileCounts)
	fallbacks, frameSize, skbRefused, filterHeader atomic.Uint64
}

// FileCounts are what a FileSource counted so far.
type FileCounts struct {
	// Seen counts the packets read from the file; Filtered those the filter expression
	// rejected; Recorded those that became Packets. Seen = Filtered + Recorded, but for a
	// packet that ended the run with an error.
	Seen, Filtered, Recorded uint64
	// TwinFallbacks counts frames the kernel could not take, parsed by the Go twin instead:
	// TwinFrameSize those outside BPF_PROG_TEST_RUN's sizes (see MaxReplayFrame),
	// TwinSkbRefused outgoing ones it refuses to make an skb of for tc_sensor (ErrSkbRefused),
	// TwinFilterHeader those whose link header the kernel filter cannot be given.
	TwinFallbacks, TwinFrameSize, TwinSkbRefused, TwinFilterHeader uint64
}

// Counts returns the counts so far; it may be called from any goroutine.
func (s *FileSource) Counts() FileCounts {
	return FileCounts{Seen: s.seen.Load(), Filtered: s.filtered.Load(), Recorded: s.recorded.Load(), TwinFallbacks: s.fallbacks.Load(),
		TwinFrameSize: s.frameSize.Load(), TwinSkbRefused: s.skbRefused.Load(), TwinFilterHeader: s.filterHeader.Load()}
}

// Limit makes Packets end after n Packets (-c N; 0: no limit), so that the file is read no
// further than the packets the run prints: a stage that reads ahead (reverse DNS, from a pipe)
// does not make the counts run past them.
func (s *FileSource) Limit(n uint64) { s.limit = n }

// Stop makes Packets end before the next frame, and an error of the frame being read (its
// reader interrupted) the end of the file. It may be called from any goroutine.
func (s *FileSource) Stop() { s.stopped.Store(true) }

// NewFileSource reads c with the twin; with rep non-nil, through the kernel program.
func NewFileSource(c *Capture, twin Twin, rep *Replayer) *FileSource {
	return &FileSource{cap: c, twin: twin, rep: rep}
}

// SetFilter selects frames with f: with reps (read --kernel) the kernel programs filter, each
// loaded for its link type; without, or for a frame the kernel cannot take, libpcap's
// interpreter does (FileFilter.Match). reps replaces the Replayer given to NewFileSource.
func (s *FileSource) SetFilter(f *FileFilter, reps *Replayers) {
	s.filter, s.reps = f, reps
}

// Err returns why the source stopped: nil at the end of the file, else the error that names
// the packet where reading stopped.
func (s *FileSource) Err() error { return s.err }

// Packets yields one reused Packet per frame, until the end of the file or an error (Err).
func (s *FileSource) Packets() iter.Seq[*stages.Packet] {
	return func(yield func(*stages.Packet) bool) {
		for {
			if s.stopped.Load() || s.limit != 0 && s.recorded.Load() >= s.limit {
				return
			}
			f, err := s.cap.Next()
			if err != nil {
				if s.stopped.Load() {
					return // interrupted by Stop: not an error
				}
				if !errors.Is(err, io.EOF) {
					s.err = err
				} else if s.filter != nil {
					// A pcapng file declares its interfaces as it goes: one that held no
					// packet still gets the expression checked for its link type.
					s.err = s.filter.Check(s.cap)
				}
				return
			}
			s.seen.Add(1)
			m := Meta{TS: f.Time.UnixNano(), Ifindex: uint32(f.Iface), WireLen: f.WireLen, Dir: f.Dir}
			raw, err := s.parse(f, m)
			if errors.Is(err, ErrFiltered) {
				s.filtered.Add(1)
				continue
			}
			if err != nil {
				s.err = err
				return
			}
			s.p.Reset()
			if err := s.dec.Decode(raw, &s.p); err != nil {
				s.err = err
				return
			}
			s.p.Num = f.Num
			s.p.Iface = s.cap.IfaceName(f.Iface)
			s.p.TimeNote, s.p.TimeFrac = f.TimeNote, f.TimeFrac
			s.p.Frame = f.Orig
			if s.p.Frame == nil {
				s.p.Frame = noBytes // a record of no bytes is still a packet of the file
			}
			s.p.FrameLen = uint32(max(f.Info.Length, len(f.Orig)))
			s.p.NoMAC = f.NoMAC
			s.recorded.Add(1)
			if !yield(&s.p) {
				return
			}
		}
	}
}

// Skipped returns how many frames of the file carried no packet the parsers take, by reason
// (Capture.Skipped): they are not among Seen.
func (s *FileSource) Skipped() map[string]uint64 { return s.cap.Skipped() }

// parse returns the record of f, from the kernel or the twin; ErrFiltered when the filter
// rejects f.
func (s *FileSource) parse(f *Frame, m Meta) ([]byte, error) {
	kernel := s.rep != nil || s.reps != nil
	switch {
	case !kernel:
	case len(f.Data) < 14 || len(f.Data) > MaxReplayFrame:
		s.frameSize.Add(1)
	default:
		rep := s.rep
		var err error
		if s.reps != nil {
			rep, err = s.reps.For(f)
		}
		if err == nil {
			raw, err := rep.Replay(f.Data, m)
			if !errors.Is(err, ErrSkbRefused) {
				return raw, err
			}
			s.skbRefused.Add(1)
		} else if errors.Is(err, ErrFilterHeader) || errors.Is(err, ErrFilterLayout) {
			s.filterHeader.Add(1)
		} else {
			return nil, err
		}
	}
	if kernel {
		s.fallbacks.Add(1)
	}
	if s.filter != nil {
		ok, err := s.filter.Match(f)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrFiltered
		}
	}
	s.buf = s.twin.Parse(s.buf[:0], f.Data, m)
	return s.buf, nil
}
