package sensor_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/gopacket/gopacket/layers"
)

// TestLinkTypeRefused: a capture of a link type the sensor cannot read is refused at open,
// naming the link type as gopacket does (not "UnknownLinkType").
func TestLinkTypeRefused(t *testing.T) {
	fh, err := os.Open(filepath.Join(sensortest.Pcaps(t), "malformed", "crafted_linktype_frelay.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	_, err = sensor.OpenCapture(fh)
	if !errors.Is(err, sensor.ErrUnsupportedLinkType) || !strings.Contains(err.Error(), "FRelay (107)") {
		t.Errorf("error %v, want one naming FRelay (107)", err)
	}
	for lt, name := range map[layers.LinkType]string{layers.LinkTypeFDDI: "FDDI", layers.LinkTypePPP_HDLC: "PPP_HDLC",
		layers.LinkTypeIEEE80211Radio: "IEEE80211Radio", layers.LinkType(239): "NFLOG", layers.LinkType(147): "link type 147"} {
		if got := sensor.LinkTypeName(lt); got != name {
			t.Errorf("LinkTypeName(%d) = %q, want %q", int(lt), got, name)
		}
	}
}

// TestLinkTypesAgainstTShark reads the captures of link types other than Ethernet through the
// twin and compares each packet's addresses with tshark's decode: the IP pair and ports, and
// the MACs where the link type gives them (802.11's destination and source by its DS bits,
// Linux cooked's source).
func TestLinkTypesAgainstTShark(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(sensortest.Pcaps(t), "protocols", "*.pcap*"))
	counts := map[string]int{}
	for _, path := range files {
		name := filepath.Base(path)
		if !strings.HasPrefix(name, "linktype_") && !(strings.HasPrefix(name, "crafted_") && name != "crafted_encapsulations.pcap") {
			continue
		}
		rel := filepath.Join("protocols", name)
		pk, _ := readAll(t, rel)
		byNum := map[int]sensortest.TSharkFrame{}
		for _, f := range sensortest.TShark(t, path, "wlan.da", "wlan.sa", "sll.src.eth") {
			byNum[f.Num] = f
		}
		for i := range pk {
			p := &pk[i]
			tf, ok := byNum[int(p.Num)]
			if !ok {
				t.Errorf("%s #%d: not a frame tshark shows", name, p.Num)
				continue
			}
			counts[tf.Protocols[0]]++
			if p.Status == stages.StatusOK || p.IPVersion != 0 && p.Status != stages.StatusMalformed {
				checkTunnel(t, name, p, tf, counts)
			}
			mac := func(field string) string {
				if v := tf.Fields[field]; len(v) > 0 {
					return v[0]
				}
				return ""
			}
			switch tf.Protocols[0] {
			case "radiotap", "wlan":
				if net.HardwareAddr(p.DstMAC[:]).String() != mac("wlan.da") || net.HardwareAddr(p.SrcMAC[:]).String() != mac("wlan.sa") || p.NoMAC != 0 {
					t.Errorf("%s #%d: %x -> %x, tshark %s -> %s", name, p.Num, p.SrcMAC, p.DstMAC, mac("wlan.sa"), mac("wlan.da"))
				}
				counts["802.11 MACs"]++
			case "sll":
				if src := mac("sll.src.eth"); src != "" && (net.HardwareAddr(p.SrcMAC[:]).String() != src || p.NoMAC != stages.NoDstMAC) ||
					src == "" && p.NoMAC != stages.NoSrcMAC|stages.NoDstMAC {
					t.Errorf("%s #%d: source %x (NoMAC %d), tshark %q", name, p.Num, p.SrcMAC, p.NoMAC, src)
				}
				counts["sll MACs"]++
			}
		}
	}
	t.Logf("compared: %v", counts)
	for _, k := range []string{"radiotap", "wlan", "sll", "nflog", "ppp", "chdlc", "802.11 MACs", "sll MACs"} {
		if counts[k] == 0 {
			t.Errorf("no %s compared", k)
		}
	}
}

// TestLinkTypeFrames checks the crafted captures' frames against the values their generators
// wrote, and what each skips.
func TestLinkTypeFrames(t *testing.T) {
	mac := func(m net.HardwareAddr) [6]byte { return [6]byte(m) }
	cases := []struct {
		file    string
		skipped map[string]uint64
		check   func(t *testing.T, pk []stages.Packet)
	}{
		{"crafted_linux_sll_nonip.pcap", nil, func(t *testing.T, pk []stages.Packet) {
			want(t, len(pk) == 4, "four packets", &pk[0])
			want(t, pk[0].EtherType == 0x88cc && pk[0].SrcMAC == mac(craftMAC1) && pk[0].DstMAC == [6]byte{} && pk[0].NoMAC == stages.NoDstMAC &&
				sinks.NetworkName(&pk[0]) == "LLDP", "LLDP: the source it gives, no destination", &pk[0])
			want(t, pk[1].EtherType < 0x0600 && sinks.NetworkName(&pk[1]) == "STP", "an 802.2 frame named by its LLC", &pk[1])
			want(t, pk[3].NoMAC == stages.NoSrcMAC|stages.NoDstMAC && pk[3].Dir == stages.DirOut && pk[3].DstPort == 53, "no link address at all", &pk[3])
		}},
		{"crafted_linux_sll2_nonip.pcap", nil, func(t *testing.T, pk []stages.Packet) {
			want(t, pk[0].EtherType == 0x88cc && pk[0].SrcMAC == mac(craftMAC2) && pk[0].NoMAC == stages.NoDstMAC, "SLL2 LLDP", &pk[0])
			want(t, pk[1].IPVersion == 6 && pk[1].Dir == stages.DirOut, "SLL2 IPv6 outgoing", &pk[1])
		}},
		{"crafted_raw_ipv6_holding_ipv4.pcap", nil, func(t *testing.T, pk []stages.Packet) {
			want(t, pk[0].Status == stages.StatusMalformed && pk[0].BadLayer == stages.LayerIPv6 && !pk[0].Src.IsValid(), "IPv4 under LINKTYPE_IPV6 is not valid", &pk[0])
			want(t, pk[1].Status == stages.StatusOK && pk[1].DstPort == 53, "IPv6 under LINKTYPE_IPV6", &pk[1])
		}},
		{"crafted_raw_ipv4_holding_ipv6.pcap", nil, func(t *testing.T, pk []stages.Packet) {
			want(t, pk[0].Status == stages.StatusMalformed && pk[0].BadLayer == stages.LayerIPv4, "IPv6 under LINKTYPE_IPV4 is not valid", &pk[0])
			want(t, pk[1].Status == stages.StatusOK, "IPv4 under LINKTYPE_IPV4", &pk[1])
		}},
		{"crafted_ppp_hdlc.pcap", nil, func(t *testing.T, pk []stages.Packet) {
			for i := 0; i < 3; i++ {
				want(t, pk[i].EtherType == 0x0800 && pk[i].DstPort == 53 && pk[i].NoMAC == stages.NoSrcMAC|stages.NoDstMAC, "IPv4 in PPP_HDLC (full, compressed, Cisco)", &pk[i])
			}
			want(t, pk[3].EtherType == 0x880b && len(pk[3].Payload) > 2 && pk[3].Payload[0] == 0xc0 && pk[3].Payload[1] == 0x21, "LCP: the PPP frame from its protocol field", &pk[3])
		}},
		{"crafted_ppp.pcap", nil, func(t *testing.T, pk []stages.Packet) {
			want(t, pk[0].IPVersion == 6 && pk[1].IPVersion == 4 && pk[1].DstPort == 53, "PPP without address and control, 2- and 1-byte protocols", &pk[0])
		}},
		{"crafted_ieee80211_radiotap.pcap", map[string]uint64{"802.11 management, control and null-data frames": 2,
			"802.11 protected (encrypted) data frames": 1, "802.11 A-MSDU and later-fragment data frames": 1}, func(t *testing.T, pk []stages.Packet) {
			want(t, len(pk) == 3, "three data frames", &pk[0])
			want(t, pk[0].DstMAC == mac(craftMAC2) && pk[0].SrcMAC == mac(craftMAC1) && pk[0].DstPort == 53, "to DS: DA is address 3", &pk[0])
			want(t, pk[1].DstMAC == mac(craftMAC2) && pk[1].SrcMAC == mac(craftMAC1) && pk[1].WireLen == uint32(14+28+len(dnsQuery)), "from DS, FCS dropped", &pk[1])
			want(t, pk[2].DstMAC == mac(craftMAC2) && pk[2].SrcMAC == mac(craftMAC1), "WDS: SA is address 4", &pk[2])
		}},
		{"crafted_nflog_bigendian.pcap", map[string]uint64{"NFLOG messages without a packet": 1}, func(t *testing.T, pk []stages.Packet) {
			want(t, len(pk) == 1 && pk[0].SrcMAC == mac(craftMAC4) && pk[0].NoMAC == stages.NoDstMAC && pk[0].DstPort == 53, "NFLOG TLVs in big-endian, NFULA_HWADDR", &pk[0])
		}},
		{"crafted_pcapng_unsupported_interface.pcapng", map[string]uint64{"packets of pcapng interface 1 (FRelay, link type 107, not supported)": 2}, func(t *testing.T, pk []stages.Packet) {
			want(t, len(pk) == 3 && pk[0].Num == 1 && pk[1].Num == 3 && pk[2].Num == 5 && pk[2].Iface == "eth1", "the other interfaces go on", &pk[0])
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			pk, skipped := readAll(t, filepath.Join("protocols", c.file))
			if len(pk) == 0 {
				t.Fatal("no packets")
			}
			if len(skipped) != len(c.skipped) {
				t.Errorf("skipped %v, want %v", skipped, c.skipped)
			}
			for k, n := range c.skipped {
				if skipped[k] != n {
					t.Errorf("skipped %v, want %v", skipped, c.skipped)
				}
			}
			c.check(t, pk)
		})
	}
}
