package sensor

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// MaxReplayFrame is the largest frame BPF_PROG_TEST_RUN takes for XDP: a page less the XDP
// headroom and the skb_shared_info tail. The sensor's program is not frags-aware (SEC "xdp"),
// so larger frames can only be parsed by the Go twin.
const MaxReplayFrame = 4096 - 256 - 320

// ErrFrameSize is returned by Replay for a frame BPF_PROG_TEST_RUN does not take.
var ErrFrameSize = errors.New("frame size outside what BPF_PROG_TEST_RUN takes (14 to 3520 bytes)")

// ErrSkbRefused is returned by Replay when BPF_PROG_TEST_RUN will not build an skb of the
// frame for tc_sensor (an IP header cut short): such frames can be replayed through XDP only.
var ErrSkbRefused = errors.New("BPF_PROG_TEST_RUN refuses this frame as an skb")

const (
	xdpPass     = 2
	tcActUnspec = 0xffffffff // TC_ACT_UNSPEC (-1)
)

// Replayer runs frames through loaded programs with BPF_PROG_TEST_RUN and reads back the record
// each emitted. The Objects must not be attached: every record in their ring is taken as the
// replayed frame's.
type Replayer struct {
	objs *Objects
	rd   *ringbuf.Reader
	rec  ringbuf.Record
	// filtered is the kernel's count of filtered-out packets after the last frame it rejected.
	filtered uint64
}

// ErrFiltered is returned by Replay when the programs' filter expression rejected the frame:
// it was counted as filtered out and no record was made.
var ErrFiltered = errors.New("the filter expression rejected the frame")

// NewReplayer opens the ring buffer of objs for replay.
func NewReplayer(objs *Objects) (*Replayer, error) {
	rd, err := ringbuf.NewReader(objs.Events)
	if err != nil {
		return nil, fmt.Errorf("opening the ring buffer: %w", err)
	}
	return &Replayer{objs: objs, rd: rd}, nil
}

// Close closes the ring-buffer reader (not the Objects).
func (r *Replayer) Close() error { return r.rd.Close() }

// Replay runs frame through xdp_sensor (m.Dir 0) or tc_sensor (m.Dir 1) and returns the
// record and payload bytes it emitted, with the fields the kernel takes from its context (time,
// interface, wire length) set from m as the twin sets them. The returned slice is valid until
// the next call.
func (r *Replayer) Replay(frame []byte, m Meta) ([]byte, error) {
	prog, want := r.objs.XDP, uint32(xdpPass)
	if m.Dir == 1 {
		prog, want = r.objs.TC, tcActUnspec
		if prog == nil {
			return nil, errors.New("an outgoing frame, but tc_sensor was not loaded (Config.IngressOnly)")
		}
	}
	if len(frame) < 14 || len(frame) > MaxReplayFrame {
		return nil, fmt.Errorf("%w: %d bytes", ErrFrameSize, len(frame))
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		if m.Dir == 1 && errors.Is(err, unix.EINVAL) {
			// The skb test run pulls the IPv4/IPv6 header before the program runs and
			// refuses frames where it is cut short.
			return nil, fmt.Errorf("%w: %w", ErrSkbRefused, err)
		}
		return nil, fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
	}
	if ret != want {
		return nil, fmt.Errorf("%s returned %d, want %d: the sensor must never change a verdict", prog, int32(ret), int32(want))
	}
	r.rd.SetDeadline(time.Now())
	if err := r.rd.ReadInto(&r.rec); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if r.objs.Config.Filter != nil {
				// No record: the filter must have counted the frame.
				n, cerr := r.filteredCount()
				if cerr != nil {
					return nil, cerr
				}
				if n > r.filtered {
					r.filtered = n
					return nil, ErrFiltered
				}
			}
			return nil, errors.New("the program emitted no record")
		}
		return nil, fmt.Errorf("reading the record: %w", err)
	}
	raw := r.rec.RawSample
	rec, err := Record(raw)
	if err != nil {
		return nil, err
	}
	if r.objs.Config.FrameSnap != 0 {
		// The frame head says how long the sample is; Decoder{Frames: true} reads it.
	} else if n := SampleLen(&rec); n <= len(raw) {
		raw = raw[:n]
	} else {
		return nil, fmt.Errorf("%w: sample of %d bytes, record says %d", ErrShortRecord, len(raw), n)
	}
	rec.TsNs = uint64(m.TS)
	rec.Ifindex = m.Ifindex
	if m.WireLen != 0 {
		rec.WireLen = m.WireLen
	}
	copy(raw, recordBytes(&rec))
	return raw, nil
}

// setFilterFrame writes what the filter of programs loaded for a replay reads besides the
// replayed frame (struct filter_replay): the wire length and link header of the file's frame.
func (r *Replayer) setFilterFrame(wireLen uint32, linkHdr []byte) error {
	v := gen.SensorFilterReplay{WireLen: wireLen}
	copy(v.LinkHdr[:], linkHdr)
	if err := r.objs.FilterReplay.Update(uint32(0), &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("writing filter_replay: %w", err)
	}
	return nil
}

// filteredCount reads the two filtered-out counters, summed over CPUs.
func (r *Replayer) filteredCount() (uint64, error) {
	var n uint64
	var per []uint64
	for _, k := range []gen.SensorCounterKey{gen.SensorCounterKeyCNT_XDP_FILTERED, gen.SensorCounterKeyCNT_TC_FILTERED} {
		if err := r.objs.Counters.Lookup(uint32(k), &per); err != nil {
			return 0, fmt.Errorf("reading counter %d: %w", k, err)
		}
		for _, v := range per {
			n += v
		}
	}
	return n, nil
}
