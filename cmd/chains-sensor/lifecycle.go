package main

// How a run ends. attach and read run under one lifecycle, so that every way out is the same
// clean one: a signal (SIGINT, SIGTERM, SIGHUP), the end of the input, -c N, an error while
// reading, an output that fails (a reader of stdout that went away: EPIPE; a full disk:
// ENOSPC), the loss of the last watched interface. Each of them stops the source (detach, or
// stop reading the file), lets the chain finish (packets held for their names are printed),
// runs the closers in the order they were added (the sink, then any writer a command adds),
// prints the counters and returns the exit status run maps (exitStatus).
//
// A stop that does not finish is escalated: a second signal, or graceStop without the run
// ending, runs the force actions (attach: stop printing, only count what is left in the ring);
// a third, or graceStop more, prints the counters as they stand and exits (the output is
// blocked: nothing else can end the run).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"golang.org/x/sys/unix"
)

// Exit statuses (DESIGN.md).
const (
	exitOK    = 0 // the run ended as asked: end of input, -c N, SIGINT, SIGTERM, SIGHUP
	exitError = 1 // an error during the run, a failed output (EPIPE, ENOSPC) included
	exitUsage = 2 // bad usage: a flag, a value, a filter expression; nothing ran
)

// graceStop is how long each step of a stop may take before the next one is taken.
const graceStop = 3 * time.Second

// lifecycle is one run's way out. Stop, Fail and the signals may come from any goroutine.
type lifecycle struct {
	stderr io.Writer
	sigs   chan os.Signal
	pipes  chan os.Signal

	mu       sync.Mutex
	stopping bool
	cause    error // the error that ended the run early (Fail), nil for a stop as asked
	onStop   []func()
	onForce  []func()
	closers  []closer
	stopCh   chan struct{} // closed at the first stop request
	done     chan struct{} // closed by finish: the watchdog ends

	// out serializes the blocks written to stderr while the run goes on (--stats-interval)
	// with the final counters; finished says the final counters are out.
	out      sync.Mutex
	finished bool
	// lastWords prints the counters when a stuck run must exit without finishing.
	lastWords func(w io.Writer)
	// drain is how much longer than graceStop the last step waits: the outputs' time to hand
	// what they hold over at exit (--publish-drain), part of closing the chain.
	drain time.Duration
	exit  func(code int) // os.Exit; tests replace it
}

type closer struct {
	name string
	fn   func() error
}

// newLifecycle catches SIGINT, SIGTERM and SIGHUP (unless SIGHUP is ignored, as under nohup)
// as stop requests, and SIGPIPE so that a write to a closed pipe fails with EPIPE (the run
// then ends with that error) instead of killing the process: Go's runtime kills a process
// that writes to a broken stdout unless SIGPIPE is notified (os/signal). Call finish at the end.
func newLifecycle(stderr io.Writer) *lifecycle {
	l := &lifecycle{
		stderr: stderr,
		sigs:   make(chan os.Signal, 4),
		pipes:  make(chan os.Signal, 1),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		exit:   os.Exit,
	}
	stops := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		stops = append(stops, syscall.SIGHUP)
	}
	signal.Notify(l.sigs, stops...)
	signal.Notify(l.pipes, syscall.SIGPIPE)
	go l.watch()
	return l
}

// OnStop adds what a stop request does (detach the programs, stop reading the file). The
// actions run once, in order, on the goroutine that asked for the stop or on the watchdog.
func (l *lifecycle) OnStop(f func()) {
	l.mu.Lock()
	l.onStop = append(l.onStop, f)
	already := l.stopping
	l.mu.Unlock()
	if already {
		f() // the stop came before there was anything to stop
	}
}

// OnForce adds what a stop that does not finish does next.
func (l *lifecycle) OnForce(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onForce = append(l.onForce, f)
}

// Closer adds something to close once the chain has finished, after those added before it:
// the sink first (it flushes the output), then writers (-w). An error it returns ends the run
// with exit status 1, after the counters.
func (l *lifecycle) Closer(name string, f func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, closer{name, f})
}

