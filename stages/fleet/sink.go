package fleet

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// Envelope is a record's JSON, as Sink writes it and watch reads it:
//
//	{"host":"h1","run":"9f86d081","seq":42,"kind":"packet","ts":"2015-09-07T19:08:34.491658Z",
//	 "line":"UDP IP 192.168.1.9(internal) --> 224.0.0.251(multicast_dns)","data":{...}}
//
// seq counts the records of one run of one sensor from 1; run is random per run; line is the
// net_watch line without its time (packets only); data is the object -o json prints for the
// kind: the packet's, the flows view's flow, the weird-dns view's DNS message, the urlwatch
// view's HTTP head or TLS hello (a QUIC hello is a tls record with its quic_version).
type Envelope struct {
	Host string    `json:"host"`
	Run  string    `json:"run"`
	Seq  uint64    `json:"seq"`
	Kind string    `json:"kind"`
	TS   time.Time `json:"ts"`
	Line string    `json:"line,omitempty"`
}

// Sink is the fleet's output beside the view's sink (views.Output): each packet and what the
// decoders found in it, and each finished flow, become records for a Publisher.
type Sink struct {
	pub   *Publisher
	host  string
	run   string
	seq   uint64
	kinds [5]bool // packet, flow, dns, http, tls
	enc   *sinks.Encoder
	clk   *sinks.Clock
	env   []byte
	data  []byte
	line  []byte
}

// NewSink returns a sink publishing the given kinds (AllKinds when nil) of host (a subject
// token: HostToken) through pub.
func NewSink(pub *Publisher, host string, kinds []string) *Sink {
	var id [4]byte
	rand.Read(id[:])
	s := &Sink{pub: pub, host: host, run: hex.EncodeToString(id[:]), enc: sinks.NewEncoder(), clk: sinks.NewClock(true)}
	if kinds == nil {
		kinds = AllKinds
	}
	for _, k := range kinds {
		for i, a := range AllKinds {
			if a == k {
				s.kinds[i] = true
			}
		}
	}
	return s
}

// Run returns the run's random identifier (in every message ID).
func (s *Sink) Run() string { return s.run }

// App reports whether the sink publishes what the application layer finds.
func (s *Sink) App() bool { return s.kinds[1] || s.kinds[2] || s.kinds[3] || s.kinds[4] }

// Write publishes p and what the decoders found in it.
func (s *Sink) Write(p *stages.Packet) error {
	if s.kinds[0] {
		s.line = s.enc.Line(s.line[:0], p)
		s.data = s.enc.Packet(s.data[:0], p)
		s.emit(KindPacket, p.Time, s.line, s.data)
	}
	// Several messages, heads or hellos one packet completed are linked by Next: a record each.
	for d := p.DNS; d != nil && s.kinds[2]; d = d.Next {
		s.data = s.enc.DNS(s.data[:0], p, d)
		s.emit(KindDNS, p.Time, nil, s.data)
	}
	for h := p.HTTP; h != nil && s.kinds[3]; h = h.Next {
		s.data = s.enc.HTTP(s.data[:0], p, h)
		s.emit(KindHTTP, p.Time, nil, s.data)
	}
	for h := p.TLS; h != nil && s.kinds[4]; h = h.Next {
		s.data = s.enc.TLS(s.data[:0], p, h)
		s.emit(KindTLS, p.Time, nil, s.data)
	}
	return nil
}

// WriteFlow publishes a finished flow.
func (s *Sink) WriteFlow(f *stages.Flow) {
	if s.kinds[1] {
		s.data = s.enc.Flow(s.data[:0], f)
		s.emit(KindFlow, f.Last(), nil, s.data)
	}
}

// Close closes the publisher: what it cannot deliver in its drain time goes to the spool.
func (s *Sink) Close() error { return s.pub.Close() }

// emit builds the envelope and hands the record over.
func (s *Sink) emit(kind string, ts time.Time, line, data []byte) {
	s.seq++
	var o sinks.Object
	o.Begin(s.env[:0])
	o.Str("host", s.host)
	o.Str("run", s.run)
	o.Uint("seq", s.seq)
	o.Str("kind", kind)
	o.Time("ts", s.clk, ts)
	if line != nil {
		o.Str("line", string(line))
	}
	o.Raw("data", data)
	s.env = o.End()
	id := make([]byte, 0, len(s.host)+len(s.run)+24)
	id = append(id, s.host...)
	id = append(id, '.')
	id = append(id, s.run...)
	id = append(id, '.')
	id = strconv.AppendUint(id, s.seq, 10)
	s.pub.Add(&Record{Subject: Subject(s.host, kind), ID: string(id), Data: append([]byte(nil), s.env...)})
}
