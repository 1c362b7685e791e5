package views

import (
	"iter"
	"sync/atomic"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

// Tables describes every bounded table of the chain: the reverse-DNS stage's, the flow
// table's, the DNS decoder's, the QUIC handshakes', the wire names'. Call it after Run (the
// tables belong to the chain's goroutine); Published is the copy for other goroutines.
func (p *Pipeline) Tables() []stages.TableStats {
	var out []stages.TableStats
	for _, r := range p.reporters {
		out = append(out, r.Tables()...)
	}
	return out
}

// Counters returns the counts the chain's stages show at exit (after Run; Published is the
// copy for other goroutines).
func (p *Pipeline) Counters() []stages.Counter {
	var out []stages.Counter
	for _, r := range p.reporters {
		out = append(out, r.Counters()...)
	}
	return out
}

// DNSStats returns the counts of the chain's DNS decoder (after Run); false when the chain
// decodes no DNS.
func (p *Pipeline) DNSStats() (protocols.DNSStats, bool) {
	if p.dns == nil {
		return protocols.DNSStats{}, false
	}
	return p.dns.Stats(), true
}

// Hurry makes the chain stop waiting: packets held for their names go out now with what is
// known. A stop (a signal) calls it. It may be called from any goroutine.
func (p *Pipeline) Hurry() {
	if p.rdns != nil {
		p.rdns.Hurry()
	}
}

// Snapshot is a copy of the chain's Tables and Counters, made on the chain's goroutine.
type Snapshot struct {
	Tables   []stages.TableStats
	Counters []stages.Counter
}

// Publication bounds: while packets flow, Published is at most this many packets or this much
// packet time old.
const (
	publishEvery    = 4096
	publishInterval = time.Second
)

// publication holds the last Snapshot for readers on other goroutines (the metrics).
type publication struct {
	snap  atomic.Pointer[Snapshot]
	since int   // packets since the last publication
	last  int64 // packet time of the last publication, Unix ns
}

// Published returns the chain's Tables and Counters as Run last copied them: when Build
// returned, every publishEvery packets or publishInterval of packet time while it runs, and
// when it returns. Safe from any goroutine.
func (p *Pipeline) Published() Snapshot {
	if s := p.pub.snap.Load(); s != nil {
		return *s
	}
	return Snapshot{}
}

// tick counts a packet the sink got and publishes when it is time (on the chain's goroutine).
func (p *Pipeline) tick(pk *stages.Packet) {
	s := &p.pub
	s.since++
	if t := pk.Time.UnixNano(); s.since >= publishEvery || t-s.last >= int64(publishInterval) || t < s.last {
		s.last = t
		p.publish()
	}
}

// publish copies Tables and Counters for Published (on the chain's goroutine).
func (p *Pipeline) publish() {
	p.pub.since = 0
	p.pub.snap.Store(&Snapshot{Tables: p.Tables(), Counters: p.Counters()})
}

// stageCounts counts the packets each stage passes on and the packets the sink got
// (Config.CountStages), reported as counters stage_packets_NAME.
type stageCounts struct {
	names []string
	n     []*atomic.Uint64
	sunk  uint64 // packets the sink got (the chain's goroutine writes it)
}

// counted wraps st so that it counts the packets it passes on as name.
func (s *stageCounts) counted(name string, st stages.Stage) stages.Stage {
	c := new(atomic.Uint64)
	s.names, s.n = append(s.names, name), append(s.n, c)
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		inner := st(src)
		return func(yield func(*stages.Packet) bool) {
			for p := range inner {
				c.Add(1)
				if !yield(p) {
					return
				}
			}
		}
	}
}

// sink records that the sink has got n packets; s may be nil.
func (s *stageCounts) sink(n uint64) {
	if s != nil {
		s.sunk = n
	}
}

func (s *stageCounts) Tables() []stages.TableStats { return nil }

func (s *stageCounts) Counters() []stages.Counter {
	out := make([]stages.Counter, 0, len(s.names)+1)
	for i, name := range s.names {
		out = append(out, stages.Counter{Name: StagePacketsPrefix + name, Value: s.n[i].Load()})
	}
	return append(out, stages.Counter{Name: StagePacketsPrefix + "sink", Value: s.sunk})
}

