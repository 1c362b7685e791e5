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
	{"TsNs", 0, 8}, {"Ifindex", 8, 4}, {"WireLen", 12, 4},
	{"SnapLen", 16, 2}, {"PayloadOff", 18, 2}, {"PayloadLen", 20, 2}, {"EthProto", 22, 2},
	{"Dir", 24, 1}, {"Status", 25, 1}, {"BadLayer", 26, 1}, {"VlanCount", 27, 1},
	{"VlanTci", 28, 4}, {"DstMac", 32, 6}, {"SrcMac", 38, 6},
	{"IpVersion", 44, 1}, {"L4Proto", 45, 1}, {"Ttl", 46, 1}, {"Tos", 47, 1},
	{"IpLen", 48, 2}, {"FragOff", 50, 2}, {"IpId", 52, 4}, {"FlowLabel", 56, 4},
	{"SrcAddr", 60, 16}, {"DstAddr", 76, 16},
	{"IpFlags", 92, 1}, {"ExtMask", 93, 1}, {"TcpFlags", 94, 1}, {"L4HdrLen", 95, 1},
	{"Sport", 96, 2}, {"Dport", 98, 2}, {"Seq", 100, 4}, {"Ack", 104, 4},
	{"Window", 108, 2}, {"UdpLen", 110, 2}, {"IcmpType", 112, 1}, {"IcmpCode", 113, 1},
	{"IcmpId", 114, 2}, {"IcmpSeq", 116, 2}, {"ArpOp", 118, 2},
}

func TestRecordLayout(t *testing.T) {
	if recordSize != 120 {
		t.Fatalf("record is %d bytes, want 120 (128 on the ring with its header)", recordSize)
	}
	typ := reflect.TypeOf(gen.SensorRecord{})
	for _, f := range recordLayout {
		sf, ok := typ.FieldByName(f.field)
		if !ok {
			t.Errorf("gen.SensorRecord has no field %s", f.field)
			continue
		}
		if sf.Offset != f.off || sf.Type.Size() != f.size {
			t.Errorf("%s at %d size %d, want %d size %d", f.field, sf.Offset, sf.Type.Size(), f.off, f.size)
		}
	}
	if n := typ.NumField() - 1; n != len(recordLayout) { // less the HostLayout marker
		t.Errorf("gen.SensorRecord has %d fields, the table %d", n, len(recordLayout))
	}

	// The compiler's layout, from the BTF of the object itself.
	spec, err := gen.LoadSensor()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("record", &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != uint32(recordSize) || len(st.Members) != len(recordLayout) {
		t.Fatalf("BTF struct record: %d bytes, %d members", st.Size, len(st.Members))
	}
	for i, m := range st.Members {
		if uintptr(m.Offset.Bytes()) != recordLayout[i].off {
			t.Errorf("BTF member %s at %d, want %d", m.Name, m.Offset.Bytes(), recordLayout[i].off)
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
	}
	for _, p := range pairs {
		if p.stages != p.gen {
			t.Errorf("stages.%s = %d, bpf/record.h says %d", p.name, p.stages, p.gen)
		}
	}
	if int(gen.SensorLayerLAYER_MAX) != int(stages.LayerICMPv6)+1 {
		t.Errorf("bpf/record.h has layers stages does not know")
	}
}
