package zeeklog

import (
	"regexp"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
)

// conn writes f's conn.log line.
func (s *Sink) conn(f *stages.Flow, id *ids, services uint8) {
	var l line
	l.begin(s.buf[:0])
	l.time("ts", f.First())
	l.ids(id)
	l.str("proto", protoName(f.Proto))
	if sv := serviceString(services); sv != "" {
		l.str("service", sv)
	}
	l.interval("duration", f.Duration())
	l.count("orig_bytes", f.PayloadBytes[0])
	l.count("resp_bytes", f.PayloadBytes[1])
	l.str("conn_state", ConnState(f))
	if h := f.HistoryString(); h != "" {
		l.str("history", h)
	}
	l.count("orig_pkts", f.Packets[0])
	l.count("orig_ip_bytes", f.IPBytes[0])
	l.count("resp_pkts", f.Packets[1])
	l.count("resp_ip_bytes", f.IPBytes[1])
	l.key("community_id")
	l.b = append(l.b, '"')
	l.b = flows.AppendFlowCommunityID(l.b, f)
	l.b = append(l.b, '"')
	s.buf = l.end()
	s.emit(kConn, f.First(), s.buf)
}

// protoName is Zeek's transport_proto: tcp, udp, icmp (ICMPv6 too) or unknown_transport.
func protoName(p uint8) string {
	switch p {
	case stages.ProtoTCP:
		return "tcp"
	case stages.ProtoUDP:
		return "udp"
	case stages.ProtoICMP, stages.ProtoICMPv6:
		return "icmp"
	}
	return "unknown_transport"
}

// serviceString is conn.log's service: the protocols found, comma-separated, as Zeek names
// them (TLS is ssl; a QUIC connection is quic,ssl).
func serviceString(sv uint8) string {
	var b []byte
	for _, x := range []struct {
		bit  uint8
		name string
	}{{svcDNS, "dns"}, {svcHTTP, "http"}, {svcQUIC, "quic"}, {svcSSL, "ssl"}} {
		if sv&x.bit != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, x.name...)
		}
	}
	return string(b)
}

// An endpoint's TCP state, as Zeek's analyzer keeps it (TCP_INACTIVE, ...), worked out from
// the flags the endpoint sent.
const (
	epInactive = iota // sent nothing
	epSynSent
	epSynAckSent
	epPartial // sent something, but no SYN: picked up midstream
	epEstablished
	epClosed // sent a FIN
	epReset  // sent a RST
)

// endpoint returns the state of f's endpoint dir (0: the originator).
func endpoint(f *stages.Flow, dir int) int {
	fl, peer := f.TCPFlags[dir], f.TCPFlags[1-dir]
	switch {
	case f.Packets[dir] == 0:
		return epInactive
	case fl&stages.TCPRst != 0:
		return epReset
	case fl&stages.TCPFin != 0:
		return epClosed
	case fl&stages.TCPSyn == 0:
		return epPartial
	}
	// The handshake is complete once both sides sent a SYN and the originator acknowledged.
	done := peer&stages.TCPSyn != 0 && f.TCPFlags[0]&stages.TCPAck != 0
	switch {
	case done:
		return epEstablished
	case dir == 0:
		return epSynSent
	}
	return epSynAckSent
}

// rstos0 is Zeek's pattern of the history of an RSTOS0 connection.
var rstos0 = regexp.MustCompile(`^\^?S[^HAFGIQ]*R`)

// ConnState returns Zeek's conn_state of f (the logic of Zeek's base/protocols/conn's
// conn_state function, over the endpoints' states):
//
//	S0 attempt, no reply; S1 established, not closed; SF closed normally; REJ attempt
//	rejected; S2/S3 established, only the originator/responder closed; RSTO/RSTR
//	established, the originator/responder reset; RSTOS0 originator SYN then RST, no SYN-ACK;
//	RSTRH responder SYN-ACK then RST, no SYN; SH/SHR originator/responder SYN (SYN-ACK) then
//	FIN, nothing from the other side; OTH anything else (midstream traffic).
//
// UDP: SF when both sides sent, S0 the originator only, SHR the responder only.
func ConnState(f *stages.Flow) string {
	switch f.Proto {
	case stages.ProtoTCP:
	case stages.ProtoUDP:
		switch o, r := f.Packets[0] > 0, f.Packets[1] > 0; {
		case o && r:
			return "SF"
		case o:
			return "S0"
		case r:
			return "SHR"
		}
		return "OTH"
	default:
		return "OTH"
	}
	os, rs := endpoint(f, 0), endpoint(f, 1)
	oInactive := os == epInactive || os == epPartial
	rInactive := rs == epInactive || rs == epPartial
	switch {
	case rs == epReset:
		if os == epSynSent || os == epSynAckSent || (os == epReset && f.PayloadBytes[0] == 0 && f.PayloadBytes[1] == 0) {
			return "REJ"
		}
		if oInactive {
			return "RSTRH"
		}
		return "RSTR"
	case os == epReset:
		if rInactive {
			if rstos0.MatchString(f.HistoryString()) {
				return "RSTOS0"
			}
			return "OTH"
		}
		return "RSTO"
	case rs == epClosed && os == epClosed:
		return "SF"
	case os == epClosed:
		if rInactive {
			return "SH"
		}
		return "S2"
	case rs == epClosed:
		if oInactive {
			return "SHR"
		}
		return "S3"
	case os == epSynSent && rs == epInactive:
		return "S0"
	case os == epEstablished && rs == epEstablished:
		return "S1"
	}
	return "OTH"
}
