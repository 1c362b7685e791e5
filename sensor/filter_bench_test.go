package sensor_test

import (
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/filter"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
)

// BenchmarkXDPFilter is xdp_sensor's cost per packet through BPF_PROG_TEST_RUN over the mix of
// issue 2, beside a bare XDP_PASS program: without a filter, with `tcp port 80` (which keeps
// the HTTP frame of the mix) and with a filter that rejects every frame of the mix (so each
// costs the filter and a counter, and no record).
func BenchmarkXDPFilter(b *testing.B) {
	sensortest.RequireBPF(b)
	mix := benchMix()
	b.Run("bare_XDP_PASS", func(b *testing.B) {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:         ebpf.XDP,
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
			License:      "Dual BSD/GPL",
		})
		if err != nil {
			b.Fatal(err)
		}
		defer prog.Close()
		benchRuns(b, prog, nil, mix)
	})
	for _, c := range []struct{ name, expr string }{
		{"no_filter", ""},
		{"tcp_port_80", "tcp port 80"},
		{"rejects_all", "ether proto 0x88b5"}, // IEEE local experimental: none of the mix
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := sensor.Config{RingSize: 64 << 20, IngressOnly: true}
			if c.expr != "" {
				p, err := filter.Compile(c.expr, filter.LinkEthernet, 0)
				if err != nil {
					b.Fatal(err)
				}
				cfg.Filter = &sensor.KernelFilter{Prog: p}
			}
			objs, err := sensor.Load(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer objs.Close()
			benchRuns(b, objs.XDP, objs.Events, mix)
		})
	}
}

// benchRuns reports the kernel's own time per run of prog over the frames, draining ring (if
// any) between batches so that it never fills.
func benchRuns(b *testing.B, prog *ebpf.Program, ring *ebpf.Map, mix [][]byte) {
	var rd *ringbuf.Reader
	if ring != nil {
		var err error
		if rd, err = ringbuf.NewReader(ring); err != nil {
			b.Fatal(err)
		}
		defer rd.Close()
	}
	var rec ringbuf.Record
	var total time.Duration
	var packets int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, per, err := prog.Benchmark(mix[i%len(mix)], benchBatch, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += per * benchBatch
		packets += benchBatch
		if rd != nil {
			b.StopTimer()
			for rd.SetDeadline(time.Now()); rd.ReadInto(&rec) == nil; {
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(packets), "ns/pkt")
}