// Stop asks the run to end as asked (exit status 0 unless an error comes too).
func (l *lifecycle) Stop() { l.request(nil) }

// Fail ends the run with err (exit status 1): a writer that cannot write, the last interface gone.
func (l *lifecycle) Fail(err error) { l.request(err) }

// stopped says a stop was requested.
func (l *lifecycle) stopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopping
}

// Stopping is closed once a stop was requested.
func (l *lifecycle) Stopping() <-chan struct{} { return l.stopCh }

// Err returns the error Fail was given first, or nil.
func (l *lifecycle) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cause
}

func (l *lifecycle) request(err error) {
	l.mu.Lock()
	if err != nil && l.cause == nil {
		l.cause = err
	}
	if l.stopping {
		l.mu.Unlock()
		return
	}
	l.stopping = true
	close(l.stopCh)
	acts := l.onStop
	l.mu.Unlock()
	for _, f := range acts {
		f()
	}
}

// watch turns signals into stop requests and escalates a stop that does not finish.
func (l *lifecycle) watch() {
	go func() {
		for {
			select {
			case <-l.pipes: // the write that raised it fails with EPIPE and ends the run
			case <-l.done:
				return
			}
		}
	}()
	select {
	case <-l.sigs:
		l.Stop()
	case <-l.stopCh:
	case <-l.done:
		return
	}
	for step := 0; step < 2; step++ {
		wait := graceStop
		if step == 1 {
			wait += l.drain // set before the run starts
		}
		select {
		case <-l.sigs:
		case <-time.After(wait):
		case <-l.done:
			return
		}
		if step == 0 {
			l.mu.Lock()
			acts := l.onForce
			l.mu.Unlock()
			for _, f := range acts {
				f()
			}
			continue
		}
		l.out.Lock()
		if l.finished {
			l.out.Unlock()
			return
		}
		fmt.Fprintln(l.stderr, "chains-sensor: the run does not end (is the output blocked?): exiting without flushing it")
		if l.lastWords != nil {
			l.lastWords(l.stderr)
		}
		code := exitOK
		if l.Err() != nil {
			code = exitError
		}
		l.exit(code)
	}
}

// Locked runs f while no other block is written to stderr; false (f not run) once the
// final counters are out.
func (l *lifecycle) Locked(f func()) bool {
	l.out.Lock()
	defer l.out.Unlock()
	if l.finished {
		return false
	}
	f()
	return true
}

