package main

// The fleet end to end: a 3-node JetStream cluster (Debian's nats-server on loopback ports),
// two sensors attached in namespaces of their own publishing to it while ping runs, and
// `chains-sensor watch` printing both hosts' lines; the stream's leader killed and brought back,
// then every node stopped for 10 s; the stream read back by message ID against what each
// sensor printed; the sensors' --metrics scraped, checked with promtool and against the exit
// lines.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages/fleet"
	"github.com/chains-sensor/chains-sensor/stages/fleet/fleettest"
	"github.com/nats-io/nats.go/jetstream"
)

// fleetHost is one sensor of the fleet test: its network, process and name.
type fleetHost struct {
	name string
	tn   *testNet
	sp   *sensorProc
}

// scrape fetches the sensor's metrics (served on the loopback of its namespace).
func (h *fleetHost) scrape(t *testing.T) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = h.tn.A.Do(func() (err error) { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return conn, err
		}, DisableKeepAlives: true}}
	resp, err := c.Get("http://127.0.0.1:9477/metrics")
	if err != nil {
		t.Fatalf("%s: scrape: %v", h.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: scrape: %d %v", h.name, resp.StatusCode, err)
	}
	return string(b)
}

// metricValue returns the value of the sample written exactly as series (name and labels) in a
// scrape, or -1.
func metricValue(text, series string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// pings runs n pings from side B to side A, every interval, and waits for them.
func (h *fleetHost) pings(t *testing.T, n int, interval string) {
	t.Helper()
	out, err := h.tn.inB(t, 60*time.Second, "ping", "-q", "-c", fmt.Sprint(n), "-i", interval, "-W1", h.tn.V4A)
	if err != nil && !strings.Contains(out, "received") {
		t.Errorf("%s: ping: %v\n%s", h.name, err, out)
	}
}

// allPings runs pings on every host at once.
func allPings(t *testing.T, hosts []*fleetHost, n int, interval string) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() { defer wg.Done(); h.pings(t, n, interval) }()
	}
	wg.Wait()
}

var publishRE = regexp.MustCompile(`^publish: (\d+) records, (\d+) published, (\d+) acked \((\d+) duplicates\), (\d+) retries, (\d+) spooled, (\d+) dropped, (\d+) pending$`)

// publishCounters reads the publish line of a finished sensor's stderr (the line before the
// counters line).
func publishCounters(t *testing.T, stderr string) (c fleet.Counters) {
	t.Helper()
	for _, l := range strings.Split(stderr, "\n") {
		m := publishRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n := make([]uint64, len(m))
		for i := 1; i < len(m); i++ {
			n[i], _ = strconv.ParseUint(m[i], 10, 64)
		}
		return fleet.Counters{Records: n[1], Published: n[2], Acked: n[3], Duplicates: n[4], Retries: n[5],
			Spooled: n[6], Dropped: n[7], Pending: int(n[8])}
	}
	t.Fatalf("no publish line in:\n%s", stderr)
	return
}

// storedRecord is a record read back from the stream.
type storedRecord struct {
	id  string
	seq uint64
	env fleet.Envelope
}

// readStream reads every message of the stream, one by one by sequence (each request bounded
// and tried again a few times: after the cluster's outage its leaders may still be settling),
// through a fresh connection.
func readStream(t *testing.T, c *fleettest.Cluster, stream string) []storedRecord {
	t.Helper()
	js := c.WaitJetStream(t, c.Dial(t, nil))
	retry := func(what string, f func(ctx context.Context) error) {
		t.Helper()
		var err error
		for i := 0; i < 10; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = f(ctx)
			cancel()
			if err == nil {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("%s: %v\n%s", what, err, c.Logs())
	}
	var s jetstream.Stream
	var info *jetstream.StreamInfo
	retry("stream info", func(ctx context.Context) (err error) {
		if s, err = js.Stream(ctx, stream); err == nil {
			info, err = s.Info(ctx)
		}
		return err
	})
	var out []storedRecord
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		var m *jetstream.RawStreamMsg
		retry(fmt.Sprintf("message %d", seq), func(ctx context.Context) (err error) { m, err = s.GetMsg(ctx, seq); return err })
		env, _, err := fleet.ParseEnvelope(m.Data)
		if err != nil {
			t.Errorf("stream message %d: %v", seq, err)
		}
		out = append(out, storedRecord{id: m.Header.Get(jetstream.MsgIDHeader), seq: seq, env: env})
	}
	if uint64(len(out)) != info.State.Msgs {
		t.Errorf("read %d messages, the stream says it holds %d", len(out), info.State.Msgs)
	}
	return out
}

