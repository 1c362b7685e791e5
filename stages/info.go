package stages

import (
	"net/netip"
	"time"
)

// What the application decoders (package protocols) put into a packet's DNS, HTTP, TLS. Names
// and text are as the network sent them (DNS names as DNS presents them); the sinks escape
// them for display.

// DNSQuestion is one entry of a DNS question section.
type DNSQuestion struct {
	Name  string // presentation format without the trailing dot; odd bytes as \DDD
	Type  uint16
	Class uint16 // mDNS: the unicast-response bit (0x8000) is cleared
}

// DNSRecord is one resource record of an answer, authority or additional section.
type DNSRecord struct {
	Name  string
	Type  uint16
	Class uint16 // mDNS: the cache-flush bit (0x8000) is cleared
	TTL   uint32
	Data  string     // the record data in presentation format (dig's last column)
	Addr  netip.Addr // A and AAAA: the address
}

// DNSWeird is one reason why a DNS message looks weird: the rule that fired and what fired it.
type DNSWeird struct {
	Rule   string // z, truncated, query_type, query_class, answer_type, answer_class, subdomain, nxdomain_burst
	Detail string // e.g. "TXT", "CHAOS", "len=42 entropy=4.12 sub=...", "count=10 in 4.2s"
}

// DNSInfo is a decoded DNS, mDNS or LLMNR message.
type DNSInfo struct {
	TCP        bool   // carried over TCP (length-prefixed)
	ID         uint16 // message id
	Flags      uint16 // the header's flags word as on the wire (QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode)
	Response   bool   // QR
	Opcode     int
	Rcode      int
	AA, TC     bool // authoritative answer, truncated
	RD, RA     bool // recursion desired, recursion available
	Z          bool // the reserved bit, which must be zero
	AD, CD     bool // authenticated data, checking disabled
	Questions  []DNSQuestion
	Answers    []DNSRecord
	Authority  []DNSRecord
	Additional []DNSRecord
	Err        string        // why decoding stopped early; what was read before is kept
	Matched    bool          // a response whose query was seen
	Latency    time.Duration // with Matched: the response's time minus the query's
	QueryNum   uint64        // with Matched: the query's packet number
	Weird      []DNSWeird    // why the message is weird; empty when it is not
	Next       *DNSInfo      // a further message the same packet completed (DNS over TCP)
}

// HTTPInfo is the head of an HTTP/1.x request or response.
type HTTPInfo struct {
	Request   bool      // a request; otherwise a response
	Method    string    // request method
	URI       string    // request target as sent (percent-encoded)
	Version   string    // "HTTP/1.1", ...
	Host      string    // Host header
	UserAgent string    // User-Agent header
	Referer   string    // Referer header
	Status    int       // response status code
	Reason    string    // response reason phrase
	Partial   bool      // the head was cut short (capture or reassembly limit); later fields may be missing
	Segments  int       // TCP segments the head was reassembled from (0: read from one packet)
	Next      *HTTPInfo // a further head the same packet completed (pipelined requests)
}

// TLS handshake message types the TLS stage decodes.
const (
	TLSClientHello = 1
	TLSServerHello = 2
)

// TLSInfo is a decoded TLS ClientHello or ServerHello.
type TLSInfo struct {
	Hello         uint8    // TLSClientHello or TLSServerHello
	Length        int      // the handshake message's declared length
	RecordVersion uint16   // version field of the first record header
	LegacyVersion uint16   // the hello's legacy_version field
	Version       uint16   // ClientHello: the highest offered (supported_versions, else legacy); ServerHello: the chosen one
	SNI           string   // server_name (host_name) of a ClientHello
	ALPN          []string // ClientHello: protocols offered; ServerHello: the one chosen
	Versions      []uint16 // supported_versions as sent (GREASE included)
	Ciphers       []uint16 // ClientHello: offered suites in wire order (GREASE included)
	Cipher        uint16   // ServerHello: the chosen suite
	Extensions    []uint16 // extension types in wire order (GREASE included)
	SigAlgs       []uint16 // signature_algorithms in wire order
	Groups        []uint16 // supported_groups in wire order
	JA4           string   // ClientHello: JA4 fingerprint; ServerHello: JA4S ("" when Partial)
	Partial       bool     // the hello was cut short of its declared length; later fields may be missing
	Segments      int      // TCP segments (QUIC: Initial packets) it was reassembled from (0: read from one packet)
	HelloRetry    bool     // ServerHello: a HelloRetryRequest (RFC 8446 4.1.3's random)
	QUIC          uint32   // the QUIC version of the Initial packets that carried it (0: TLS over TCP)
	Next          *TLSInfo // a further hello the same packet completed
}
