// Package stagestest holds what the tests of the stages packages share: packets read from the
// test captures by gopacket (independently of the sensor), tshark's stored decodes of those
// captures (stages/testdata/tshark), and small fixtures.
package stagestest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"iter"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Snap is a payload policy: how many payload bytes a packet keeps.
type Snap struct{ small, large int }

// KernelSnap mirrors the kernel's payload policy (bpf/parse.h): DNS ports, TLS handshake
// starts and HTTP heads keep up to 4096 bytes, other payloads 64.
var KernelSnap = Snap{small: 64, large: 4096}

// FullSnap keeps whole payloads.
var FullSnap = Snap{}

// largeStarts are the first four payload bytes the kernel keeps more of: HTTP methods and
// "HTTP" (as bpf/parse.h's payload_is_large).
var largeStarts = []string{"GET ", "POST", "HEAD", "PUT ", "DELE", "OPTI", "PATC", "CONN", "TRAC", "HTTP"}

// Cut returns the part of payload that p keeps under s.
func (s Snap) Cut(p *stages.Packet, payload []byte) []byte {
	if s.large == 0 {
		return payload
	}
	n := s.small
	dnsPort := func(port uint16) bool { return port == 53 || port == 5353 || port == 5355 }
	large := dnsPort(p.SrcPort) || dnsPort(p.DstPort)
	if p.Proto == stages.ProtoTCP && len(payload) >= 4 {
		large = large || payload[0] == 0x16 && payload[1] == 3 || slices.Contains(largeStarts, string(payload[:4]))
	}
	if large {
		n = s.large
	}
	return payload[:min(n, len(payload))]
}

type frame struct {
	data []byte
	ci   gopacket.CaptureInfo
	lt   layers.LinkType
}

// readFrames returns every frame of a pcap or pcapng file.
func readFrames(t testing.TB, path string) []frame {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []frame
	if len(raw) >= 4 && binary.LittleEndian.Uint32(raw) == 0x0a0d0d0a {
		r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for {
			data, ci, err := r.ReadPacketData()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			lt := r.LinkType()
			if ci.InterfaceIndex >= 0 && ci.InterfaceIndex < r.NInterfaces() {
				if intf, err := r.Interface(ci.InterfaceIndex); err == nil {
					lt = intf.LinkType
				}
			}
			out = append(out, frame{data: data, ci: ci, lt: lt})
		}
		return out
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, frame{data: data, ci: ci, lt: r.LinkType()})
	}
	return out
}

// fillPacket decodes one frame with gopacket into p (the outermost IP header and its transport).
func fillPacket(p *stages.Packet, f frame, num uint64, snap Snap) {
	p.Reset()
	p.Num = num
	p.Time = f.ci.Timestamp
	p.WireLen = uint32(f.ci.Length)
	pkt := gopacket.NewPacket(f.data, f.lt, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var transport gopacket.Layer
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			if p.IPVersion != 0 {
				continue
			}
			p.IPVersion, p.EtherType = 4, stages.EtherTypeIPv4
			p.Src, _ = netip.AddrFromSlice(l.SrcIP.To4())
			p.Dst, _ = netip.AddrFromSlice(l.DstIP.To4())
			p.Proto, p.TTL, p.IPLen, p.IPID = uint8(l.Protocol), l.TTL, l.Length, uint32(l.Id)
			p.FragOff = l.FragOffset
			if l.Flags&layers.IPv4MoreFragments != 0 || l.FragOffset != 0 {
				p.IPFlags |= stages.IPFlagFragment
			}
		case *layers.IPv6:
			if p.IPVersion != 0 {
				continue
			}
			p.IPVersion, p.EtherType = 6, stages.EtherTypeIPv6
			p.Src, _ = netip.AddrFromSlice(l.SrcIP)
			p.Dst, _ = netip.AddrFromSlice(l.DstIP)
			p.Proto, p.TTL, p.IPLen = uint8(l.NextHeader), l.HopLimit, l.Length
		case *layers.IPv6Fragment:
			if p.IPVersion == 6 && transport == nil {
				p.IPFlags |= stages.IPFlagFragment
				p.FragOff = l.FragmentOffset
				p.Proto = uint8(l.NextHeader)
			}
		case *layers.IPv6HopByHop, *layers.IPv6Destination, *layers.IPv6Routing:
			if p.IPVersion == 6 && transport == nil {
				if nh, ok := ipv6NextHeader(l); ok {
					p.Proto = nh
				}
			}
		case *layers.TCP, *layers.UDP, *layers.ICMPv4, *layers.ICMPv6:
			if transport == nil && p.IPVersion != 0 {
				transport = l
			}
		}
	}
	var payload []byte
	declared := -1
	switch l := transport.(type) {
	case *layers.TCP:
		p.Proto = stages.ProtoTCP
		p.SrcPort, p.DstPort, p.Seq, p.Ack, p.Window = uint16(l.SrcPort), uint16(l.DstPort), l.Seq, l.Ack, l.Window
		var fl uint8
		for i, b := range []bool{l.FIN, l.SYN, l.RST, l.PSH, l.ACK, l.URG, l.ECE, l.CWR} {
			if b {
				fl |= 1 << i
			}
		}
		p.TCPFlags, p.L4HdrLen = fl, l.DataOffset*4
		payload = l.Payload
		if p.IPVersion == 4 && p.IPFlags&stages.IPFlagFragment == 0 {
			if v4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				declared = int(v4.Length) - int(v4.IHL)*4 - int(l.DataOffset)*4
			}
		}
	case *layers.UDP:
		p.Proto = stages.ProtoUDP
		p.SrcPort, p.DstPort, p.UDPLen, p.L4HdrLen = uint16(l.SrcPort), uint16(l.DstPort), l.Length, 8
		payload = l.Payload
		if l.Length >= 8 {
			declared = int(l.Length) - 8
		}
	case *layers.ICMPv4:
		p.Proto = stages.ProtoICMP
		p.ICMPType, p.ICMPCode = l.TypeCode.Type(), l.TypeCode.Code()
		payload = l.Payload
	case *layers.ICMPv6:
		p.Proto = stages.ProtoICMPv6
		p.ICMPType, p.ICMPCode = l.TypeCode.Type(), l.TypeCode.Code()
		payload = l.Payload
	}
	if declared < len(payload) {
		declared = len(payload)
	}
	p.PayloadLen = uint16(min(declared, 65535))
	p.Payload = snap.Cut(p, payload)
}

