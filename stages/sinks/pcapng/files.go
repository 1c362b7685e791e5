package pcapng

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/lestrrat-go/strftime"
)

// Options say where a Writer writes and when it starts a new file, as tcpdump's -w, -C, -G
// and -W do.
type Options struct {
	// Path is the file to write, "-" for Stdout. With Rotate it is a strftime pattern, expanded
	// with the local time each file is opened at.
	Path   string
	Stdout io.Writer
	// FileSize (-C) starts a new file before a packet when the current one holds more than
	// this many bytes: PATH, PATH1, PATH2, ... (0: never).
	FileSize int64
	// Rotate (-G) starts a new file when a packet comes (or, live, the flush timer ticks) this
	// long after the current one was opened (0: never).
	Rotate time.Duration
	// Count (-W): with FileSize, the files are a ring of Count, named PATH0 ... PATH<Count-1>
	// (the number as wide as Count-1) and overwritten in turn; with Rotate alone, the run ends
	// (ErrFileLimit) when Count files are done.
	Count int
	// Section is written at the start of every file, with every interface added so far.
	Section Section
	// Stats gives the counts of the interfaces, by number, for the statistics blocks every
	// file ends with (one call per file); nil, or an interface it has no entry for: only the
	// block's times are written.
	Stats func() []Stats
	// Live flushes what is written every FlushInterval, and lets the timer rotate (-G) files
	// that get no packet. Otherwise blocks are written when the buffer is full and on Close.
	Live bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// FlushInterval is how often a live Writer writes out its buffer.
const FlushInterval = 50 * time.Millisecond

// bufSize is how many bytes of blocks the Writer gathers before it writes them out.
const bufSize = 256 << 10

// PatternError is a file name pattern (-w with -G) strftime cannot expand.
type PatternError struct {
	Path string
	Err  error
}

// Error names the pattern and why it cannot be expanded.
func (e *PatternError) Error() string { return fmt.Sprintf("-w %q: %v", e.Path, e.Err) }

// Unwrap returns the cause.
func (e *PatternError) Unwrap() error { return e.Err }

// FileError is a write to a capture file that failed.
type FileError struct {
	Name string // the file, or "standard output"
	Err  error
	Cut  bool // the file was cut back to its last complete block
}

// Error names the file and what failed.
func (e *FileError) Error() string {
	s := "writing " + e.Name + ": " + e.Err.Error()
	if e.Cut {
		s += " (the file ends with its last complete block)"
	}
	return s
}

// Unwrap returns the cause (syscall.ENOSPC for a full disk, ...).
func (e *FileError) Unwrap() error { return e.Err }

// file is what the Writer needs of a file.
type file interface {
	io.Writer
	Truncate(size int64) error
	Close() error
}

// openFile creates or truncates a capture file (a variable for the full-disk tests).
var openFile = func(name string) (file, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

// ErrFileLimit ends a run that rotates by time (-G) with a file count (-W): the last file is
// done. As in tcpdump, that run ended as asked.
var ErrFileLimit = errors.New("the last of the files -W asks for is done")

// Writer writes pcapng blocks to a file, or a ring or sequence of files. Every block reaches
// the file whole: blocks are built in a buffer and written out together, and when a write
// fails part way (a full disk) the file is cut back to its last complete block. Each file
// begins with the section header and every interface added so far and ends with their
// statistics. Its methods may be called from any goroutine.
type Writer struct {
	opt   Options
	pat   *strftime.Strftime // Path as a pattern (with Rotate)
	width int                // digits of the file number (with Count)

	mu      sync.Mutex
	ifaces  []Interface
	f       file      // the current file; nil for Stdout
	out     io.Writer // where blocks go
	name    string    // the current file's name
	size    int64     // bytes of complete blocks in the current file
	buf     []byte    // blocks not yet written
	ends    []int     // where each block in buf ends
	opened  time.Time // when the current file was opened
	start   time.Time // when the capture started
	cCount  int       // the file number with FileSize
	gCount  int       // files done with Rotate
	files   []string  // names of the files opened, in order (the ring's repeats once)
	packets uint64
	err     error // the first error: every later call returns it
	shown   bool  // err was returned to a caller
	closed  bool

	stop chan struct{}
	done chan struct{}
}

// Create opens the first file (or takes Stdout) and writes its section header.
func Create(opt Options) (*Writer, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Path == "" {
		return nil, errors.New("no file to write to")
	}
	if opt.Path == "-" && (opt.FileSize > 0 || opt.Rotate > 0) {
		return nil, errors.New("-C and -G need a file name: standard output cannot be rotated")
	}
	if opt.Count < 0 || opt.FileSize < 0 || opt.Rotate < 0 {
		return nil, errors.New("file size, rotation time and count must not be negative")
	}
	if opt.Count > 0 && opt.FileSize == 0 && opt.Rotate == 0 {
		return nil, errors.New("-W needs -C or -G")
	}
	w := &Writer{opt: opt, buf: make([]byte, 0, bufSize)}
	if opt.Rotate > 0 {
		p, err := strftime.New(opt.Path, strftime.WithUnixSeconds('s'))
		if err != nil {
			return nil, &PatternError{Path: opt.Path, Err: err}
		}
		w.pat = p
	}
	if opt.Count > 0 && opt.FileSize > 0 {
		for x := opt.Count - 1; x > 0; x /= 10 {
			w.width++
		}
	}
	w.start = opt.Now()
	if err := w.open(w.start); err != nil {
		return nil, err
	}
	if opt.Live {
		w.stop, w.done = make(chan struct{}), make(chan struct{})
		go w.ticker()
	}
	return w, nil
}

// fileName is tcpdump's MakeFilename: the pattern expanded at t, then the file number when
// files are numbered.
func (w *Writer) fileName(t time.Time) string {
	name := w.opt.Path
	if w.pat != nil {
		name = w.pat.FormatString(t.Local())
	}
	if w.opt.FileSize > 0 && (w.cCount > 0 || w.width > 0) {
		name += fmt.Sprintf("%0*d", w.width, w.cCount)
	}
	return name
}

// open starts a file at t: the section header and every interface known.
func (w *Writer) open(t time.Time) error {
	if w.opt.Path == "-" {
		w.out, w.name = w.opt.Stdout, "standard output"
	} else {
		w.name = w.fileName(t)
		f, err := openFile(w.name)
		if err != nil {
			return err
		}
		w.f, w.out = f, f
		w.files = append(w.files, w.name)
	}
	w.opened, w.size = t, 0
	w.block(AppendSHB(w.buf, &w.opt.Section))
	for i := range w.ifaces {
		w.block(AppendIDB(w.buf, &w.ifaces[i]))
	}
	return nil
}

// block takes b, w.buf with one more block appended, as the new buffer.
func (w *Writer) block(b []byte) {
	w.buf = b
	w.ends = append(w.ends, len(b))
}

// finish ends the current file: statistics, flush, close.
func (w *Writer) finish(now time.Time) error {
	var stats []Stats
	if w.opt.Stats != nil && len(w.ifaces) > 0 {
		stats = w.opt.Stats()
	}
	for i := range w.ifaces {
		var s Stats
		if i < len(stats) {
			s = stats[i]
		}
		w.block(AppendISB(w.buf, i, now, w.start, &s))
	}
	err := w.flush()
	if w.f != nil {
		if cerr := w.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing %s: %w", w.name, cerr)
		}
		w.f = nil
	}
	return err
}

// flush writes the buffered blocks. A write that fails part way leaves the file cut back to
// the last block it holds whole.
func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.out.Write(w.buf)
	if err == nil && n < len(w.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		whole := 0
		for _, e := range w.ends {
			if e <= n {
				whole = e
			}
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the name is said once, by FileError
		}
		fe := &FileError{Name: w.name, Err: err}
		if w.f != nil {
			fe.Cut = w.f.Truncate(w.size+int64(whole)) == nil
		}
		w.size += int64(whole)
		w.buf, w.ends = w.buf[:0], w.ends[:0]
		return fe
	}
	w.size += int64(n)
	w.buf, w.ends = w.buf[:0], w.ends[:0]
	return nil
}

