package sensor

import (
	"reflect"
	"testing"

	"github.com/chains-sensor/chains-sensor/gen"
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
