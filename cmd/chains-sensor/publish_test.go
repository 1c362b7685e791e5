package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages/fleet"
	"github.com/chains-sensor/chains-sensor/stages/fleet/fleettest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestOutputFlagsBad: bad --publish, --metrics and watch settings are bad usage (exit 2),
// named, before anything runs.
func TestOutputFlagsBad(t *testing.T) {
	pcap := filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"read", "--publish", "http://x:1", pcap}, "--publish"},
		{[]string{"read", "--publish", "nats://127.0.0.1:1", "--host", "a.b", pcap}, "--host"},
		{[]string{"read", "--publish", "nats://127.0.0.1:1", "--stream", "A.B", pcap}, "--stream"},
		{[]string{"read", "--publish", "nats://127.0.0.1:1", "--publish-kinds", "packet,smtp", pcap}, "--publish-kinds"},
		{[]string{"read", "--publish", "nats://127.0.0.1:1", "--publish-buffer", "0", pcap}, "--publish-buffer"},
		{[]string{"read", "--metrics", "nohostport", pcap}, "--metrics"},
		{[]string{"watch"}, "nats://"},
		{[]string{"watch", "nats://127.0.0.1:1", "--since", "yesterday"}, "--since"},
		{[]string{"watch", "nats://127.0.0.1:1", "--durable", "a b"}, "--durable"},
		{[]string{"watch", "nats://127.0.0.1:1", "-o", "xml"}, "-o"},
	} {
		_, stderr, code := runCmd(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, want 2 naming %s:\n%s", c.args, code, c.want, stderr)
		}
	}
}

// TestPublishSpoolBound: with no server, read --publish spools what the small memory queue
// cannot hold up to the spool's bound and drops the rest, counted (records = dropped +
// pending); the spool's files stay within the bound and hold the pending records. The next
// run, with the server up, sends the spool first: the stream holds those and the new run's
// records, each once, as many as tshark counts frames.
func TestPublishSpoolBound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server: skipped under -short")
	}
	pcap := filepath.Join(sensortest.Pcaps(t), "chains", "sqli.pcap")
	frames := uint64(len(sensortest.TShark(t, pcap)))
	c := fleettest.Start(t, fleettest.Options{Nodes: 1})
	c.Nodes[0].Kill()
	spool := t.TempDir()
	const bound = 8 << 10
	args := []string{"read", "-n", "--publish", c.URLs(), "--host", "reader", "--publish-kinds", "packet",
		"--spool-dir", spool, "--spool-max", fmt.Sprint(bound), "--publish-buffer", "5", "--publish-drain", "0s", pcap}
	_, stderr, code := runCmd(t, args...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "warning: publish: no NATS server answers") {
		t.Errorf("no warning of the unreachable server:\n%s", stderr)
	}
	pc := publishCounters(t, stderr)
	t.Logf("no server: %s", pc.Line())
	if pc.Records != frames || pc.Dropped == 0 || pc.Acked != 0 || pc.Records != pc.Dropped+uint64(pc.Pending) {
		t.Errorf("%d frames: %s", frames, pc.Line())
	}
	var size int64
	ents, _ := os.ReadDir(spool)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			size += fi.Size()
		}
	}
	if size > bound {
		t.Errorf("the spool holds %d bytes, over its bound %d", size, bound)
	}
	sp, err := fleet.OpenSpool(spool, bound)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Pending() != pc.Pending {
		t.Errorf("the spool holds %d records, the exit line says %d pending", sp.Pending(), pc.Pending)
	}
	sp.Close()

	c.Nodes[0].Start(t)
	c.WaitJetStream(t, c.Dial(t, nil))
	// The same bound, but room in memory for this run's records while the spool's are sent.
	args[len(args)-2], args[len(args)-4] = "10s", "1000" // --publish-drain, --publish-buffer
	_, stderr, code = runCmd(t, args...)
	pc2 := publishCounters(t, stderr)
	t.Logf("server up: %s", pc2.Line())
	if code != 0 || pc2.Records != frames+uint64(pc.Pending) || pc2.Acked != pc2.Records || pc2.Dropped != 0 || pc2.Pending != 0 {
		t.Fatalf("exit %d, want every record and the spool's acked: %s\n%s", code, pc2.Line(), stderr)
	}
	recs := readStream(t, c, fleet.DefaultStream)
	runs := map[string]int{}
	ids := map[string]bool{}
	for _, r := range recs {
		if ids[r.id] {
			t.Errorf("%s stored twice", r.id)
		}
		ids[r.id] = true
		runs[r.env.Run]++
	}
	if len(recs) != int(pc2.Records) || len(runs) != 2 {
		t.Errorf("the stream holds %d records of %d runs, want %d of 2: %v", len(recs), len(runs), pc2.Records, runs)
	}
}

