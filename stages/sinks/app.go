package sinks

import (
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
)

// appLines is what the sinks of the application views share: a line is text,
//
//	2004-05-13 10:17:08 - HTTP 145.254.160.237:3372 --> 65.208.228.223:80 GET http://...
//
// (the kind word coloured with --color), or with -o json an object that starts with ts, view
// and type and carries the packet's endpoints.
type appLines struct {
	out  *Output
	opt  Options
	view string
	clk  *clock
	w    jsonWriter
	err  error
}

func newAppLines(out *Output, opt Options, view string) appLines {
	return appLines{out: out, opt: opt, view: view, clk: newClock(opt.UTC), w: jsonWriter{b: make([]byte, 0, 512)}}
}

// kindColors are the ANSI colours of the kinds of text lines.
var kindColors = map[string]string{"HTTP": colGreen, "TLS": colCyan, "QUIC": colCyan, "DNS": colRed, "FLOW": colBlue}

// text begins a text line at time t: "YYYY-MM-DD HH:MM:SS - KIND ".
func (l *appLines) text(t time.Time, kind string) []byte {
	b := l.clk.appendSeconds(l.w.b[:0], t)
	b = append(b, " - "...)
	if c, ok := kindColors[kind]; ok && l.opt.Color {
		b = append(b, c...)
		b = append(b, kind...)
		b = append(b, colReset...)
	} else {
		b = append(b, kind...)
	}
	return append(b, ' ')
}

// json begins a JSON line at time t: {"ts":...,"view":...,"type":...
func (l *appLines) json(t time.Time, typ string) *jsonWriter {
	l.w.b = l.w.b[:0]
	l.w.beginObject()
	l.w.quote("ts")
	l.w.b = l.clk.appendRFC3339(l.w.b, t)
	l.w.endQuote()
	l.w.str("view", l.view)
	l.w.str("type", typ)
	return &l.w
}

// packetFields writes the endpoints of p (and its flow's Community ID) into a JSON line.
func packetFields(w *jsonWriter, p *stages.Packet) {
	w.addr("src", p.Src)
	w.addr("dst", p.Dst)
	if p.HasPorts() {
		w.uint("sport", uint64(p.SrcPort))
		w.uint("dport", uint64(p.DstPort))
	}
	if p.SrcDomain != "" {
		w.str("src_domain", p.SrcDomain)
	}
	if p.DstDomain != "" {
		w.str("dst_domain", p.DstDomain)
	}
	if p.SrcRDNS != stages.RDNSNone {
		w.str("src_rdns", p.SrcRDNS.String())
	}
	if p.DstRDNS != stages.RDNSNone {
		w.str("dst_rdns", p.DstRDNS.String())
	}
	if p.Flow != nil {
		w.str("community_id", flows.FlowCommunityID(p.Flow))
	}
}

// endJSON ends the JSON line begun with json and writes it.
func (l *appLines) endJSON() {
	l.w.endObject()
	l.emit(l.w.b)
}

// emit ends a line and writes it.
func (l *appLines) emit(b []byte) {
	b = append(b, '\n')
	l.w.b = b
	if l.err == nil {
		l.err = l.out.Write(b)
	}
}

// Close flushes the output and returns the first error met.
func (l *appLines) Close() error {
	if err := l.out.Close(); l.err == nil {
		l.err = err
	}
	return l.err
}
