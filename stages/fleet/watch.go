package fleet

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// WatchConfig says what a watcher reads.
type WatchConfig struct {
	Stream  string        // [DefaultStream]
	Durable string        // the consumer's durable name: a later watch with it goes on where this one stopped
	Kinds   []string      // the kinds to read [packet]
	Since   time.Time     // replay from this time (the durable consumer is made afresh); zero: what comes from now on, or where the durable stopped
	Window  time.Duration // records are held this long and given out in time order [DefaultWindow]
	Dedup   int           // record IDs remembered to recognise one stored twice [65536]
}

// DefaultMergeWindow is how long a record waits for earlier ones from other hosts.
const DefaultMergeWindow = 500 * time.Millisecond

// WatchStats counts what a watcher read.
type WatchStats struct {
	Received   uint64 // messages the consumer delivered
	Given      uint64 // records handed to the caller
	Malformed  uint64 // messages that are no record (not JSON, or missing host, kind or ts): acknowledged and skipped
	Duplicates uint64 // records seen before (a host, run and seq already given)
	FirstSeq   uint64 // the lowest and highest stream sequence given
	LastSeq    uint64
}

// Line is the counters as watch shows them at exit.
func (s WatchStats) Line() string {
	return fmt.Sprintf("watch: %d received, %d printed, %d malformed, %d duplicates", s.Received, s.Given, s.Malformed, s.Duplicates)
}

// Item is one record as a watcher gives it out.
type Item struct {
	Envelope
	Raw       []byte          // the record as stored
	Data      json.RawMessage // its data object
	StreamSeq uint64          // its sequence number in the stream
	msg       jetstream.Msg
	arrived   time.Time
	given     bool
}

// ParseEnvelope reads a record; an error says why it is none.
func ParseEnvelope(b []byte) (Envelope, json.RawMessage, error) {
	var e struct {
		Envelope
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, nil, err
	}
	switch {
	case e.Host == "":
		return e.Envelope, nil, errors.New("no host")
	case e.Kind == "":
		return e.Envelope, nil, errors.New("no kind")
	case e.TS.IsZero():
		return e.Envelope, nil, errors.New("no ts")
	case e.Kind == KindPacket && e.Line == "":
		return e.Envelope, nil, errors.New("a packet without its line")
	}
	return e.Envelope, e.Data, nil
}

// itemHeap orders items by time, then host, then seq.
type itemHeap []*Item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if !a.TS.Equal(b.TS) {
		return a.TS.Before(b.TS)
	}
	if a.Host != b.Host {
		return a.Host < b.Host
	}
	return a.Seq < b.Seq
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(*Item)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// Merger holds records for a window and gives them out in time order: a record leaves once
// it has waited the window (or everything, at the end). Records from several hosts that
// arrive within the window of each other come out in the order of their times.
type Merger struct {
	window time.Duration
	h      itemHeap
	fifo   []*Item // in order of arrival, given-out ones included until they reach the head
}

// NewMerger returns a merger with the window.
func NewMerger(window time.Duration) *Merger { return &Merger{window: window} }

// Push adds an item that arrived at now.
func (m *Merger) Push(it *Item, now time.Time) {
	it.arrived = now
	heap.Push(&m.h, it)
	m.fifo = append(m.fifo, it)
}

// Len returns the items held.
func (m *Merger) Len() int { return len(m.h) }

// Ready pops the items due at now (all with flush), in time order, into out.
func (m *Merger) Ready(now time.Time, flush bool, out []*Item) []*Item {
	for len(m.h) > 0 {
		// The earliest record leaves when any held record has waited the window: nothing
		// earlier than it is to be expected from a host that is not that far behind.
		if !flush && !m.due(now) {
			break
		}
		it := heap.Pop(&m.h).(*Item)
		it.given = true
		out = append(out, it)
	}
	return out
}

// due reports whether the oldest arrival still held waited the window.
func (m *Merger) due(now time.Time) bool {
	i := 0
	for i < len(m.fifo) && m.fifo[i].given {
		m.fifo[i] = nil
		i++
	}
	m.fifo = m.fifo[i:]
	return len(m.fifo) > 0 && now.Sub(m.fifo[0].arrived) >= m.window
}