// TestWatchHostileRecords: watch prints a record whose host and line carry terminal controls
// escaped, counts and skips a message that is no record, prints a record stored twice (under
// two stream sequences) once, and keeps the time order of two hosts within its window.
func TestWatchHostileRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server: skipped under -short")
	}
	c := fleettest.Start(t, fleettest.Options{Nodes: 1})
	nc := c.Dial(t, nil)
	js := c.WaitJetStream(t, nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: fleet.DefaultStream, Subjects: []string{"chains.>"}}); err != nil {
		t.Fatal(err)
	}
	pub := func(subject, data string) {
		t.Helper()
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	pub("chains.b.packet", `{"host":"b","run":"r","seq":1,"kind":"packet","ts":"2024-01-01T00:00:02Z","line":"UDP IP x --> y"}`)
	pub("chains.a.packet", `{"host":"a","run":"r","seq":1,"kind":"packet","ts":"2024-01-01T00:00:01Z","line":"TCP IP a\\b --> c"}`)
	pub("chains.a.packet", `not json`)
	pub("chains.e.packet", `{"host":"e\u001b[31m","run":"r","seq":1,"kind":"packet","ts":"2024-01-01T00:00:03Z","line":"ICMP \u009b2J\u001b]0;x\u0007 --> z"}`)
	pub("chains.b.packet", `{"host":"b","run":"r","seq":1,"kind":"packet","ts":"2024-01-01T00:00:02Z","line":"UDP IP x --> y"}`)
	// A raw C1 control (U+0085 as UTF-8) inside a JSON string: valid JSON, no terminal's text.
	pub("chains.a.dns", "{\"host\":\"a\",\"run\":\"r\",\"seq\":2,\"kind\":\"dns\",\"ts\":\"2024-01-01T00:00:04Z\",\"data\":{\"q\":\"\u0085x\"}}")
	stdout, stderr, code := runCmd(t, "watch", "--utc", "--since", "2000-01-01T00:00:00Z", "--kinds", "packet,dns",
		"--durable", "hostile", "-c", "4", c.URLs())
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	want := "2024-01-01 00:00:01 a - TCP IP a\\b --> c\n" +
		"2024-01-01 00:00:02 b - UDP IP x --> y\n" +
		"2024-01-01 00:00:03 e\\x1b[31m - ICMP \\xc2\\x9b2J\\x1b]0;x\\x07 --> z\n" +
		"2024-01-01 00:00:04 a dns {\"q\":\"\\u0085x\"}\n"
	if stdout != want {
		t.Errorf("watch printed:\n%s\nwant:\n%s", stdout, want)
	}
	if l := lastLine(stderr); !strings.Contains(l, "1 malformed, 1 duplicates") {
		t.Errorf("counters: %s", l)
	}
	for _, b := range []byte(stdout) {
		if (b < 0x20 && b != '\n') || b == 0x7f {
			t.Fatalf("a control byte %#x reached the output", b)
		}
	}
}
