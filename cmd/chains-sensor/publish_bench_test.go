package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages/fleet/fleettest"
)

// BenchmarkPublish: `read -n` of a 100,000-packet capture with --publish to one local
// nats-server (a file-stored stream, every record acknowledged before the run ends: the drain
// waits for the acks), against the same read without --publish, each the best of three. The
// metrics: records published per second with their acks (wall time of the whole run), and the
// sensor's CPU time (user + system, of its process) per million records, with and without
// publishing. nats-server's own CPU is not counted.
func BenchmarkPublish(b *testing.B) {
	dir := b.TempDir()
	pcap := filepath.Join(dir, "bench.pcap")
	const n = 100000
	writeCapture(b, pcap, n, 20)
	bin := buildBinary(b, dir)
	c := fleettest.Start(b, fleettest.Options{Nodes: 1})
	type result struct{ wall, cpu time.Duration }
	runOnce := func(args ...string) result {
		cmd := exec.Command(bin, append([]string{"read", "-n", "-q"}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("read %v: %v\n%s", args, err, stderr.String())
		}
		r := result{time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
		if len(args) > 1 {
			if want := fmt.Sprintf("publish: %d records, %d published, %d acked", n, n, n); !strings.Contains(stderr.String(), want) {
				b.Fatalf("not every record acked (want %q):\n%s", want, stderr.String())
			}
		}
		return r
	}
	best := func(k int, f func() result) result {
		r := f()
		for range k - 1 {
			x := f()
			r.wall, r.cpu = min(r.wall, x.wall), min(r.cpu, x.cpu)
		}
		return r
	}
	var plain, pub result
	b.ResetTimer()
	for i := range b.N {
		plain = best(3, func() result { return runOnce(pcap) })
		pub = best(3, func() result {
			return runOnce("--publish", c.URLs(), "--host", fmt.Sprintf("bench%d", i), "--publish-kinds", "packet",
				"--publish-buffer", fmt.Sprint(2*n), "--publish-drain", "120s", pcap)
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/pub.wall.Seconds(), "records/s")
	b.ReportMetric(pub.cpu.Seconds()*1e6/n, "cpu-s/Mrec")
	b.ReportMetric(plain.cpu.Seconds()*1e6/n, "cpu-s/Mpkt-no-publish")
	b.ReportMetric(float64(pub.wall.Milliseconds()), "publish-ms")
	b.ReportMetric(float64(plain.wall.Milliseconds()), "no-publish-ms")
}
