package sensor

import (
	"reflect"
	"testing"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/cilium/ebpf/btf"
)

// The record's layout, byte by byte, as bpf/record.h defines it. Changing the record means
// changing this table on purpose.
var recordLayout = []struct {
	field string
	off   uintptr
	size  uintptr
}{
	{"TsNs", 0, 8}, {"Ifindex", 8, 4}, {"WireLen", 12, 4}, {"PayloadLen", 16, 4},
	{"SnapLen", 20, 2}, {"PayloadOff", 22, 2}, {"EthProto", 24, 2},
	{"Dir", 26, 1}, {"Status", 27, 1}, {"BadLayer", 28, 1}, {"VlanCount", 29, 1},
	{"TunType", 30, 1}, {"TunDepth", 31, 1}, {"VlanTci", 32, 4},
	{"DstMac", 36, 6}, {"SrcMac", 42, 6},
	{"IpVersion", 48, 1}, {"L4Proto", 49, 1}, {"Ttl", 50, 1}, {"Tos", 51, 1},
	{"IpLen", 52, 2}, {"FragOff", 54, 2}, {"IpId", 56, 4}, {"FlowLabel", 60, 4},
	{"SrcAddr", 64, 16}, {"DstAddr", 80, 16},
	{"IpFlags", 96, 1}, {"ExtMask", 97, 1}, {"TcpFlags", 98, 1}, {"L4HdrLen", 99, 1},
	{"Sport", 100, 2}, {"Dport", 102, 2}, {"Seq", 104, 4}, {"Ack", 108, 4},
	{"Window", 112, 2}, {"UdpLen", 114, 2}, {"IcmpType", 116, 1}, {"IcmpCode", 117, 1},
	{"ArpOp", 118, 2},
}

// extLayout is the extension's, as bpf/record.h defines struct record_ext.
var extLayout = []struct {
	field string
	off   uintptr
	size  uintptr
}{
	{"TunSrc", 0, 16}, {"TunDst", 16, 16}, {"TunId", 32, 4}, {"VlanTci", 36, 4},
	{"TunFlags", 40, 1}, {"TunInner", 41, 1}, {"Pad", 42, 6},
}

func TestRecordLayout(t *testing.T) {
	if recordSize != 120 {
		t.Fatalf("record is %d bytes, want 120 (128 on the ring with its header)", recordSize)
	}
	if extSize != 48 {
		t.Fatalf("the extension is %d bytes, want 48", extSize)
	}
	if netBlockOff != 48 {
		t.Fatalf("the network block starts at %d, want 48 (ip_version)", netBlockOff)
	}
	spec, err := gen.LoadSensor()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		btf    string
		typ    reflect.Type
		layout []struct {
			field string
			off   uintptr
			size  uintptr
		}
	}{
		{"record", reflect.TypeOf(gen.SensorRecord{}), recordLayout},
		{"record_ext", reflect.TypeOf(gen.SensorRecordExt{}), extLayout},
	} {
		for _, f := range c.layout {
			sf, ok := c.typ.FieldByName(f.field)
			if !ok {
				t.Errorf("%s has no field %s", c.typ, f.field)
				continue
			}
			if sf.Offset != f.off || sf.Type.Size() != f.size {
				t.Errorf("%s.%s at %d size %d, want %d size %d", c.typ, f.field, sf.Offset, sf.Type.Size(), f.off, f.size)
			}
		}
		if n := c.typ.NumField() - 1; n != len(c.layout) { // less the HostLayout marker
			t.Errorf("%s has %d fields, the table %d", c.typ, n, len(c.layout))
		}
		// The compiler's layout, from the BTF of the object itself.
		var st *btf.Struct
		if err := spec.Types.TypeByName(c.btf, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != uint32(c.typ.Size()) || len(st.Members) != len(c.layout) {
			t.Fatalf("BTF struct %s: %d bytes, %d members", c.btf, st.Size, len(st.Members))
		}
		for i, m := range st.Members {
			if uintptr(m.Offset.Bytes()) != c.layout[i].off {
				t.Errorf("BTF member %s.%s at %d, want %d", c.btf, m.Name, m.Offset.Bytes(), c.layout[i].off)
			}
		}
	}
}

