package sensor

import (
	"errors"
	"io"
	"iter"

	"github.com/chains-sensor/chains-sensor/stages"
)

// FileSource yields the packets of a capture file, each parsed by the Go twin or, with a
// Replayer, by xdp_sensor (tc_sensor for packets the capture marks outgoing) through
// BPF_PROG_TEST_RUN.
type FileSource struct {
	cap  *Capture
	twin Twin
	rep  *Replayer
	dec  Decoder
	buf  []byte
	p    stages.Packet
	err  error

	// Seen counts the packets read from the file; Recorded those that became Packets.
	Seen, Recorded uint64
	// TwinFallbacks counts frames the kernel could not take, parsed by the Go twin instead:
	// frames outside BPF_PROG_TEST_RUN's sizes (see MaxReplayFrame), and outgoing frames it
	// refuses to make an skb of for tc_sensor (ErrSkbRefused), which TwinSkbRefused counts.
	TwinFallbacks, TwinSkbRefused uint64
}

// NewFileSource reads c with the twin; with rep non-nil, through the kernel program.
func NewFileSource(c *Capture, twin Twin, rep *Replayer) *FileSource {
	return &FileSource{cap: c, twin: twin, rep: rep}
}

// Err returns why the source stopped: nil at the end of the file, else the error that names
// the packet where reading stopped.
func (s *FileSource) Err() error { return s.err }

// Packets yields one reused Packet per frame, until the end of the file or an error (Err).
func (s *FileSource) Packets() iter.Seq[*stages.Packet] {
	return func(yield func(*stages.Packet) bool) {
		for {
			f, err := s.cap.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.err = err
				}
				return
			}
			s.Seen++
			m := Meta{TS: f.Time.UnixNano(), Ifindex: uint32(f.Iface), WireLen: f.WireLen, Dir: f.Dir}
			raw, err := s.parse(f, m)
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
			s.p.NoMAC = f.NoMAC
			s.Recorded++
			if !yield(&s.p) {
				return
			}
		}
	}
}

// Skipped returns how many frames of the file carried no packet the parsers take, by reason
// (Capture.Skipped): they are not among Seen.
func (s *FileSource) Skipped() map[string]uint64 { return s.cap.Skipped() }

func (s *FileSource) parse(f *Frame, m Meta) ([]byte, error) {
	if s.rep != nil {
		if len(f.Data) >= 14 && len(f.Data) <= MaxReplayFrame {
			raw, err := s.rep.Replay(f.Data, m)
			if !errors.Is(err, ErrSkbRefused) {
				return raw, err
			}
			s.TwinSkbRefused++
		}
		s.TwinFallbacks++
	}
	s.buf = s.twin.Parse(s.buf[:0], f.Data, m)
	return s.buf, nil
}
