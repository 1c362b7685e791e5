package zeeklog

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// RotateFormat is the time layout of a rotated file's name, as Zeek's log archive names them:
// conn.2009-11-18-08-00-00.log, the time (UTC) its first line was written. Two rotations
// within one second (by size) add -1, -2, ... after the time.
const RotateFormat = "2006-01-02-15-04-05"

// logFile is one log (conn, dns, ...): DIR/KIND.log, opened at its first line, rotated when
// it reaches the size bound or its time interval ends. Each line goes to the buffer whole, and
// a rotation flushes and closes the file before renaming it, so every rotated file ends with
// a complete line.
type logFile struct {
	dir, kind string
	maxSize   int64         // rotate once the file holds this many bytes (0: never by size)
	every     time.Duration // rotate when a line's time passes the end of the interval (0: never by time)
	f         *os.File
	w         *bufio.Writer
	size      int64
	opened    time.Time // the time of the file's first line
	flushed   time.Time // the time of the line last flushed
	until     time.Time // the end of its interval
	rotated   int       // files rotated
}

func (l *logFile) path() string { return filepath.Join(l.dir, l.kind+".log") }

// write appends one line (ending in a newline) stamped with time ts (the packet's: the
// network's time, as Zeek rotates when it reads a capture).
func (l *logFile) write(ts time.Time, b []byte) error {
	if l.f != nil && ((l.every > 0 && !ts.Before(l.until)) || (l.maxSize > 0 && l.size > 0 && l.size+int64(len(b)) > l.maxSize)) {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	if l.f == nil {
		f, err := os.OpenFile(l.path(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		l.f, l.w, l.size, l.opened = f, bufio.NewWriterSize(f, 64<<10), 0, ts
		if l.every > 0 {
			l.until = ts.Truncate(l.every).Add(l.every)
		}
	}
	n, err := l.w.Write(b)
	l.size += int64(n)
	if err == nil && ts.Sub(l.flushed) >= FlushEvery {
		// Lines reach the file (for a tail -f) once the packets' time moved on a second.
		l.flushed, err = ts, l.w.Flush()
	}
	return err
}

// FlushEvery is how far the packets' time may move on before what a log holds is written out.
const FlushEvery = time.Second

// rotate closes the file and renames it to KIND.TIME.log.
func (l *logFile) rotate() error {
	if err := l.close(); err != nil {
		return err
	}
	stamp := l.opened.UTC().Format(RotateFormat)
	for i := 0; i < 1000; i++ {
		name := l.kind + "." + stamp + ".log"
		if i > 0 {
			name = fmt.Sprintf("%s.%s-%d.log", l.kind, stamp, i)
		}
		to := filepath.Join(l.dir, name)
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			l.rotated++
			return os.Rename(l.path(), to)
		}
	}
	return fmt.Errorf("%s: no free name to rotate it to", l.path())
}

// close flushes and closes the open file, if any (it keeps its name KIND.log).
func (l *logFile) close() error {
	if l.f == nil {
		return nil
	}
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f, l.w = nil, nil
	return err
}
