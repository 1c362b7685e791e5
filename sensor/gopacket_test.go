package sensor_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TestTwinAgreesWithGopacket decodes every frame of every test capture with gopacket, an
// independent decoder, and compares what both read. Together with TestKernelMatchesTwin this
// checks the kernel programs' fields too.
func TestTwinAgreesWithGopacket(t *testing.T) {
	twin := sensor.NewTwin(sensor.Config{})
	counts := map[string]int{}
	eachFrame(t, func(name string, f *sensor.Frame) {
		var p stages.Packet
		if err := (sensor.Decoder{}).Decode(twin.Parse(nil, f.Data, sensor.Meta{}), &p); err != nil {
			t.Fatalf("%s #%d: %v", name, f.Num, err)
		}
		g := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.NoCopy)
		fail := func(what string, got, want any) {
			t.Helper()
			t.Errorf("%s #%d %s: ours %v, gopacket %v", name, f.Num, what, got, want)
		}
		// The packet the record describes is the innermost the parser entered: the IP header
		// after as many as it went through tunnels, and the Ethernet header and tags before
		// it. Where gopacket does not enter a tunnel (ERSPAN I and III, PPTP) it has fewer IP
		// layers, and there is nothing to compare.
		all := g.Layers()
		var ips []int
		for i, l := range all {
			if l.LayerType() == layers.LayerTypeIPv4 || l.LayerType() == layers.LayerTypeIPv6 {
				ips = append(ips, i)
			}
		}
		depth := int(p.Tunnel.Depth)
		if depth > 0 {
			counts["tunnel"]++
			if len(ips) <= depth {
				counts["tunnel not entered by gopacket"]++
				return
			}
			if src, _ := netip.AddrFromSlice(ipSrc(all[ips[0]])); src.Unmap() != p.Tunnel.Src {
				fail("tunnel source", p.Tunnel.Src, src)
			}
		}
		from, to := 0, len(all) // the layers of the packet the record describes
		if len(ips) > depth {
			to = ips[depth] + 1
			if depth > 0 {
				from = ips[depth-1] + 1
			}
		} else if depth > 0 {
			from = ips[len(ips)-1] + 1
		}
		// The link header is the last Ethernet header before that IP header: an IP-in-IP or
		// GRE tunnel carries none, and the outer one stays.
		var eth *layers.Ethernet
		var vlans []uint16
		for _, l := range all[:to] {
			switch l := l.(type) {
			case *layers.Ethernet:
				vlans = nil
				eth = l
			case *layers.Dot1Q:
				if len(vlans) < 4 {
					tci := uint16(l.Priority)<<13 | l.VLANIdentifier
					if l.DropEligible {
						tci |= 1 << 12
					}
					vlans = append(vlans, tci)
				}
			}
		}
		if eth != nil {
			counts["ethernet"]++
			if string(eth.SrcMAC) != string(p.SrcMAC[:]) || string(eth.DstMAC) != string(p.DstMAC[:]) {
				fail("MACs", p.SrcMAC, eth.SrcMAC)
			}
		}
		if len(vlans) > 0 {
			counts["vlan"]++
			if int(p.VLANCount) != len(vlans) || !slices.Equal(p.VLANs[:p.VLANCount], vlans) {
				fail("VLANs", p.VLANs[:p.VLANCount], vlans)
			}
		}
		if a, ok := g.Layer(layers.LayerTypeARP).(*layers.ARP); ok && p.Status == stages.StatusOK && depth == 0 {
			counts["arp"]++
			src, _ := netip.AddrFromSlice(a.SourceProtAddress)
			dst, _ := netip.AddrFromSlice(a.DstProtAddress)
			if p.ARPOp != a.Operation || p.Src != src || p.Dst != dst {
				fail("ARP", []any{p.ARPOp, p.Src, p.Dst}, []any{a.Operation, src, dst})
			}
		}
		// Malformed headers are where decoders legitimately differ (gopacket repairs an IPv4
		// total length of 0, for one); the malformed statuses are tested on their own.
		var transport gopacket.Layer
		seenIP := p.IPVersion == 0 || p.Status == stages.StatusMalformed
		for _, l := range all[max(from, to-1):] {
			switch ip := l.(type) {
			case *layers.IPv4:
				if seenIP || ip.SrcIP == nil { // nil: gopacket failed on the options
					seenIP = true
					break
				}
				seenIP = true
				counts["ipv4"]++
				src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
				dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
				proto := ip.Protocol
				if ah, ok := g.Layer(layers.LayerTypeIPSecAH).(*layers.IPSecAH); ok && proto == layers.IPProtocolAH {
					proto = ah.NextHeader // the record's protocol is what follows AH
				}
				if p.IPVersion != 4 || p.Src != src || p.Dst != dst || p.TTL != ip.TTL || p.TOS != ip.TOS ||
					p.IPLen != ip.Length || uint16(p.IPID) != ip.Id || p.FragOff != ip.FragOffset || p.Proto != uint8(proto) {
					fail("IPv4", []any{p.Src, p.Dst, p.TTL, p.TOS, p.IPLen, p.IPID, p.FragOff, p.Proto},
						[]any{src, dst, ip.TTL, ip.TOS, ip.Length, ip.Id, ip.FragOffset, proto})
				}
				if (p.IPFlags&stages.IPFlagDF != 0) != (ip.Flags&layers.IPv4DontFragment != 0) ||
					(p.IPFlags&stages.IPFlagMF != 0) != (ip.Flags&layers.IPv4MoreFragments != 0) {
					fail("IPv4 flags", p.IPFlags, ip.Flags)
				}
			case *layers.IPv6:
				if seenIP {
					break
				}
				seenIP = true
				counts["ipv6"]++
				src, _ := netip.AddrFromSlice(ip.SrcIP)
				dst, _ := netip.AddrFromSlice(ip.DstIP)
				if p.IPVersion != 6 || p.Src != src || p.Dst != dst || p.TTL != ip.HopLimit || p.TOS != ip.TrafficClass ||
					p.FlowLabel != ip.FlowLabel || p.IPLen != ip.Length {
					fail("IPv6", []any{p.Src, p.Dst, p.TTL, p.TOS, p.FlowLabel, p.IPLen},
						[]any{src, dst, ip.HopLimit, ip.TrafficClass, ip.FlowLabel, ip.Length})
				}
			case *layers.TCP, *layers.UDP, *layers.ICMPv4, *layers.ICMPv6:
				if seenIP && transport == nil {
					transport = l
				}
			}
		}
		if p.Status != stages.StatusOK || transport == nil {
			return
		}
		switch l := transport.(type) {
		case *layers.TCP:
			if p.Proto != 6 {
				return // a tunnel's inner TCP
			}
			counts["tcp"]++
			flags := uint8(0)
			for i, b := range []bool{l.FIN, l.SYN, l.RST, l.PSH, l.ACK, l.URG, l.ECE, l.CWR} {
				if b {
					flags |= 1 << i
				}
			}
			if p.SrcPort != uint16(l.SrcPort) || p.DstPort != uint16(l.DstPort) || p.Seq != l.Seq || p.Ack != l.Ack ||
				p.Window != l.Window || p.TCPFlags != flags || p.L4HdrLen != l.DataOffset*4 {
				fail("TCP", []any{p.SrcPort, p.DstPort, p.Seq, p.Ack, p.Window, p.TCPFlags, p.L4HdrLen},
					[]any{l.SrcPort, l.DstPort, l.Seq, l.Ack, l.Window, flags, l.DataOffset * 4})
			}
		case *layers.UDP:
			if p.Proto != 17 {
				return
			}
			counts["udp"]++
			if p.SrcPort != uint16(l.SrcPort) || p.DstPort != uint16(l.DstPort) || p.UDPLen != l.Length {
				fail("UDP", []any{p.SrcPort, p.DstPort, p.UDPLen}, []any{l.SrcPort, l.DstPort, l.Length})
			}
		case *layers.ICMPv4:
			if p.Proto != 1 {
				return
			}
			counts["icmp"]++
			if p.ICMPType != l.TypeCode.Type() || p.ICMPCode != l.TypeCode.Code() {
				fail("ICMP", []any{p.ICMPType, p.ICMPCode}, l.TypeCode)
			}
			if (l.TypeCode.Type() == 0 || l.TypeCode.Type() == 8) && (p.ICMPID != l.Id || p.ICMPSeq != l.Seq) {
				fail("ICMP echo", []any{p.ICMPID, p.ICMPSeq}, []any{l.Id, l.Seq})
			}
		case *layers.ICMPv6:
			if p.Proto != 58 {
				return
			}
			counts["icmp6"]++
			if p.ICMPType != l.TypeCode.Type() || p.ICMPCode != l.TypeCode.Code() {
				fail("ICMPv6", []any{p.ICMPType, p.ICMPCode}, l.TypeCode)
			}
			if e, ok := g.Layer(layers.LayerTypeICMPv6Echo).(*layers.ICMPv6Echo); ok && (p.ICMPID != e.Identifier || p.ICMPSeq != e.SeqNumber) {
				fail("ICMPv6 echo", []any{p.ICMPID, p.ICMPSeq}, []any{e.Identifier, e.SeqNumber})
			}
		}
	})
	t.Logf("layers compared: %v", counts)
	for _, l := range []string{"ethernet", "vlan", "arp", "ipv4", "ipv6", "tcp", "udp", "icmp", "icmp6", "tunnel"} {
		if counts[l] == 0 {
			t.Errorf("no %s layer compared", l)
		}
	}
}

func ipSrc(l gopacket.Layer) []byte {
	switch ip := l.(type) {
	case *layers.IPv4:
		return ip.SrcIP.To4()
	case *layers.IPv6:
		return ip.SrcIP
	}
	return nil
}
