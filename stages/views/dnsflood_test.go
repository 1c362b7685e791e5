package views

// A DNS flood is when weird-dns matters most: the view must cost the same per packet whether
// the queries are answered or not, and hold bounded memory.

import (
	"encoding/binary"
	"io"
	"iter"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// floodPackets yields n DNS queries from 4096 clients (ports and ids all different), a
// microsecond apart; with answered, each query is followed by its NOERROR response, so the
// sequence holds 2n packets.
func floodPackets(tb testing.TB, n int, answered bool) iter.Seq[*stages.Packet] {
	q := new(dns.Msg)
	q.SetQuestion("host-0000.flood.example.", dns.TypeA)
	query, err := q.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
		A: []byte{192, 0, 2, 1}}}
	resp, err := r.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	server := netip.MustParseAddr("192.0.2.53")
	t0 := time.Unix(1700000000, 0)
	return func(yield func(*stages.Packet) bool) {
		var p stages.Packet
		qb, rb := make([]byte, len(query)), make([]byte, len(resp))
		copy(qb, query)
		copy(rb, resp)
		for i := range n {
			client := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8 & 0x0f), byte(i)})
			port := uint16(1024 + i>>12%60000)
			id := uint16(i * 7919)
			label := byte('a' + i%26)
			for k, b := range []struct {
				msg   []byte
				reply bool
			}{{qb, false}, {rb, true}} {
				if k == 1 && !answered {
					break
				}
				binary.BigEndian.PutUint16(b.msg, id)
				b.msg[12+1+5] = label // host-?000: a name per query
				p = stages.Packet{Time: t0.Add(time.Duration(i) * time.Microsecond), Num: uint64(2*i + k + 1), IPVersion: 4,
					EtherType: stages.EtherTypeIPv4, Proto: stages.ProtoUDP, Src: client, Dst: server, SrcPort: port, DstPort: 53,
					L4HdrLen: 8, WireLen: uint32(42 + len(b.msg)), PayloadLen: uint16(len(b.msg)), Payload: b.msg}
				if b.reply {
					p.Src, p.Dst, p.SrcPort, p.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
				}
				if !yield(&p) {
					return
				}
			}
		}
	}
}

// runFlood runs the weird-dns view (with -n) over src and returns the packets it got.
func runFlood(tb testing.TB, src iter.Seq[*stages.Packet], dc protocols.DNSConfig) (uint64, *Pipeline) {
	built, err := Build(&Config{NoDNS: true, View: "weird-dns", UTC: true, DNS: dc}, sinks.NewOutput(io.Discard, false))
	if err != nil {
		tb.Fatal(err)
	}
	n, err := built.Run(src)
	if err != nil {
		tb.Fatal(err)
	}
	built.Close()
	return n, built
}

// floodQueries is how many queries BenchmarkWeirdDNSFlood sends (FLOOD_QUERIES overrides).
var floodQueries = 1_000_000

// BenchmarkWeirdDNSFlood: the weird-dns view over 1M queries no one answers, and over 1M
// queries each answered; ns/pkt should be about the same (the pending-query table expires and
// evicts in constant time), and the heap bounded (heap-MB: the live heap after the run, with
// the chain and its full tables still held).
func BenchmarkWeirdDNSFlood(b *testing.B) {
	for _, c := range []struct {
		name     string
		answered bool
	}{{"unanswered", false}, {"answered", true}} {
		b.Run(c.name, func(b *testing.B) {
			var el, cpu time.Duration
			pkts := 0
			var heap uint64
			for range b.N {
				start, c0 := time.Now(), stagestest.CPUTime()
				n, p := runFlood(b, floodPackets(b, floodQueries, c.answered), protocols.DNSConfig{})
				el += time.Since(start)
				cpu += stagestest.CPUTime() - c0
				pkts = int(n)
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms) // with the chain and its tables still alive
				heap = max(heap, ms.HeapAlloc)
				runtime.KeepAlive(p)
			}
			stagestest.ReportRate(b, pkts, el, cpu)
			b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
		})
	}
}

// TestDNSFloodBounded: 200,000 unanswered queries through the weird-dns view leave at most
// --dns-max-pending of them waiting; the others are counted as evicted, every one of them.
func TestDNSFloodBounded(t *testing.T) {
	const n, bound = 200_000, 5000
	got, p := runFlood(t, floodPackets(t, n, false), protocols.DNSConfig{MaxPending: bound})
	if got != n {
		t.Fatalf("%d packets through the view", got)
	}
	st, ok := p.DNSStats()
	if !ok {
		t.Fatal("no DNS table in the weird-dns view")
	}
	if st.Messages != n || st.Pending != bound || st.PendingPeak != bound || st.PendingEvicted != n-bound || st.PendingExpired != 0 {
		t.Errorf("stats %+v: want %d pending, %d evicted", st, bound, n-bound)
	}
	var row *stages.TableStats
	for _, ts := range p.Tables() {
		if ts.Name == "dns_pending" {
			row = &ts
		}
	}
	if row == nil || row.Len != bound || row.Peak != bound || row.Max != bound || row.Evicted != n-bound || row.Flag != "--dns-max-pending" {
		t.Errorf("the exit table of pending queries: %+v, want %d of %d, %d evicted", row, bound, bound, n-bound)
	}
}
