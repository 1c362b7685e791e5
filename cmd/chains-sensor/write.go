package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
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

// usageError is bad usage: exit 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

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
