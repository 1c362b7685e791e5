package zeeklog_test

import (
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
)

// TestConnStates: each of Zeek's conn_state values, from the meaning Zeek's documentation gives
// it (base/protocols/conn/main.zeek, Conn::Info$conn_state), for a connection made up to fit.
func TestConnStates(t *testing.T) {
	const (
		S, A, F, R = stages.TCPSyn, stages.TCPAck, stages.TCPFin, stages.TCPRst
	)
	for _, c := range []struct {
		want    string
		doc     string
		proto   uint8
		pkts    [2]uint64
		flags   [2]uint8
		history string
	}{
		{"S0", "connection attempt seen, no reply", stages.ProtoTCP, [2]uint64{1, 0}, [2]uint8{S, 0}, "S"},
		{"S1", "connection established, not terminated", stages.ProtoTCP, [2]uint64{2, 1}, [2]uint8{S | A, S | A}, "ShA"},
		{"SF", "normal establishment and termination", stages.ProtoTCP, [2]uint64{4, 3}, [2]uint8{S | A | F, S | A | F}, "ShAFf"},
		{"REJ", "connection attempt rejected", stages.ProtoTCP, [2]uint64{1, 1}, [2]uint8{S, R | A}, "Sr"},
		{"S2", "established, close attempt by originator seen (no reply from responder)", stages.ProtoTCP, [2]uint64{3, 1}, [2]uint8{S | A | F, S | A}, "ShAF"},
		{"S3", "established, close attempt by responder seen (no reply from originator)", stages.ProtoTCP, [2]uint64{2, 2}, [2]uint8{S | A, S | A | F}, "ShAf"},
		{"RSTO", "established, originator aborted (sent a RST)", stages.ProtoTCP, [2]uint64{3, 1}, [2]uint8{S | A | R, S | A}, "ShAR"},
		{"RSTR", "responder sent a RST", stages.ProtoTCP, [2]uint64{2, 2}, [2]uint8{S | A, S | A | R}, "ShAr"},
		{"RSTOS0", "originator sent a SYN followed by a RST, never saw a SYN-ACK", stages.ProtoTCP, [2]uint64{2, 0}, [2]uint8{S | R, 0}, "SR"},
		{"RSTRH", "responder sent a SYN ACK followed by a RST, never saw a SYN from the originator", stages.ProtoTCP, [2]uint64{0, 2}, [2]uint8{0, S | A | R}, "hr"},
		{"SH", "originator sent a SYN followed by a FIN, never saw a SYN ACK", stages.ProtoTCP, [2]uint64{2, 0}, [2]uint8{S | F, 0}, "SF"},
		{"SHR", "responder sent a SYN ACK followed by a FIN, never saw a SYN from the originator", stages.ProtoTCP, [2]uint64{0, 2}, [2]uint8{0, S | A | F}, "hf"},
		{"OTH", "no SYN seen, just midstream traffic", stages.ProtoTCP, [2]uint64{3, 3}, [2]uint8{A, A}, "DdAa"},
		{"SF", "UDP: both sides sent", stages.ProtoUDP, [2]uint64{1, 1}, [2]uint8{}, "Dd"},
		{"S0", "UDP: only the originator sent", stages.ProtoUDP, [2]uint64{1, 0}, [2]uint8{}, "D"},
		{"SHR", "UDP: only the responder sent", stages.ProtoUDP, [2]uint64{0, 1}, [2]uint8{}, "d"},
		{"OTH", "ICMP", stages.ProtoICMP, [2]uint64{1, 1}, [2]uint8{}, ""},
	} {
		f := &stages.Flow{Proto: c.proto, Packets: c.pkts, TCPFlags: c.flags}
		copy(f.History[:], c.history)
		if got := zeeklog.ConnState(f); got != c.want {
			t.Errorf("%s (%s): got %s", c.want, c.doc, got)
		}
	}
}
