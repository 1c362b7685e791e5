package sensor_test

import (
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket/layers"
)

// BenchmarkOwnerCost is what process attribution adds per packet, in one run (test-run, the
// kernel's own time): xdp_sensor with it off, on with the packet's flow unknown (the lookups
// miss: forwarded traffic), and on with the flow known (two lookups and the owner copied
// into the record); tc_sensor off and on (test-run has no socket: the cookie lookup only).
// The frames are the mix's and a UDP reply whose flow the tables know.
func BenchmarkOwnerCost(b *testing.B) {
	sensortest.RequireBPF(b)
	reply := ser(b, ethL(layers.EthernetTypeIPv4), ip4L("192.0.2.1", "192.0.2.2", layers.IPProtocolUDP), udpL(53, 40000))
	var flow gen.SensorOwnerFlowKey
	copy(flow.Local[:], []byte{192, 0, 2, 2})
	copy(flow.Remote[:], []byte{192, 0, 2, 1})
	flow.Lport, flow.Rport, flow.Proto, flow.Version = 40000, 53, 17, 4
	var so gen.SensorSockOwner
	so.O.Pid, so.Match = 4242, 1
	for _, c := range []struct {
		name  string
		owner *sensor.OwnerConfig
		known bool
	}{{"off", nil, false}, {"on_unknown", &sensor.OwnerConfig{Netns: 1}, false}, {"on_known", &sensor.OwnerConfig{Netns: 1}, true}} {
		objs, err := sensor.Load(sensor.Config{RingSize: 64 << 20, Owner: c.owner})
		if err != nil {
			b.Fatal(err)
		}
		if c.known {
			if err := objs.OwnerSock.Put(uint64(77), so); err != nil {
				b.Fatal(err)
			}
			if err := objs.OwnerFlow.Put(flow, uint64(77)); err != nil {
				b.Fatal(err)
			}
		}
		run := func(name string, prog *ebpf.Program, mix [][]byte) {
			b.Run(name, func(b *testing.B) {
				drain(b, objs.Events) // what the previous run left
				benchProgram(b, prog, objs.Events, mix)
			})
		}
		run("xdp/"+c.name+"/udp_reply", objs.XDP, [][]byte{reply})
		if !c.known {
			run("xdp/"+c.name+"/mix", objs.XDP, benchMix())
			run("tc/"+c.name+"/mix", objs.TC, benchMix())
		}
		objs.Close()
	}
}

// drain reads what waits in the ring.
func drain(b *testing.B, ring *ebpf.Map) {
	rd, err := ringbuf.NewReader(ring)
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	var rec ringbuf.Record
	for rd.SetDeadline(time.Now().Add(10 * time.Millisecond)); rd.ReadInto(&rec) == nil; {
	}
}
