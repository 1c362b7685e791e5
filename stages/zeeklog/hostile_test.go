package zeeklog_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/miekg/dns"

	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
)

// writeDNSCapture writes a capture of one DNS query and its answer over UDP, made with
// gopacket and miekg/dns, for a question name given in presentation format.
func writeDNSCapture(t *testing.T, name string) string {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	q.Id = 0x1234
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
		A: net.IPv4(10, 0, 0, 53)})
	path := filepath.Join(t.TempDir(), "hostile.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	client, server := net.IPv4(10, 0, 0, 1), net.IPv4(10, 0, 0, 53)
	t0 := time.Unix(1700000000, 0)
	for i, m := range []*dns.Msg{q, r} {
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: client, DstIP: server}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
		if i == 1 {
			ip.SrcIP, ip.DstIP = server, client
			udp.SrcPort, udp.DstPort = 53, 40000
		}
		udp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(wire)); err != nil {
			t.Fatal(err)
		}
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}
		if err := w.WritePacket(ci, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestHostileDNSName: a question name with an escape sequence, a NUL, a newline and a byte
// that is not UTF-8 in its labels (on the wire, as raw bytes) reaches dns.log with those
// bytes as Zeek escapes them (\xNN), never raw; the file stays one valid line.
func TestHostileDNSName(t *testing.T) {
	pcap := writeDNSCapture(t, `a\027[2J\000b\010\255.example.`)
	dir := logsOf(t, pcap, zeeklog.Config{})
	b, err := os.ReadFile(filepath.Join(dir, "dns.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b[:len(b)-1] {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("raw control byte %#x in %q", c, b)
		}
	}
	recs := readLog(t, filepath.Join(dir, "dns.log"))
	if len(recs) != 1 {
		t.Fatalf("%d dns.log lines, want 1: %q", len(recs), b)
	}
	if got, want := recs[0].str("query"), `a\x1b[2J\x00b\x0a\xff.example`; got != want {
		t.Errorf("query %q, want %q", got, want)
	}
	if a, _ := recs[0]["answers"].([]any); len(a) != 1 || a[0] != "10.0.0.53" {
		t.Errorf("answers %v", recs[0]["answers"])
	}
}
