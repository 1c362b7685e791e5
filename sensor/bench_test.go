package sensor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// The mix of issue 2: TCP SYN over IPv4, TCP data over IPv6, UDP DNS in a VLAN, ICMPv6 echo.
var benchNames = []string{"tcp syn v4", "tcp http v6", "udp dns in vlan", "icmpv6 echo"}

func benchMix() [][]byte {
	var mix [][]byte
	for _, name := range benchNames {
		for _, c := range frameCases() {
			if c.name == name {
				mix = append(mix, c.frame)
			}
		}
	}
	return mix
}

// vxlanSYN is the mix's TCP SYN inside VXLAN (VNI 42): a tunnelled packet's cost, whose
// record carries the extension.
func vxlanSYN(b testing.TB) []byte {
	syn := benchMix()[0]
	return cat(ser(b, ethL(layers.EthernetTypeIPv4), ip4L("192.0.2.1", "192.0.2.2", layers.IPProtocolUDP), udpL(51000, 4789),
		&layers.VXLAN{ValidIDFlag: true, VNI: 42}, gopacket.Payload(syn)))
}

// benchEach runs bench over the mix and over each frame of it alone, and over the VXLAN frame.
func benchEach(b *testing.B, bench func(b *testing.B, mix [][]byte)) {
	mix := benchMix()
	b.Run("mix", func(b *testing.B) { bench(b, mix) })
	for i, name := range benchNames {
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) { bench(b, mix[i:i+1]) })
	}
	b.Run("vxlan_tcp_syn_v4", func(b *testing.B) { bench(b, [][]byte{vxlanSYN(b)}) })
}

// benchBatch is how many runs of one frame go into the ring before it is drained: few enough
// that the ring never fills, so that every run takes the emitting path.
const benchBatch = 20000

// benchProgram reports the kernel's own time per packet (BPF_PROG_TEST_RUN with repeat) for
// prog over the mix, draining ring between batches.
func benchProgram(b *testing.B, prog *ebpf.Program, ring *ebpf.Map, mix [][]byte) {
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	var rec ringbuf.Record
	var total time.Duration
	var packets int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		frame := mix[i%len(mix)]
		_, per, err := prog.Benchmark(frame, benchBatch, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += per * benchBatch
		packets += benchBatch
		b.StopTimer()
		n := 0
		for rd.SetDeadline(time.Now()); rd.ReadInto(&rec) == nil; n++ {
		}
		if n != benchBatch {
			b.Fatalf("%d records for %d runs: the ring lost some, the measure is void", n, benchBatch)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(packets), "ns/pkt")
}

// BenchmarkXDPSensor is the per-packet cost of xdp_sensor.
func BenchmarkXDPSensor(b *testing.B) {
	sensortest.RequireBPF(b)
	objs, err := sensor.Load(sensor.Config{RingSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	benchEach(b, func(b *testing.B, mix [][]byte) { benchProgram(b, objs.XDP, objs.Events, mix) })
}

// BenchmarkXDPFloor is the floor to compare with: reserve, fill and submit a 64-byte record.
func BenchmarkXDPFloor(b *testing.B) {
	sensortest.RequireBPF(b)
	spec, err := gen.LoadFloor()
	if err != nil {
		b.Fatal(err)
	}
	spec.Maps["floor_events"].MaxEntries = 64 << 20
	var objs gen.FloorObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	benchEach(b, func(b *testing.B, mix [][]byte) { benchProgram(b, objs.XdpFloor, objs.FloorEvents, mix) })
}

// BenchmarkTwin is the Go twin's cost per frame over the same mix.
func BenchmarkTwin(b *testing.B) {
	twin := sensor.NewTwin(sensor.Config{})
	mix := benchMix()
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = twin.Parse(buf[:0], mix[i%len(mix)], sensor.Meta{})
	}
}

// BenchmarkXDPSensorFrames is what whole frames cost (attach -w, FrameSnap 262144) beside the
// records alone, in one run: the mix, and a full-size TCP segment (1514 bytes) whose frame is
// copied whole where without -w 64 payload bytes are.
func BenchmarkXDPSensorFrames(b *testing.B) {
	sensortest.RequireBPF(b)
	seg := cat(ser(b, ethL(layers.EthernetTypeIPv4), ip4L("192.0.2.1", "192.0.2.2", layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 40000, DstPort: 5001, Seq: 1, ACK: true, Window: 512, DataOffset: 5},
		gopacket.Payload(make([]byte, 1460))))
	for _, c := range []struct {
		name string
		snap uint32
	}{{"records", 0}, {"frames", sensor.FrameMax}} {
		objs, err := sensor.Load(sensor.Config{RingSize: 256 << 20, FrameSnap: c.snap})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/mix", func(b *testing.B) { benchProgram(b, objs.XDP, objs.Events, benchMix()) })
		b.Run(c.name+"/tcp_1514", func(b *testing.B) { benchProgram(b, objs.XDP, objs.Events, [][]byte{seg}) })
		objs.Close()
	}
}
