package views

import (
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// counter returns the value of the counter name in cs, and whether it is there.
func counter(cs []stages.Counter, name string) (uint64, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}

// publishedSink checks, at each packet, how old the chain's published copy is.
type publishedSink struct {
	t       *testing.T
	p       *Pipeline
	n       uint64
	maxLag  uint64
	changes int
	last    uint64
}

func (s *publishedSink) Write(*stages.Packet) error {
	s.n++
	got, ok := counter(s.p.Published().Counters, StagePacketsPrefix+"sink")
	if !ok {
		s.t.Fatalf("packet %d: no %ssink in the published counters", s.n, StagePacketsPrefix)
	}
	s.maxLag = max(s.maxLag, s.n-got)
	if got != s.last {
		s.changes++
		s.last = got
	}
	return nil
}

func (s *publishedSink) Close() error { return nil }
func (s *publishedSink) App() bool    { return false }

// TestPublished: the chain's Tables and Counters, as Published gives them to other goroutines
// (the metrics), are the ones the exit prints, never more than publishEvery packets old while
// the chain runs, and equal to Tables and Counters once Run returns; CountStages adds the
// packets each stage passed on. 10,000 queries each answered, a microsecond apart, are 20,000
// packets (floodPackets): every stage passes each on, the DNS decoder decodes each.
func TestPublished(t *testing.T) {
	const queries = 10000
	ps := &publishedSink{t: t}
	p, err := Build(&Config{NoDNS: true, View: "weird-dns", UTC: true, CountStages: true, Outputs: []Output{ps}},
		sinks.NewOutput(io.Discard, false))
	if err != nil {
		t.Fatal(err)
	}
	ps.p = p
	before := p.Published()
	if len(before.Tables) == 0 || !reflect.DeepEqual(before.Tables, p.Tables()) {
		t.Fatalf("published at Build: tables %+v, want %+v", before.Tables, p.Tables())
	}
	if v, ok := counter(before.Counters, "dns_messages"); !ok || v != 0 {
		t.Fatalf("published at Build: dns_messages %d (%v), want 0", v, ok)
	}

	// A reader on another goroutine while the chain runs (the race detector watches).
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last uint64
		for {
			select {
			case <-done:
				return
			default:
			}
			v, _ := counter(p.Published().Counters, "dns_messages")
			if v < last {
				t.Errorf("dns_messages went back from %d to %d", last, v)
				return
			}
			last = v
		}
	}()
	n, err := p.Run(floodPackets(t, queries, true))
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if n != 2*queries || ps.n != n {
		t.Fatalf("the sink got %d packets (the output %d), want %d", n, ps.n, 2*queries)
	}
	if ps.maxLag > publishEvery || ps.changes < 2*queries/publishEvery {
		t.Errorf("while running the copy was up to %d packets old and changed %d times, want at most %d and at least %d",
			ps.maxLag, ps.changes, publishEvery, 2*queries/publishEvery)
	}
	after := p.Published()
	if !reflect.DeepEqual(after.Tables, p.Tables()) || !reflect.DeepEqual(after.Counters, p.Counters()) {
		t.Fatalf("published after Run:\n%+v\n%+v\nwant the exit's:\n%+v\n%+v", after.Tables, after.Counters, p.Tables(), p.Counters())
	}
	for name, want := range map[string]uint64{
		StagePacketsPrefix + "classify": 2 * queries, StagePacketsPrefix + "flows": 2 * queries,
		StagePacketsPrefix + "sink": 2 * queries, "dns_messages": 2 * queries, "dns_matched": queries,
	} {
		if got, ok := counter(after.Counters, name); got != want || !ok {
			t.Errorf("%s = %d (%v), want %d", name, got, ok, want)
		}
	}

	// Without CountStages, no stage counts.
	q, err := Build(&Config{NoDNS: true, View: "weird-dns"}, sinks.NewOutput(io.Discard, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Run(floodPackets(t, 10, true)); err != nil {
		t.Fatal(err)
	}
	q.Close()
	for _, c := range q.Published().Counters {
		if strings.HasPrefix(c.Name, StagePacketsPrefix) {
			t.Errorf("without CountStages: %s", c.Name)
		}
	}
}
