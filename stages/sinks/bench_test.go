package sinks

import (
	"io"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

// BenchmarkChainNoDNS: records in, domains stage, net_watch lines out (-n).
func BenchmarkChainNoDNS(b *testing.B) {
	out := NewOutput(io.Discard, false)
	stagestest.BenchChain(b, classify.Stage(classify.NewClassifier(nil, nil)), NewNetWatch(out, Options{UTC: true}))
}

// BenchmarkChainJSON: the same with -o json.
func BenchmarkChainJSON(b *testing.B) {
	out := NewOutput(io.Discard, false)
	stagestest.BenchChain(b, classify.Stage(classify.NewClassifier(nil, nil)), NewJSON(out, Options{UTC: true}))
}

// BenchmarkChainPackets: the same with --view packets.
func BenchmarkChainPackets(b *testing.B) {
	out := NewOutput(io.Discard, false)
	stagestest.BenchChain(b, classify.Stage(classify.NewClassifier(nil, nil)), NewPackets(out, Options{UTC: true}))
}

// TestChainZeroAlloc: the net_watch chain allocates nothing per packet.
func TestChainZeroAlloc(t *testing.T) {
	out := NewOutput(io.Discard, false)
	sink := NewNetWatch(out, Options{UTC: true})
	st := classify.Stage(classify.NewClassifier(nil, nil))
	pkts := stagestest.Records()
	run := func(n int) {
		for p := range st(stagestest.Loop(pkts, n)) {
			sink.Write(p)
		}
	}
	run(100)
	a := testing.AllocsPerRun(5, func() { run(1000) })
	if a/1000 > 0.01 {
		t.Errorf("%.3f allocations per packet", a/1000)
	}
}
