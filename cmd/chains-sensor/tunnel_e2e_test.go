package main

// End-to-end tests of tunnels: a real VXLAN device pair over the test veth, and GRE, ERSPAN,
// Geneve and IP-in-IP frames sent onto the veth from a packet socket (trafgen), since this
// kernel can make VXLAN devices but not GRE, Geneve or IPIP ones. The sensor is attached to
// the underlay veth; tcpdump captures the same veth, and tshark's decode of that capture is
// the oracle for the inner pairs the sensor must print.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// vxlanNet adds a VXLAN device (VNI 42, UDP 4789) on each side of the test veth: side A
// 10.99.42.1, side B 10.99.42.2.
func (tn *testNet) vxlanNet(t *testing.T) (innerA, innerB string) {
	t.Helper()
	innerA, innerB = "10.99.42.1", "10.99.42.2"
	for _, s := range []struct {
		ns                       *sensortest.Netns
		dev, local, remote, addr string
	}{
		{tn.A, tn.IfA, tn.V4A, tn.V4B, innerA}, {tn.B, tn.IfB, tn.V4B, tn.V4A, innerB},
	} {
		s.ns.MustRun(t, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", s.local,
			"remote", s.remote, "dstport", "4789", "dev", s.dev)
		s.ns.MustRun(t, "ip", "addr", "add", s.addr+"/24", "dev", "vx0")
		s.ns.MustRun(t, "ip", "link", "set", "vx0", "up")
	}
	for i := 0; ; i++ {
		if _, err := tn.inB(t, 5*time.Second, "ping", "-c1", "-W1", innerA); err == nil {
			return innerA, innerB
		}
		if i == 20 {
			t.Fatal("the VXLAN pair does not carry traffic")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// innerNginx serves on addr:80 in namespace A.
func (tn *testNet) innerNginx(t *testing.T, addr string) {
	t.Helper()
	sensortest.RequireTools(t, "nginx", "curl")
	dir := filepath.Join(tn.dir, "inner-nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s:80;
		location / { return 200 "hello through the tunnel\n"; }
	}
}
`, dir, addr)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	tn.startA(t, "nginx", "-c", conf, "-p", dir, "-e", "stderr")
	for i := 0; ; i++ {
		if out, err := tn.inB(t, 5*time.Second, "curl", "-s", "-m", "1", "http://"+addr+"/"); err == nil && strings.Contains(out, "hello") {
			return
		}
		if i == 30 {
			t.Fatal("nginx does not answer through the tunnel")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// capture runs tcpdump on side A's veth until the returned function is called; it returns
// the file.
func (tn *testNet) capture(t *testing.T, name string) (string, func()) {
	t.Helper()
	sensortest.RequireTools(t, "tcpdump")
	file := filepath.Join(tn.dir, name)
	p := tn.startA(t, "tcpdump", "--immediate-mode", "-Z", "root", "-U", "-s", "0", "-i", tn.IfA, "-w", file)
	for i := 0; ; i++ {
		if st, err := os.Stat(file); err == nil && st.Size() > 0 {
			break
		}
		if i == 100 {
			t.Fatal("tcpdump did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return file, func() {
		p.Process.Signal(syscall.SIGINT)
		if !p.WaitFor(5 * time.Second) {
			p.Process.Kill()
		}
	}
}

// tunnelTuple is what a tunnelled packet's line says of its inner packet.
type tunnelTuple struct{ src, dst, proto, sport, dport string }

// innerTuples returns, for every frame of file that tshark decodes as tunnelled, the inner
// packet's addresses, transport and ports.
func innerTuples(t *testing.T, file string) map[tunnelTuple]int {
	t.Helper()
	want := map[tunnelTuple]int{}
	for _, f := range sensortest.TShark(t, file) {
		if tunnels, _ := f.Tunnels(); len(tunnels) == 0 {
			continue
		}
		ip, ports, ok := f.Inner()
		if !ok {
			continue
		}
		k := tunnelTuple{src: ip.Src, dst: ip.Dst}
		_, at := f.Tunnels()
		for _, p := range f.Protocols[at:] {
			if name, ok := map[string]string{"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "icmpv6": "ICMP6"}[p]; ok {
				k.proto = name
				break
			}
		}
		if ports != nil {
			k.sport, k.dport = ports.Src, ports.Dst
		}
		want[k]++
	}
	return want
}

// jsonTuples returns the same of the sensor's JSON lines, and checks each inner address's class.
func jsonTuples(t *testing.T, lines []string, internal func(string) bool) map[tunnelTuple]int {
	t.Helper()
	got := map[tunnelTuple]int{}
	for _, l := range lines {
		var p jsonPacket
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		k := tunnelTuple{src: p.Src, dst: p.Dst, proto: p.Proto}
		if p.Proto == "TCP" || p.Proto == "UDP" {
			k.sport, k.dport = fmt.Sprint(p.Sport), fmt.Sprint(p.Dport)
		}
		got[k]++
		if internal(p.Src) && (p.SrcDom != "internal" || p.DstDom != "internal") {
			t.Errorf("%s -> %s: classes %s, %s; want internal", p.Src, p.Dst, p.SrcDom, p.DstDom)
		}
	}
	return got
}

// compareTuples: every inner packet tshark found in the capture between the test's own
// addresses (keep: not the IPv6 chatter of an interface coming up before the sensor did) the
// sensor printed too.
func compareTuples(t *testing.T, want, got map[tunnelTuple]int, keep func(string) bool, atLeast int) {
	t.Helper()
	n := 0
	for k, c := range want {
		if !keep(k.src) || !keep(k.dst) {
			continue
		}
		n += c
		if got[k] < c {
			t.Errorf("tshark: %d tunnelled %+v, the sensor printed %d", c, k, got[k])
		}
	}
	if n < atLeast {
		t.Errorf("only %d tunnelled packets in the capture, want %d or more", n, atLeast)
	}
	t.Logf("%d tunnelled packets, all printed with their inner pair", n)
}

// TestE2EVXLAN: ping and curl between two VXLAN devices over the veth; the sensor on the veth
// prints the inner pairs with their classes (every tunnelled packet tshark finds in tcpdump's
// capture of the veth), not the tunnel's UDP; the urlwatch view shows the inner HTTP request;
// with --no-decap the lines are the underlay's UDP.
func TestE2EVXLAN(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	innerA, innerB := tn.vxlanNet(t)
	tn.innerNginx(t, innerA)
	inner := func(a string) bool { return a == innerA || a == innerB }

	pcap, stopDump := tn.capture(t, "vxlan.pcap")
	sp := tn.startSensor(t, bin, "-n", "-o", "json", tn.IfA)
	if out, err := tn.inB(t, 10*time.Second, "ping", "-c3", "-i0.2", "-W2", innerA); err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, out)
	}
	if out, err := tn.inB(t, 10*time.Second, "curl", "-s", "-m", "3", "-H", "Host: inner.test", "http://"+innerA+"/through"); err != nil || !strings.Contains(out, "tunnel") {
		t.Fatalf("curl through the tunnel: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	stopDump()
	sp.counters(t)
	got := jsonTuples(t, sp.output(), inner)
	compareTuples(t, innerTuples(t, pcap), got, inner, 10)
	for _, k := range []tunnelTuple{{innerB, innerA, "ICMP", "", ""}, {innerA, innerB, "ICMP", "", ""}} {
		if got[k] < 3 {
			t.Errorf("%d lines of %+v, want 3 (the pings)", got[k], k)
		}
	}
	tcp := 0
	for k, n := range got {
		if k.proto == "TCP" && inner(k.src) && inner(k.dst) {
			tcp += n
		}
		if k.proto == "UDP" && k.dport == "4789" {
			t.Errorf("%d lines show the tunnel's UDP %+v instead of what it carries", n, k)
		}
	}
	if tcp < 6 {
		t.Errorf("%d inner TCP lines, want a handshake, a request, a response, a close", tcp)
	}
	// Each inner packet names its tunnel: VNI 42 between the underlay's two addresses.
	for _, l := range sp.output() {
		var p jsonPacket
		if err := json.Unmarshal([]byte(l), &p); err != nil || !inner(p.Src) {
			continue
		}
		tun := p.Tunnel
		under := map[string]string{innerA: tn.V4A, innerB: tn.V4B}
		if tun == nil || tun.Type != "vxlan" || tun.ID == nil || *tun.ID != 42 || tun.Depth != 1 ||
			tun.Src != under[p.Src] || tun.Dst != under[p.Dst] || strings.Join(tun.Flags, ",") != "eth" {
			t.Errorf("inner %s -> %s: tunnel %+v, want vxlan 42 via %s --> %s, depth 1, flags [eth]\n%s",
				p.Src, p.Dst, tun, under[p.Src], under[p.Dst], l)
		}
	}
	tn.assertDetached(t)

	// net_watch puts the tunnel after the inner pair.
	sp = tn.startSensor(t, bin, "-n", tn.IfA)
	if out, err := tn.inB(t, 10*time.Second, "ping", "-c2", "-i0.2", "-W2", innerA); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	text := strings.Join(sp.output(), "\n")
	for _, want := range []string{
		"ICMP IP " + innerB + "(internal) --> " + innerA + "(internal) [vxlan 42 via " + tn.V4B + " --> " + tn.V4A + "]",
		"ICMP IP " + innerA + "(internal) --> " + innerB + "(internal) [vxlan 42 via " + tn.V4A + " --> " + tn.V4B + "]",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("net_watch lacks %q:\n%s", want, text)
		}
	}

	// The urlwatch view sees the HTTP request inside the tunnel.
	sp = tn.startSensor(t, bin, "-n", "--view", "urlwatch", tn.IfA)
	if out, err := tn.inB(t, 10*time.Second, "curl", "-s", "-m", "3", "-A", "vxlan-e2e/1", "-H", "Host: inner.test", "http://"+innerA+"/through"); err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	url := strings.Join(sp.output(), "\n")
	if !strings.Contains(url, `GET http://inner.test/through ua="vxlan-e2e/1"`) || !strings.Contains(url, "200 OK") {
		t.Errorf("urlwatch lacks the inner request and its response:\n%s", url)
	}

	// --no-decap: the underlay's UDP, as before tunnels were entered.
	sp = tn.startSensor(t, bin, "-n", "-o", "json", "--no-decap", tn.IfA)
	if out, err := tn.inB(t, 10*time.Second, "ping", "-c2", "-i0.2", "-W2", innerA); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	outer := 0
	for k, n := range jsonTuples(t, sp.output(), inner) {
		if inner(k.src) || inner(k.dst) {
			t.Errorf("--no-decap printed an inner pair: %+v", k)
		}
		if k.proto == "UDP" && k.dport == "4789" && (k.src == tn.V4B || k.src == tn.V4A) {
			outer += n
		}
	}
	if outer < 4 {
		t.Errorf("--no-decap: %d lines of the underlay's UDP 4789, want the 2 pings each way", outer)
	}
}

// tunnelFrames builds, with gopacket, frames from B's veth to A's of every tunnel the kernel
// here cannot make a device of, each carrying an inner packet between 10.50.N.2 and 10.50.N.1.
func (tn *testNet) tunnelFrames(t *testing.T) [][]byte {
	t.Helper()
	srcMAC, _ := net.ParseMAC(macOf(t, tn.B, tn.IfB))
	dstMAC, _ := net.ParseMAC(macOf(t, tn.A, tn.IfA))
	eth := func(et layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: et}
	}
	ip4 := func(src, dst string, p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	}
	outer := func(p layers.IPProtocol) *layers.IPv4 { return ip4(tn.V4B, tn.V4A, p) }
	innerEth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0x50, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0x50, 1}, EthernetType: layers.EthernetTypeIPv4}
	udp := func(sport, dport uint16) *layers.UDP {
		return &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, SYN: true, DataOffset: 5, Window: 1024}
	ser := func(ls ...gopacket.SerializableLayer) []byte {
		b := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(b, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), b.Bytes()...)
	}
	payload := gopacket.Payload("tunnelled")
	return [][]byte{
		ser(eth(layers.EthernetTypeIPv4), outer(layers.IPProtocolGRE), &layers.GRE{KeyPresent: true, Key: 7, Protocol: layers.EthernetTypeIPv4},
			ip4("10.50.1.2", "10.50.1.1", layers.IPProtocolUDP), udp(5001, 53), payload),
		ser(eth(layers.EthernetTypeIPv4), outer(layers.IPProtocolGRE), &layers.GRE{SeqPresent: true, Seq: 1, Protocol: layers.EthernetTypeTransparentEthernetBridging},
			innerEth, ip4("10.50.2.2", "10.50.2.1", layers.IPProtocolTCP), tcp),
		ser(eth(layers.EthernetTypeIPv4), outer(layers.IPProtocolGRE), &layers.GRE{SeqPresent: true, Seq: 2, Protocol: layers.EthernetTypeERSPAN},
			&layers.ERSPANII{Version: 1, SessionID: 9}, innerEth, ip4("10.50.3.2", "10.50.3.1", layers.IPProtocolUDP), udp(5003, 123), payload),
		ser(eth(layers.EthernetTypeIPv4), outer(layers.IPProtocolUDP), udp(50000, 6081), &layers.Geneve{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: 77},
			innerEth, ip4("10.50.4.2", "10.50.4.1", layers.IPProtocolUDP), udp(5004, 514), payload),
		ser(eth(layers.EthernetTypeIPv4), outer(layers.IPProtocolIPv4), ip4("10.50.5.2", "10.50.5.1", layers.IPProtocolUDP), udp(5005, 161), payload),
	}
}

