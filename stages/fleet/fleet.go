// Package fleet sends what the views produce to a distributed log, so that the lines of many
// sensors can be read in one place, and reads them back (chains-sensor watch).
//
// A sensor's Sink (an output beside the view's sink, views.Output) turns each packet, finished
// flow, DNS message, HTTP head and TLS hello into a Record: a JSON envelope (host, run, seq,
// kind, ts, the net_watch line for a packet, and the object -o json prints) with the subject
// chains.<host>.<kind> and a message ID unique to the record (<host>.<run>.<seq>). A Publisher
// takes records without ever blocking the chain: a bounded queue in memory, a bounded spool on
// disk while the log does not answer (or answers slower than the sensor makes records), and
// counters of what was made, published, acknowledged, spooled and dropped. It hands records to
// a Writer, the small interface a log's client implements: JetStream (jetstream.go) now, a
// Kafka writer next to it later.
//
// Nothing is lost silently and nothing is stored twice: a record is removed from the queue only
// when the log acknowledges it; a publish that fails or times out is sent again with the same
// message ID, which the stream's duplicate window (JetStream's Nats-Msg-Id) recognises; what is
// left at exit goes to the spool, which the next run sends first; a record that finds both the
// queue and the spool full is dropped and counted.
package fleet

import (
	"fmt"
	"strings"
)

// Record is one record for the log: its subject, its message ID and its bytes (the envelope).
type Record struct {
	Subject string
	ID      string
	Data    []byte
}

// size is what a record costs the queue's byte bound.
func (r *Record) size() int { return len(r.Subject) + len(r.ID) + len(r.Data) + 64 }

// Writer is a log's client: it sends records asynchronously and reports each one's outcome to
// the Handler it was made with, exactly once per Send that returned nil (Acked or Failed, from
// any goroutine). JetStream is one; a Kafka writer (franz-go) would be another.
type Writer interface {
	// Ready reports whether the log can take records now (connected, the stream there).
	Ready() bool
	// Send sends r. An error means it was not sent (the caller keeps it); nil means the
	// outcome will come to the Handler.
	Send(r *Record) error
	// Close disconnects; outcomes not reported yet are not reported.
	Close() error
}

// Handler receives the outcomes of a Writer's sends.
type Handler interface {
	// Acked says the log stored the record with this ID (dup: it had it already, from an
	// earlier send of the same record).
	Acked(id string, dup bool)
	// Failed says the send of the record with this ID did not reach the log, or timed out:
	// send it again.
	Failed(id string, err error)
}

// Kinds of records, the last token of their subjects.
const (
	KindPacket = "packet"
	KindFlow   = "flow"
	KindDNS    = "dns"
	KindHTTP   = "http"
	KindTLS    = "tls"
)

// AllKinds are the kinds a sensor publishes by default.
var AllKinds = []string{KindPacket, KindFlow, KindDNS, KindHTTP, KindTLS}

// SubjectPrefix begins every subject: chains.<host>.<kind>.
const SubjectPrefix = "chains"

// Subject returns the subject of a host's records of a kind.
func Subject(host, kind string) string { return SubjectPrefix + "." + host + "." + kind }

// ParseKinds parses a list of kinds ("all", or names from AllKinds, comma-separated).
func ParseKinds(s string) ([]string, error) {
	if s == "" || s == "all" {
		return AllKinds, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		ok := false
		for _, a := range AllKinds {
			ok = ok || a == k
		}
		if !ok {
			return nil, fmt.Errorf("kind %q: want all or some of %s", k, strings.Join(AllKinds, ","))
		}
		out = append(out, k)
	}
	return out, nil
}

// HostToken makes a host name a subject token: letters, digits, '-' and '_' stay, anything
// else (the dots of a domain name, wildcards, spaces) becomes '_'. An empty name is "unknown".
func HostToken(host string) string {
	b := []byte(host)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "unknown"
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