// TestFleetEndToEnd: the end-to-end and fault test of --publish and watch.
func TestFleetEndToEnd(t *testing.T) {
	nets := []*testNet{newTestNet(t), newTestNet(t)}
	sensortest.RequireTools(t, "nats-server", "promtool", "sysctl")
	bin := buildSensor(t)
	c := fleettest.Start(t, fleettest.Options{Nodes: 3})
	urls := c.URLs()
	var hosts []*fleetHost
	for i, tn := range nets {
		// IPv6 off on the veths: no neighbour discovery or MLD beside the test's pings, so the
		// counters scraped once the pings end are the exit line's.
		for _, ns := range []struct {
			n   *sensortest.Netns
			if_ string
		}{{tn.A, tn.IfA}, {tn.B, tn.IfB}} {
			ns.n.MustRun(t, "sysctl", "-qw", "net.ipv6.conf."+ns.if_+".disable_ipv6=1")
		}
		c.Relay(t, tn.A)
		h := &fleetHost{name: fmt.Sprintf("host%d", i+1), tn: tn}
		h.sp = tn.startSensor(t, bin, "-i", tn.IfA, "-n", "--utc", "--publish", urls, "--host", h.name,
			"--publish-kinds", "packet", "--stream-replicas", "3", "--publish-buffer", "300",
			"--spool-dir", filepath.Join(tn.dir, "spool"), "--publish-drain", "30s", "--metrics", "127.0.0.1:9477")
		hosts = append(hosts, h)
	}
	t.Cleanup(func() {
		for _, h := range hosts {
			if h.sp.ProcessState == nil {
				h.sp.Process.Kill()
			}
		}
	})

	// The watcher, here (the cluster's own namespace), from the start of the stream.
	var wout bytes.Buffer
	var wmu sync.Mutex
	wcmd := exec.Command(bin, "watch", "--durable", "e2e", "--since", "1h", "--utc", "--window", "300ms", urls)
	wcmd.Stdout = &lockedWriter{mu: &wmu, w: &wout}
	var werr bytes.Buffer
	wcmd.Stderr = &lockedWriter{mu: &wmu, w: &werr}
	watch := sensortest.StartProc(t, wcmd)
	watchLines := func() []string {
		wmu.Lock()
		defer wmu.Unlock()
		return strings.Split(strings.TrimSuffix(wout.String(), "\n"), "\n")
	}

	nc := c.Dial(t, nil)
	js := c.WaitJetStream(t, nc)
	// 1. Steady: both hosts ping at once.
	allPings(t, hosts, 60, "0.02")

	// 2. The stream's leader is killed while the pings run, and comes back.
	ctx := context.Background()
	var leader string
	for i := 0; leader == ""; i++ {
		if s, err := js.Stream(ctx, fleet.DefaultStream); err == nil {
			if info, err := s.Info(ctx); err == nil && info.Cluster != nil {
				leader = info.Cluster.Leader
				if info.Config.Replicas != 3 {
					t.Fatalf("stream made with %d replicas, want 3", info.Config.Replicas)
				}
			}
		}
		if i == 100 {
			t.Fatalf("no stream leader:\n%s", c.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("stream leader %s: killed mid-run", leader)
	done := make(chan struct{})
	go func() { defer close(done); allPings(t, hosts, 150, "0.02") }()
	time.Sleep(time.Second)
	c.Node(leader).Kill()
	<-done
	c.Node(leader).Start(t)

	// 3. Every node stopped for 10 s while the pings go on: the sensors keep printing.
	before := []int{len(hosts[0].sp.output()), len(hosts[1].sp.output())}
	for _, n := range c.Nodes {
		n.Kill()
	}
	allPings(t, hosts, 200, "0.05") // 10 s
	for i, h := range hosts {
		if got := len(h.sp.output()); got < before[i]+300 {
			t.Errorf("%s printed %d lines while the servers were down, want 400", h.name, got-before[i])
		}
	}
	for _, n := range c.Nodes {
		n.Start(t)
	}

	// Everything delivered: the metrics say nothing is pending (bounded).
	for _, h := range hosts {
		for i := 0; ; i++ {
			m := h.scrape(t)
			if metricValue(m, "chains_sensor_publish_pending_records") == 0 &&
				metricValue(m, "chains_sensor_publish_spooled_total") > 0 {
				break
			}
			if i == 120 {
				t.Fatalf("%s: records still pending after 60 s:\n%s\n%s", h.name, m, c.Logs())
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	// The metrics: promtool finds them clean; then the sensors stop and the exit lines must say
	// what the last scrape said.
	time.Sleep(time.Second)
	var scrapes []string
	for _, h := range hosts {
		m := h.scrape(t)
		scrapes = append(scrapes, m)
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(m)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: promtool check metrics: %v\n%s", h.name, err, out)
		}
	}
	counts := map[string]fleet.Counters{}
	printed := map[string][]string{}
	for i, h := range hosts {
		if code := h.sp.stop(t, syscall.SIGINT); code != 0 {
			t.Fatalf("%s: exit %d\n%s", h.name, code, h.sp.stderrText())
		}
		seen, recorded, lost := h.sp.counters(t)
		pc := publishCounters(t, h.sp.stderrText())
		counts[h.name], printed[h.name] = pc, h.sp.output()
		t.Logf("%s: %s; %d seen, %d recorded, %d lost", h.name, pc.Line(), seen, recorded, lost)
		m := scrapes[i]
		for series, want := range map[string]uint64{
			"chains_sensor_packets_seen_total":      seen,
			"chains_sensor_packets_recorded_total":  recorded,
			"chains_sensor_packets_lost_total":      lost,
			"chains_sensor_publish_records_total":   pc.Records,
			"chains_sensor_publish_acked_total":     pc.Acked,
			"chains_sensor_publish_spooled_total":   pc.Spooled,
			"chains_sensor_publish_dropped_total":   pc.Dropped,
			"chains_sensor_publish_published_total": pc.Published,
		} {
			if got := metricValue(m, series); got != float64(want) {
				t.Errorf("%s: %s = %v, the exit line says %d", h.name, series, got, want)
			}
		}
		var byHook float64
		for _, hook := range []string{"xdp", "tc"} {
			byHook += metricValue(m, fmt.Sprintf(`chains_sensor_interface_records_total{hook=%q,interface=%q}`, hook, h.tn.IfA))
		}
		if byHook != float64(recorded) {
			t.Errorf("%s: the interface's records by hook add up to %v, the exit line says %d recorded", h.name, byHook, recorded)
		}
		if pc.Records != uint64(len(printed[h.name])) || pc.Dropped != 0 || pc.Pending != 0 || pc.Spooled == 0 {
			t.Errorf("%s: printed %d lines; %s", h.name, len(printed[h.name]), pc.Line())
		}
	}

	// The stream, read back: every record of each sensor once, by message ID and by the
	// envelope's seq, 1..N without a gap; the sequence numbers count them all.
	recs := readStream(t, c, fleet.DefaultStream)
	ids := map[string]bool{}
	perHost := map[string]map[uint64]bool{}
	var lastSeq uint64
	for _, r := range recs {
		if ids[r.id] {
			t.Errorf("message ID %s stored twice", r.id)
		}
		ids[r.id] = true
		if want := fmt.Sprintf("%s.%s.%d", r.env.Host, r.env.Run, r.env.Seq); r.id != want {
			t.Errorf("stream seq %d: message ID %q for the record %s", r.seq, r.id, want)
		}
		if perHost[r.env.Host] == nil {
			perHost[r.env.Host] = map[uint64]bool{}
		}
		perHost[r.env.Host][r.env.Seq] = true
		lastSeq = max(lastSeq, r.seq)
	}
	var total uint64
	for _, h := range hosts {
		n := counts[h.name].Records
		total += n
		got := perHost[h.name]
		for s := uint64(1); s <= n; s++ {
			if !got[s] {
				t.Errorf("%s: record %d of %d is not in the stream", h.name, s, n)
				break
			}
		}
		if uint64(len(got)) != n {
			t.Errorf("%s: %d records in the stream, the sensor made %d", h.name, len(got), n)
		}
	}
	if uint64(len(recs)) != total || lastSeq != total {
		t.Errorf("the stream holds %d messages up to sequence %d; the sensors made %d", len(recs), lastSeq, total)
	}

	// The watcher printed every line of both hosts (as each sensor printed it, with its host).
	for i := 0; len(watchLines()) < int(total); i++ {
		if i == 300 {
			t.Fatalf("watch printed %d of %d lines:\n%s", len(watchLines()), total, werr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := watch.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if !watch.WaitFor(10 * time.Second) {
		watch.Process.Kill()
		t.Fatal("watch did not end on SIGINT")
	}
	if watch.Err() != nil {
		t.Errorf("watch: %v\n%s", watch.Err(), werr.String())
	}
	want := map[string]int{}
	for _, h := range hosts {
		for _, l := range printed[h.name] {
			want[h.name+"|"+l]++
		}
	}
	lines := watchLines()
	for _, l := range lines {
		// "YYYY-MM-DD HH:MM:SS HOST - LINE" is the sensor's "YYYY-MM-DD HH:MM:SS - LINE" of HOST.
		if len(l) < 20 {
			t.Errorf("watch printed %q", l)
			continue
		}
		host, rest, _ := strings.Cut(l[20:], " ")
		want[host+"|"+l[:19]+" "+rest]--
	}
	for k, n := range want {
		if n != 0 {
			t.Errorf("watch printed %q %d times more than the sensor", k, -n)
		}
	}
	// The consumer may deliver a record again after the faults (an ack lost with a node: at
	// least once); watch counts it as a duplicate and prints it once.
	wst := lastLine(werr.String())
	var received, given, malformed, dups uint64
	if _, err := fmt.Sscanf(wst, "watch: %d received, %d printed, %d malformed, %d duplicates", &received, &given, &malformed, &dups); err != nil ||
		given != total || malformed != 0 || received != given+dups {
		t.Errorf("watch's counters: %s (%v), want %d printed", wst, err, total)
	}
	t.Logf("watch: %d lines; %s", len(lines), wst)
}
