package sensor

import (
	"errors"
	"fmt"

	"github.com/chains-sensor/chains-sensor/sensor/filter"
	"github.com/gopacket/gopacket/layers"
)

// FileFilter selects the frames of a capture file with a filter expression, compiled for each
// link type the file holds (a pcapng file may hold several) as tcpdump compiles it for a file:
// netmask 0, and none of the Linux ancillary data a file does not record (inbound, outbound,
// ifindex on link types whose header lacks them). Frames are matched as the file holds them
// (Frame.Orig), by libpcap's own interpreter: the selection tcpdump makes.
type FileFilter struct {
	Expr  string
	progs map[layers.LinkType]*filter.Program
}

// NewFileFilter returns a FileFilter for expr; nothing is compiled yet.
func NewFileFilter(expr string) *FileFilter {
	return &FileFilter{Expr: expr, progs: map[layers.LinkType]*filter.Program{}}
}

// Program returns the expression compiled for link type lt, compiling it the first time. An
// expression libpcap refuses for lt is an error that wraps filter.ErrSyntax.
func (f *FileFilter) Program(lt layers.LinkType) (*filter.Program, error) {
	if p, ok := f.progs[lt]; ok {
		return p, nil
	}
	p, err := filter.CompileFile(f.Expr, int(lt))
	if err != nil {
		return nil, err
	}
	if err := p.ForFiles(); err != nil {
		return nil, err
	}
	f.progs[lt] = p
	return p, nil
}

// Check compiles the expression for the link types c has declared, so that an expression
// libpcap refuses is reported before any packet is read, as tcpdump does.
func (f *FileFilter) Check(c *Capture) error {
	for _, lt := range c.LinkTypes() {
		if !supportedLinkType(lt) {
			continue // a pcapng interface whose packets are skipped
		}
		if _, err := f.Program(lt); err != nil {
			return err
		}
	}
	return nil
}

// Match says whether the expression selects fr.
func (f *FileFilter) Match(fr *Frame) (bool, error) {
	p, err := f.Program(fr.LinkType)
	if err != nil {
		return false, err
	}
	return p.Match(fr.Orig, fr.Info.Length), nil
}

// replayLayout is how the file's frame maps onto the replayed one (filter.Target).
type replayLayout struct{ linkHdr, shift int }

func layoutOf(fr *Frame) replayLayout {
	if !fr.Wrapped {
		return replayLayout{}
	}
	return replayLayout{linkHdr: fr.LinkHdr, shift: len(fr.Data) - (len(fr.Orig) - fr.LinkHdr)}
}

// Replayers hands read --kernel the Replayer for each frame. Without a filter one set of
// programs serves every frame. With one, the programs are loaded once per link type, with the
// expression compiled for that link type and translated to read the file's frame (its link
// header from the filter_replay map, the rest from the replayed frame behind its synthetic
// Ethernet header): the kernel selects what tcpdump selects on the file, whatever its link type.
//
// Programs are loaded for ingress only (xdp_sensor) until an outgoing frame (Frame.Dir 1)
// asks for tc_sensor: verifying both costs twice the time.
type Replayers struct {
	cfg    Config
	filter *FileFilter
	shared *linkReplayer
	byLink map[layers.LinkType]*linkReplayer
	objs   []*Objects
	reps   []*Replayer
}

type linkReplayer struct {
	rep    *Replayer
	cfg    Config // what rep was loaded with
	layout replayLayout
}

// replayRing is the ring buffer of replays: one record at a time.
const replayRing = 1 << 16

// NewReplayers loads programs with cfg as frames ask for them; f may be nil (no filter).
func NewReplayers(cfg Config, f *FileFilter) *Replayers {
	if cfg.RingSize == 0 {
		cfg.RingSize = replayRing
	}
	return &Replayers{cfg: cfg, filter: f, byLink: map[layers.LinkType]*linkReplayer{}}
}

// ErrFilterHeader is returned for a frame whose link header is larger than the filter_replay
// map holds: the kernel cannot filter it as its link type (the caller may use the Go path).
var ErrFilterHeader = fmt.Errorf("link header longer than the %d bytes the kernel filter can be handed", filter.ReplayHdrMax)

// ErrFilterLayout is returned for a frame whose link header is laid out otherwise than the
// first frame's of its link type, for which the programs were loaded (the caller may use the
// Go path).
var ErrFilterLayout = errors.New("link header laid out otherwise than the first frame's")

// For returns the Replayer for fr, with its filter_replay entry set for fr when there is a
// filter.
func (r *Replayers) For(fr *Frame) (*Replayer, error) {
	if r.filter == nil {
		if err := r.ensure(&r.shared, r.cfg, fr); err != nil {
			return nil, err
		}
		return r.shared.rep, nil
	}
	lay := layoutOf(fr)
	lr := r.byLink[fr.LinkType]
	if lr == nil {
		if lay.linkHdr > filter.ReplayHdrMax {
			return nil, ErrFilterHeader
		}
		p, err := r.filter.Program(fr.LinkType)
		if err != nil {
			return nil, err
		}
		cfg := r.cfg
		cfg.Filter = &KernelFilter{Prog: p, Replay: true, LinkHdr: lay.linkHdr, Shift: lay.shift}
		if err := r.ensure(&lr, cfg, fr); err != nil {
			return nil, err
		}
		lr.layout = lay
		r.byLink[fr.LinkType] = lr
	} else if err := r.ensure(&lr, lr.cfg, fr); err != nil {
		return nil, err
	}
	if lay != lr.layout {
		// A link type whose header varies (802.11, radiotap, NFLOG, PPP_HDLC): the
		// programs were loaded for the first frame's.
		return nil, fmt.Errorf("%w: link type %d, a link header of %d bytes where the first frame had %d", ErrFilterLayout, fr.LinkType, lay.linkHdr, lr.layout.linkHdr)
	}
	if err := lr.rep.setFilterFrame(uint32(max(fr.Info.Length, len(fr.Orig))), fr.Orig[:lay.linkHdr]); err != nil {
		return nil, err
	}
	return lr.rep, nil
}

// ensure makes *lr a Replayer loaded with cfg that can replay fr: ingress only until fr is
// outgoing, then both programs.
func (r *Replayers) ensure(lr **linkReplayer, cfg Config, fr *Frame) error {
	if *lr != nil && (fr.Dir == 0 || !(*lr).cfg.IngressOnly) {
		return nil
	}
	cfg.IngressOnly = fr.Dir == 0
	rep, err := r.load(cfg)
	if err != nil {
		return err
	}
	if *lr == nil {
		*lr = &linkReplayer{}
	}
	(*lr).rep, (*lr).cfg = rep, cfg
	return nil
}

func (r *Replayers) load(cfg Config) (*Replayer, error) {
	objs, err := Load(cfg)
	if err != nil {
		return nil, err
	}
	rep, err := NewReplayer(objs)
	if err != nil {
		objs.Close()
		return nil, err
	}
	r.objs = append(r.objs, objs)
	r.reps = append(r.reps, rep)
	return rep, nil
}

// Close releases every Replayer and its programs.
func (r *Replayers) Close() error {
	var errs []error
	for _, rep := range r.reps {
		errs = append(errs, rep.Close())
	}
	for _, o := range r.objs {
		errs = append(errs, o.Close())
	}
	return errors.Join(errs...)
}
