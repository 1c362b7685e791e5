package stages

// Test helper: read a test capture with gopacket (pcapgo + layers) and fill Packets the way
// the sensor's records would, including its payload size policy. The stages must not care how
// packets were produced; this keeps the app-stage tests independent of the sensor package.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// pcapDir is the repository's testdata/pcaps.
func pcapDir(t testing.TB) string { return sensortest.Pcaps(t) }

// snapPolicy mirrors the kernel's payload policy: DNS ports, TLS handshake starts and HTTP heads
// get up to snapLarge bytes, other payloads snapSmall. snapLarge 0 keeps whole payloads.
type snapPolicy struct{ small, large int }

var kernelSnap = snapPolicy{small: 64, large: 4096}
var fullSnap = snapPolicy{}

func (s snapPolicy) cut(p *Packet, payload []byte) []byte {
	if s.large == 0 {
		return payload
	}
	dnsPort := func(port uint16) bool { return port == 53 || port == 5353 || port == 5355 }
	n := s.small
	if dnsPort(p.SrcPort) || dnsPort(p.DstPort) || p.Proto == ProtoTCP && len(payload) >= 4 && payload[0] == 0x16 && payload[1] == 3 {
		n = s.large
	}
	return payload[:min(n, len(payload))]
}

type capFrame struct {
	data []byte
	ci   gopacket.CaptureInfo
	lt   layers.LinkType
}

// readFrames returns every frame of a pcap or pcapng file.
func readFrames(t testing.TB, path string) []capFrame {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []capFrame
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
			out = append(out, capFrame{data: data, ci: ci, lt: lt})
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
		out = append(out, capFrame{data: data, ci: ci, lt: r.LinkType()})
	}
	return out
}

// fillPacket decodes one frame with gopacket into p (the outermost IP header and its transport).
func fillPacket(p *Packet, f capFrame, num uint64, snap snapPolicy) {
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
			p.IPVersion, p.EtherType = 4, EtherTypeIPv4
			p.Src, _ = netip.AddrFromSlice(l.SrcIP.To4())
			p.Dst, _ = netip.AddrFromSlice(l.DstIP.To4())
			p.Proto, p.TTL, p.IPLen, p.IPID = uint8(l.Protocol), l.TTL, l.Length, uint32(l.Id)
			p.FragOff = l.FragOffset
			if l.Flags&layers.IPv4MoreFragments != 0 || l.FragOffset != 0 {
				p.IPFlags |= IPFlagFragment
			}
		case *layers.IPv6:
			if p.IPVersion != 0 {
				continue
			}
			p.IPVersion, p.EtherType = 6, EtherTypeIPv6
			p.Src, _ = netip.AddrFromSlice(l.SrcIP)
			p.Dst, _ = netip.AddrFromSlice(l.DstIP)
			p.Proto, p.TTL, p.IPLen = uint8(l.NextHeader), l.HopLimit, l.Length
		case *layers.IPv6Fragment:
			if p.IPVersion == 6 && transport == nil {
				p.IPFlags |= IPFlagFragment
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
		p.Proto = ProtoTCP
		p.SrcPort, p.DstPort, p.Seq, p.Ack, p.Window = uint16(l.SrcPort), uint16(l.DstPort), l.Seq, l.Ack, l.Window
		var fl uint8
		for i, b := range []bool{l.FIN, l.SYN, l.RST, l.PSH, l.ACK, l.URG, l.ECE, l.CWR} {
			if b {
				fl |= 1 << i
			}
		}
		p.TCPFlags, p.L4HdrLen = fl, l.DataOffset*4
		payload = l.Payload
		if p.IPVersion == 4 && p.IPFlags&IPFlagFragment == 0 {
			if v4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				declared = int(v4.Length) - int(v4.IHL)*4 - int(l.DataOffset)*4
			}
		}
	case *layers.UDP:
		p.Proto = ProtoUDP
		p.SrcPort, p.DstPort, p.UDPLen, p.L4HdrLen = uint16(l.SrcPort), uint16(l.DstPort), l.Length, 8
		payload = l.Payload
		if l.Length >= 8 {
			declared = int(l.Length) - 8
		}
	case *layers.ICMPv4:
		p.Proto = ProtoICMP
		p.ICMPType, p.ICMPCode = l.TypeCode.Type(), l.TypeCode.Code()
		payload = l.Payload
	case *layers.ICMPv6:
		p.Proto = ProtoICMPv6
		p.ICMPType, p.ICMPCode = l.TypeCode.Type(), l.TypeCode.Code()
		payload = l.Payload
	}
	if declared < len(payload) {
		declared = len(payload)
	}
	p.PayloadLen = uint16(min(declared, 65535))
	p.Payload = snap.cut(p, payload)
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

// capturePackets yields the packets of a capture file, reusing one Packet as a source would.
func capturePackets(t testing.TB, path string, snap snapPolicy) iter.Seq[*Packet] {
	frames := readFrames(t, path)
	return func(yield func(*Packet) bool) {
		var p Packet
		for i, f := range frames {
			fillPacket(&p, f, uint64(i+1), snap)
			if !yield(&p) {
				return
			}
		}
	}
}

// pcapPath returns the path of a test capture, e.g. "chains/dns.pcap".
func pcapPath(t testing.TB, name string) string { return filepath.Join(pcapDir(t), name) }

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// readTSV reads tshark's stored decode testdata/tshark/NAME.
func readTSV(t *testing.T, name string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "tshark", name))
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		rows = append(rows, strings.Split(l, "|"))
	}
	return rows
}
