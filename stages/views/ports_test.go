package views

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// tsharkPorts returns, per frame number, the source port tshark reads from the outer TCP or
// UDP header ("" for none), IP fragments left unreassembled.
func tsharkPorts(t *testing.T, file string) map[uint64]string {
	t.Helper()
	path, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed")
	}
	out, err := exec.Command(path, "-r", file, "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-T", "fields",
		"-E", "separator=|", "-E", "occurrence=f", "-e", "frame.number", "-e", "tcp.srcport", "-e", "udp.srcport").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", file, err)
	}
	ports := map[uint64]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "|")
		n, _ := strconv.ParseUint(f[0], 10, 64)
		ports[n] = f[1] + f[2]
	}
	return ports
}

// jsonLines runs file, read as the sensor reads it, through the net_watch view with -o json.
func jsonLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	b, err := Build(&Config{NoDNS: true, UTC: true, Format: sinks.FormatJSON}, sinks.NewOutput(&buf, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(stagestest.Replay(readPackets(t, file))); err != nil {
		t.Fatal(err)
	}
	b.Close()
	var objs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var o map[string]any
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		objs = append(objs, o)
	}
	return objs
}

// TestJSONPortsOnlyWhereThere: a packet's JSON has sport and dport exactly when tshark reads a
// TCP or UDP header with ports (ICMP, ARP and later fragments have none: no "port 0"), with
// tshark's values; and a UDP datagram from port 0 says "sport":0.
func TestJSONPortsOnlyWhereThere(t *testing.T) {
	files := []string{"protocols/icmp_echo.pcap", "protocols/arp_who_has.pcap", "protocols/ipv4_fragments_udp.pcap",
		"protocols/ipv6_fragmented_dns.pcap", "chains/http.pcap"}
	files = append(files, portZeroCapture(t))
	for _, name := range files {
		file := name
		if !filepath.IsAbs(file) {
			file = stagestest.PcapPath(t, name)
		}
		want := tsharkPorts(t, file)
		without := 0
		for _, o := range jsonLines(t, file) {
			num := uint64(o["num"].(float64))
			sport, has := o["sport"]
			_, hasD := o["dport"]
			if has != hasD {
				t.Errorf("%s #%d: sport %v, dport %v", name, num, has, hasD)
			}
			switch {
			case want[num] == "" && has:
				t.Errorf("%s #%d (%v): sport %v, tshark reads no port", name, num, o["proto"], sport)
			case want[num] != "" && !has:
				t.Errorf("%s #%d (%v): no sport, tshark reads %s", name, num, o["proto"], want[num])
			case has && strconv.Itoa(int(sport.(float64))) != want[num]:
				t.Errorf("%s #%d: sport %v, tshark %s", name, num, sport, want[num])
			case !has:
				without++
			}
		}
		if strings.HasSuffix(name, "fragments_udp.pcap") && without == 0 {
			t.Errorf("%s: every packet has ports; tshark shows later fragments without", name)
		}
	}
}

// portZeroCapture writes a capture of one UDP datagram from port 0 to port 9 (made here with
// gopacket).
func portZeroCapture(t *testing.T) string {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)}
	udp := &layers.UDP{SrcPort: 0, DstPort: 9}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("zero")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "udp_port0.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	data := buf.Bytes()
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(data), Length: len(data)}, data); err != nil {
		t.Fatal(err)
	}
	return path
}
