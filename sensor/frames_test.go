package sensor_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
)

// Hand-built frames, one per protocol feature of the parser, with the fields a person reads
// off the bytes. Each runs through the twin and, as root, through both programs.

var (
	macA = []byte{0x02, 0, 0, 0, 0, 0x01}
	macB = []byte{0x02, 0, 0, 0, 0, 0x02}
	v4A  = netip.MustParseAddr("10.0.0.1")
	v4B  = netip.MustParseAddr("10.0.0.2")
	v6A  = netip.MustParseAddr("2001:db8::1")
	v6B  = netip.MustParseAddr("2001:db8::2")
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
func be16(v uint16) []byte       { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte       { return binary.BigEndian.AppendUint32(nil, v) }

func eth(etype uint16) []byte       { return cat(macB, macA, be16(etype)) }
func vlan(tci, etype uint16) []byte { return cat(be16(tci), be16(etype)) }

// ipv4 builds a header with ihl from len(opts); total is the declared total length.
func ipv4(proto uint8, total uint16, frag uint16, opts []byte) []byte {
	ihl := 5 + len(opts)/4
	h := cat([]byte{byte(0x40 | ihl), 0x10}, be16(total), be16(0x1234), be16(frag), []byte{64, proto, 0, 0},
		v4A.AsSlice(), v4B.AsSlice(), opts)
	return h
}

func ipv6(next uint8, plen uint16) []byte {
	// version 6, traffic class 0xb8, flow label 0x12345
	return cat(be32(6<<28|0xb8<<20|0x12345), be16(plen), []byte{next, 55}, v6A.AsSlice(), v6B.AsSlice())
}

func tcp(sport, dport uint16, flags uint8, opts []byte) []byte {
	doff := 5 + len(opts)/4
	return cat(be16(sport), be16(dport), be32(1000), be32(2000), []byte{byte(doff << 4), flags}, be16(29200), be16(0), be16(0), opts)
}

func udp(sport, dport uint16, payload int) []byte {
	return cat(be16(sport), be16(dport), be16(uint16(8+payload)), be16(0))
}

// ext builds an IPv6 extension header of 8*(1+n) bytes.
func ext(next uint8, n int) []byte { return cat([]byte{next, byte(n)}, make([]byte, 6+8*n)) }

type frameCase struct {
	name  string
	frame []byte
	check func(t *testing.T, p *stages.Packet)
}

func frameCases() []frameCase {
	dns := make([]byte, 30)
	dns[5] = 1 // one question
	get := []byte("GET /index.html HTTP/1.1\r\nHost: example.test\r\n\r\n")
	hello := cat([]byte{0x16, 0x03, 0x01, 0x01, 0x00}, make([]byte, 300))
	bulk := bytes.Repeat([]byte{0xaa}, 200)
	// The sizes issue 2 names: a DNS message of 1400 bytes (past 512), an HTTP request head of
	// 1200 bytes (past 1 KiB), a TLS ClientHello record of 2100 bytes (past 2 KiB).
	bigDNS := cat([]byte{0x12, 0x34, 0x81, 0x80}, make([]byte, 1396))
	bigGet := cat([]byte("GET /"), bytes.Repeat([]byte("a"), 1200-len("GET / HTTP/1.1\r\n\r\n")), []byte(" HTTP/1.1\r\n\r\n"))
	bigHello := cat([]byte{0x16, 0x03, 0x01, 0x08, 0x2f}, bytes.Repeat([]byte{0x42}, 2095))
	ah := cat([]byte{6, 4, 0, 0}, be32(0x100), be32(1), make([]byte, 12)) // 24 bytes: (4+2)*4
	arp := cat(be16(1), be16(0x0800), []byte{6, 4}, be16(1), macA, v4A.AsSlice(), make([]byte, 6), v4B.AsSlice())
	pppoe := cat([]byte{0x11, 0x00}, be16(0x2a), be16(2+20+8), be16(0x0021))
	nine := []byte{}
	for i := 0; i < 9; i++ {
		nine = append(nine, ext(60, 0)...)
	}
	nine[len(nine)-8] = 6

	return []frameCase{
		{"tcp syn v4", cat(eth(0x0800), ipv4(6, 20+24, 0x4000, nil), tcp(1234, 80, 0x02, []byte{2, 4, 0x05, 0xb4})), func(t *testing.T, p *stages.Packet) {
			want(t, p.Src == v4A && p.Dst == v4B && p.Proto == 6 && p.TTL == 64 && p.TOS == 0x10 && p.IPID == 0x1234, "ip fields", p)
			want(t, p.IPFlags == stages.IPFlagDF && p.IPLen == 44, "DF and length", p)
			want(t, p.SrcPort == 1234 && p.DstPort == 80 && p.Seq == 1000 && p.Ack == 2000 && p.TCPFlags == stages.TCPSyn && p.Window == 29200 && p.L4HdrLen == 24, "tcp fields", p)
			want(t, p.PayloadOff == 58 && p.PayloadLen == 0 && len(p.Payload) == 0, "no payload", p)
		}},
		{"tcp http v6", cat(eth(0x86dd), ipv6(6, uint16(20+len(get))), tcp(40000, 8080, 0x18, nil), get), func(t *testing.T, p *stages.Packet) {
			want(t, p.IPVersion == 6 && p.Src == v6A && p.Dst == v6B && p.TTL == 55 && p.TOS == 0xb8 && p.FlowLabel == 0x12345, "ipv6 fields", p)
			want(t, p.PayloadOff == 74 && int(p.PayloadLen) == len(get) && bytes.Equal(p.Payload, get), "HTTP head whole (large class)", p)
		}},
		{"udp dns in vlan", cat(eth(0x8100), vlan(3<<13|100, 0x0800), ipv4(17, 20+8+30, 0, nil), udp(5353, 53, 30), dns), func(t *testing.T, p *stages.Packet) {
			want(t, p.VLANCount == 1 && p.VLANs[0] == 3<<13|100 && p.EtherType == 0x0800, "vlan", p)
			want(t, p.SrcPort == 5353 && p.DstPort == 53 && p.UDPLen == 38 && bytes.Equal(p.Payload, dns), "dns payload", p)
		}},
		{"qinq", cat(eth(0x88a8), vlan(200, 0x8100), vlan(300, 0x0800), ipv4(17, 28, 0, nil), udp(1, 2, 0)), func(t *testing.T, p *stages.Packet) {
			want(t, p.VLANCount == 2 && p.VLANs == [4]uint16{200, 300} && p.Status == stages.StatusOK && p.DstPort == 2, "two tags", p)
		}},
		{"four tags", cat(eth(0x88a8), vlan(1, 0x8100), vlan(2, 0x8100), vlan(3, 0x8100), vlan(4, 0x0800), ipv4(17, 28, 0, nil), udp(1, 2, 0)), func(t *testing.T, p *stages.Packet) {
			want(t, p.Status == stages.StatusOK && p.VLANCount == 4 && p.VLANs == [4]uint16{1, 2, 3, 4} && p.EtherType == 0x0800 && p.DstPort == 2, "four tags walked", p)
		}},
		{"five tags", cat(eth(0x8100), vlan(1, 0x8100), vlan(2, 0x8100), vlan(3, 0x8100), vlan(4, 0x8100), vlan(5, 0x0800), ipv4(17, 28, 0, nil), udp(1, 2, 0)), func(t *testing.T, p *stages.Packet) {
			want(t, p.Status == stages.StatusUnsupported && p.BadLayer == stages.LayerVLAN && p.VLANCount == 4 && p.EtherType == 0x8100, "fifth tag unsupported", p)
		}},
		{"icmpv6 echo", cat(eth(0x86dd), ipv6(58, 16), []byte{128, 0, 0, 0}, be16(0x42), be16(7), make([]byte, 8)), func(t *testing.T, p *stages.Packet) {
			want(t, p.Proto == 58 && p.ICMPType == 128 && p.ICMPCode == 0 && p.ICMPID == 0x42 && p.ICMPSeq == 7 && p.PayloadLen == 8, "echo", p)
		}},
		{"icmp echo reply v4", cat(eth(0x0800), ipv4(1, 28, 0, nil), []byte{0, 0, 0, 0}, be16(9), be16(10)), func(t *testing.T, p *stages.Packet) {
			want(t, p.ICMPType == 0 && p.ICMPID == 9 && p.ICMPSeq == 10, "echo reply", p)
		}},
		{"icmp unreachable v4", cat(eth(0x0800), ipv4(1, 28, 0, nil), []byte{3, 3, 0, 0}, be16(9), be16(10)), func(t *testing.T, p *stages.Packet) {
			want(t, p.ICMPType == 3 && p.ICMPCode == 3 && p.ICMPID == 0 && p.ICMPSeq == 0, "no echo fields", p)
		}},
		{"arp request", cat(eth(0x0806), arp), func(t *testing.T, p *stages.Packet) {
			want(t, p.ARPOp == 1 && p.Src == v4A && p.Dst == v4B && bytes.Equal(p.Payload, arp), "arp", p)
		}},
		{"pppoe ipv4", cat(eth(0x8864), pppoe, ipv4(17, 28, 0, nil), udp(68, 67, 0)), func(t *testing.T, p *stages.Packet) {
			want(t, p.EtherType == 0x0800 && p.Src == v4A && p.SrcPort == 68 && p.PayloadOff == 14+8+28, "pppoe", p)
		}},
		{"ipv4 options", cat(eth(0x0800), ipv4(6, 24+20, 0, []byte{1, 1, 1, 0}), tcp(1, 2, 0x10, nil)), func(t *testing.T, p *stages.Packet) {
			want(t, p.Status == stages.StatusOK && p.SrcPort == 1 && p.PayloadOff == 14+24+20, "ihl 6", p)
		}},
		{"ipv4 first fragment", cat(eth(0x0800), ipv4(17, 20+8+8, 0x2000, nil), udp(7, 8, 100), make([]byte, 8)), func(t *testing.T, p *stages.Packet) {
			want(t, p.IPFlags == stages.IPFlagMF|stages.IPFlagFragment && p.FragOff == 0 && p.SrcPort == 7, "first fragment parsed", p)
			want(t, p.Status == stages.StatusMalformed && p.BadLayer == stages.LayerUDP, "UDP length past the fragment", p)
		}},
		{"ipv4 later fragment", cat(eth(0x0800), ipv4(17, 20+16, 185, nil), make([]byte, 16)), func(t *testing.T, p *stages.Packet) {
			want(t, p.FragOff == 185 && p.IPFlags == stages.IPFlagFragment && p.SrcPort == 0 && p.PayloadLen == 16, "no transport", p)
		}},
		{"ipv6 ext chain", cat(eth(0x86dd), ipv6(0, 8+16+8+20), ext(43, 0), ext(60, 1), ext(6, 0), tcp(5, 6, 0x11, nil)), func(t *testing.T, p *stages.Packet) {
			want(t, p.ExtMask == stages.ExtHopByHop|stages.ExtRouting|stages.ExtDestOpts && p.Proto == 6 && p.SrcPort == 5 && p.TCPFlags == 0x11, "hbh, routing, dstopts, tcp", p)
			want(t, p.PayloadOff == 14+40+32+20, "offset after the chain", p)
		}},
		{"ipv6 first fragment", cat(eth(0x86dd), ipv6(44, 8+8), []byte{17, 0}, be16(1), be32(0xdeadbeef), udp(53, 9, 100)), func(t *testing.T, p *stages.Packet) {
			want(t, p.ExtMask == stages.ExtFragment && p.IPID == 0xdeadbeef && p.IPFlags == stages.IPFlagMF|stages.IPFlagFragment && p.SrcPort == 53, "fragment header", p)
		}},
		{"ipv6 later fragment", cat(eth(0x86dd), ipv6(44, 8+16), []byte{17, 0}, be16(100<<3), be32(5), make([]byte, 16)), func(t *testing.T, p *stages.Packet) {
			want(t, p.FragOff == 100 && p.SrcPort == 0 && p.Proto == 17 && p.PayloadLen == 16, "no transport in a later fragment", p)
		}},
		{"ipv6 ah", cat(eth(0x86dd), ipv6(51, 24+20), ah, tcp(7, 8, 0x10, nil)), func(t *testing.T, p *stages.Packet) {
			want(t, p.ExtMask == stages.ExtAH && p.SrcPort == 7 && p.PayloadOff == 14+40+24+20, "ah length (len+2)*4", p)
		}},
		{"ipv6 esp", cat(eth(0x86dd), ipv6(50, 16), make([]byte, 16)), func(t *testing.T, p *stages.Packet) {
			want(t, p.ExtMask == stages.ExtESP && p.Proto == 50 && p.PayloadLen == 16 && p.Status == stages.StatusOK, "esp", p)
		}},
		{"nine ext headers", cat(eth(0x86dd), ipv6(60, 72+20), nine, tcp(1, 2, 0, nil)), func(t *testing.T, p *stages.Packet) {
			want(t, p.Status == stages.StatusUnsupported && p.BadLayer == stages.LayerIPv6Ext, "ninth header unsupported", p)
		}},
		{"tls client hello", cat(eth(0x0800), ipv4(6, uint16(40+len(hello)), 0, nil), tcp(50000, 8443, 0x18, nil), hello), func(t *testing.T, p *stages.Packet) {
			want(t, len(p.Payload) == len(hello), "TLS handshake whole (large class)", p)
		}},
		{"dns 1400 bytes", cat(eth(0x0800), ipv4(17, uint16(28+len(bigDNS)), 0, nil), udp(53, 40000, len(bigDNS)), bigDNS), func(t *testing.T, p *stages.Packet) {
			want(t, len(p.Payload) == 1400 && bytes.Equal(p.Payload, bigDNS), "DNS message whole", p)
		}},
		{"http head 1200 bytes", cat(eth(0x86dd), ipv6(6, uint16(20+len(bigGet))), tcp(40000, 80, 0x18, nil), bigGet), func(t *testing.T, p *stages.Packet) {
			want(t, len(bigGet) == 1200 && bytes.Equal(p.Payload, bigGet), "HTTP head whole", p)
		}},
		{"client hello 2100 bytes", cat(eth(0x0800), ipv4(6, uint16(40+len(bigHello)), 0, nil), tcp(40000, 443, 0x18, nil), bigHello), func(t *testing.T, p *stages.Packet) {
			want(t, len(bigHello) == 2100 && bytes.Equal(p.Payload, bigHello), "ClientHello whole", p)
		}},
		{"bulk tcp", cat(eth(0x0800), ipv4(6, uint16(40+len(bulk)), 0, nil), tcp(50000, 9000, 0x10, nil), bulk), func(t *testing.T, p *stages.Packet) {
			want(t, len(p.Payload) == sensor.DefaultSnapSmall && p.PayloadLen == 200, "small class", p)
		}},
		{"ethernet padding", cat(eth(0x0800), ipv4(17, 28, 0, nil), udp(1, 2, 0), make([]byte, 18)), func(t *testing.T, p *stages.Packet) {
			want(t, p.PayloadLen == 0 && len(p.Payload) == 0, "padding is not payload", p)
		}},
		{"short frame", []byte{1, 2, 3}, func(t *testing.T, p *stages.Packet) {
			want(t, p.Status == stages.StatusTruncated && p.BadLayer == stages.LayerEthernet, "truncated ethernet", p)
		}},
	}
}

func want(t *testing.T, ok bool, what string, p *stages.Packet) {
	t.Helper()
	if !ok {
		t.Errorf("%s: got %+v", what, *p)
	}
}

func TestFramesTwin(t *testing.T) {
	twin := sensor.NewTwin(sensor.Config{})
	for _, c := range frameCases() {
		t.Run(c.name, func(t *testing.T) {
			var p stages.Packet
			if err := (sensor.Decoder{}).Decode(twin.Parse(nil, c.frame, sensor.Meta{}), &p); err != nil {
				t.Fatal(err)
			}
			c.check(t, &p)
		})
	}
}

func TestFramesKernel(t *testing.T) {
	_, rep := loadObjects(t)
	twin := sensor.NewTwin(sensor.Config{})
	for _, c := range frameCases() {
		if len(c.frame) < 14 {
			continue // BPF_PROG_TEST_RUN takes no frame shorter than an Ethernet header
		}
		t.Run(c.name, func(t *testing.T) {
			for dir := uint8(0); dir < 2; dir++ {
				m := sensor.Meta{Dir: dir}
				raw, err := rep.Replay(c.frame, m)
				if err != nil {
					t.Fatalf("dir %d: %v", dir, err)
				}
				if tw := twin.Parse(nil, c.frame, m); !bytes.Equal(raw, tw) {
					t.Errorf("dir %d: kernel %x\ntwin %x", dir, raw, tw)
				}
				var p stages.Packet
				if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
					t.Fatal(err)
				}
				if p.Dir != stages.Direction(dir) || p.WireLen != uint32(len(c.frame)) {
					t.Errorf("dir %d: dir %v wire %d", dir, p.Dir, p.WireLen)
				}
				c.check(t, &p)
			}
		})
	}
}

// TestCounters replays known frames and reads the per-CPU counters back.
func TestCounters(t *testing.T) {
	objs, rep := loadObjects(t)
	cases := frameCases()
	frames := map[string][]byte{}
	for _, c := range cases {
		frames[c.name] = c.frame
	}
	run := []struct {
		name string
		dir  uint8
	}{{"tcp syn v4", 0}, {"tcp syn v4", 1}, {"five tags", 0}, {"ipv4 first fragment", 1}, {"nine ext headers", 0}}
	for _, r := range run {
		if _, err := rep.Replay(frames[r.name], sensor.Meta{Dir: r.dir}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := sensor.ReadCounters(objs)
	if err != nil {
		t.Fatal(err)
	}
	if c[gen.SensorCounterKeyCNT_XDP_EMITTED] != 3 || c[gen.SensorCounterKeyCNT_TC_EMITTED] != 2 || c.SeenXDP() != 3 || c.SeenTC() != 2 || c.RingFull() != 0 {
		t.Errorf("seen/emitted: %s", c.String())
	}
	if c[gen.SensorCounterKeyCNT_UNSUPPORTED] != 2 || c.Malformed(stages.LayerUDP) != 1 {
		t.Errorf("by status: %s", c.String())
	}
	if c[gen.SensorCounterKeyCNT_SNAP_FAILED] != 0 {
		t.Errorf("payload copies failed: %s", c.String())
	}
}

// TestLossByInterface fills a one-page ring with test runs that nobody reads: every record the
// ring refuses is counted as lost, in total and for the interface the test run gives the packet.
func TestLossByInterface(t *testing.T) {
	sensortest.RequireBPF(t)
	objs, err := sensor.Load(sensor.Config{RingSize: uint32(os.Getpagesize())})
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	const runs = 500
	if _, _, err := objs.XDP.Benchmark(frameCases()[0].frame, runs, nil); err != nil {
		t.Fatal(err)
	}
	c, err := sensor.ReadCounters(objs)
	if err != nil {
		t.Fatal(err)
	}
	byIf, err := sensor.ReadLostByIfindex(objs)
	if err != nil {
		t.Fatal(err)
	}
	if c.SeenXDP() != runs || c.RingFull() == 0 || c.Emitted()+c.RingFull() != runs {
		t.Fatalf("%d runs: %s", runs, c.String())
	}
	var sum uint64
	for _, v := range byIf {
		sum += v
	}
	if sum != c.RingFull() || len(byIf) != 1 {
		t.Errorf("lost by interface %v, lost in all %d", byIf, c.RingFull())
	}
}
