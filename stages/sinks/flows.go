package sinks

import (
	"strconv"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
)

// Flows is the sink of the flows view: a line per finished flow, from the flow table (it is a
// FlowWriter), counts originator/responder:
//
//	FLOW TCP 10.0.0.1:5000 --> 10.0.0.2:80 end=fin state=closed duration=1.2s packets=10/8 bytes=1200/5400 cid=1:...
//
// Write prints nothing: the flows come through WriteFlow.
type Flows struct{ appLines }

// NewFlows returns the flows sink writing to out.
func NewFlows(out *Output, opt Options) *Flows {
	return &Flows{newAppLines(out, opt, "flows")}
}

// Write does nothing: a flow is printed when it ends.
func (s *Flows) Write(*stages.Packet) error { return s.err }

// flowPorts says whether a flow of proto has ports to show: TCP, UDP and SCTP always (a port 0
// too); ICMP the type and code pair Community ID hashes, in text where it is not 0; other
// protocols none.
func flowPorts(proto uint8, port uint16) bool {
	switch proto {
	case stages.ProtoTCP, stages.ProtoUDP, stages.ProtoSCTP:
		return true
	case stages.ProtoICMP, stages.ProtoICMPv6:
		return port != 0
	}
	return false
}

// WriteFlow prints a finished flow.
func (s *Flows) WriteFlow(f *stages.Flow) {
	if s.err != nil {
		return
	}
	proto := ProtoName(f.Proto)
	if s.opt.Format == FormatJSON {
		flowJSON(s.json(f.Last(), "flow"), s.clk, f)
		s.endJSON()
		return
	}
	b := s.text(f.Last(), "FLOW")
	b = append(b, proto...)
	b = append(b, ' ')
	b = appendEndpoint(b, f.Src, f.SrcPort, flowPorts(f.Proto, f.SrcPort), "", "")
	b = append(b, " --> "...)
	b = appendEndpoint(b, f.Dst, f.DstPort, flowPorts(f.Proto, f.DstPort), "", "")
	if o := &f.Owner; o.Known() {
		b = append(b, " ["...)
		b = appendBytes(b, o.CommBytes())
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(o.PID), 10)
		b = append(b, ']')
	}
	b = append(b, " end="...)
	b = append(b, f.End.String()...)
	if f.Proto == stages.ProtoTCP {
		b = append(b, " state="...)
		b = append(b, f.State.String()...)
	}
	b = append(b, " duration="...)
	b = append(b, f.Duration().Round(time.Microsecond).String()...)
	b = append(b, " packets="...)
	b = strconv.AppendUint(b, f.Packets[0], 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, f.Packets[1], 10)
	b = append(b, " bytes="...)
	b = strconv.AppendUint(b, f.Bytes[0], 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, f.Bytes[1], 10)
	b = append(b, " cid="...)
	b = flows.AppendFlowCommunityID(b, f)
	s.emit(b)
}

// flowJSON writes the fields of a finished flow into a JSON object.
func flowJSON(w *jsonWriter, clk *clock, f *stages.Flow) {
	w.str("proto", ProtoName(f.Proto))
	w.addr("src", f.Src)
	w.addr("dst", f.Dst)
	if flowPorts(f.Proto, 1) {
		w.uint("sport", uint64(f.SrcPort))
		w.uint("dport", uint64(f.DstPort))
	}
	w.str("end", f.End.String())
	w.quote("first")
	w.b = clk.appendRFC3339(w.b, f.First())
	w.endQuote()
	w.float("duration_s", f.Duration().Seconds())
	w.pair("packets", f.Packets)
	w.pair("bytes", f.Bytes)
	w.pair("payload_bytes", f.PayloadBytes)
	w.str("community_id", flows.FlowCommunityID(f))
	if f.Proto == stages.ProtoTCP {
		w.str("state", f.State.String())
	}
	if o := &f.Owner; o.Known() {
		w.uint("pid", uint64(o.PID))
		w.str("comm", string(o.CommBytes()))
		w.str("cgroup", o.Cgroup)
	}
}
