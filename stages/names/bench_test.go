package names

import (
	"fmt"
	"io"
	"iter"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// BenchmarkChainCachedDNS: domains, reverse DNS with every name cached, net_watch out.
func BenchmarkChainCachedDNS(b *testing.B) {
	s := startPTRServer(&testing.T{})
	s.setDefault(func(q string) (string, bool) { return "host-" + q[:6] + ".example.", true })
	r, err := NewResolver(ResolverConfig{Servers: []string{s.addr}, HostsFile: "-", Wait: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	st := stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())
	for range st(stagestest.Loop(stagestest.Records(), 64)) { // warm the cache
	}
	if st := r.Stats(); st.Answers == 0 {
		b.Fatalf("cache not warmed: %+v", st)
	}
	out := sinks.NewOutput(io.Discard, false)
	stagestest.BenchChain(b, st, sinks.NewNetWatch(out, sinks.Options{UTC: true}))
}

// BenchmarkChainDeadDNS: domains, reverse DNS against a server that never answers, net_watch
// out: the steady-state cost once the lookups have been given up (compare BenchmarkChainNoDNS).
func BenchmarkChainDeadDNS(b *testing.B) {
	addr := stagestest.SilentDNS(&testing.T{})
	r, err := NewResolver(ResolverConfig{Servers: []string{addr}, HostsFile: "-", Wait: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	out := sinks.NewOutput(io.Discard, false)
	stagestest.BenchChain(b, stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage()), sinks.NewNetWatch(out, sinks.Options{UTC: true}))
}

// BenchmarkRDNSScan: 1.8M packets through the reverse-DNS stage, each from one of N distinct
// public addresses taken in turn (a scan: the order that defeats a plain LRU once N passes the
// cache size) to an internal one, with an in-process server that answers every PTR at once.
// Each iteration starts cold (compulsory lookups included); ns/pkt is the per-packet cost in
// wall-clock time, cpu-ns/pkt in the process's CPU time (the lookups and the server included).
// rate=default is --rdns-rate's default; rate=off lifts it (2^20 a second), which leaves the
// cache and the in-flight bound alone to keep the cost.
func BenchmarkRDNSScan(b *testing.B) {
	const packets = 1_800_000
	for _, c := range []struct {
		name     string
		rate     int
		distinct int
	}{
		{"default", DefaultRate, 10_000}, {"default", DefaultRate, 50_000}, {"default", DefaultRate, 200_000},
		{"off", 1 << 20, 10_000}, {"off", 1 << 20, 50_000}, {"off", 1 << 20, 200_000},
	} {
		distinct := c.distinct
		b.Run(fmt.Sprintf("rate=%s/distinct=%d", c.name, distinct), func(b *testing.B) {
			s := startPTRServer(&testing.T{})
			s.setDefault(func(q string) (string, bool) { return "h-" + strings.ReplaceAll(q, ".", "-") + "example.", true })
			for range b.N {
				r, err := NewResolver(ResolverConfig{Servers: []string{s.addr}, HostsFile: "-", Rate: c.rate})
				if err != nil {
					b.Fatal(err)
				}
				st := stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())
				cpu0 := cpuTime()
				start := time.Now()
				n, named := 0, 0
				for p := range st(scanSource(distinct, packets)) {
					n++
					if p.SrcDomain != "public" {
						named++
					}
				}
				el := time.Since(start)
				cpu := cpuTime() - cpu0
				if n != packets {
					b.Fatal(n)
				}
				st2 := r.Stats()
				b.ReportMetric(float64(el.Nanoseconds())/packets, "ns/pkt")
				b.ReportMetric(float64(cpu.Nanoseconds())/packets, "cpu-ns/pkt")
				b.ReportMetric(float64(st2.Lookups), "lookups")
				b.ReportMetric(100*float64(named)/packets, "%named")
				b.ReportMetric(float64(st2.Evicted), "evicted")
			}
		})
	}
}

// scanRange yields one packet from each of the addresses 44.0.0.0 + [from, to).
func scanRange(from, to int) iter.Seq[*stages.Packet] {
	return func(yield func(*stages.Packet) bool) {
		for p := range scanSource(to, to) {
			if int(p.Num) > from && !yield(p) {
				return
			}
		}
	}
}

// cpuTime is the CPU time (user and system) the process has used: the stage, its lookups and
// the in-process server, less sensitive than the wall clock to what else runs on the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scanSource yields n packets from distinct public addresses in turn (44.0.0.0 + i mod
// distinct) to 192.168.1.9, through one reused Packet.
func scanSource(distinct, n int) iter.Seq[*stages.Packet] {
	return func(yield func(*stages.Packet) bool) {
		var p stages.Packet
		dst := netip.MustParseAddr("192.168.1.9")
		t0 := time.Unix(1441652914, 0)
		for i := range n {
			k := i % distinct
			p.Reset()
			p.Num = uint64(i + 1)
			p.Time = t0.Add(time.Duration(i) * time.Microsecond)
			p.EtherType, p.IPVersion, p.Proto = stages.EtherTypeIPv4, 4, stages.ProtoTCP
			p.Src = netip.AddrFrom4([4]byte{44, byte(k >> 16), byte(k >> 8), byte(k)})
			p.Dst = dst
			if !yield(&p) {
				return
			}
		}
	}
}
