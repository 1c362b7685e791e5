package stages

import (
	"iter"
	"strconv"
	"strings"
)

// Class is the class of an address: internal, multicast_dns, broadcast, ... (package classify
// decides it).
type Class uint8

// Tags is a set of per-packet tags, one bit each.
type Tags uint32

// Address classes. ClassPublic addresses are named by reverse DNS; every other class is shown
// by its name (Class.String) in the net_watch line. The special-purpose ranges follow the IANA
// IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and the RFCs each entry cites).
const (
	ClassNone          Class = iota // no IP address (non-IP frame)
	ClassPublic                     // global unicast: named by reverse DNS
	ClassInternal                   // RFC 1918, 100.64/10, loopback, link-local, ULA, --internal, own prefixes
	ClassBroadcast                  // 255.255.255.255 and the interfaces' directed broadcasts
	ClassUnspecified                // 0.0.0.0 and ::
	ClassThisNetwork                // 0.0.0.0/8 (RFC 791)
	ClassDocumentation              // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
	ClassBenchmarking               // 198.18/15 (RFC 2544), 2001:2::/48 (RFC 5180)
	ClassReserved                   // 240/4 (RFC 1112)
	ClassIETFProtocol               // 192.0.0/24 (RFC 6890), 2001::/23 (RFC 2928)
	ClassAS112                      // 192.31.196/24, 192.175.48/24, 2001:4:112::/48, 2620:4f:8000::/48
	ClassAMT                        // 192.52.193/24, 2001:3::/32 (RFC 7450)
	Class6to4Relay                  // 192.88.99/24 (RFC 7526, deprecated)
	ClassTeredo                     // 2001::/32 (RFC 4380)
	Class6to4                       // 2002::/16 (RFC 3056)
	ClassNAT64                      // 64:ff9b::/96 (RFC 6052), 64:ff9b:1::/48 (RFC 8215)
	ClassDiscard                    // 100::/64 (RFC 6666), 100:0:0:1::/64 (RFC 9780)
	ClassORCHID                     // 2001:10::/28 (RFC 4843), 2001:20::/28 (RFC 7343)
	ClassDroneID                    // 2001:30::/28 (RFC 9374)
	ClassSRv6                       // 5f00::/16 (RFC 9602)
	ClassMulticast                  // any other multicast group
	ClassAllHosts                   // 224.0.0.1, ff01::1, ff02::1
	ClassAllRouters                 // 224.0.0.2, ff01::2, ff02::2, ff05::2
	ClassMulticastDNS               // 224.0.0.251, ff02::fb, ff05::fb (RFC 6762)
	ClassLLMNR                      // 224.0.0.252, ff02::1:3 (RFC 4795)
	ClassSSDP                       // 239.255.255.250, ff0X::c
	ClassIGMPv3                     // 224.0.0.22 (RFC 3376)
	ClassMLDv2                      // ff02::16 (RFC 3810)
	ClassSolicitedNode              // ff02::1:ff00:0/104 (RFC 4291)
	ClassOSPF                       // 224.0.0.5, 224.0.0.6, ff02::5, ff02::6
	ClassRIP                        // 224.0.0.9, ff02::9
	ClassEIGRP                      // 224.0.0.10, ff02::a
	ClassPIM                        // 224.0.0.13, ff02::d
	ClassVRRP                       // 224.0.0.18, ff02::12
	ClassHSRP                       // 224.0.0.102, ff02::66
	ClassDHCPv6                     // ff02::1:2, ff05::1:3 (RFC 8415)
	ClassNTP                        // 224.0.1.1, ff0X::101
	numClasses
)

