package sinks

import (
	"io"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
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

// benchCapture runs the Records mix, each with a 74-byte frame, through the classifier into
// the capture sink (writing pcapng to io.Discard), and with lines into net_watch beside it.
func benchCapture(b *testing.B, comments, lines bool) {
	w, err := pcapng.Create(pcapng.Options{Path: "-", Stdout: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	var sink Sink = NewCapture(CaptureConfig{Writer: w, Comments: comments, Directions: true,
		Interface: func(uint32) pcapng.Interface { return pcapng.Interface{Name: "eth0", LinkType: 1, SnapLen: 262144} }})
	if lines {
		sink = Tee{sink, NewNetWatch(NewOutput(io.Discard, false), Options{UTC: true})}
	}
	pkts := stagestest.Records()
	frame := make([]byte, 74)
	for i := range pkts {
		pkts[i].Frame, pkts[i].FrameLen = frame, 74
	}
	st := classify.Stage(classify.NewClassifier(nil, nil))
	b.ReportAllocs()
	b.ResetTimer()
	for p := range st(stagestest.Loop(pkts, b.N)) {
		if err := sink.Write(p); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	sink.Close()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// BenchmarkChainCapture: -w with comments, no lines (-q).
func BenchmarkChainCapture(b *testing.B) { benchCapture(b, true, false) }

// BenchmarkChainCaptureNoComments: -w --no-comments -q.
func BenchmarkChainCaptureNoComments(b *testing.B) { benchCapture(b, false, false) }

// BenchmarkChainCaptureAndLines: -w with comments beside the net_watch lines.
func BenchmarkChainCaptureAndLines(b *testing.B) { benchCapture(b, true, true) }