// finish closes what was added with Closer, in order, then prints the run's errors (what
// prefixes them: "read FILE") and the counters, and returns the error the exit status
// follows: nil for a run that ended as asked, a reportedError (already printed) otherwise.
func (l *lifecycle) finish(what string, runErr error, counters func(w io.Writer)) error {
	l.mu.Lock()
	closers := l.closers
	l.closers = nil
	l.mu.Unlock()
	errs := []error{runErr}
	for _, c := range closers {
		if err := c.fn(); err != nil && c.name != "" {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, l.Err())
	err := joinDistinct(errs)
	l.out.Lock()
	defer l.out.Unlock()
	l.finished = true
	close(l.done)
	signal.Stop(l.sigs)
	signal.Stop(l.pipes)
	if err != nil {
		prefix := "chains-sensor: "
		if what != "" {
			prefix += what + ": "
		}
		fmt.Fprintf(l.stderr, "%s%v\n", prefix, err)
	}
	// Bad usage found once the input was open (an expression libpcap cannot compile for a
	// pcapng interface's link type) exits 2 as bad usage does before: without counters.
	if counters != nil && !badUsage(err) {
		counters(l.stderr)
	}
	if err != nil {
		return reportedError{err}
	}
	return nil
}

// abandon ends a run that never started (an error while loading or attaching, returned to
// run to print): the closers run, their errors are dropped, the signals are let go.
func (l *lifecycle) abandon() {
	l.mu.Lock()
	closers := l.closers
	l.closers = nil
	l.mu.Unlock()
	for _, c := range closers {
		c.fn()
	}
	l.out.Lock()
	defer l.out.Unlock()
	if !l.finished {
		l.finished = true
		close(l.done)
		signal.Stop(l.sigs)
		signal.Stop(l.pipes)
	}
}

// joinDistinct joins the errors, each once: the output's error comes back from every write
// and from the sink's Close.
func joinDistinct(errs []error) error {
	var out []error
	for _, e := range errs {
		if e == nil {
			continue
		}
		dup := false
		var we writeError
		for _, o := range out {
			// The output fails once, whoever met it (a write, the sink's Close, the
			// output watcher).
			if errors.Is(o, e) || errors.Is(e, o) || o.Error() == e.Error() || errors.As(o, &we) && errors.As(e, &we) {
				dup = true
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// outputError says what a failed write to stdout means: "writing the output: ...", with the
// reason spelled out for the two common ones.
func outputError(err error) error {
	if err == nil {
		return nil
	}
	var we writeError
	if errors.As(err, &we) {
		return err
	}
	var fe *pcapng.FileError
	if errors.As(err, &fe) {
		return writeError{err} // a -w file's: it names the file and says what failed
	}
	switch {
	case errors.Is(err, syscall.EPIPE):
		return writeError{fmt.Errorf("writing the output: the reader of standard output went away (broken pipe): %w", err)}
	case errors.Is(err, syscall.ENOSPC):
		return writeError{fmt.Errorf("writing the output: the disk is full: %w", err)}
	}
	return writeError{fmt.Errorf("writing the output: %w", err)}
}

// writeError is an output error already explained by outputError.
type writeError struct{ error }

func (w writeError) Unwrap() error { return w.error }

// watchOutput reports (through fail) when w, standard output, is a pipe or socket whose
// reader went away, without waiting for the next packet to be written: poll(2) says POLLERR
// on a pipe without readers and POLLHUP on a socket shut down. It returns at once for other
// writers; the goroutine it starts ends with the process.
func watchOutput(w io.Writer, fail func(error)) {
	f, ok := w.(*os.File)
	if !ok {
		return
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&(os.ModeNamedPipe|os.ModeSocket) == 0 {
		return
	}
	fd := int(f.Fd())
	go func() {
		for {
			fds := []unix.PollFd{{Fd: int32(fd)}}
			n, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || n == 0 {
				return
			}
			if fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
				fail(outputError(syscall.EPIPE))
				return
			}
			if fds[0].Revents&unix.POLLNVAL != 0 {
				return
			}
		}
	}()
}

// writeChainStats prints the chain's bounded tables and its stages' counts (read after the
// run): a line per table and one of counts, or with -o json one JSON object
// {"stats":{"tables":[...],"counters":{...}}}. The counters line comes after it.
func writeChainStats(w io.Writer, chain *views.Pipeline, asJSON bool) {
	if chain == nil {
		return
	}
	tables, counters := chain.Tables(), chain.Counters()
	if len(tables) == 0 && len(counters) == 0 {
		return
	}
	if asJSON {
		m := map[string]uint64{}
		for _, c := range counters {
			m[c.Name] = c.Value
		}
		b, err := json.Marshal(map[string]any{"stats": map[string]any{"tables": tables, "counters": m}})
		if err == nil {
			fmt.Fprintf(w, "%s\n", b)
		}
		return
	}
	for _, t := range tables {
		flag := t.Flag
		if flag == "" {
			flag = "no flag yet"
		}
		fmt.Fprintf(w, "table %s: %s of %d (%s), peak %s, %s\n", t.Name, known(int64(t.Len)), t.Max, flag, known(int64(t.Peak)), evictedText(t.Evicted))
	}
	if len(counters) > 0 {
		var b strings.Builder
		for i, c := range counters {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s=%d", c.Name, c.Value)
		}
		fmt.Fprintln(w, "stages:", b.String())
	}
}

func known(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

func evictedText(n int64) string {
	if n < 0 {
		return "evictions not counted"
	}
	return strconv.FormatInt(n, 10) + " evicted"
}
