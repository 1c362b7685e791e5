package names

import (
	"io"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// BenchmarkChainCachedDNS: domains, reverse DNS with every name cached, net_watch out.
func BenchmarkChainCachedDNS(b *testing.B) {
	s := startPTRServer(&testing.T{})
	s.setDefault(func(q string) (string, bool) { return "host-" + q[:6] + ".example.", true })
	r, err := NewResolver(ResolverConfig{Servers: []string{s.addr}, HostsFile: "-", Wait: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	st := stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())
	for range st(stagestest.Loop(stagestest.Records(), 64)) { // warm the cache
	}
	if st := r.Stats(); st.Answers == 0 {
		b.Fatalf("cache not warmed: %+v", st)
	}
	out := sinks.NewOutput(io.Discard, false)
	stagestest.BenchChain(b, st, sinks.NewNetWatch(out, sinks.Options{UTC: true}))
}

// BenchmarkChainDeadDNS: domains, reverse DNS against a server that never answers, net_watch
// out: the steady-state cost once the lookups have been given up (compare BenchmarkChainNoDNS).
func BenchmarkChainDeadDNS(b *testing.B) {
	addr := stagestest.SilentDNS(&testing.T{})
	r, err := NewResolver(ResolverConfig{Servers: []string{addr}, HostsFile: "-", Wait: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	out := sinks.NewOutput(io.Discard, false)
	stagestest.BenchChain(b, stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage()), sinks.NewNetWatch(out, sinks.Options{UTC: true}))
}
