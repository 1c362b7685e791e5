package stages

import (
	"net/netip"
	"time"
)

// FlowEnd says why a flow was reported as finished.
type FlowEnd uint8

// Reasons a flow ends.
const (
	FlowRunning FlowEnd = iota // not finished
	FlowFIN                    // TCP: both sides sent FIN
	FlowRST                    // TCP: a side sent RST
	FlowIdle                   // no packet for the idle timeout
	FlowActive                 // open longer than the active timeout: reported, then counted afresh
	FlowEvicted                // pushed out of a full table
	FlowFlushed                // the input ended
)

var flowEndNames = [...]string{"running", "fin", "rst", "idle", "active", "evicted", "eof"}

// String returns the lower-case name of the reason.
func (e FlowEnd) String() string {
	if int(e) < len(flowEndNames) {
		return flowEndNames[e]
	}
	return "unknown"
}

// TCPState is the connection state a TCP flow reached.
type TCPState uint8

// TCP states, in the order a connection goes through them.
const (
	TCPNone        TCPState = iota // no handshake seen (or not TCP)
	TCPSynSent                     // the originator's SYN
	TCPSynAck                      // the responder's SYN-ACK
	TCPEstablished                 // the handshake completed, or data went both ways
	TCPClosing                     // one side sent FIN
	TCPClosed                      // both sides sent FIN
	TCPReset                       // a side sent RST
)

var tcpStateNames = [...]string{"none", "syn_sent", "syn_ack", "established", "closing", "closed", "reset"}

// String returns the lower-case name of the state.
func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "unknown"
}

// Flow is a bidirectional flow, as the flow table (package flows) keeps it: the packets of one
// 5-tuple both ways. Direction 0 goes from the originator (Src) to the responder (Dst),
// direction 1 back. For ICMP, the ports are Community ID's: the type and the counterpart type
// or the code.
type Flow struct {
	ID               uint64 // serial number, from 1, unique within the table's life
	Proto            uint8
	Src, Dst         netip.Addr // originator and responder
	SrcPort, DstPort uint16
	OneWay           bool      // ICMP message without a counterpart type
	FirstNs, LastNs  int64     // first and last packet time, Unix nanoseconds
	Packets          [2]uint64 // per direction
	Bytes            [2]uint64 // wire bytes per direction
	PayloadBytes     [2]uint64 // transport payload bytes per direction, as declared
	TCPFlags         [2]uint8  // TCP flags seen per direction, ORed
	State            TCPState
	End              FlowEnd // why it finished (FlowRunning until then)
	// Owner is the local process its first packet that named one named (zero: none).
	Owner Owner
	// IPBytes are the IP-level bytes per direction (IPv4 total length, IPv6 payload length
	// plus its 40-byte header), as Zeek's orig_ip_bytes and resp_ip_bytes count them.
	IPBytes [2]uint64
	// History is Zeek's conn history: the first occurrence, in order, of each of S (a SYN
	// without ACK), H (a SYN-ACK), A (a pure ACK), D (payload), F (FIN) and R (RST), upper
	// case from the originator and lower case from the responder; NUL-padded (HistoryString).
	History [12]byte
}

// HistoryString returns History without its padding ("" when nothing was recorded).
func (f *Flow) HistoryString() string {
	n := 0
	for n < len(f.History) && f.History[n] != 0 {
		n++
	}
	return string(f.History[:n])
}

// AddHistory records letter (upper case: the originator's) once per direction: a letter
// already there is not added again.
func (f *Flow) AddHistory(letter byte, reply bool) {
	if reply {
		letter += 'a' - 'A'
	}
	for i, c := range f.History {
		if c == letter {
			return
		}
		if c == 0 {
			f.History[i] = letter
			return
		}
	}
}

// First returns the time of the flow's first packet.
func (f *Flow) First() time.Time { return time.Unix(0, f.FirstNs) }

// Last returns the time of the flow's latest packet.
func (f *Flow) Last() time.Time { return time.Unix(0, f.LastNs) }

// Duration returns the time from the first to the latest packet.
func (f *Flow) Duration() time.Duration { return time.Duration(f.LastNs - f.FirstNs) }
