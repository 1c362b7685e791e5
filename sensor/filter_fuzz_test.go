package sensor_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/filter"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/gopacket/gopacket/layers"
)

// exprGen turns fuzz bytes into a pcap-filter expression: primitives of every family,
// combined with and, or, not and parentheses.
type exprGen struct {
	b []byte
	i int
}

func (g *exprGen) next() int {
	if g.i >= len(g.b) {
		return 0
	}
	g.i++
	return int(g.b[g.i-1])
}

func (g *exprGen) pick(xs ...string) string { return xs[g.next()%len(xs)] }

func (g *exprGen) num(max int) int { return (g.next()<<8 | g.next()) % (max + 1) }

var (
	genProtos  = []string{"ip", "ip6", "tcp", "udp", "icmp", "icmp6", "arp", "vlan"}
	genOffsets = []string{"ip", "ip6", "tcp", "udp", "icmp", "ether", "arp", "icmp6"}
	genHosts   = []string{"10.0.0.1", "192.168.1.9", "224.0.0.251", "255.255.255.255", "fe80::1", "ff02::fb", "2001:db8::1"}
	genNets    = []string{"10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12", "224.0.0.0/4", "fe80::/10", "2001:db8::/32"}
	genRel     = []string{"=", "!=", ">", "<", ">=", "<="}
	genArith   = []string{"+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"}
)

func (g *exprGen) primitive() string {
	switch g.next() % 16 {
	case 0:
		return g.pick(genProtos...)
	case 1:
		return fmt.Sprintf("%s%sport %d", g.pick("", "tcp ", "udp "), g.pick("", "src ", "dst "), g.pick53())
	case 2:
		lo := g.num(65535)
		return fmt.Sprintf("%sportrange %d-%d", g.pick("", "tcp ", "udp "), lo, lo+g.num(2000))
	case 3:
		return fmt.Sprintf("%shost %s", g.pick("", "src ", "dst "), g.pick(genHosts...))
	case 4:
		return fmt.Sprintf("%snet %s", g.pick("", "src ", "dst "), g.pick(genNets...))
	case 5:
		return fmt.Sprintf("%s[%d%s] %s %d", g.pick(genOffsets...), g.num(60), g.pick("", ":1", ":2", ":4"), g.pick(genRel...), g.num(65535))
	case 6:
		return fmt.Sprintf("%s[%d] & %d != 0", g.pick(genOffsets...), g.num(40), 1+g.num(254))
	case 7:
		return fmt.Sprintf("%s[%d] %s %s[%d] %s %d", g.pick(genOffsets...), g.num(40), g.pick(genArith...), g.pick(genOffsets...), g.num(40), g.pick(genRel...), g.num(300))
	case 8:
		return fmt.Sprintf("%s %d", g.pick("greater", "less", "len >", "len <", "len ="), g.num(1600))
	case 9:
		return g.pick("broadcast", "multicast", "ip broadcast", "ip multicast", "ip6 multicast", "ether broadcast")
	case 10:
		return fmt.Sprintf("tcp[tcpflags] & (%s) != 0", g.pick("tcp-syn", "tcp-ack", "tcp-fin|tcp-rst", "tcp-push", "tcp-syn|tcp-ack", "tcp-urg|tcp-ece|tcp-cwr"))
	case 11:
		return fmt.Sprintf("%s protochain %d", g.pick("ip6", "ip"), g.pick53())
	case 12:
		return fmt.Sprintf("vlan %d", g.num(4095))
	case 13:
		return fmt.Sprintf("%s proto %d", g.pick("ip", "ip6", "ether"), g.num(255))
	case 14:
		return fmt.Sprintf("icmp[icmptype] = %s", g.pick("icmp-echo", "icmp-echoreply", "icmp-unreach", "3"))
	default:
		return fmt.Sprintf("(%s[%d:2] %s %d) %s %d = 0", g.pick(genOffsets...), g.num(40), g.pick(genArith...), g.num(255), g.pick("&", "%", "/", ">>"), 1+g.num(31))
	}
}

// pick53 is a port or protocol number, often a common one.
func (g *exprGen) pick53() int {
	common := []int{53, 80, 443, 5353, 6, 17, 58, 44, 0, 1}
	if n := g.next(); n < 200 {
		return common[n%len(common)]
	}
	return g.num(65535)
}

func (g *exprGen) expr(depth int) string {
	if depth > 3 || g.i >= len(g.b) {
		return g.primitive()
	}
	switch g.next() % 6 {
	case 0:
		return g.expr(depth+1) + " and " + g.expr(depth+1)
	case 1:
		return g.expr(depth+1) + " or " + g.expr(depth+1)
	case 2:
		return "not " + g.expr(depth+1)
	case 3:
		return "(" + g.expr(depth+1) + ")"
	}
	return g.primitive()
}

// fuzzFrames are distinct Ethernet frames of the test captures that BPF_PROG_TEST_RUN takes.
func fuzzFrames(t testing.TB) [][]byte {
	var frames [][]byte
	seen := map[string]bool{}
	for _, path := range sensortest.PcapFiles(t) {
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := sensor.OpenCapture(fh)
		if err == nil {
			for {
				f, err := c.Next()
				if err != nil {
					break
				}
				if f.LinkType != layers.LinkTypeEthernet || len(f.Data) < 14 || len(f.Data) > sensor.MaxReplayFrame || seen[string(f.Data)] {
					continue
				}
				seen[string(f.Data)] = true
				frames = append(frames, append([]byte(nil), f.Data...))
			}
		}
		fh.Close()
	}
	return frames
}

// FuzzFilterVerdicts: random expressions libpcap accepts, compiled for Ethernet, give every
// seed frame the same verdict in libpcap's interpreter and in xdp_sensor (the live
// translation, through BPF_PROG_TEST_RUN). Each input loads the program, so it runs at a few
// inputs a second; failures land in testdata/fuzz/FuzzFilterVerdicts.
func FuzzFilterVerdicts(f *testing.F) {
	for _, seed := range []string{"\x00\x01", "\x01\x05\x10\x20\x30\x40", "\x02\x0b\x07\x09\x0b\x05\x06", "\x00\x0b\x21\x00", "\x03\x02\x05\x11\x05\x0f\x00\x00\x01"} {
		f.Add([]byte(seed))
	}
	sensortest.RequireBPF(f)
	frames := fuzzFrames(f)
	if len(frames) < 200 {
		f.Fatalf("only %d seed frames", len(frames))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		expr := (&exprGen{b: data}).expr(0)
		p, err := filter.Compile(expr, filter.LinkEthernet, 0xffffff00)
		if err != nil {
			return // libpcap refuses it: not this target's subject
		}
		objs, err := sensor.Load(sensor.Config{Filter: &sensor.KernelFilter{Prog: p}, IngressOnly: true, RingSize: 1 << 16})
		var fe *sensor.FilterTooComplexError
		if errors.As(err, &fe) {
			t.Skipf("%q: too complex for the verifier", expr)
		}
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		defer objs.Close()
		rep, err := sensor.NewReplayer(objs)
		if err != nil {
			t.Fatal(err)
		}
		defer rep.Close()
		for i, fr := range frames {
			want := p.Match(fr, len(fr))
			_, err := rep.Replay(fr, sensor.Meta{})
			got := err == nil
			if err != nil && !errors.Is(err, sensor.ErrFiltered) {
				t.Fatalf("%q frame %d: %v", expr, i, err)
			}
			if got != want {
				t.Fatalf("%q: frame %d (%x): libpcap says %v, xdp_sensor %v", expr, i, fr, want, got)
			}
		}
	})
}