// trafgenConfig writes frames as a trafgen configuration, one packet each.
func trafgenConfig(t *testing.T, dir string, frames [][]byte) string {
	t.Helper()
	var b strings.Builder
	for _, f := range frames {
		b.WriteString("{\n")
		for i, c := range f {
			fmt.Fprintf(&b, "0x%02x,", c)
			if i%16 == 15 {
				b.WriteString("\n")
			}
		}
		b.WriteString("\n}\n")
	}
	cfg := filepath.Join(dir, "tunnels.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestE2ETunnelFrames: GRE (with a key, with TEB), ERSPAN II, Geneve and IP-in-IP frames sent
// onto the veth from a packet socket are printed with their inner pairs, as tshark decodes
// tcpdump's capture of them.
func TestE2ETunnelFrames(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "trafgen")
	bin := buildSensor(t)
	frames := tn.tunnelFrames(t)
	cfg := trafgenConfig(t, tn.dir, frames)
	pcap, stopDump := tn.capture(t, "tunnels.pcap")
	sp := tn.startSensor(t, bin, "-n", "-o", "json", "--direction", "in", tn.IfA)
	if out, err := tn.inB(t, 30*time.Second, "trafgen", "--dev", tn.IfB, "--conf", cfg, "--cpus", "1", "-n", fmt.Sprint(2*len(frames)), "-q"); err != nil {
		t.Fatalf("trafgen: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	stopDump()
	ours := func(a string) bool { return strings.HasPrefix(a, "10.50.") }
	got := jsonTuples(t, sp.output(), ours)
	compareTuples(t, innerTuples(t, pcap), got, ours, 2*len(frames))
	for n := 1; n <= len(frames); n++ {
		found := 0
		for k, c := range got {
			if k.src == fmt.Sprintf("10.50.%d.2", n) && k.dst == fmt.Sprintf("10.50.%d.1", n) {
				found += c
			}
		}
		if found != 2 {
			t.Errorf("frame %d: %d lines with its inner pair 10.50.%d.2 -> 10.50.%d.1, want 2", n, found, n, n)
		}
	}
	// The tunnel each frame came through, as the JSON names it.
	want := map[string]string{"10.50.1.2": "gre 7", "10.50.2.2": "gre -", "10.50.3.2": "erspan2 9",
		"10.50.4.2": "geneve 77", "10.50.5.2": "4in4 -"}
	for _, l := range sp.output() {
		var p jsonPacket
		if err := json.Unmarshal([]byte(l), &p); err != nil || !ours(p.Src) {
			continue
		}
		got := "none"
		if tun := p.Tunnel; tun != nil {
			id := "-"
			if tun.ID != nil {
				id = fmt.Sprint(*tun.ID)
			}
			got = tun.Type + " " + id
			if tun.Src != tn.V4B || tun.Dst != tn.V4A || tun.Depth != 1 {
				t.Errorf("%s: tunnel %+v, want via %s --> %s, depth 1", p.Src, tun, tn.V4B, tn.V4A)
			}
		}
		if got != want[p.Src] {
			t.Errorf("%s: tunnel %q, want %q\n%s", p.Src, got, want[p.Src], l)
		}
	}
}