var classNames = [numClasses]string{
	ClassNone:          "",
	ClassPublic:        "public",
	ClassInternal:      "internal",
	ClassBroadcast:     "broadcast",
	ClassUnspecified:   "unspecified",
	ClassThisNetwork:   "this_network",
	ClassDocumentation: "documentation",
	ClassBenchmarking:  "benchmarking",
	ClassReserved:      "reserved",
	ClassIETFProtocol:  "ietf_protocol",
	ClassAS112:         "as112",
	ClassAMT:           "amt",
	Class6to4Relay:     "6to4_relay",
	ClassTeredo:        "teredo",
	Class6to4:          "6to4",
	ClassNAT64:         "nat64",
	ClassDiscard:       "discard",
	ClassORCHID:        "orchid",
	ClassDroneID:       "drone_id",
	ClassSRv6:          "srv6",
	ClassMulticast:     "multicast",
	ClassAllHosts:      "all_hosts",
	ClassAllRouters:    "all_routers",
	ClassMulticastDNS:  "multicast_dns",
	ClassLLMNR:         "llmnr",
	ClassSSDP:          "ssdp",
	ClassIGMPv3:        "igmpv3_routers",
	ClassMLDv2:         "mldv2_routers",
	ClassSolicitedNode: "solicited_node",
	ClassOSPF:          "ospf_routers",
	ClassRIP:           "rip_routers",
	ClassEIGRP:         "eigrp_routers",
	ClassPIM:           "pim_routers",
	ClassVRRP:          "vrrp",
	ClassHSRP:          "hsrp",
	ClassDHCPv6:        "dhcpv6_servers",
	ClassNTP:           "ntp",
}

// String returns the class's name as the net_watch line shows it ("" for ClassNone).
func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// IsMulticast reports whether c is a multicast class (named or not).
func (c Class) IsMulticast() bool { return c >= ClassMulticast && c < numClasses }

// NXDomain is the domain of an address whose reverse lookup was answered NXDOMAIN (and only
// that: a lookup that failed otherwise leaves the address's class, and says why in RDNS).
const NXDomain = "nxdomain"

// RDNS is how the reverse-DNS stage came by an address's domain (Packet.SrcRDNS, DstRDNS):
// the name, the answer that there is none, or why there is no answer. JSON shows it as
// src_rdns and dst_rdns; the exit statistics count the lookups by it.
type RDNS uint8

// Reverse-DNS outcomes.
const (
	RDNSNone        RDNS = iota // not looked up: not a public address, or -n
	RDNSName                    // a PTR answer named it
	RDNSHosts                   // the hosts file named it
	RDNSNXDomain                // the server answered NXDOMAIN: Domain is NXDomain
	RDNSNoData                  // the server answered without a PTR record (NODATA)
	RDNSTimeout                 // no server answered in time
	RDNSRefused                 // the server refused: an ICMP port unreachable, or rcode REFUSED
	RDNSUnreachable             // no route to the server (network or host unreachable)
	RDNSServFail                // the server answered SERVFAIL
	RDNSError                   // another failure: another rcode, a malformed answer, a local error
	RDNSPending                 // the packet left before its lookup ended (bounded wait, full tables)
	NumRDNS                     // the number of outcomes
)

var rdnsNames = [NumRDNS]string{"", "name", "hosts", "nxdomain", "nodata", "timeout", "refused", "unreachable", "servfail", "error", "pending"}

// String returns the outcome's name as JSON shows it ("" for RDNSNone).
func (r RDNS) String() string {
	if r < NumRDNS {
		return rdnsNames[r]
	}
	return "unknown"
}

// Tags, one bit each, set by the classification (the direction) and the reverse-DNS stage.
const (
	TagIncoming Tags = 1 << iota // an outside address talks to an internal one
	TagOutgoing                  // an internal address talks to an outside one
	TagInternal                  // internal to internal, multicast or broadcast
	TagNXDomain                  // reverse DNS failed for the source or the destination
)

var tagNames = [...]string{"incoming", "outgoing", "internal", "nxdomain"}

// TagName returns the name of tag bit i ("tag<i>" for a bit without a name).
func TagName(i int) string {
	if i >= 0 && i < len(tagNames) {
		return tagNames[i]
	}
	return "tag" + strconv.Itoa(i)
}

// Names yields the names of the tags set in t, lowest bit first.
func (t Tags) Names() iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := 0; t != 0 && i < 32; i++ {
			if t&(1<<i) == 0 {
				continue
			}
			t &^= 1 << i
			if !yield(TagName(i)) {
				return
			}
		}
	}
}

// String returns the tag names joined by commas.
func (t Tags) String() string {
	var b strings.Builder
	for n := range t.Names() {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
	}
	return b.String()
}
