package views

import (
	"io"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
)

// BenchmarkFullChain: the whole chain of a view with -n (domains and classes, then flows, DNS
// with wire names, HTTP, TLS) and its sink writing to a discarded buffered output, over 300,000
// packets from the test captures. net_watch+app is the net_watch line with every app stage.
func BenchmarkFullChain(b *testing.B) {
	pkts := benchPackets(b, 300_000)
	for _, view := range []string{"net_watch+app", "urlwatch", "weird-dns", "flows"} {
		b.Run(view, func(b *testing.B) {
			b.ReportAllocs()
			var el, cpu time.Duration
			for i := 0; i < b.N; i++ {
				out := sinks.NewOutput(io.Discard, false)
				var st stages.Stage
				var sink sinks.Sink
				if view == "net_watch+app" {
					wire := names.NewWire(0, 0)
					app := AppStage(flows.Config{}, protocols.DNSConfig{})
					st = stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), app, wire.Stage(func(c stages.Class) bool { return c == stages.ClassPublic }))
					sink = sinks.NewNetWatch(out, sinks.Options{UTC: true})
				} else {
					built, err := Build(&Config{NoDNS: true, View: view, UTC: true}, out)
					if err != nil {
						b.Fatal(err)
					}
					st, sink = built.Stage, built.Sink
				}
				start, c0 := time.Now(), stagestest.CPUTime()
				if _, err := (&Pipeline{Stage: st, Sink: sink}).Run(stagestest.Replay(pkts)); err != nil {
					b.Fatal(err)
				}
				sink.Close()
				el += time.Since(start)
				cpu += stagestest.CPUTime() - c0
			}
			stagestest.ReportRate(b, len(pkts), el, cpu)
		})
	}
}

// BenchmarkCaptureChain: what -w costs on the read path's chain (-n -q): the capture sink
// alone with comments (and so the application layer), without comments, and net_watch without
// -w to compare with, over the same 300,000 packets.
func BenchmarkCaptureChain(b *testing.B) {
	pkts := benchPackets(b, 300_000)
	for _, c := range []struct {
		name     string
		capture  bool
		comments bool
	}{{"net_watch", false, false}, {"w_q", true, true}, {"w_q_no_comments", true, false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var el, cpu time.Duration
			for i := 0; i < b.N; i++ {
				cfg := &Config{NoDNS: true, UTC: true}
				if c.capture {
					w, err := pcapng.Create(pcapng.Options{Path: "-", Stdout: io.Discard})
					if err != nil {
						b.Fatal(err)
					}
					cfg.Quiet = true
					cfg.Capture = &sinks.CaptureConfig{Writer: w, Comments: c.comments,
						Interface: func(uint32) pcapng.Interface { return pcapng.Interface{LinkType: 1} }}
				}
				built, err := Build(cfg, sinks.NewOutput(io.Discard, false))
				if err != nil {
					b.Fatal(err)
				}
				start, c0 := time.Now(), stagestest.CPUTime()
				if _, err := built.Run(stagestest.Replay(pkts)); err != nil {
					b.Fatal(err)
				}
				built.Close()
				el += time.Since(start)
				cpu += stagestest.CPUTime() - c0
			}
			stagestest.ReportRate(b, len(pkts), el, cpu)
		})
	}
}
