package sensor_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Crafted captures of the link types the public ones leave out: Linux cooked frames that are
// not IP, raw-IP link types holding the other IP version, PPP in its framings, 802.11 frames
// the sensor skips, a big-endian NFLOG file, a pcapng file with an interface of an unsupported
// link type, and a pcap of one. TestCraftedLinkCaptures keeps the committed files equal to what
// the generators here make (-update rewrites them).

type craftedCapture struct {
	file string
	make func(t testing.TB) []byte
}

// pcapFile writes a pcap file of lt holding frames, one a second from a fixed time; order
// is the file's byte order (pcapgo writes only little-endian ones).
func pcapFile(t testing.TB, lt layers.LinkType, order binary.ByteOrder, frames ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	hdr := make([]byte, 24)
	order.PutUint32(hdr[0:], 0xa1b2c3d4)
	order.PutUint16(hdr[4:], 2)
	order.PutUint16(hdr[6:], 4)
	order.PutUint32(hdr[16:], 262144)
	order.PutUint32(hdr[20:], uint32(lt))
	b.Write(hdr)
	at := time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC).Unix()
	for i, f := range frames {
		rec := make([]byte, 16)
		order.PutUint32(rec[0:], uint32(at)+uint32(i))
		order.PutUint32(rec[8:], uint32(len(f)))
		order.PutUint32(rec[12:], uint32(len(f)))
		b.Write(rec)
		b.Write(f)
	}
	return b.Bytes()
}

func sll(pkttype, hatype uint16, addr []byte, proto uint16, payload []byte) []byte {
	h := make([]byte, 16)
	binary.BigEndian.PutUint16(h[0:], pkttype)
	binary.BigEndian.PutUint16(h[2:], hatype)
	binary.BigEndian.PutUint16(h[4:], uint16(len(addr)))
	copy(h[6:14], addr)
	binary.BigEndian.PutUint16(h[14:], proto)
	return append(h, payload...)
}

func sll2(proto uint16, pkttype uint8, addr []byte, payload []byte) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], proto)
	binary.BigEndian.PutUint32(h[4:], 3) // ifindex
	binary.BigEndian.PutUint16(h[8:], 1) // ARPHRD_ETHER
	h[10], h[11] = pkttype, uint8(len(addr))
	copy(h[12:20], addr)
	return append(h, payload...)
}

// lldp is an LLDP PDU: chassis id, port id, TTL, end.
var lldp = []byte{0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0x0a, 0x01, 0x04, 0x03, 0x05, 'p', '1', 0x06, 0x02, 0, 120, 0, 0}

// nflogTLV is one NFLOG TLV in byte order order, padded to 4 bytes.
func nflogTLV(order binary.ByteOrder, typ uint16, v []byte) []byte {
	b := make([]byte, 4, 4+len(v)+3)
	order.PutUint16(b[0:], uint16(4+len(v)))
	order.PutUint16(b[2:], typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// wifi builds an 802.11 frame: frame control, duration, three addresses, sequence control,
// then rest (a fourth address, QoS control, body).
func wifi(fc0, flags byte, a1, a2, a3 net.HardwareAddr, rest ...[]byte) []byte {
	b := append([]byte{fc0, flags, 0, 0}, a1...)
	b = append(append(b, a2...), a3...)
	b = append(b, 0x10, 0) // sequence 1, fragment 0
	for _, r := range rest {
		b = append(b, r...)
	}
	return b
}

// radiotap is a minimal radiotap header: version, pad, length 9, present = Flags, the flags.
func radiotap(flags byte) []byte { return []byte{0, 0, 9, 0, 2, 0, 0, 0, flags} }

var snapIPv4 = []byte{0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00}

func craftedCaptures() []craftedCapture {
	ipUDP := func(t testing.TB) []byte {
		return ser(t, ip4L("10.20.0.1", "10.20.0.2", layers.IPProtocolUDP), udpL(4000, 53), dnsQuery)
	}
	ip6UDP := func(t testing.TB) []byte {
		return ser(t, ip6L("2001:db8:20::1", "2001:db8:20::2", layers.IPProtocolUDP), udpL(4001, 53), dnsQuery)
	}
	bpdu := func(t testing.TB) []byte {
		return append([]byte{0x42, 0x42, 0x03}, ser(t, &layers.STP{RouteID: layers.STPSwitchID{Priority: 32768, HwAddr: craftMAC1},
			BridgeID: layers.STPSwitchID{Priority: 32768, HwAddr: craftMAC1}, MaxAge: 20 << 8, HelloTime: 2 << 8, FDelay: 15 << 8})...)
	}
	bssid := net.HardwareAddr{0x02, 0, 0, 0, 0xc, 0xc}
	return []craftedCapture{
		{"protocols/crafted_linux_sll_nonip.pcap", func(t testing.TB) []byte {
			return pcapFile(t, layers.LinkTypeLinuxSLL, binary.LittleEndian,
				sll(2, 1, craftMAC1, 0x88cc, lldp),     // LLDP, multicast, from craftMAC1
				sll(2, 1, craftMAC1, 0x0004, bpdu(t)),  // LINUX_SLL_P_802_2: an STP BPDU
				sll(0, 1, craftMAC3, 0x0800, ipUDP(t)), // IPv4 to us
				sll(4, 65534, nil, 0x0800, ipUDP(t)))   // outgoing on a device without addresses (tun)
		}},
		{"protocols/crafted_linux_sll2_nonip.pcap", func(t testing.TB) []byte {
			return pcapFile(t, layers.LinkTypeLinuxSLL2, binary.LittleEndian,
				sll2(0x88cc, 2, craftMAC2, lldp), sll2(0x86dd, 4, craftMAC2, ip6UDP(t)))
		}},
		{"protocols/crafted_raw_ipv6_holding_ipv4.pcap", func(t testing.TB) []byte {
			return pcapFile(t, layers.LinkTypeIPv6, binary.LittleEndian, ipUDP(t), ip6UDP(t))
		}},
		{"protocols/crafted_raw_ipv4_holding_ipv6.pcap", func(t testing.TB) []byte {
			return pcapFile(t, layers.LinkTypeIPv4, binary.LittleEndian, ip6UDP(t), ipUDP(t))
		}},
		{"protocols/crafted_ppp_hdlc.pcap", func(t testing.TB) []byte {
			return pcapFile(t, layers.LinkTypePPP_HDLC, binary.LittleEndian,
				append([]byte{0xff, 0x03, 0x00, 0x21}, ipUDP(t)...),
				append([]byte{0xff, 0x03, 0x21}, ipUDP(t)...),          // protocol field compressed
				append([]byte{0x0f, 0x00, 0x08, 0x00}, ipUDP(t)...),    // Cisco framing
				[]byte{0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x04}) // LCP configure-request
		}},
		{"protocols/crafted_ppp.pcap", func(t testing.TB) []byte {
			return pcapFile(t, layers.LinkTypePPP, binary.LittleEndian,
				append([]byte{0x00, 0x57}, ip6UDP(t)...), append([]byte{0x21}, ipUDP(t)...))
		}},
		{"protocols/crafted_ieee80211_radiotap.pcap", func(t testing.TB) []byte {
			data := append(append([]byte{}, snapIPv4...), ipUDP(t)...)
			fcs := make([]byte, 4)
			binary.LittleEndian.PutUint32(fcs, 0xdeadbeef)
			return pcapFile(t, layers.LinkTypeIEEE80211Radio, binary.LittleEndian,
				append(radiotap(0), wifi(0x08, 0x01, bssid, craftMAC1, craftMAC2, data)...),                                       // data, to DS
				append(radiotap(0x10), append(wifi(0x88, 0x02, craftMAC2, bssid, craftMAC1, []byte{0, 0}, data), fcs...)...),      // QoS data, from DS, FCS
				append(radiotap(0), wifi(0x88, 0x03, bssid, craftMAC3, craftMAC2, craftMAC1, []byte{0, 0}, data)...),              // WDS: four addresses
				append(radiotap(0), wifi(0x80, 0, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, bssid, bssid, make([]byte, 12))...), // beacon
				append(radiotap(0), wifi(0x08, 0x41, bssid, craftMAC1, craftMAC2, make([]byte, 40))...),                           // protected data
				append(radiotap(0), wifi(0x48, 0x01, bssid, craftMAC1, bssid)...),                                                 // null data
				append(radiotap(0), wifi(0x88, 0x01, bssid, craftMAC1, craftMAC2, []byte{0x80, 0}, data)...))                      // A-MSDU
		}},
		{"protocols/crafted_ieee80211.pcap", func(t testing.TB) []byte {
			data := append([]byte{0xaa, 0xaa, 0x03, 0, 0, 0, 0x86, 0xdd}, ip6UDP(t)...)
			return pcapFile(t, layers.LinkTypeIEEE802_11, binary.LittleEndian, wifi(0x08, 0x02, craftMAC2, bssid, craftMAC1, data))
		}},
		{"protocols/crafted_nflog_bigendian.pcap", func(t testing.TB) []byte {
			be := binary.BigEndian
			hwaddr := append([]byte{0, 6, 0, 0}, append(append([]byte{}, craftMAC4...), 0, 0)...)
			withAddr := append([]byte{2, 0, 0, 1}, append(nflogTLV(be, 10, []byte("log\x00")), append(nflogTLV(be, 8, hwaddr), nflogTLV(be, 9, ipUDP(t))...)...)...)
			noPacket := append([]byte{2, 0, 0, 1}, nflogTLV(be, 10, []byte("none\x00"))...)
			return pcapFile(t, layers.LinkType(239), be, withAddr, noPacket)
		}},
		{"protocols/crafted_pcapng_unsupported_interface.pcapng", func(t testing.TB) []byte {
			var b bytes.Buffer
			w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.NgWriterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			fr, _ := w.AddInterface(pcapgo.NgInterface{Name: "fr0", LinkType: layers.LinkTypeFRelay, SnapLength: 65535})
			eth1, _ := w.AddInterface(pcapgo.NgInterface{Name: "eth1", LinkType: layers.LinkTypeEthernet, SnapLength: 65535})
			at := time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)
			frame := ser(t, ethL(layers.EthernetTypeIPv4), ip4L("10.30.0.1", "10.30.0.2", layers.IPProtocolUDP), udpL(4002, 53), dnsQuery)
			for i, ifc := range []int{0, fr, 0, fr, eth1} {
				data := frame
				if ifc == fr {
					data = append([]byte{0x18, 0x41, 0x03, 0xcc}, frame[14:]...) // Q.922 address, UI, NLPID IP
				}
				ci := gopacket.CaptureInfo{Timestamp: at.Add(time.Duration(i) * time.Second), CaptureLength: len(data), Length: len(data), InterfaceIndex: ifc}
				if err := w.WritePacket(ci, data); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			return b.Bytes()
		}},
		{"malformed/crafted_linktype_frelay.pcap", func(t testing.TB) []byte {
			return pcapFile(t, layers.LinkTypeFRelay, binary.LittleEndian, []byte{0x18, 0x41, 0x03, 0xcc})
		}},
	}
}

func TestCraftedLinkCaptures(t *testing.T) {
	root := sensortest.Pcaps(t)
	for _, c := range craftedCaptures() {
		data := c.make(t)
		path := filepath.Join(root, c.file)
		if *update {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if have, err := os.ReadFile(path); err != nil || !bytes.Equal(have, data) {
			t.Errorf("%s is not what its generator makes (go test ./sensor -run TestCraftedLinkCaptures -update): %v", c.file, err)
		}
	}
}

// readAll returns the packets of a test capture through the twin, and what the capture skipped.
func readAll(t *testing.T, file string) ([]stages.Packet, map[string]uint64) {
	t.Helper()
	fh, err := os.Open(filepath.Join(sensortest.Pcaps(t), file))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	c, err := sensor.OpenCapture(fh)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	src := sensor.NewFileSource(c, sensor.NewTwin(sensor.Config{}), nil)
	var out []stages.Packet
	for p := range src.Packets() {
		q := *p
		q.Payload = bytes.Clone(p.Payload)
		out = append(out, q)
	}
	if err := src.Err(); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return out, c.Skipped()
}
