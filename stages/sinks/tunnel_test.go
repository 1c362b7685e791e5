package sinks

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/classify"
)

// tunnelled returns the example packet: TCP from 10.0.0.5 to 10.0.1.7 inside VXLAN 42
// between 192.0.2.1 and 192.0.2.2, with the tunnel t.
func tunnelled(t stages.Tunnel) stages.Packet {
	return stages.Packet{Time: time.Date(2015, 9, 7, 19, 8, 34, 0, time.UTC), IPVersion: 4, EtherType: stages.EtherTypeIPv4,
		Proto: stages.ProtoTCP, L4HdrLen: 20, SrcPort: 40000, DstPort: 80,
		Src: netip.MustParseAddr("10.0.0.5"), Dst: netip.MustParseAddr("10.0.1.7"), Tunnel: t}
}

var (
	tunA  = netip.MustParseAddr("192.0.2.1")
	tunB  = netip.MustParseAddr("192.0.2.2")
	tun6A = netip.MustParseAddr("2001:db8::1")
	tun6B = netip.MustParseAddr("2001:db8::2")
)

// TestNetWatchTunnels pins the net_watch line of a tunnelled packet for every kind of tunnel,
// written by hand from the example.
func TestNetWatchTunnels(t *testing.T) {
	c := classify.NewClassifier(nil, nil)
	pair := "2015-09-07 19:08:34 - TCP IP 10.0.0.5(internal) --> 10.0.1.7(internal)"
	cases := []struct {
		tun  stages.Tunnel
		want string
	}{
		{stages.Tunnel{Type: stages.TunnelVXLAN, Inner: stages.TunnelVXLAN, Depth: 1, Flags: stages.TunnelFlagEth, ID: 42, Src: tunA, Dst: tunB},
			pair + " [vxlan 42 via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelGeneve, Depth: 1, ID: 7, Src: tun6A, Dst: tun6B, Flags: stages.TunnelFlagIP6},
			pair + " [geneve 7 via 2001:db8::1 --> 2001:db8::2]"},
		{stages.Tunnel{Type: stages.TunnelGRE, Depth: 1, Src: tunA, Dst: tunB},
			pair + " [gre via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelGRE, Depth: 1, Flags: stages.TunnelFlagKey | stages.TunnelFlagSeq, ID: 7, Src: tunA, Dst: tunB},
			pair + " [gre key 7 via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelPPTP, Depth: 1, Flags: stages.TunnelFlagKey, ID: 4660, Src: tunA, Dst: tunB},
			pair + " [pptp call 4660 via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelERSPAN1, Depth: 1, Src: tunA, Dst: tunB},
			pair + " [erspan1 via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelERSPAN2, Depth: 1, ID: 77, Src: tunA, Dst: tunB},
			pair + " [erspan2 session 77 via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelGTPU, Depth: 1, ID: 99, Src: tunA, Dst: tunB},
			pair + " [gtpu teid 99 via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelIPIP, Depth: 1, Src: tunA, Dst: tunB}, pair + " [4in4 via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelIPIP, Depth: 1, Flags: stages.TunnelFlagIP6, Src: tun6A, Dst: tun6B},
			pair + " [4in6 via 2001:db8::1 --> 2001:db8::2]"},
		{stages.Tunnel{Type: stages.TunnelIP6, Depth: 1, Src: tunA, Dst: tunB}, pair + " [6in4 via 192.0.2.1 --> 192.0.2.2]"},
		{stages.Tunnel{Type: stages.TunnelGRE, Inner: stages.TunnelVXLAN, Depth: 2, Flags: stages.TunnelFlagKey, ID: 3, Src: tunA, Dst: tunB},
			pair + " [gre key 3 via 192.0.2.1 --> 192.0.2.2, 2 deep: vxlan]"},
	}
	s := NewNetWatch(nil, Options{UTC: true})
	for _, tc := range cases {
		p := tunnelled(tc.tun)
		c.Annotate(&p)
		if got := strings.TrimSuffix(string(s.AppendLine(nil, &p)), "\n"); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
	p := tunnelled(stages.Tunnel{Type: stages.TunnelIPIP, Inner: stages.TunnelIPIP, Depth: 3, Src: tunA, Dst: tunB})
	p.Status, p.BadLayer = stages.StatusUnsupported, stages.LayerTunnel
	c.Annotate(&p)
	if got, want := strings.TrimSuffix(string(s.AppendLine(nil, &p)), "\n"), pair+" [4in4 via 192.0.2.1 --> 192.0.2.2, 3 deep: ipip] [unsupported tunnel]"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestJSONTunnel: the tunnel object, read back with encoding/json; none without a tunnel.
func TestJSONTunnel(t *testing.T) {
	s := NewJSON(nil, Options{UTC: true})
	for _, tc := range []struct {
		tun  stages.Tunnel
		want string // the object's fields as a person reads them off the tunnel
	}{
		{stages.Tunnel{Type: stages.TunnelVXLAN, Inner: stages.TunnelVXLAN, Depth: 1, Flags: stages.TunnelFlagEth, ID: 42, Src: tunA, Dst: tunB},
			"vxlan 42 192.0.2.1 192.0.2.2 1  [eth]"},
		{stages.Tunnel{Type: stages.TunnelGRE, Inner: stages.TunnelGeneve, Depth: 2, Flags: stages.TunnelFlagKey | stages.TunnelFlagSeq, ID: 0, Src: tun6A, Dst: tun6B},
			"gre 0 2001:db8::1 2001:db8::2 2 geneve [key seq]"},
		{stages.Tunnel{Type: stages.TunnelIP6, Depth: 1, Flags: stages.TunnelFlagIP6, Src: tun6A, Dst: tun6B},
			"6in6 - 2001:db8::1 2001:db8::2 1  []"},
	} {
		p := tunnelled(tc.tun)
		line := s.AppendObject(nil, &p)
		var obj struct {
			Tunnel *struct {
				Type  string   `json:"type"`
				ID    *uint32  `json:"id"`
				Src   string   `json:"src"`
				Dst   string   `json:"dst"`
				Depth int      `json:"depth"`
				Inner string   `json:"inner"`
				Flags []string `json:"flags"`
			} `json:"tunnel"`
		}
		if err := json.Unmarshal(line, &obj); err != nil || obj.Tunnel == nil {
			t.Fatalf("%s: %v", line, err)
		}
		o := obj.Tunnel
		id := "-"
		if o.ID != nil {
			id = strconv.Itoa(int(*o.ID))
		}
		got := strings.Join([]string{o.Type, id, o.Src, o.Dst, strconv.Itoa(o.Depth), o.Inner, "[" + strings.Join(o.Flags, " ") + "]"}, " ")
		if got != tc.want {
			t.Errorf("%s\ngot  %s\nwant %s", line, got, tc.want)
		}
	}
	p := tunnelled(stages.Tunnel{})
	if line := string(s.AppendObject(nil, &p)); strings.Contains(line, "tunnel") {
		t.Errorf("a packet in no tunnel has one: %s", line)
	}
}

// TestLinkNames: an 802.3 frame named by its LLC header (IEEE 802.2, Cisco's SNAP protocol ids);
// the addresses a capture does not give print as "?(unknown)", "" in JSON.
func TestLinkNames(t *testing.T) {
	for want, payload := range map[string][]byte{
		"STP":  {0x42, 0x42, 0x03, 0, 0},
		"CDP":  {0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x00, 2},
		"DTP":  {0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x04},
		"SNAP": {0xaa, 0xaa, 0x03, 0x00, 0x80, 0xc2, 0x00, 0x07},
		"IPX":  {0xff, 0xff, 0, 0x30},
		"LLC":  {0x06, 0x06, 0x03},
	} {
		p := stages.Packet{EtherType: uint16(len(payload)), Payload: payload}
		if got := NetworkName(&p); got != want {
			t.Errorf("%x: %s, want %s", payload, got, want)
		}
	}
	p := stages.Packet{Time: time.Date(2015, 9, 7, 19, 8, 34, 0, time.UTC), EtherType: 0x88cc,
		SrcMAC: [6]byte{2, 0, 0, 0, 0, 1}, NoMAC: stages.NoDstMAC}
	if got, want := strings.TrimSuffix(string(NewNetWatch(nil, Options{UTC: true}).AppendLine(nil, &p)), "\n"),
		"2015-09-07 19:08:34 - LLDP 02:00:00:00:00:01(ethernet) --> ?(unknown)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	var obj struct{ Src, Dst string }
	if err := json.Unmarshal(NewJSON(nil, Options{UTC: true}).AppendObject(nil, &p), &obj); err != nil || obj.Src != "02:00:00:00:00:01" || obj.Dst != "" {
		t.Errorf("JSON src %q dst %q (%v)", obj.Src, obj.Dst, err)
	}
}

// TestPacketsTunnel: the packets view gives a tunnelled packet a Tunnel line after its
// timestamp, and none to a packet in no tunnel.
func TestPacketsTunnel(t *testing.T) {
	s := NewPackets(nil, Options{UTC: true})
	p := tunnelled(stages.Tunnel{Type: stages.TunnelVXLAN, Inner: stages.TunnelVXLAN, Depth: 1, Flags: stages.TunnelFlagEth, ID: 42, Src: tunA, Dst: tunB})
	lines := strings.Split(string(s.AppendBlock(nil, &p)), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "Timestamp: ") ||
		lines[1] != "Tunnel: [vxlan 42 via 192.0.2.1 --> 192.0.2.2] carrying Ethernet" ||
		!strings.HasPrefix(lines[2], "Ethernet Frame: ") {
		t.Errorf("block:\n%s", strings.Join(lines, "\n"))
	}
	p = tunnelled(stages.Tunnel{Type: stages.TunnelGTPU, Depth: 1, ID: 9, Src: tunA, Dst: tunB})
	if b := string(s.AppendBlock(nil, &p)); !strings.Contains(b, "\nTunnel: [gtpu teid 9 via 192.0.2.1 --> 192.0.2.2]\n") {
		t.Errorf("block:\n%s", b)
	}
	p = tunnelled(stages.Tunnel{})
	if b := string(s.AppendBlock(nil, &p)); strings.Contains(b, "Tunnel") {
		t.Errorf("a packet in no tunnel has a Tunnel line:\n%s", b)
	}
}