func ipv6NextHeader(l gopacket.Layer) (uint8, bool) {
	switch l := l.(type) {
	case *layers.IPv6HopByHop:
		return uint8(l.NextHeader), true
	case *layers.IPv6Destination:
		return uint8(l.NextHeader), true
	case *layers.IPv6Routing:
		return uint8(l.NextHeader), true
	}
	return 0, false
}

// Capture yields the packets of a capture file, reusing one Packet as a source would.
func Capture(t testing.TB, path string, snap Snap) iter.Seq[*stages.Packet] {
	frames := readFrames(t, path)
	return func(yield func(*stages.Packet) bool) {
		var p stages.Packet
		for i, f := range frames {
			fillPacket(&p, f, uint64(i+1), snap)
			if !yield(&p) {
				return
			}
		}
	}
}

// PcapPath returns the path of a test capture, e.g. "chains/dns.pcap".
func PcapPath(t testing.TB, name string) string {
	return filepath.Join(repoDir(t, "testdata", "pcaps"), name)
}

// repoDir returns the directory elem of the repository this package is part of, failing t when
// it is not there.
func repoDir(t testing.TB, elem ...string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0) // .../stages/internal/stagestest/stagestest.go
	if !ok {
		t.Fatal("no source path for stagestest")
	}
	dir := filepath.Join(append([]string{filepath.Dir(file), "..", "..", ".."}, elem...)...)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("%s missing: the test data are part of the repository", dir)
	}
	return dir
}

// Replay yields copies of pkts through one reused Packet, as a source does.
func Replay(pkts []stages.Packet) iter.Seq[*stages.Packet] {
	return func(yield func(*stages.Packet) bool) {
		var p stages.Packet
		for i := range pkts {
			p = pkts[i]
			if !yield(&p) {
				return
			}
		}
	}
}

// TSharkDir is the directory of tshark's stored decodes, stages/testdata/tshark.
func TSharkDir(t testing.TB) string {
	return repoDir(t, "stages", "testdata", "tshark")
}