// Watch reads the stream through a durable consumer and hands each record to give, in time
// order within the window, acknowledging it once given, until ctx ends or give returns an
// error (ErrStop: stop without one). It waits for the servers and the stream when they are not
// there. logf hears of what it waits for.
func Watch(ctx context.Context, nc *nats.Conn, cfg WatchConfig, give func(*Item) error, logf func(string, ...any)) (WatchStats, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{KindPacket}
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultMergeWindow
	}
	if cfg.Dedup <= 0 {
		cfg.Dedup = 65536
	}
	var st WatchStats
	js, err := jetstream.New(nc)
	if err != nil {
		return st, err
	}
	cons, err := consumer(ctx, js, cfg, logf)
	if err != nil {
		return st, err
	}
	want := map[string]bool{}
	for _, k := range cfg.Kinds {
		want[k] = true
	}
	msgs := make(chan jetstream.Msg, 4096)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(1024), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, nats.ErrConnectionClosed) {
				logf("consume: %v", err)
			}
		}))
	if err != nil {
		return st, fmt.Errorf("consume %s: %w", cfg.Stream, err)
	}
	defer cc.Stop()
	seen, _ := simplelru.NewLRU[string, struct{}](cfg.Dedup, nil)
	mg := NewMerger(cfg.Window)
	tick := time.NewTicker(cfg.Window / 5)
	defer tick.Stop()
	var ready []*Item
	release := func(flush bool) error {
		ready = mg.Ready(time.Now(), flush, ready[:0])
		for i, it := range ready {
			if err := give(it); err != nil {
				for _, rest := range ready[i:] {
					rest.msg.Nak()
				}
				return err
			}
			st.Given++
			if st.FirstSeq == 0 || it.StreamSeq < st.FirstSeq {
				st.FirstSeq = it.StreamSeq
			}
			st.LastSeq = max(st.LastSeq, it.StreamSeq)
			it.msg.Ack()
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return st, release(true)
		case m := <-msgs:
			st.Received++
			env, data, err := ParseEnvelope(m.Data())
			if err != nil {
				st.Malformed++
				m.Ack()
				continue
			}
			if !want[env.Kind] {
				m.Ack()
				continue
			}
			key := env.Host + "." + env.Run + "." + fmt.Sprint(env.Seq)
			if seen.Contains(key) {
				st.Duplicates++
				m.Ack()
				continue
			}
			seen.Add(key, struct{}{})
			it := &Item{Envelope: env, Raw: m.Data(), Data: data, msg: m}
			if md, err := m.Metadata(); err == nil {
				it.StreamSeq = md.Sequence.Stream
			}
			mg.Push(it, time.Now())
		case <-tick.C:
		}
		if err := release(false); err != nil {
			if errors.Is(err, ErrStop) {
				return st, nil
			}
			return st, err
		}
	}
}

// ErrStop is what give returns to end Watch without an error (-c N).
var ErrStop = errors.New("stop")

// consumer finds or makes the durable consumer, waiting for the stream.
func consumer(ctx context.Context, js jetstream.JetStream, cfg WatchConfig, logf func(string, ...any)) (jetstream.Consumer, error) {
	filter := SubjectPrefix + ".>"
	if len(cfg.Kinds) == 1 {
		filter = SubjectPrefix + ".*." + cfg.Kinds[0]
	}
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   "chains-sensor watch",
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 20000,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
	if !cfg.Since.IsZero() {
		t := cfg.Since
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	warned := ""
	for {
		c, err := tryConsumer(ctx, js, cfg, cc)
		if err == nil {
			return c, nil
		}
		var apiErr *jetstream.APIError
		var perm permanent
		if errors.As(err, &perm) {
			return nil, err
		}
		if errors.As(err, &apiErr) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
		}
		if err.Error() != warned {
			logf("waiting for stream %s: %v", cfg.Stream, err)
			warned = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func tryConsumer(ctx context.Context, js jetstream.JetStream, cfg WatchConfig, cc jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(rctx, cfg.Stream)
	if err != nil {
		return nil, err
	}
	if cfg.Since.IsZero() {
		if c, err := s.Consumer(rctx, cfg.Durable); err == nil {
			if f := c.CachedInfo().Config.FilterSubject; f != cc.FilterSubject {
				return nil, permanent{fmt.Errorf("durable %s reads %s, not %s: give another --durable, or --since to make it afresh", cfg.Durable, f, cc.FilterSubject)}
			}
			return c, nil
		}
	} else if err := s.DeleteConsumer(rctx, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	return s.CreateOrUpdateConsumer(rctx, cc)
}

// DurableName makes a durable consumer name from a host name (letters, digits, '-', '_').
func DurableName(host string) string {
	return "watch-" + strings.ToLower(HostToken(host))
}

// permanent is an error waiting does not mend.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }
