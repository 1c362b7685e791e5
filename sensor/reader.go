package sensor

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Wake-up policy defaults; see ReaderOptions.
const (
	DefaultPoll   = 50 * time.Millisecond
	DefaultLinger = 5 * time.Millisecond
	DefaultBatch  = 64
)

// ReaderOptions tune the wake-up policy of a Reader.
//
// The reader sleeps in epoll until the kernel wakes it or Poll passes, then reads every record
// in the ring without a system call. When a wake-up brought fewer than Batch records it lingers
// for Linger before sleeping again, so that records arriving meanwhile are read together: a
// fast reader never costs a wake-up per packet, whatever flags the kernel submits with. Poll
// bounds how long a record submitted with BPF_RB_NO_WAKEUP waits (the kernel side wakes the
// reader itself only once enough bytes are pending).
type ReaderOptions struct {
	Poll   time.Duration // longest sleep without looking at the ring; 0: DefaultPoll
	Linger time.Duration // pause after a small batch; 0: DefaultLinger, negative: none
	Batch  int           // a batch at least this large needs no linger; 0: DefaultBatch
}

// ReaderStats counts what the reader did. All fields only grow.
type ReaderStats struct {
	Records  uint64 // samples read from the ring
	Bytes    uint64 // sample bytes read
	Wakeups  uint64 // batches: returns from sleep that found records
	Timeouts uint64 // sleeps ended by Poll rather than by the kernel (with or without records)
	Lingers  uint64 // pauses after a small batch
}

// Reader reads the samples of the events ring buffer. One goroutine calls Run; any goroutine
// may call Stop, Close or Stats.
type Reader struct {
	rd   *ringbuf.Reader
	opts ReaderOptions

	stopping atomic.Bool
	closed   atomic.Bool
	stopOnce sync.Once
	fillMu   sync.Mutex // Fill against Close

	records, bytes, wakeups, timeouts, lingers atomic.Uint64
}

// NewReader opens a reader on the ring buffer map (Objects.Events).
func NewReader(events *ebpf.Map, opts ReaderOptions) (*Reader, error) {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Linger == 0 {
		opts.Linger = DefaultLinger
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return nil, Explain(fmt.Errorf("open ring buffer reader: %w", err))
	}
	return &Reader{rd: rd, opts: opts}, nil
}

// Fill returns the bytes waiting in the ring to be read and the ring's size. Safe from any
// goroutine.
func (r *Reader) Fill() (avail, size int) {
	r.fillMu.Lock()
	defer r.fillMu.Unlock()
	if r.closed.Load() {
		return 0, 0
	}
	return r.rd.AvailableBytes(), r.rd.BufferSize()
}

// Stats returns what the reader did so far.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{
		Records:  r.records.Load(),
		Bytes:    r.bytes.Load(),
		Wakeups:  r.wakeups.Load(),
		Timeouts: r.timeouts.Load(),
		Lingers:  r.lingers.Load(),
	}
}

// Pending returns the number of bytes in the ring not read yet.
func (r *Reader) Pending() int { return r.rd.AvailableBytes() }

// Stop makes Run return nil once it has read every record the ring holds; a Run started after
// Stop drains the ring and returns. Detach the programs first so that no more arrive. Stop
// does not wait.
func (r *Reader) Stop() {
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		r.rd.Flush()
	})
}

// Close makes Run return at once, without reading what is left, and frees the reader.
func (r *Reader) Close() error {
	r.fillMu.Lock()
	defer r.fillMu.Unlock()
	r.closed.Store(true)
	return r.rd.Close()
}

// Run reads samples and calls fn with each until fn returns false (Run returns nil), Stop has
// drained the ring (nil), Close is called (nil) or reading fails (the error). The sample
// passed to fn is valid only until fn returns.
func (r *Reader) Run(fn func(sample []byte) bool) error {
	var (
		rec      ringbuf.Record
		batch    int       // records since the last sleep
		deadline time.Time // when the current sleep ends at the latest
	)
	deadline = time.Now().Add(r.opts.Poll)
	r.rd.SetDeadline(deadline)
	draining := false
	for {
		if !draining && r.stopping.Load() {
			// Stop: read what the ring holds without sleeping, then return.
			draining = true
			r.rd.SetDeadline(time.Now())
		}
		err := r.rd.ReadInto(&rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The deadline passed: every record that was in the ring has been returned.
			if draining {
				return nil
			}
			r.timeouts.Add(1)
			batch = 0
			deadline = time.Now().Add(r.opts.Poll)
			r.rd.SetDeadline(deadline)
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			// Stop woke us; the next turn sees r.stopping and drains.
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			if r.closed.Load() {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if batch == 0 {
			r.wakeups.Add(1)
		}
		batch++
		r.records.Add(1)
		r.bytes.Add(uint64(len(rec.RawSample)))
		if !fn(rec.RawSample) {
			return nil
		}
		if rec.Remaining != 0 {
			continue
		}
		// The ring is empty: the next read sleeps. After a small batch, let records gather first.
		if batch < r.opts.Batch && r.opts.Linger > 0 && !r.stopping.Load() && time.Now().Before(deadline) {
			r.lingers.Add(1)
			time.Sleep(r.opts.Linger)
			if r.closed.Load() {
				return nil
			}
			if r.rd.AvailableBytes() != 0 {
				continue // more arrived while lingering: same batch, no sleep
			}
		}
		batch = 0
	}
}
