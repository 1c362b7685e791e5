package fleet

import (
	"fmt"
	"sync"
	"time"
)

// PublisherConfig bounds a Publisher. The zero value is usable: defaults apply.
type PublisherConfig struct {
	MaxRecords int           // records the memory queue holds at most [DefaultMaxRecords]
	MaxBytes   int64         // bytes the memory queue holds at most [DefaultMaxBytes]
	Window     int           // records sent and not yet acknowledged at most [DefaultWindow]
	Drain      time.Duration // at Close, the longest wait for the log to take what is queued [DefaultDrain]
	RetryWait  time.Duration // the pause after a failed send [DefaultRetryWait]
	Spool      *Spool        // the disk spool; nil: none (what the queue cannot hold is dropped)
}

// Defaults of PublisherConfig.
const (
	DefaultMaxRecords = 65536
	DefaultMaxBytes   = 64 << 20
	DefaultWindow     = 1024
	DefaultDrain      = 5 * time.Second
	DefaultRetryWait  = 250 * time.Millisecond
)

// Counters are what a Publisher did. Records + Restored = Acked + Dropped + Pending, always.
type Counters struct {
	Records    uint64 // records the sensor made (Add)
	Restored   uint64 // records found in the spool at start, left by an earlier run
	Published  uint64 // records sent to the log at least once
	Retries    uint64 // sends again after a failure or a timeout
	Acked      uint64 // records the log acknowledged: stored
	Duplicates uint64 // of those, acknowledged as duplicates of an earlier send (not stored twice)
	Spooled    uint64 // records written to the disk spool
	Dropped    uint64 // records lost: the queue and the spool full, or damaged in the spool, or no spool at exit
	Pending    int    // records not acknowledged yet: queued, in flight, in the spool
	InFlight   int    // records sent and not yet acknowledged
	QueueBytes int64  // bytes the memory queue holds
	SpoolBytes int64  // bytes the spool's files hold
}

// Line is the counters as the exit shows them, before the packet counters line.
func (c Counters) Line() string {
	return fmt.Sprintf("publish: %d records, %d published, %d acked (%d duplicates), %d retries, %d spooled, %d dropped, %d pending",
		c.Records+c.Restored, c.Published, c.Acked, c.Duplicates, c.Retries, c.Spooled, c.Dropped, c.Pending)
}

type entry struct {
	rec  *Record
	seg  *segment // the spool segment it was read from, or nil
	sent bool
}

// Publisher queues records and hands them to a Writer, as package fleet describes. Add never
// blocks. It is the Writer's Handler.
type Publisher struct {
	cfg PublisherConfig
	w   Writer

	mu       sync.Mutex
	q        []*entry // FIFO, q[head:] holds the queue
	head     int
	qBytes   int64
	inflight map[string]*entry
	pause    time.Time // no sends before this (after a failure)
	closing  bool
	lastErr  error
	c        Counters
	spoolErr error

	notify chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

// NewPublisher returns a publisher; Start gives it its Writer.
func NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = DefaultMaxRecords
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = DefaultRetryWait
	}
	p := &Publisher{cfg: cfg, inflight: map[string]*entry{}, notify: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Spool != nil {
		p.c.Restored = uint64(cfg.Spool.Pending())
	}
	return p
}

// Start begins sending through w (made with p as its Handler).
func (p *Publisher) Start(w Writer) {
	p.w = w
	go p.loop()
}

// Add queues r: in memory, or in the spool when the memory queue is full or the spool holds
// older records already (while it has room: else in memory after all), or drops it (counted)
// when neither can take it.
func (p *Publisher) Add(r *Record) {
	p.mu.Lock()
	p.c.Records++
	room := len(p.q)-p.head < p.cfg.MaxRecords && p.qBytes+int64(r.size()) <= p.cfg.MaxBytes
	switch sp := p.cfg.Spool; {
	case p.closing:
		p.c.Dropped++
	case (sp == nil || sp.Pending() == 0) && room:
		p.push(&entry{rec: r})
	case sp != nil:
		if err := p.spool(r); err == ErrSpoolFull && room {
			p.push(&entry{rec: r})
		} else if err != nil {
			p.c.Dropped++
		}
	default:
		p.c.Dropped++
	}
	p.mu.Unlock()
	p.wake()
}

// spool writes r to the spool (p.mu held), counting it as spooled; the caller counts a
// failure (ErrSpoolFull, or a write error, also kept for LastError).
func (p *Publisher) spool(r *Record) error {
	err := p.cfg.Spool.Append(r)
	if err != nil {
		if err != ErrSpoolFull && p.spoolErr == nil {
			p.spoolErr = err
		}
		return err
	}
	p.c.Spooled++
	return nil
}

func (p *Publisher) push(e *entry) {
	p.q = append(p.q, e)
	p.qBytes += int64(e.rec.size())
}

// pushFront puts e back at the head of the queue (a failed send goes first again).
func (p *Publisher) pushFront(e *entry) {
	if p.head > 0 {
		p.head--
		p.q[p.head] = e
	} else {
		p.q = append([]*entry{e}, p.q...)
	}
	p.qBytes += int64(e.rec.size())
}

