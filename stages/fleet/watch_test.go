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

// TestMergerOrder: records of two hosts pushed out of order within the window come out in
// time order; a record waits the window and no longer.
func TestMergerOrder(t *testing.T) {
	m := fleet.NewMerger(100 * time.Millisecond)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base
	push := func(host string, sec int) {
		m.Push(&fleet.Item{Envelope: fleet.Envelope{Host: host, TS: base.Add(time.Duration(sec) * time.Second)}}, now)
	}
	push("b", 3)
	push("a", 1)
	push("b", 4)
	push("a", 2)
	if got := m.Ready(now.Add(50*time.Millisecond), false, nil); len(got) != 0 {
		t.Fatalf("given out before the window: %d", len(got))
	}
	got := m.Ready(now.Add(100*time.Millisecond), false, nil)
	var order []string
	for _, it := range got {
		order = append(order, fmt.Sprintf("%s%d", it.Host, it.TS.Second()))
	}
	if fmt.Sprint(order) != "[a1 a2 b3 b4]" {
		t.Errorf("order %v", order)
	}
	now = now.Add(time.Second)
	push("a", 9)
	if got := m.Ready(now, true, nil); len(got) != 1 {
		t.Errorf("flush gave %d", len(got))
	}
}

// TestWatchMergesAndSkips: two hosts' records published with their times interleaved come out
// of Watch in time order; a malformed message is counted and skipped; a record published twice
// under two stream sequences (a duplicate past the stream's window) is given once.
func TestWatchMergesAndSkips(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server: skipped under -short")
	}
	c := fleettest.Start(t, fleettest.Options{Nodes: 1})
	nc := c.Dial(t, nil)
	js := c.WaitJetStream(t, nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "W", Subjects: []string{"chains.>"}}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	pub := func(host string, seq int, sec int) {
		b := fmt.Sprintf(`{"host":%q,"run":"r","seq":%d,"kind":"packet","ts":%q,"line":"UDP IP a --> b %s%d","data":{}}`,
			host, seq, base.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano), host, sec)
		if _, err := js.Publish(ctx, "chains."+host+".packet", []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	var got []string
	stats := make(chan fleet.WatchStats, 1)
	go func() {
		st, err := fleet.Watch(wctx, c.Dial(t, nil), fleet.WatchConfig{Stream: "W", Durable: "t", Since: base,
			Window: 200 * time.Millisecond}, func(it *fleet.Item) error {
			got = append(got, it.Line)
			return nil
		}, t.Logf)
		if err != nil {
			t.Error(err)
		}
		stats <- st
	}()
	pub("h2", 1, 2)
	pub("h1", 1, 1)
	if _, err := js.Publish(ctx, "chains.h1.packet", []byte("not json {")); err != nil {
		t.Fatal(err)
	}
	pub("h1", 2, 3)
	pub("h2", 2, 4)
	pub("h2", 2, 4) // the same record again
	time.Sleep(time.Second)
	cancel()
	st := <-stats
	want := []string{"UDP IP a --> b h11", "UDP IP a --> b h22", "UDP IP a --> b h13", "UDP IP a --> b h24"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lines %q, want %q", got, want)
	}
	if st.Malformed != 1 || st.Duplicates != 1 || st.Given != 4 || st.Received != 6 {
		t.Errorf("stats %+v", st)
	}
}
