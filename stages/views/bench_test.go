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
