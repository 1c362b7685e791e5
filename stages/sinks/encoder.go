package sinks

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// Encoder writes what the views print as JSON objects and net_watch lines into byte slices, for
// the outputs outside this package that send or store them (the fleet's publisher): the same
// objects, with the same writer and escapers, as -o json prints. Times are UTC. It is not safe
// for concurrent use.
type Encoder struct {
	clk *clock
	js  JSON
	nw  NetWatch
	w   jsonWriter
}

// NewEncoder returns an Encoder.
func NewEncoder() *Encoder {
	clk := newClock(true)
	return &Encoder{clk: clk, js: JSON{clk: clk}, nw: NetWatch{clk: clk}}
}

// Packet appends p's per-packet object (as -o json prints it, without the newline).
func (e *Encoder) Packet(b []byte, p *stages.Packet) []byte {
	b = e.js.AppendObject(b, p)
	return b[:len(b)-1]
}

// LineLen is the length of the time at the start of a net_watch line, with the " - " after it.
const LineLen = len("2006-01-02 15:04:05 - ")

// Line appends p's net_watch line without its time (the LineLen bytes before the TRANSPORT
// token) and without the newline.
func (e *Encoder) Line(b []byte, p *stages.Packet) []byte {
	n := len(b)
	b = e.nw.AppendLine(b, p)
	copy(b[n:], b[n+LineLen:])
	return b[:len(b)-LineLen-1]
}

// Flow appends a finished flow's object (the flows view's, without ts, view and type).
func (e *Encoder) Flow(b []byte, f *stages.Flow) []byte {
	w := e.begin(b)
	flowJSON(w, e.clk, f)
	return e.end()
}

// DNS appends the object of d, a DNS message p completed (the weird-dns view's fields).
func (e *Encoder) DNS(b []byte, p *stages.Packet, d *stages.DNSInfo) []byte {
	w := e.begin(b)
	dnsJSON(w, p, d)
	return e.end()
}

// HTTP appends the object of h, an HTTP head p completed (the urlwatch view's fields).
func (e *Encoder) HTTP(b []byte, p *stages.Packet, h *stages.HTTPInfo) []byte {
	w := e.begin(b)
	httpJSON(w, p, h)
	return e.end()
}

// TLS appends the object of h, a TLS or QUIC hello p completed (the urlwatch view's fields;
// a QUIC hello's with its quic_version).
func (e *Encoder) TLS(b []byte, p *stages.Packet, h *stages.TLSInfo) []byte {
	w := e.begin(b)
	tlsJSON(w, p, h)
	return e.end()
}

func (e *Encoder) begin(b []byte) *jsonWriter {
	e.w.b = b
	e.w.beginObject()
	return &e.w
}

func (e *Encoder) end() []byte {
	e.w.endObject()
	b := e.w.b
	e.w.b = nil
	return b
}

// Object is the one JSON writer (the sinks' own) for outputs in other packages that write
// objects of their own fields (the Zeek logs): fields in the order written, strings escaped as
// every sink escapes them. Keys are the caller's constants, written as they are.
type Object struct{ w jsonWriter }

// Begin starts an object at the end of b.
func (o *Object) Begin(b []byte) { o.w.b = b; o.w.beginObject() }

// End ends the object and returns the bytes, b of Begin with the object appended.
func (o *Object) End() []byte { o.w.endObject(); return o.w.b }

// Str writes a string field.
func (o *Object) Str(k, v string) { o.w.str(k, v) }

// Uint writes an unsigned integer field.
func (o *Object) Uint(k string, v uint64) { o.w.uint(k, v) }

// Int writes an integer field.
func (o *Object) Int(k string, v int64) {
	o.w.key(k)
	o.w.b = strconv.AppendInt(o.w.b, v, 10)
}

// Bool writes a boolean field.
func (o *Object) Bool(k string, v bool) { o.w.bool(k, v) }

// Float writes a number field as encoding/json writes a float64.
func (o *Object) Float(k string, v float64) { o.w.float(k, v) }

// Addr writes an address as a string field.
func (o *Object) Addr(k string, a netip.Addr) { o.w.addr(k, a) }

// Strs writes a list of strings (null for nil).
func (o *Object) Strs(k string, vs []string) { o.w.strs(k, vs) }

// Floats writes a list of numbers.
func (o *Object) Floats(k string, vs []float64) {
	o.w.array(k)
	for _, v := range vs {
		o.w.sep()
		o.w.float1(v)
	}
	o.w.endArray()
}

// Raw writes a field whose value is JSON already (an object another writer made).
func (o *Object) Raw(k string, v []byte) {
	o.w.key(k)
	o.w.b = append(o.w.b, v...)
}

// Time writes t as an RFC 3339 string in UTC with micro- or nanoseconds, as -o json does.
func (o *Object) Time(k string, clk *Clock, t time.Time) {
	o.w.quote(k)
	o.w.b = clk.c.appendRFC3339(o.w.b, t)
	o.w.endQuote()
}

// Clock is the sinks' clock for outputs in other packages (Object.Time).
type Clock struct{ c *clock }

// NewClock returns a clock writing UTC (utc) or local times.
func NewClock(utc bool) *Clock { return &Clock{newClock(utc)} }

// AppendSeconds appends "YYYY-MM-DD HH:MM:SS", as the lines begin.
func (c *Clock) AppendSeconds(b []byte, t time.Time) []byte { return c.c.appendSeconds(b, t) }