// fail records the first error and returns it.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	w.shown = true
	return w.err
}

// AddInterface adds an interface to the section and returns its number. Its description is
// written now, and at the start of every later file.
func (w *Writer) AddInterface(ifc Interface) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.fail(w.err)
	}
	w.ifaces = append(w.ifaces, ifc)
	w.block(AppendIDB(w.buf, &w.ifaces[len(w.ifaces)-1]))
	return len(w.ifaces) - 1, nil
}

// Interfaces returns how many interfaces have been added.
func (w *Writer) Interfaces() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ifaces)
}

// WritePacket writes one enhanced packet block, starting a new file first when -C or -G say
// so. After an error every call returns it; ErrFileLimit says the last file is done.
func (w *Writer) WritePacket(p *EPB) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.closed {
		if w.err == nil {
			w.err = os.ErrClosed
		}
		return w.fail(w.err)
	}
	if p.Iface < 0 || p.Iface >= len(w.ifaces) {
		return fmt.Errorf("packet on interface %d: the section has %d", p.Iface, len(w.ifaces))
	}
	if err := w.rotate(w.opt.Now(), p); err != nil {
		return w.fail(err)
	}
	w.block(AppendEPB(w.buf, p))
	w.packets++
	if len(w.buf) >= bufSize-bufSize/8 {
		if err := w.flush(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

// rotate starts a new file when the time (-G) or the size (-C) says so; p is the packet about
// to be written (nil from the timer).
func (w *Writer) rotate(now time.Time, p *EPB) error {
	if w.opt.Rotate > 0 && now.Sub(w.opened) >= w.opt.Rotate {
		if err := w.finish(now); err != nil {
			return err
		}
		w.gCount++
		if w.opt.FileSize == 0 && w.opt.Count > 0 && w.gCount >= w.opt.Count {
			w.closed = true
			return ErrFileLimit
		}
		w.cCount = 0
		return w.open(now)
	}
	if p != nil && w.opt.FileSize > 0 && w.size+int64(len(w.buf)) > w.opt.FileSize {
		if err := w.finish(now); err != nil {
			return err
		}
		w.cCount++
		if w.opt.Count > 0 && w.cCount >= w.opt.Count {
			w.cCount = 0
		}
		return w.open(now)
	}
	return nil
}

func (w *Writer) ticker() {
	defer close(w.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			if w.err == nil && !w.closed {
				err := w.rotate(w.opt.Now(), nil)
				if err == nil {
					err = w.flush()
				}
				if err != nil && w.err == nil {
					w.err = err // returned by the next call
				}
			}
			w.mu.Unlock()
		}
	}
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.fail(w.err)
	}
	if w.closed {
		return nil
	}
	if err := w.flush(); err != nil {
		return w.fail(err)
	}
	return nil
}

// Close ends the last file with its statistics and closes it. It returns an error only when
// one was not returned before; it is safe to call twice.
func (w *Writer) Close() error {
	if w.stop != nil {
		close(w.stop)
		<-w.done
		w.stop = nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.unshown()
	}
	w.closed = true
	if w.err != nil {
		if w.f != nil {
			w.f.Close()
			w.f = nil
		}
		return w.unshown()
	}
	if err := w.finish(w.opt.Now()); err != nil {
		w.err = err
		return w.unshown()
	}
	return nil
}

func (w *Writer) unshown() error {
	if w.err == nil || w.shown || errors.Is(w.err, ErrFileLimit) {
		return nil
	}
	w.shown = true
	return w.err
}

// Files returns the names of the files opened so far, in order (a ring's names repeat).
func (w *Writer) Files() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.files...)
}

// Packets returns how many packets were written.
func (w *Writer) Packets() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.packets
}
