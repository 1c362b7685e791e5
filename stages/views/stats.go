package views

import (
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

// Stats is what a chain's stages did, as last published: the tables belong to the goroutine
// that runs the chain, so Run copies their counters here every publishInterval of packet time
// (and every publishEvery packets, and when it returns), and any goroutine may read the copy
// (the metrics do, at each scrape). The reverse-DNS counters are the stage's own published
// ones.
type Stats struct {
	Flows  *flows.Stats         // the flow table's, when the chain has one
	DNS    *protocols.DNSStats  // the DNS decoder's, when the chain has one
	RDNS   *names.ResolverStats // the reverse-DNS stage's, when the chain has one
	Stages []StageCount         // with Config.CountStages: packets passed on, per stage
	Sink   uint64               // packets the sink (and the outputs beside it) got
}

// StageCount is how many packets one stage passed on.
type StageCount struct {
	Name    string // ifaces, classify, rdns, flows, wire_names
	Packets uint64
}

// Publication bounds: the copy is at most this many packets or this much packet time old
// while packets flow.
const (
	publishEvery    = 4096
	publishInterval = time.Second
)

type pipelineStats struct {
	flows *flows.Table
	dns   *protocols.DNSTracker
	rdns  *names.Resolver

	stages []*stageCounter
	sink   atomic.Uint64

	since int   // packets since the last publication
	last  int64 // packet time of the last publication, Unix ns
	mu    sync.Mutex
	pub   Stats
}

type stageCounter struct {
	name string
	n    atomic.Uint64
}

// counted wraps st so that it counts the packets it passes on.
func (s *pipelineStats) counted(name string, st stages.Stage) stages.Stage {
	c := &stageCounter{name: name}
	s.stages = append(s.stages, c)
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		inner := st(src)
		return func(yield func(*stages.Packet) bool) {
			for p := range inner {
				c.n.Add(1)
				if !yield(p) {
					return
				}
			}
		}
	}
}

// tick counts a packet the sink got and publishes when it is time.
func (s *pipelineStats) tick(p *stages.Packet) {
	s.sink.Add(1)
	s.since++
	if t := p.Time.UnixNano(); s.since >= publishEvery || t-s.last >= int64(publishInterval) || t < s.last {
		s.last = t
		s.publish()
	}
}

// publish copies the tables' counters for Stats.
func (s *pipelineStats) publish() {
	s.since = 0
	var st Stats
	if s.flows != nil {
		f := s.flows.Stats()
		st.Flows = &f
	}
	if s.dns != nil {
		d := s.dns.Stats()
		st.DNS = &d
	}
	s.mu.Lock()
	s.pub.Flows, s.pub.DNS = st.Flows, st.DNS
	s.mu.Unlock()
}

// Stats returns the chain's counters as last published (see Stats). Safe from any goroutine.
func (p *Pipeline) Stats() Stats {
	s := &p.stats
	s.mu.Lock()
	st := s.pub
	s.mu.Unlock()
	if s.rdns != nil {
		r := s.rdns.Stats()
		st.RDNS = &r
	}
	for _, c := range s.stages {
		st.Stages = append(st.Stages, StageCount{Name: c.name, Packets: c.n.Load()})
	}
	st.Sink = s.sink.Load()
	return st
}
