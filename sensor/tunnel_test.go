package sensor_test

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
)

// tsharkTunnel maps the protocol tshark names for a tunnel (sensortest.TSharkFrame.Tunnels)
// to the types the record may hold for it.
var tsharkTunnel = map[string][]stages.TunnelType{
	"ip":     {stages.TunnelIPIP},
	"ipv6":   {stages.TunnelIP6},
	"gre":    {stages.TunnelGRE, stages.TunnelPPTP, stages.TunnelERSPAN1, stages.TunnelERSPAN2, stages.TunnelERSPAN3},
	"vxlan":  {stages.TunnelVXLAN},
	"geneve": {stages.TunnelGeneve},
	"gtp":    {stages.TunnelGTPU},
}

// TestTunnelsAgainstTShark reads every capture in protocols/ with the twin (the kernel gives
// the same bytes: TestKernelMatchesTwin) and compares each record with tshark's decode: how
// many tunnels deep the packet is, the outermost tunnel's kind, endpoints and identifier
// (VNI, GRE key, PPTP call id, ERSPAN session, TEID), and the innermost packet's addresses
// and ports.
func TestTunnelsAgainstTShark(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(sensortest.Pcaps(t), "protocols", "*.pcap*"))
	twin := sensor.NewTwin(sensor.Config{})
	counts := map[string]int{}
	for _, path := range files {
		name := filepath.Base(path)
		if strings.Contains(name, "custom_blocks") {
			continue // tshark numbers its custom blocks as frames
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := sensor.OpenCapture(fh)
		if err != nil {
			fh.Close()
			t.Errorf("%s: %v", name, err)
			continue
		}
		byNum := map[int]sensortest.TSharkFrame{}
		for _, f := range sensortest.TShark(t, path, "vxlan.vni", "geneve.vni", "gre.key", "gre.key.call_id", "gtp.teid", "erspan.spanid") {
			byNum[f.Num] = f
		}
		for {
			f, err := c.Next()
			if err != nil {
				break
			}
			tf, ok := byNum[int(f.Num)]
			if !ok {
				continue
			}
			var p stages.Packet
			if err := (sensor.Decoder{}).Decode(twin.Parse(nil, f.Data, sensor.Meta{}), &p); err != nil {
				t.Fatalf("%s #%d: %v", name, f.Num, err)
			}
			if p.Status == stages.StatusMalformed && p.Tunnel.Depth == 0 && (p.BadLayer == stages.LayerIPv4 || p.BadLayer == stages.LayerIPv6) {
				continue // no IP header of the version the link layer says: tshark guesses on
			}
			checkTunnel(t, name, &p, tf, counts)
		}
		fh.Close()
	}
	t.Logf("compared: %v", counts)
	for _, k := range []string{"ip", "ipv6", "gre", "vxlan", "geneve", "gtp", "erspan1", "erspan2", "erspan3", "pptp", "2 deep", "3 deep", "inner ports"} {
		if counts[k] == 0 {
			t.Errorf("no %s compared", k)
		}
	}
}

