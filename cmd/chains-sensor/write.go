package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
	"github.com/gopacket/gopacket/layers"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// Writing pcapng (-w), as tcpdump writes its files: -s, -C, -G, -W; and what the lines do
// meanwhile (-q).
const (
	flagWrite      = "w"
	flagSnapLen    = "s"
	flagFileSize   = "C"
	flagRotate     = "G"
	flagFileCount  = "W"
	flagNoComments = "no-comments"
	flagQuiet      = "q"
)

// DefaultSnapLen is tcpdump's default snap length.
const DefaultSnapLen = 262144

// version is the program's version, set at build time with -ldflags "-X main.version=..."; the
// module's version or VCS revision otherwise.
var version = ""

func programVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if (v == "" || v == "(devel)") && rev != "" {
		return rev + dirty
	}
	if v == "" {
		return "(devel)"
	}
	return v
}

func writeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagWrite, Usage: "write the packets to `FILE` (- for standard output) as pcapng, each with a comment of what the stages learned; the lines go to stdout, or to stderr with -w -"},
		&cli.UintFlag{Name: flagSnapLen, Value: DefaultSnapLen, Usage: "with -w, keep at most `SNAPLEN` bytes of each frame (live, at most what a ring record carries)"},
		&cli.StringFlag{Name: flagFileSize, Usage: "with -w, start a new file (FILE1, FILE2, ...) when one holds more than `SIZE` millions of bytes (suffix k, m or g: KiB, MiB, GiB)"},
		&cli.UintFlag{Name: flagRotate, Usage: "with -w, start a new file every `SECONDS`; FILE is then a strftime(3) pattern"},
		&cli.UintFlag{Name: flagFileCount, Usage: "with -C, a ring of `COUNT` files (FILE0 ...); with -G alone, stop after COUNT files"},
		&cli.BoolFlag{Name: flagNoComments, Usage: "with -w, write no comments (and run no decoder the view does not need)"},
		&cli.BoolFlag{Name: flagQuiet, Usage: "print no lines (with -w, only the file is written)"},
	}
}

// writeSettings are the -w flags, checked.
type writeSettings struct {
	opt      pcapng.Options
	snapLen  uint32
	comments bool
	stdout   bool // -w -: the capture goes to stdout, the lines to stderr
}

// parseWriteFlags returns the -w settings, nil without -w.
func parseWriteFlags(c *cli.Context) (*writeSettings, error) {
	path := c.String(flagWrite)
	if path == "" {
		for _, f := range []string{flagFileSize, flagRotate, flagFileCount, flagNoComments} {
			if c.IsSet(f) {
				return nil, usageError{fmt.Errorf("-%s needs -w FILE", f)}
			}
		}
		return nil, nil
	}
	ws := &writeSettings{comments: !c.Bool(flagNoComments), stdout: path == "-"}
	ws.opt.Path = path
	if s := c.Uint(flagSnapLen); s == 0 || s > DefaultSnapLen {
		return nil, usageError{fmt.Errorf("-s %d: want 1 to %d", s, DefaultSnapLen)}
	} else {
		ws.snapLen = uint32(s)
	}
	if c.IsSet(flagFileSize) {
		n, err := parseFileSize(c.String(flagFileSize))
		if err != nil {
			return nil, usageError{err}
		}
		ws.opt.FileSize = n
	}
	ws.opt.Rotate = time.Duration(c.Uint(flagRotate)) * time.Second
	ws.opt.Count = int(c.Uint(flagFileCount))
	if ws.stdout && (ws.opt.FileSize > 0 || ws.opt.Rotate > 0) {
		return nil, usageError{errors.New("-C and -G need -w FILE: standard output cannot be rotated")}
	}
	if ws.opt.Count > 0 && ws.opt.FileSize == 0 && ws.opt.Rotate == 0 {
		return nil, usageError{errors.New("-W needs -C or -G")}
	}
	return ws, nil
}

// parseFileSize reads -C as tcpdump does: millions of bytes, or KiB, MiB, GiB with k, m, g.
func parseFileSize(s string) (int64, error) {
	num, mult := s, int64(1000000)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			num, mult = s[:n-1], 1<<10
		case 'm', 'M':
			num, mult = s[:n-1], 1<<20
		case 'g', 'G':
			num, mult = s[:n-1], 1<<30
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 1 || v > (1<<62)/mult {
		return 0, fmt.Errorf("-C %q: want a positive number of millions of bytes, or of KiB, MiB, GiB with k, m, g", s)
	}
	return v * mult, nil
}

// section is the section header of our files: the machine, the kernel, the program and its
// version, and in the comment the host and what was done.
func section(what string) pcapng.Section {
	var u unix.Utsname
	s := pcapng.Section{Application: "chains-sensor " + programVersion()}
	if unix.Uname(&u) == nil {
		s.Hardware = unix.ByteSliceToString(u.Machine[:])
		s.OS = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	host, err := os.Hostname()
	if err != nil {
		host = "an unnamed host"
	}
	s.Comment = what + " on " + host
	return s
}

// openWriter creates the first file (or takes stdout) for ws, with stats for the statistics
// blocks and the live flush when live.
func openWriter(c *cli.Context, ws *writeSettings, what string, live bool, stats func() []pcapng.Stats) (*pcapng.Writer, error) {
	opt := ws.opt
	opt.Stdout = c.App.Writer
	opt.Section = section(what)
	opt.Live = live
	opt.Stats = stats
	w, err := pcapng.Create(opt)
	var pe *pcapng.PatternError
	if errors.As(err, &pe) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, fmt.Errorf("-w %s: %w", opt.Path, err)
	}
	return w, nil
}

