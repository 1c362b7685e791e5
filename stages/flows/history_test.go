package flows

import (
	"net/netip"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// TestHistory: Zeek's conn history letters, worked out by hand for a made-up connection:
// each letter once per direction at its first occurrence, upper case from the originator; a
// SYN-ACK seen first still makes the SYN's sender the originator. IPBytes add up the IP
// lengths (the IPv6 case is checked against tshark in package zeeklog).
func TestHistory(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	t0 := time.Unix(1700000000, 0)
	type pk struct {
		fromA bool
		flags uint8
		plen  uint16
	}
	const (
		S, SA, A, PA, FA, R = stages.TCPSyn, stages.TCPSyn | stages.TCPAck, stages.TCPAck, stages.TCPAck | stages.TCPPsh,
			stages.TCPFin | stages.TCPAck, stages.TCPRst
	)
	for _, c := range []struct {
		name string
		pkts []pk
		want string
	}{
		{"handshake, data, FINs", []pk{{true, S, 0}, {false, SA, 0}, {true, A, 0}, {true, PA, 10}, {false, A, 0}, {false, PA, 20},
			{true, PA, 5}, {true, FA, 0}, {false, FA, 0}, {true, A, 0}}, "ShADadFf"},
		{"data on the first ACK", []pk{{true, S, 0}, {false, SA, 0}, {true, PA, 10}, {true, A, 0}}, "ShDA"},
		{"rejected", []pk{{true, S, 0}, {false, R | stages.TCPAck, 0}}, "Sr"},
		{"FIN with data", []pk{{true, S, 0}, {false, SA, 0}, {true, FA, 3}}, "ShFD"},
	} {
		var ended []stages.Flow
		tb := New(Config{OnEnd: func(f *stages.Flow) { ended = append(ended, *f) }})
		for i, p := range c.pkts {
			q := &stages.Packet{Time: t0.Add(time.Duration(i) * time.Millisecond), IPVersion: 4, Proto: stages.ProtoTCP,
				Src: a, Dst: b, SrcPort: 40000, DstPort: 80, TCPFlags: p.flags, PayloadLen: p.plen, IPLen: 40 + p.plen}
			if !p.fromA {
				q.Src, q.Dst, q.SrcPort, q.DstPort = b, a, 80, 40000
			}
			tb.Process(q)
		}
		tb.Flush()
		if len(ended) != 1 {
			t.Fatalf("%s: %d flows", c.name, len(ended))
		}
		f := ended[0]
		if got := f.HistoryString(); got != c.want {
			t.Errorf("%s: history %q, want %q", c.name, got, c.want)
		}
		var ip [2]uint64
		for _, p := range c.pkts {
			d := 0
			if !p.fromA {
				d = 1
			}
			ip[d] += 40 + uint64(p.plen)
		}
		if f.IPBytes != ip {
			t.Errorf("%s: IPBytes %v, want %v", c.name, f.IPBytes, ip)
		}
	}
}