func checkTunnel(t *testing.T, name string, p *stages.Packet, tf sensortest.TSharkFrame, counts map[string]int) {
	t.Helper()
	errorf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s #%d: "+format+" (tshark: %s)", append(append([]any{name, tf.Num}, args...), strings.Join(tf.Protocols, ":"))...)
	}
	tunnels, _ := tf.Tunnels()
	if int(p.Tunnel.Depth) != len(tunnels) {
		errorf("%d tunnels deep, tshark %d %v", p.Tunnel.Depth, len(tunnels), tunnels)
		return
	}
	for _, k := range tunnels {
		counts[k]++
	}
	if len(tunnels) > 0 {
		if p.Tunnel.Depth > 1 {
			counts[strconv.Itoa(int(p.Tunnel.Depth))+" deep"]++
		}
		kinds := tsharkTunnel[tunnels[0]]
		okKind := false
		for _, k := range kinds {
			okKind = okKind || p.Tunnel.Type == k
		}
		if !okKind {
			errorf("tunnel %v, tshark %s", p.Tunnel.Type, tunnels[0])
		}
		outer := tf.IPs[0]
		if p.Tunnel.Src.String() != outer.Src || p.Tunnel.Dst.String() != outer.Dst {
			errorf("tunnel %v -> %v, tshark %s -> %s", p.Tunnel.Src, p.Tunnel.Dst, outer.Src, outer.Dst)
		}
		field := map[stages.TunnelType]string{stages.TunnelVXLAN: "vxlan.vni", stages.TunnelGeneve: "geneve.vni",
			stages.TunnelGTPU: "gtp.teid", stages.TunnelPPTP: "gre.key.call_id",
			stages.TunnelERSPAN2: "erspan.spanid", stages.TunnelERSPAN3: "erspan.spanid"}[p.Tunnel.Type]
		if p.Tunnel.Type == stages.TunnelGRE && p.Tunnel.Flags&stages.TunnelFlagKey != 0 {
			field = "gre.key"
		}
		for _, k := range []stages.TunnelType{p.Tunnel.Type, p.Tunnel.Inner} {
			switch k {
			case stages.TunnelERSPAN1, stages.TunnelERSPAN2, stages.TunnelERSPAN3, stages.TunnelPPTP:
				counts[k.String()]++
			}
		}
		if field != "" {
			vals := tf.Fields[field]
			var want uint64
			if len(vals) > 0 {
				want, _ = strconv.ParseUint(vals[0], 0, 32)
			}
			if len(vals) == 0 || uint64(p.Tunnel.ID) != want {
				errorf("tunnel id %d, tshark %s %v", p.Tunnel.ID, field, vals)
			}
			counts["ids"]++
		}
	}
	ip, ports, ok := tf.Inner()
	if !ok || p.IPVersion == 0 {
		if ok != (p.IPVersion != 0) && p.Status == stages.StatusOK {
			errorf("IP version %d, tshark's innermost IP %+v", p.IPVersion, ip)
		}
		return
	}
	want := func(s string) netip.Addr { a, _ := netip.ParseAddr(s); return a }
	if p.Src != want(ip.Src) || p.Dst != want(ip.Dst) {
		errorf("%v -> %v, tshark %s -> %s", p.Src, p.Dst, ip.Src, ip.Dst)
	}
	if ports != nil && p.Status == stages.StatusOK && p.FragOff == 0 &&
		(p.Proto == stages.ProtoTCP && ports.Proto == "tcp" || p.Proto == stages.ProtoUDP && ports.Proto == "udp") {
		if strconv.Itoa(int(p.SrcPort)) != ports.Src || strconv.Itoa(int(p.DstPort)) != ports.Dst {
			errorf("ports %d -> %d, tshark %s -> %s", p.SrcPort, p.DstPort, ports.Src, ports.Dst)
		}
		if p.Tunnel.Depth > 0 {
			counts["inner ports"]++
		}
	}
}

// TestNoDecap: loaded with NoDecap, the programs and the twin enter no tunnel, and every
// record of the tunnel captures holds the outer packet, tshark's first IP header.
func TestNoDecap(t *testing.T) {
	var rep *sensor.Replayer
	if os.Geteuid() == 0 || os.Getenv("CHAINS_REQUIRE_BPF") == "1" {
		_, rep = loadWith(t, sensor.Config{NoDecap: true})
	}
	twin := sensor.NewTwin(sensor.Config{NoDecap: true})
	files, _ := filepath.Glob(filepath.Join(sensortest.Pcaps(t), "protocols", "*.pcap"))
	compared := 0
	for _, path := range files {
		name := filepath.Base(path)
		if !strings.HasPrefix(name, "tunnel_") && !strings.HasPrefix(name, "crafted_") {
			continue
		}
		tfs := sensortest.TShark(t, path)
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := sensor.OpenCapture(fh)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			f, err := c.Next()
			if err != nil {
				break
			}
			raw := twin.Parse(nil, f.Data, sensor.Meta{})
			var p stages.Packet
			if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
				t.Fatal(err)
			}
			if p.Tunnel.Depth != 0 {
				t.Errorf("%s #%d: entered a tunnel with NoDecap: %+v", name, f.Num, p.Tunnel)
			}
			if i < len(tfs) && len(tfs[i].IPs) > 0 && p.IPVersion != 0 {
				compared++
				if w := tfs[i].IPs[0]; p.Src.String() != w.Src || p.Dst.String() != w.Dst {
					t.Errorf("%s #%d: %v -> %v, tshark's outer %s -> %s", name, f.Num, p.Src, p.Dst, w.Src, w.Dst)
				}
			}
			if rep != nil && len(f.Data) >= 14 && len(f.Data) <= sensor.MaxReplayFrame {
				k, err := rep.Replay(f.Data, sensor.Meta{})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(k, raw) {
					t.Errorf("%s #%d: kernel %x\ntwin   %x", name, f.Num, k, raw)
				}
			}
		}
		fh.Close()
	}
	if compared < 100 {
		t.Errorf("only %d outer packets compared", compared)
	}
}
