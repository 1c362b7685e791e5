package stages

import (
	"io"
	"iter"
	"net/netip"
	"testing"
	"time"
)

// benchPackets is a mix of records: TCP v4 out and in, UDP DNS, mDNS multicast, TCP v6.
func benchPackets() []Packet {
	base := time.Unix(1441652914, 0)
	mk := func(src, dst string, proto uint8, sp, dp uint16, flags uint8) Packet {
		p := Packet{Time: base, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto,
			SrcPort: sp, DstPort: dp, TCPFlags: flags, L4HdrLen: 20, WireLen: 74, Iface: "eth0"}
		if p.Src.Is4() {
			p.EtherType, p.IPVersion = EtherTypeIPv4, 4
		} else {
			p.EtherType, p.IPVersion = EtherTypeIPv6, 6
		}
		return p
	}
	return []Packet{
		mk("192.168.1.9", "54.164.252.174", ProtoTCP, 51234, 443, TCPSyn),
		mk("54.164.252.174", "192.168.1.9", ProtoTCP, 443, 51234, TCPSyn|TCPAck),
		mk("192.168.1.9", "8.8.8.8", ProtoUDP, 40000, 53, 0),
		mk("192.168.1.9", "224.0.0.251", ProtoUDP, 5353, 5353, 0),
		mk("2001:4860:4860::8888", "fd00::9", ProtoTCP, 443, 40001, TCPAck|TCPPsh),
		mk("192.168.1.9", "54.164.252.174", ProtoTCP, 51234, 443, TCPAck),
		mk("8.8.8.8", "192.168.1.9", ProtoUDP, 53, 40000, 0),
		mk("192.168.1.20", "192.168.1.9", ProtoICMP, 0, 0, 0),
	}
}

// loopSource yields n packets cycling over pkts, copying each into one reused Packet.
func loopSource(pkts []Packet, n int) iter.Seq[*Packet] {
	return func(yield func(*Packet) bool) {
		var p Packet
		for i := range n {
			p = pkts[i%len(pkts)]
			p.Num = uint64(i + 1)
			p.Time = p.Time.Add(time.Duration(i) * time.Microsecond)
			if !yield(&p) {
				return
			}
		}
	}
}

func benchChain(b *testing.B, st Stage, sink Sink) {
	pkts := benchPackets()
	b.ReportAllocs()
	b.ResetTimer()
	n, err := Run(loopSource(pkts, b.N), st, sink, 0)
	if err != nil || n != uint64(b.N) {
		b.Fatal(n, err)
	}
	b.StopTimer()
	sink.Close()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// BenchmarkChainNoDNS: records in, domains stage, net_watch lines out (-n).
func BenchmarkChainNoDNS(b *testing.B) {
	out := NewOutput(io.Discard, false)
	benchChain(b, Domains(NewClassifier(nil, nil)), NewNetWatchSink(out, true, false))
}

// BenchmarkChainJSON: the same with -o json.
func BenchmarkChainJSON(b *testing.B) {
	out := NewOutput(io.Discard, false)
	benchChain(b, Domains(NewClassifier(nil, nil)), NewJSONSink(out, true))
}

// BenchmarkChainPackets: the same with --view packets.
func BenchmarkChainPackets(b *testing.B) {
	out := NewOutput(io.Discard, false)
	benchChain(b, Domains(NewClassifier(nil, nil)), NewPacketsSink(out, true, false))
}

// BenchmarkClassify: one address classification.
func BenchmarkClassify(b *testing.B) {
	c := NewClassifier(nil, nil)
	addrs := []netip.Addr{netip.MustParseAddr("54.164.252.174"), netip.MustParseAddr("192.168.1.9"),
		netip.MustParseAddr("224.0.0.251"), netip.MustParseAddr("2001:4860:4860::8888")}
	for i := 0; b.Loop(); i++ {
		c.Classify(addrs[i&3])
	}
}

func TestChainZeroAlloc(t *testing.T) {
	out := NewOutput(io.Discard, false)
	sink := NewNetWatchSink(out, true, false)
	st := Domains(NewClassifier(nil, nil))
	pkts := benchPackets()
	Run(loopSource(pkts, 100), st, sink, 0)
	a := testing.AllocsPerRun(5, func() { Run(loopSource(pkts, 1000), st, sink, 0) })
	if a/1000 > 0.01 {
		t.Errorf("%.3f allocations per packet", a/1000)
	}

}
