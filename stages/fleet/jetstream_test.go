package fleet_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages/fleet"
	"github.com/chains-sensor/chains-sensor/stages/fleet/fleettest"
	"github.com/nats-io/nats.go/jetstream"
)

func startPublisher(t *testing.T, urls string, sc fleet.StreamConfig, pc fleet.PublisherConfig) (*fleet.Publisher, *fleet.JetStream) {
	t.Helper()
	u, err := fleet.ParseURLs(urls)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := fleet.Connect(u, "test", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	p := fleet.NewPublisher(pc)
	w, err := fleet.NewJetStream(nc, sc, p, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	p.Start(w)
	return p, w
}

func waitCounters(t *testing.T, p *fleet.Publisher, what string, cond func(fleet.Counters) bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(p.Counters()); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v (last error %v)", what, p.Counters(), p.LastError())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func record(i int) *fleet.Record {
	return &fleet.Record{Subject: "chains.t.packet", ID: fmt.Sprintf("t.r.%d", i), Data: []byte(fmt.Sprintf(`{"seq":%d}`, i))}
}

// TestJetStreamUnreachableThenUp: no server at start is no error: records spool; once a
// server answers, the stream is created with the limits asked for and every record is stored
// once (the stream's state says so), the server stopped and started again meanwhile.
func TestJetStreamUnreachableThenUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server: skipped under -short")
	}
	c := fleettest.Start(t, fleettest.Options{Nodes: 1})
	c.Nodes[0].Kill()
	sp, err := fleet.OpenSpool(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	p, w := startPublisher(t, c.URLs(), fleet.StreamConfig{Name: "T1", MaxAge: time.Hour, Duplicates: time.Minute},
		fleet.PublisherConfig{MaxRecords: 50, Spool: sp})
	for i := 1; i <= 200; i++ {
		p.Add(record(i))
	}
	time.Sleep(300 * time.Millisecond)
	if w.Ready() || p.Counters().Spooled != 150 {
		t.Fatalf("without a server: ready %v, %+v", w.Ready(), p.Counters())
	}
	c.Nodes[0].Start(t)
	waitCounters(t, p, "200 acked", func(c fleet.Counters) bool { return c.Acked == 200 })
	// The server goes away and comes back while records are made.
	c.Nodes[0].Kill()
	for i := 201; i <= 400; i++ {
		p.Add(record(i))
	}
	c.Nodes[0].Start(t)
	waitCounters(t, p, "400 acked", func(c fleet.Counters) bool { return c.Acked == 400 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	nc := c.Dial(t, nil)
	js := c.WaitJetStream(t, nc)
	s, err := js.Stream(context.Background(), "T1")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 400 || info.State.LastSeq != 400 {
		t.Errorf("stream holds %d messages, last sequence %d; want 400", info.State.Msgs, info.State.LastSeq)
	}
	cfg := info.Config
	if cfg.MaxAge != time.Hour || cfg.Duplicates != time.Minute || cfg.Storage != jetstream.FileStorage ||
		cfg.Discard != jetstream.DiscardOld || cfg.MaxBytes != fleet.DefaultStreamBytes || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "chains.>" {
		t.Errorf("stream config %+v", cfg)
	}
	// Each record once, in the stream, whatever the retries.
	seen := map[string]bool{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		if seen[id] {
			t.Errorf("%s stored twice", id)
		}
		seen[id] = true
	}
	if cnt := p.Counters(); cnt.Acked-cnt.Duplicates > 400 || cnt.Dropped != 0 {
		t.Errorf("counters %+v", cnt)
	}
}

// TestJetStreamBadStream: a stream that cannot be made (more replicas than servers) is an
// error naming the setting; the records wait.
func TestJetStreamBadStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server: skipped under -short")
	}
	c := fleettest.Start(t, fleettest.Options{Nodes: 1})
	p, w := startPublisher(t, c.URLs(), fleet.StreamConfig{Name: "T2", Replicas: 3}, fleet.PublisherConfig{Drain: 10 * time.Millisecond})
	defer p.Close()
	p.Add(record(1))
	for deadline := time.Now().Add(10 * time.Second); w.SetupError() == nil; {
		if time.Now().After(deadline) {
			t.Fatal("no setup error")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("setup error: %v", w.SetupError())
	if err := w.SetupError().Error(); !contains(err, "--stream-replicas") {
		t.Errorf("the error does not name the setting: %s", err)
	}
	if cnt := p.Counters(); cnt.Pending != 1 || cnt.Acked != 0 {
		t.Errorf("counters %+v", cnt)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