// pop takes the oldest record: from the memory queue, else from the spool.
func (p *Publisher) pop() *entry {
	if p.head < len(p.q) {
		e := p.q[p.head]
		p.q[p.head] = nil
		p.head++
		if p.head == len(p.q) || p.head > 4096 && p.head*2 > len(p.q) {
			p.q = append(p.q[:0], p.q[p.head:]...)
			p.head = 0
		}
		p.qBytes -= int64(e.rec.size())
		return e
	}
	if sp := p.cfg.Spool; sp != nil && sp.Pending() > 0 {
		r, seg, ok, err := sp.Next()
		if err != nil && p.spoolErr == nil {
			p.spoolErr = err
		}
		if ok {
			return &entry{rec: r, seg: seg}
		}
	}
	return nil
}

func (p *Publisher) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// loop sends while the writer is ready and the window has room.
func (p *Publisher) loop() {
	defer close(p.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.notify:
		case <-t.C:
		}
		p.send()
	}
}

func (p *Publisher) send() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Now().Before(p.pause) || !p.w.Ready() {
		return
	}
	for len(p.inflight) < p.cfg.Window {
		e := p.pop()
		if e == nil {
			break
		}
		p.inflight[e.rec.ID] = e
		p.mu.Unlock()
		err := p.w.Send(e.rec)
		p.mu.Lock()
		if err != nil {
			if _, ok := p.inflight[e.rec.ID]; ok {
				delete(p.inflight, e.rec.ID)
				p.pushFront(e)
			}
			p.lastErr = err
			p.pause = time.Now().Add(p.cfg.RetryWait)
			return
		}
		if e.sent {
			p.c.Retries++
		} else {
			e.sent = true
			p.c.Published++
		}
	}
	if sp := p.cfg.Spool; sp != nil {
		if err := sp.Sync(); err != nil && p.spoolErr == nil {
			p.spoolErr = err
		}
	}
}

// Acked is the Writer's report that the log stored the record (Handler).
func (p *Publisher) Acked(id string, dup bool) {
	p.mu.Lock()
	e, ok := p.inflight[id]
	if ok {
		delete(p.inflight, id)
		p.c.Acked++
		if dup {
			p.c.Duplicates++
		}
		if e.seg != nil {
			p.cfg.Spool.Done(e.seg)
		}
	}
	p.mu.Unlock()
	if ok {
		p.wake()
	}
}

// Failed is the Writer's report that a send did not reach the log (Handler): the record is
// sent again, first, after RetryWait.
func (p *Publisher) Failed(id string, err error) {
	p.mu.Lock()
	if e, ok := p.inflight[id]; ok {
		delete(p.inflight, id)
		p.pushFront(e)
		p.lastErr = err
		p.pause = time.Now().Add(p.cfg.RetryWait)
	}
	p.mu.Unlock()
}

// Counters returns the counters now. Safe from any goroutine.
func (p *Publisher) Counters() Counters {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counters()
}

func (p *Publisher) counters() Counters {
	c := p.c
	c.InFlight = len(p.inflight)
	c.QueueBytes = p.qBytes
	c.Pending = len(p.q) - p.head + len(p.inflight)
	if sp := p.cfg.Spool; sp != nil {
		c.Pending += sp.Pending()
		c.SpoolBytes = sp.Bytes()
		c.Dropped += sp.Damaged()
	}
	return c
}

// LastError returns the last send failure, or nil.
func (p *Publisher) LastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Close stops taking records, waits (at most Drain) for the log to take what is queued, then
// writes what is left to the spool (dropped, and counted, without one) and closes the writer.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return nil
	}
	p.closing = true
	p.mu.Unlock()
	if p.w != nil {
		deadline := time.Now().Add(p.cfg.Drain)
		for time.Now().Before(deadline) {
			p.wake()
			if c := p.Counters(); c.Pending == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(p.stop)
		<-p.done
		p.w.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	left := make([]*entry, 0, len(p.inflight)+len(p.q)-p.head)
	for _, e := range p.inflight {
		left = append(left, e)
	}
	clear(p.inflight)
	left = append(left, p.q[p.head:]...)
	p.q, p.head, p.qBytes = nil, 0, 0
	sp := p.cfg.Spool
	if sp == nil {
		p.c.Dropped += uint64(len(left))
		return nil
	}
	// What was read from the spool and not acked is written again, then the read part of
	// the spool removed: the next run sends each record not acknowledged once.
	for _, e := range left {
		if err := sp.Append(e.rec); err != nil {
			if err != ErrSpoolFull && p.spoolErr == nil {
				p.spoolErr = err
			}
			p.c.Dropped++
			continue
		}
		if e.seg == nil {
			p.c.Spooled++
		}
	}
	if _, err := sp.RemoveRead(); err != nil && p.spoolErr == nil {
		p.spoolErr = err
	}
	if err := sp.Close(); err != nil && p.spoolErr == nil {
		p.spoolErr = err
	}
	return p.spoolErr
}
