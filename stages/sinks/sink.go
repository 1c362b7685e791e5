// Package sinks ends a chain: a Sink writes what its view makes of each packet to an Output,
// one sink per file (netwatch.go, packets.go, json.go, urlwatch.go, weirddns.go, flows.go), or
// its frame to a pcapng file with a comment in the lines' words (capture.go, -w; the file
// format is package pcapng below).
// They share one clock (clock.go), one escaper set and one JSON writer (text.go), and one
// endpoint formatter and protocol namer (fields.go), so that every line says the same thing
// the same way.
//
// A new output is one more file here: a type with Write and Close built on those helpers, and
// an entry in package views' List that makes it.
package sinks

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// Sink is the end of a chain: it writes each packet (or what a view makes of it) to an Output.
// Write is called once per packet, in order, from one goroutine; it must not keep p. Close is
// called once at the end of input: the sink flushes its Output and returns the first error it
// met.
type Sink interface {
	Write(p *stages.Packet) error
	Close() error
}

// FlowWriter is a Sink that prints finished flows: the chain's flow table hands it each flow
// as it ends (and, when the input ends, every flow still open, before Close).
type FlowWriter interface {
	Sink
	WriteFlow(f *stages.Flow)
}

// Format is the output format (-o).
type Format uint8

// Formats.
const (
	FormatText Format = iota // lines for people
	FormatJSON               // one JSON object a line
)

// ParseFormat parses the value of -o: text or json.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "text":
		return FormatText, nil
	case "json":
		return FormatJSON, nil
	}
	return FormatText, fmt.Errorf("-o %q: the output format is text or json", s)
}

// Options are the settings every sink shares.
type Options struct {
	Format Format // FormatText or FormatJSON, for the sinks that write both
	UTC    bool   // times in UTC instead of local time
	Color  bool   // ANSI colours in text
}

// Output is the buffered destination of a sink. Sinks build a whole line (or block) in their
// own buffer and hand it over with one Write. A live Output is flushed by a timer at least every
// FlushInterval, so a lone packet still prints promptly; a file Output only when its buffer is
// full and on Close.
type Output struct {
	w    *bufio.Writer
	live bool
	mu   sync.Mutex
	err  error
	stop chan struct{}
	done chan struct{}
}

// FlushInterval is how often a live Output flushes what it holds.
const FlushInterval = 50 * time.Millisecond

// NewOutput wraps w in a 64 KiB buffer; live starts the flush timer.
func NewOutput(w io.Writer, live bool) *Output {
	o := &Output{w: bufio.NewWriterSize(w, 64<<10), live: live}
	if live {
		o.stop = make(chan struct{})
		o.done = make(chan struct{})
		go o.flusher()
	}
	return o
}

func (o *Output) flusher() {
	defer close(o.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			o.mu.Lock()
			if o.w.Buffered() > 0 && o.err == nil {
				o.err = o.w.Flush()
			}
			o.mu.Unlock()
		}
	}
}

// Write appends b to the buffer. It returns the first write error the Output met.
func (o *Output) Write(b []byte) error {
	if o.live {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	if o.err != nil {
		return o.err
	}
	_, o.err = o.w.Write(b)
	return o.err
}

// Flush writes out what is buffered.
func (o *Output) Flush() error {
	if o.live {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	if o.err == nil {
		o.err = o.w.Flush()
	}
	return o.err
}

// Close stops the flush timer and flushes. It is safe to call twice.
func (o *Output) Close() error {
	if o.live && o.stop != nil {
		close(o.stop)
		<-o.done
		o.stop = nil
	}
	return o.Flush()
}