// TSV reads tshark's stored decode NAME: one line per frame, fields separated by '|'. The files
// are tshark's own decode of the test captures, made by stages/testdata/tshark/gen.sh.
func TSV(t testing.TB, name string) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(TSharkDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		rows = append(rows, strings.Split(sc.Text(), "|"))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// CPUTime is the CPU time (user and system, every thread: the garbage collector's too) the
// process used so far. On a busy machine it measures the work better than the wall clock.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportRate reports packets per second of wall-clock time and CPU nanoseconds per packet, for
// perOp packets in each of b.N rounds.
func ReportRate(b *testing.B, perOp int, wall, cpu time.Duration) {
	n := float64(b.N * perOp)
	b.ReportMetric(n/wall.Seconds(), "pkts/s")
	b.ReportMetric(float64(wall.Nanoseconds())/n, "ns/pkt")
	b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/pkt")
}

// Records is a mix of records as the chain benchmarks use them: TCP v4 out and in, UDP DNS,
// mDNS multicast, TCP v6, ICMP.
func Records() []stages.Packet {
	base := time.Unix(1441652914, 0)
	mk := func(src, dst string, proto uint8, sp, dp uint16, flags uint8) stages.Packet {
		p := stages.Packet{Time: base, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto,
			SrcPort: sp, DstPort: dp, TCPFlags: flags, L4HdrLen: 20, WireLen: 74, Iface: "eth0"}
		if p.Src.Is4() {
			p.EtherType, p.IPVersion = stages.EtherTypeIPv4, 4
		} else {
			p.EtherType, p.IPVersion = stages.EtherTypeIPv6, 6
		}
		return p
	}
	return []stages.Packet{
		mk("192.168.1.9", "54.164.252.174", stages.ProtoTCP, 51234, 443, stages.TCPSyn),
		mk("54.164.252.174", "192.168.1.9", stages.ProtoTCP, 443, 51234, stages.TCPSyn|stages.TCPAck),
		mk("192.168.1.9", "8.8.8.8", stages.ProtoUDP, 40000, 53, 0),
		mk("192.168.1.9", "224.0.0.251", stages.ProtoUDP, 5353, 5353, 0),
		mk("2001:4860:4860::8888", "fd00::9", stages.ProtoTCP, 443, 40001, stages.TCPAck|stages.TCPPsh),
		mk("192.168.1.9", "54.164.252.174", stages.ProtoTCP, 51234, 443, stages.TCPAck),
		mk("8.8.8.8", "192.168.1.9", stages.ProtoUDP, 53, 40000, 0),
		mk("192.168.1.20", "192.168.1.9", stages.ProtoICMP, 0, 0, 0),
	}
}

// Loop yields n packets cycling over pkts, copying each into one reused Packet, a microsecond
// apart.
func Loop(pkts []stages.Packet, n int) iter.Seq[*stages.Packet] {
	return func(yield func(*stages.Packet) bool) {
		var p stages.Packet
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

// Sink is what a chain benchmark writes to (a sinks.Sink).
type Sink interface {
	Write(p *stages.Packet) error
	Close() error
}

// BenchChain runs b.N of Records' packets through st into sink and reports millions of packets
// a second.
func BenchChain(b *testing.B, st stages.Stage, sink Sink) {
	pkts := Records()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for p := range st(Loop(pkts, b.N)) {
		if err := sink.Write(p); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if n != b.N {
		b.Fatal(n, b.N)
	}
	b.StopTimer()
	sink.Close()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// Addr parses an address or fails t.
func Addr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Split returns copies of a capture's packets before frame num (whole payloads), and frame
// num's TCP payload cut into segments of at most size bytes, in order, with their sequence
// numbers.
func Split(t testing.TB, pcap string, num uint64, size int) (before, segs []*stages.Packet) {
	t.Helper()
	before, whole := frameOf(t, pcap, num)
	if len(whole.Payload) <= size {
		t.Fatalf("%s frame %d: nothing to split", pcap, num)
	}
	var at []int
	for off := size; off < len(whole.Payload); off += size {
		at = append(at, off)
	}
	return before, cutAt(whole, at)
}

// Cut returns copies of a capture's packets before frame num (whole payloads), and frame num's
// TCP payload cut at the offsets at (ascending), as segments in order with their sequence
// numbers.
func Cut(t testing.TB, pcap string, num uint64, at ...int) (before, segs []*stages.Packet) {
	t.Helper()
	before, whole := frameOf(t, pcap, num)
	if len(at) > 0 && at[len(at)-1] >= len(whole.Payload) {
		t.Fatalf("%s frame %d: %d bytes, cut at %v", pcap, num, len(whole.Payload), at)
	}
	return before, cutAt(whole, at)
}

func frameOf(t testing.TB, pcap string, num uint64) (before []*stages.Packet, whole *stages.Packet) {
	t.Helper()
	for p := range Capture(t, PcapPath(t, pcap), FullSnap) {
		c := *p
		c.Payload = slices.Clone(p.Payload)
		if c.Num < num {
			before = append(before, &c)
		} else if c.Num == num {
			whole = &c
		}
	}
	if whole == nil || len(whole.Payload) == 0 {
		t.Fatalf("%s frame %d: no payload", pcap, num)
	}
	return before, whole
}

func cutAt(whole *stages.Packet, at []int) []*stages.Packet {
	var segs []*stages.Packet
	prev := 0
	for _, off := range append(at, len(whole.Payload)) {
		s := *whole
		s.Payload = whole.Payload[prev:off]
		s.PayloadLen = uint16(len(s.Payload))
		s.Seq = whole.Seq + uint32(prev)
		segs = append(segs, &s)
		prev = off
	}
	return segs
}

// SilentDNS is a UDP socket on loopback that reads DNS queries and never answers, for the
// life of t; it returns its address.
func SilentDNS(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}