// TestStagesMirrorsRecord checks the constants stages declares for Packet fields against the
// ones bpf/record.h defines (through gen): stages cannot import gen's names for its own API.
func TestStagesMirrorsRecord(t *testing.T) {
	pairs := []struct {
		name        string
		stages, gen uint64
	}{
		{"DirIn", uint64(stages.DirIn), uint64(gen.SensorDirectionDIR_IN)},
		{"DirOut", uint64(stages.DirOut), uint64(gen.SensorDirectionDIR_OUT)},
		{"StatusOK", uint64(stages.StatusOK), uint64(gen.SensorStatusSTATUS_OK)},
		{"StatusTruncated", uint64(stages.StatusTruncated), uint64(gen.SensorStatusSTATUS_TRUNCATED)},
		{"StatusMalformed", uint64(stages.StatusMalformed), uint64(gen.SensorStatusSTATUS_MALFORMED)},
		{"StatusUnsupported", uint64(stages.StatusUnsupported), uint64(gen.SensorStatusSTATUS_UNSUPPORTED)},
		{"LayerEthernet", uint64(stages.LayerEthernet), uint64(gen.SensorLayerLAYER_ETH)},
		{"LayerVLAN", uint64(stages.LayerVLAN), uint64(gen.SensorLayerLAYER_VLAN)},
		{"LayerPPPoE", uint64(stages.LayerPPPoE), uint64(gen.SensorLayerLAYER_PPPOE)},
		{"LayerARP", uint64(stages.LayerARP), uint64(gen.SensorLayerLAYER_ARP)},
		{"LayerIPv4", uint64(stages.LayerIPv4), uint64(gen.SensorLayerLAYER_IP4)},
		{"LayerIPv6", uint64(stages.LayerIPv6), uint64(gen.SensorLayerLAYER_IP6)},
		{"LayerIPv6Ext", uint64(stages.LayerIPv6Ext), uint64(gen.SensorLayerLAYER_IP6EXT)},
		{"LayerTCP", uint64(stages.LayerTCP), uint64(gen.SensorLayerLAYER_TCP)},
		{"LayerUDP", uint64(stages.LayerUDP), uint64(gen.SensorLayerLAYER_UDP)},
		{"LayerICMP", uint64(stages.LayerICMP), uint64(gen.SensorLayerLAYER_ICMP)},
		{"LayerICMPv6", uint64(stages.LayerICMPv6), uint64(gen.SensorLayerLAYER_ICMP6)},
		{"IPFlagMF", stages.IPFlagMF, uint64(gen.SensorIpFlagIPF_MF)},
		{"IPFlagDF", stages.IPFlagDF, uint64(gen.SensorIpFlagIPF_DF)},
		{"IPFlagFragment", stages.IPFlagFragment, uint64(gen.SensorIpFlagIPF_FRAGMENT)},
		{"ExtHopByHop", stages.ExtHopByHop, uint64(gen.SensorExtBitEXT_HOP)},
		{"ExtRouting", stages.ExtRouting, uint64(gen.SensorExtBitEXT_ROUTING)},
		{"ExtFragment", stages.ExtFragment, uint64(gen.SensorExtBitEXT_FRAGMENT)},
		{"ExtDestOpts", stages.ExtDestOpts, uint64(gen.SensorExtBitEXT_DSTOPTS)},
		{"ExtAH", stages.ExtAH, uint64(gen.SensorExtBitEXT_AH)},
		{"ExtESP", stages.ExtESP, uint64(gen.SensorExtBitEXT_ESP)},
		{"LayerTunnel", uint64(stages.LayerTunnel), uint64(gen.SensorLayerLAYER_TUNNEL)},
		{"TunnelIPIP", uint64(stages.TunnelIPIP), uint64(gen.SensorTunnelTUN_IPIP)},
		{"TunnelIP6", uint64(stages.TunnelIP6), uint64(gen.SensorTunnelTUN_IP6)},
		{"TunnelGRE", uint64(stages.TunnelGRE), uint64(gen.SensorTunnelTUN_GRE)},
		{"TunnelPPTP", uint64(stages.TunnelPPTP), uint64(gen.SensorTunnelTUN_PPTP)},
		{"TunnelERSPAN1", uint64(stages.TunnelERSPAN1), uint64(gen.SensorTunnelTUN_ERSPAN1)},
		{"TunnelERSPAN2", uint64(stages.TunnelERSPAN2), uint64(gen.SensorTunnelTUN_ERSPAN2)},
		{"TunnelERSPAN3", uint64(stages.TunnelERSPAN3), uint64(gen.SensorTunnelTUN_ERSPAN3)},
		{"TunnelVXLAN", uint64(stages.TunnelVXLAN), uint64(gen.SensorTunnelTUN_VXLAN)},
		{"TunnelGeneve", uint64(stages.TunnelGeneve), uint64(gen.SensorTunnelTUN_GENEVE)},
		{"TunnelGTPU", uint64(stages.TunnelGTPU), uint64(gen.SensorTunnelTUN_GTPU)},
		{"TunnelFlagIP6", stages.TunnelFlagIP6, uint64(gen.SensorTunFlagTUNF_IP6)},
		{"TunnelFlagEth", stages.TunnelFlagEth, uint64(gen.SensorTunFlagTUNF_ETH)},
		{"TunnelFlagKey", stages.TunnelFlagKey, uint64(gen.SensorTunFlagTUNF_KEY)},
		{"TunnelFlagSeq", stages.TunnelFlagSeq, uint64(gen.SensorTunFlagTUNF_SEQ)},
	}
	for _, p := range pairs {
		if p.stages != p.gen {
			t.Errorf("stages.%s = %d, bpf/record.h says %d", p.name, p.stages, p.gen)
		}
	}
	if int(gen.SensorLayerLAYER_MAX) != int(stages.LayerTunnel)+1 {
		t.Errorf("bpf/record.h has layers stages does not know")
	}
}
