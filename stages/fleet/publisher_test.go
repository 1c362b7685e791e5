package fleet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeLog is a Writer that stores what it is sent, once per ID, as JetStream's duplicate
// window does; down makes it refuse, lose says how many sends to swallow without an ack.
type fakeLog struct {
	mu     sync.Mutex
	h      Handler
	down   bool
	lose   int
	stored map[string][]byte
	order  []string
	sends  int
}

func newFakeLog() *fakeLog { return &fakeLog{stored: map[string][]byte{}} }

func (f *fakeLog) Ready() bool { f.mu.Lock(); defer f.mu.Unlock(); return !f.down }

func (f *fakeLog) Send(r *Record) error {
	f.mu.Lock()
	if f.down {
		f.mu.Unlock()
		return errors.New("down")
	}
	f.sends++
	if f.lose > 0 {
		f.lose--
		f.mu.Unlock()
		go f.h.Failed(r.ID, errors.New("timeout"))
		return nil
	}
	_, dup := f.stored[r.ID]
	if !dup {
		f.stored[r.ID] = append([]byte(nil), r.Data...)
		f.order = append(f.order, r.ID)
	}
	f.mu.Unlock()
	go f.h.Acked(r.ID, dup)
	return nil
}

func (f *fakeLog) Close() error { return nil }

func (f *fakeLog) setDown(d bool) { f.mu.Lock(); f.down = d; f.mu.Unlock() }

func (f *fakeLog) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.stored) }