// captureConfig is the capture sink's configuration for w.
func captureConfig(ws *writeSettings, w *pcapng.Writer, live bool, iface func(uint32) pcapng.Interface) *sinks.CaptureConfig {
	return &sinks.CaptureConfig{Writer: w, Interface: iface, Comments: ws.comments, Directions: live, SnapLen: ws.snapLen}
}

// fileLimitReached reports whether err says that -G with -W is done: the run ended as asked.
func fileLimitReached(err error) bool { return errors.Is(err, pcapng.ErrFileLimit) }

// liveCapture is attach's -w: the interfaces the file describes, by number, and the counters
// their statistics come from (set once the sensor is loaded and attached).
type liveCapture struct {
	ws     *writeSettings
	expr   string // the filter expression, for if_filter
	w      *pcapng.Writer
	config *sinks.CaptureConfig

	mu      sync.Mutex
	objs    *sensor.Objects
	live    *sensor.Live
	atts    map[uint32]sensor.Attachment
	ifindex []uint32          // by interface number
	drops0  map[uint32]uint64 // the interfaces' own drops when the capture started
}

// newLiveCapture opens attach's -w file (nil without -w).
func newLiveCapture(c *cli.Context, s *attachSettings) (*liveCapture, error) {
	if s.write == nil {
		return nil, nil
	}
	lc := &liveCapture{ws: s.write, expr: s.expr, atts: map[uint32]sensor.Attachment{}, drops0: map[uint32]uint64{}}
	w, err := openWriter(c, s.write, "captured by chains-sensor attach", true, lc.stats)
	if err != nil {
		return nil, err
	}
	lc.w = w
	lc.config = captureConfig(s.write, w, true, lc.describe)
	return lc, nil
}

// snapLen is the snap length the interfaces are captured with: -s, bounded by what a record
// carries.
func (lc *liveCapture) snapLen() uint32 { return min(lc.ws.snapLen, sensor.FrameMax) }

// describe is an interface's description block: its name, Ethernet, the snap length, the
// filter, and how the sensor watches it.
func (lc *liveCapture) describe(ifindex uint32) pcapng.Interface {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	a := lc.atts[ifindex]
	var how []string
	if a.XDP != "" {
		how = append(how, "ingress: xdp_sensor ("+a.XDP+")")
	}
	if a.TC != "" {
		how = append(how, "egress: tc_sensor ("+a.TC+")")
	}
	return pcapng.Interface{Name: a.Iface, Description: strings.Join(how, ", "), LinkType: uint16(layers.LinkTypeEthernet),
		SnapLen: lc.snapLen(), Filter: lc.expr, OS: section("").OS}
}

// start declares every attached interface in the file and takes the counters.
func (lc *liveCapture) start(capt *sinks.Capture, objs *sensor.Objects, live *sensor.Live, att *sensor.Attached) error {
	lc.mu.Lock()
	lc.objs, lc.live = objs, live
	for _, a := range att.Ifaces {
		lc.atts[uint32(a.Ifindex)] = a
		if d, err := sensor.LinkDrops(a.Ifindex); err == nil {
			lc.drops0[uint32(a.Ifindex)] = d
		}
	}
	lc.mu.Unlock()
	for _, a := range att.Ifaces {
		id, err := capt.Declare(uint32(a.Ifindex))
		if err != nil {
			return err
		}
		lc.mu.Lock()
		for len(lc.ifindex) <= id {
			lc.ifindex = append(lc.ifindex, 0)
		}
		lc.ifindex[id] = uint32(a.Ifindex)
		lc.mu.Unlock()
	}
	return nil
}

// reattached records an interface attached again (--reattach): its packets, under its new
// index, are described by its name when they come.
func (lc *liveCapture) reattached(a sensor.Attachment) {
	if lc == nil {
		return
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.atts[uint32(a.Ifindex)] = a
}

// stats are the statistics blocks' counts, from the start of the capture: packets the programs
// saw on each interface, those the filter passed, the records lost to a full ring (isb_osdrop),
// those user space received (isb_usrdeliv), and the interface's own drops since the start.
func (lc *liveCapture) stats() []pcapng.Stats {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.objs == nil || lc.live == nil {
		return nil
	}
	k, err := sensor.ReadKernelCounts(lc.objs)
	if err != nil {
		return nil
	}
	u := lc.live.Counts()
	recs := map[uint32]uint64{}
	for _, ic := range u.Ifaces {
		recs[ic.Ifindex] = ic.In + ic.Out
	}
	out := make([]pcapng.Stats, len(lc.ifindex))
	for id, idx := range lc.ifindex {
		lost, rec := k.LostByIfindex[idx], recs[idx]
		st := pcapng.Stats{Has: pcapng.HasReceived | pcapng.HasOSDrop | pcapng.HasDelivered,
			Received: rec + lost, OSDrop: lost, Delivered: rec}
		if k.Filter {
			st.Has |= pcapng.HasFilterAccept
			st.FilterAccept = rec + lost
			st.Received += k.FilteredByIfindex[idx]
		}
		if d, err := sensor.LinkDrops(int(idx)); err == nil {
			if d0, ok := lc.drops0[idx]; ok && d >= d0 {
				st.Has |= pcapng.HasIfDrop
				st.IfDrop = d - d0
			}
		}
		out[id] = st
	}
	return out
}
