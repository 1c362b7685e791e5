// Package zeeklog writes Zeek-schema logs (--log-dir): JSON lines with the field names and
// types of Zeek's JSON logs, one file per kind (conn.log, dns.log, http.log, ssl.log,
// weird.log), rotated by time and size. It is an output beside the view's sink
// (views.Output): it reads each packet's DNS messages, HTTP heads and TLS hellos, and each
// finished flow (sinks.FlowWriter), and ties a connection's lines together by its uid.
package zeeklog

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// Kinds are the logs, as their files are named.
var Kinds = []string{"conn", "dns", "http", "ssl", "weird"}

const (
	kConn = iota
	kDNS
	kHTTP
	kSSL
	kWeird
)

// Config says where the logs go and when they rotate.
type Config struct {
	Dir     string        // the directory (made when missing)
	MaxSize int64         // rotate a file once it holds this many bytes (0: never by size)
	Every   time.Duration // rotate at each multiple of this interval of the packets' time (0: never by time)
}

// Services seen on a connection (conn.log's service, in Zeek's names).
const (
	svcDNS = 1 << iota
	svcHTTP
	svcSSL
	svcQUIC
)

// maxPendingHTTP bounds the requests of one connection waiting for their responses: beyond
// it the oldest is written without one.
const maxPendingHTTP = 32

// conn is what the sink keeps of a running connection that carried something it logs.
type conn struct {
	services uint8
	depth    uint64        // HTTP requests seen (trans_depth)
	dns      []pendingDNS  // queries waiting for their responses
	http     []pendingHTTP // requests waiting for their responses
	tls      *pendingTLS   // a ClientHello waiting for the ServerHello
}

// Sink writes the logs. Its methods are called from one goroutine (the chain's).
type Sink struct {
	files [5]logFile
	key   uint64 // the run's uid key
	tail  uint32 // the run's random uid tail
	lone  uint64 // uids of packets outside the flow table
	conns map[uint64]*conn
	buf   []byte
	err   error
}

// New makes the directory and returns a sink writing there; no file is made before its
// first line.
func New(cfg Config) (*Sink, error) {
	if cfg.Dir == "" {
		return nil, errors.New("zeek logs: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	var r [12]byte
	rand.Read(r[:])
	s := &Sink{key: binary.LittleEndian.Uint64(r[:]), tail: binary.LittleEndian.Uint32(r[8:]), conns: map[uint64]*conn{}}
	for i, k := range Kinds {
		s.files[i] = logFile{dir: cfg.Dir, kind: k, maxSize: cfg.MaxSize, every: cfg.Every}
	}
	return s, nil
}

// App reports that the sink reads the application layer.
func (s *Sink) App() bool { return true }

// Rotated returns how many files were rotated so far.
func (s *Sink) Rotated() int {
	n := 0
	for i := range s.files {
		n += s.files[i].rotated
	}
	return n
}

// ids is a log line's connection: its uid and its endpoints as Zeek orients them (the
// originator first).
type ids struct {
	uid                string
	orig, resp         netip.Addr
	origPort, respPort uint16
}

// idsOf returns p's connection: its flow's when the flow table tracks it, else p's own
// endpoints under a uid of its own.
func (s *Sink) idsOf(p *stages.Packet) ids {
	if f := p.Flow; f != nil {
		return ids{uid: s.uid(f.ID), orig: f.Src, resp: f.Dst, origPort: f.SrcPort, respPort: f.DstPort}
	}
	s.lone++
	return ids{uid: s.uid(s.lone | 1<<63), orig: p.Src, resp: p.Dst, origPort: p.SrcPort, respPort: p.DstPort}
}

// ids writes the endpoints (Zeek's conn_id, flattened to dotted keys) and the uid.
func (l *line) ids(c *ids) {
	l.str("uid", c.uid)
	l.addr("id.orig_h", c.orig)
	l.count("id.orig_p", uint64(c.origPort))
	l.addr("id.resp_h", c.resp)
	l.count("id.resp_p", uint64(c.respPort))
}

// uid returns the uid of flow id: 'C' and 17 base62 digits, as Zeek's. The first 11 digits
// are a bijection of the flow's serial number (so unique within the run), the last 6 random
// per run.
func (s *Sink) uid(id uint64) string {
	x := mix(id ^ s.key)
	var b [18]byte
	b[0] = 'C'
	for i := 11; i >= 1; i-- {
		b[i] = base62[x%62]
		x /= 62
	}
	y := s.tail
	for i := 17; i >= 12; i-- {
		b[i] = base62[y%62]
		y /= 62
	}
	return string(b[:])
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// mix is splitmix64's finalizer: a bijection of 64-bit words.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// connOf returns what the sink keeps of p's flow (nil outside the flow table).
func (s *Sink) connOf(p *stages.Packet) *conn {
	if p.Flow == nil {
		return nil
	}
	c := s.conns[p.Flow.ID]
	if c == nil {
		c = &conn{}
		s.conns[p.Flow.ID] = c
	}
	return c
}

// Write logs what the decoders found in p.
func (s *Sink) Write(p *stages.Packet) error {
	if p.DNS == nil && p.HTTP == nil && p.TLS == nil {
		return s.err
	}
	id := s.idsOf(p)
	c := s.connOf(p)
	for d := p.DNS; d != nil; d = d.Next {
		if c != nil {
			c.services |= svcDNS
		}
		s.dns(p, &id, c, d)
	}
	for h := p.HTTP; h != nil; h = h.Next {
		s.http(p, &id, c, h)
	}
	for h := p.TLS; h != nil; h = h.Next {
		s.ssl(p, &id, c, h)
	}
	return s.err
}

// WriteFlow logs a finished flow (conn.log), after what waited on it for a reply.
func (s *Sink) WriteFlow(f *stages.Flow) {
	id := ids{uid: s.uid(f.ID), orig: f.Src, resp: f.Dst, origPort: f.SrcPort, respPort: f.DstPort}
	var services uint8
	if c := s.conns[f.ID]; c != nil {
		s.flushConn(c)
		services = c.services
		delete(s.conns, f.ID)
	}
	s.conn(f, &id, services)
}

// emit writes a finished line to the log of kind k.
func (s *Sink) emit(k int, ts time.Time, b []byte) {
	if s.err == nil {
		s.err = s.files[k].write(ts, b)
	}
}

// Close writes what still waits for a reply and closes the files (the current ones keep
// their names KIND.log); it returns the first error met.
func (s *Sink) Close() error {
	for _, c := range s.conns {
		s.flushConn(c)
	}
	s.conns = nil
	err := s.err
	for i := range s.files {
		if cerr := s.files[i].close(); err == nil {
			err = cerr
		}
	}
	return err
}