// StagePacketsPrefix begins the names of the counters of Config.CountStages: stage_packets_
// and a stage's name (ifaces, classify, rdns, flows, wire_names; sink for the sink and the
// outputs beside it).
const StagePacketsPrefix = "stage_packets_"

// DNSWeirdPrefix begins the names of the counters of weird DNS reasons by rule (dns_weird_ and
// a name of protocols.WeirdRules), shown for the rules that fired.
const DNSWeirdPrefix = "dns_weird_"

// flowTables reports the flow table and its handlers' tables: the DNS decoder's pending
// queries and NXDOMAIN-burst clients, and (in the App views) the QUIC handshakes. The flows
// and protocols types keep the counts and bounds; this says which flag each answers to.
type flowTables struct {
	t    *flows.Table
	dns  *protocols.DNSTracker
	quic *protocols.QUICHandler // nil outside the App views
}

func (f flowTables) Tables() []stages.TableStats {
	st := f.t.Stats()
	ds := f.dns.Stats()
	out := []stages.TableStats{
		{Name: "flows", Flag: "--max-flows", Len: st.Active, Peak: st.Active, Max: st.Max, Evicted: int64(st.Evicted)},
		{Name: "dns_pending", Flag: "--dns-max-pending", Len: ds.Pending, Peak: ds.PendingPeak, Max: ds.MaxPending, Evicted: int64(ds.PendingEvicted)},
		{Name: "dns_nxdomain_clients", Flag: "--dns-max-clients", Len: ds.Clients, Peak: ds.ClientsPeak, Max: ds.MaxClients, Evicted: int64(ds.ClientsEvicted)},
	}
	if f.quic != nil {
		qs := f.quic.Stats()
		out = append(out, stages.TableStats{Name: "quic_handshakes", Flag: "--quic-max-handshakes", Len: qs.Conns, Peak: qs.ConnsPeak, Max: qs.MaxConns, Evicted: int64(qs.Evicted)})
	}
	return out
}

func (f flowTables) Counters() []stages.Counter {
	st := f.t.Stats()
	ds := f.dns.Stats()
	out := []stages.Counter{{Name: "flows_created", Value: st.Flows}, {Name: "flows_ended", Value: st.Ended},
		{Name: "flows_expired", Value: st.Expired}, {Name: "flow_streams", Value: st.Streams},
		{Name: "flow_streams_denied", Value: st.StreamsDenied},
		{Name: "dns_messages", Value: ds.Messages}, {Name: "dns_errors", Value: ds.Errors}, {Name: "dns_matched", Value: ds.Matched},
		{Name: "dns_unsolicited", Value: ds.Unsolicited}, {Name: "dns_unanswered", Value: ds.PendingExpired},
		{Name: "dns_weird", Value: ds.Weird}}
	for i, n := range ds.WeirdRules {
		if n > 0 {
			out = append(out, stages.Counter{Name: DNSWeirdPrefix + protocols.WeirdRules[i], Value: n})
		}
	}
	if f.quic != nil {
		qs := f.quic.Stats()
		out = append(out, stages.Counter{Name: "quic_initials", Value: qs.Initials}, stages.Counter{Name: "quic_undecrypted", Value: qs.Undecrypted},
			stages.Counter{Name: "quic_hellos", Value: qs.Hellos}, stages.Counter{Name: "quic_expired", Value: qs.Expired},
			stages.Counter{Name: "quic_crypto_denied", Value: qs.Denied})
	}
	return out
}

// wireTables reports the table of names learned from DNS answers on the wire.
type wireTables struct{ w *names.Wire }

func (w wireTables) Tables() []stages.TableStats {
	return []stages.TableStats{{Name: "wire_names", Flag: "--wire-names", Len: w.w.Len(), Peak: w.w.Peak(), Max: w.w.Size(), Evicted: w.w.Evicted()}}
}

func (w wireTables) Counters() []stages.Counter {
	st := w.w.Stats()
	return []stages.Counter{{Name: "wire_names_learned", Value: st.Learned}, {Name: "wire_names_unmatched", Value: st.Unmatched}}
}