func rec(i int) *Record {
	return &Record{Subject: "chains.h.packet", ID: fmt.Sprintf("h.r.%d", i), Data: []byte(fmt.Sprintf(`{"seq":%d}`, i))}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkInvariant: every record is acked, dropped or pending.
func checkInvariant(t *testing.T, c Counters) {
	t.Helper()
	if c.Records+c.Restored != c.Acked+c.Dropped+uint64(c.Pending) {
		t.Errorf("records %d + restored %d != acked %d + dropped %d + pending %d", c.Records, c.Restored, c.Acked, c.Dropped, c.Pending)
	}
}

// TestPublisherOutage: while the log is down records spool; when it is back every one is
// stored exactly once, the ones lost in flight sent again with their IDs.
func TestPublisherOutage(t *testing.T) {
	sp, err := OpenSpool(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	log := newFakeLog()
	p := NewPublisher(PublisherConfig{MaxRecords: 10, Spool: sp, RetryWait: time.Millisecond})
	log.h = p
	log.setDown(true)
	p.Start(log)
	for i := 1; i <= 100; i++ {
		p.Add(rec(i))
	}
	c := p.Counters()
	if c.Spooled != 90 || c.Pending != 100 || c.Acked != 0 {
		t.Fatalf("while down: %+v", c)
	}
	checkInvariant(t, c)
	log.mu.Lock()
	log.lose = 5
	log.mu.Unlock()
	log.setDown(false)
	waitFor(t, "every record acked", func() bool { return p.Counters().Acked == 100 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c = p.Counters()
	checkInvariant(t, c)
	if log.count() != 100 || c.Retries != 5 || c.Published != 100 || c.Dropped != 0 {
		t.Errorf("stored %d, counters %+v", log.count(), c)
	}
	for i := 1; i <= 100; i++ {
		if _, ok := log.stored[fmt.Sprintf("h.r.%d", i)]; !ok {
			t.Errorf("record %d not stored", i)
		}
	}
	if ents, _ := os.ReadDir(sp.dir); len(ents) != 0 {
		t.Errorf("spool not emptied: %v", ents)
	}
}

// TestPublisherBounds: with the queue and the spool full, records are dropped and counted;
// what is pending at exit stays in the spool and the next run sends it, each record once.
func TestPublisherBounds(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpool(dir, 2000)
	if err != nil {
		t.Fatal(err)
	}
	log := newFakeLog()
	log.setDown(true)
	p := NewPublisher(PublisherConfig{MaxRecords: 5, Spool: sp, Drain: 50 * time.Millisecond})
	log.h = p
	p.Start(log)
	for i := 1; i <= 200; i++ {
		p.Add(rec(i))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c := p.Counters()
	checkInvariant(t, c)
	if c.Dropped == 0 || c.Acked != 0 || c.Pending == 0 {
		t.Fatalf("counters %+v", c)
	}
	kept := c.Pending

	// The next run finds the spool and sends it first.
	sp2, err := OpenSpool(dir, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if sp2.Pending() != kept {
		t.Fatalf("next run found %d records in the spool, want %d", sp2.Pending(), kept)
	}
	log2 := newFakeLog()
	p2 := NewPublisher(PublisherConfig{Spool: sp2})
	log2.h = p2
	p2.Start(log2)
	waitFor(t, "the spool sent", func() bool { return p2.Counters().Acked == uint64(kept) })
	p2.Close()
	if c2 := p2.Counters(); c2.Restored != uint64(kept) || c2.Pending != 0 {
		t.Errorf("second run %+v", c2)
	}
	if log2.count() != kept {
		t.Errorf("second run stored %d, want %d", log2.count(), kept)
	}
}

// TestPublisherNoSpool: without a spool what the queue cannot hold is dropped, and what is
// left at exit too, counted.
func TestPublisherNoSpool(t *testing.T) {
	log := newFakeLog()
	log.setDown(true)
	p := NewPublisher(PublisherConfig{MaxRecords: 3, Drain: 10 * time.Millisecond})
	log.h = p
	p.Start(log)
	for i := 1; i <= 10; i++ {
		p.Add(rec(i))
	}
	p.Close()
	c := p.Counters()
	checkInvariant(t, c)
	if c.Dropped != 10 || c.Pending != 0 {
		t.Errorf("counters %+v", c)
	}
}

// TestSpoolDamage: a segment cut short or with a flipped byte gives up the rest of it,
// counted as damaged; the records before the damage are read.
func TestSpoolDamage(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		if err := sp.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+spoolExt))
	if len(files) != 1 {
		t.Fatalf("segments %v", files)
	}
	b, _ := os.ReadFile(files[0])
	frame := len(b) / 10
	b[5*frame+12] ^= 0xff // inside the sixth record
	os.WriteFile(files[0], b[:len(b)-3], 0o640)
	sp2, err := OpenSpool(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		r, seg, ok, err := sp2.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, r.ID)
		sp2.Done(seg)
	}
	if len(got) != 5 || got[4] != "h.r.5" {
		t.Errorf("read %v", got)
	}
	// The count at open stops at the damage; the damaged record is counted when read.
	if sp2.Damaged() != 0 {
		t.Errorf("damaged %d: the open counted only whole frames", sp2.Damaged())
	}
}

// TestPublisherSpoolFullUsesMemory: when the spool an earlier run left is full, new records
// wait in memory while it has room (rather than being dropped behind the spool), and all of
// them are stored once the log is up.
func TestPublisherSpoolFullUsesMemory(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpool(dir, 4096)
	if err != nil {
		t.Fatal(err)
	}
	old := 0
	for ; sp.Append(rec(1000+old)) == nil; old++ {
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if sp, err = OpenSpool(dir, 4096); err != nil || sp.Pending() != old {
		t.Fatalf("reopened spool: %v, %d pending of %d", err, sp.Pending(), old)
	}
	log := newFakeLog()
	p := NewPublisher(PublisherConfig{MaxRecords: 100, Spool: sp, RetryWait: time.Millisecond, Drain: 5 * time.Second})
	log.h = p
	log.setDown(true)
	p.Start(log)
	for i := 1; i <= 150; i++ {
		p.Add(rec(i))
	}
	c := p.Counters()
	checkInvariant(t, c)
	if c.Dropped != 50 || c.Spooled != 0 || c.Pending != old+100 {
		t.Fatalf("the spool full (%d records), 150 added with room for 100: %+v", old, c)
	}
	log.setDown(false)
	waitFor(t, "every record acked", func() bool { return p.Counters().Acked == uint64(old+100) })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	checkInvariant(t, p.Counters())
	if log.count() != old+100 {
		t.Errorf("stored %d, want %d", log.count(), old+100)
	}
}
