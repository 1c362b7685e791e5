package stages

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"iter"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

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

// ClassByName returns the class with the given name.
func ClassByName(name string) (Class, bool) {
	for i, n := range classNames {
		if n == name && i != int(ClassNone) {
			return Class(i), true
		}
	}
	return ClassNone, false
}

// NXDomain is the domain of an address whose reverse lookup failed.
const NXDomain = "nxdomain"

// Built-in tags. More can be registered with NewTag.
const (
	TagIncoming    Tags = 1 << iota // an outside address talks to an internal one
	TagOutgoing                     // an internal address talks to an outside one
	TagInternal                     // internal to internal, multicast or broadcast
	TagNXDomain                     // reverse DNS failed for the source or the destination
	numBuiltinTags = iota
)

var tagRegistry = struct {
	sync.Mutex
	names [32]string
	n     int
}{names: [32]string{"incoming", "outgoing", "internal", "nxdomain"}, n: numBuiltinTags}

// NewTag registers a user tag and returns its bit. Names must be unique; there are 32 bits in
// all, four of them built in. Call it at start-up (for example in an init function).
func NewTag(name string) (Tags, error) {
	tagRegistry.Lock()
	defer tagRegistry.Unlock()
	for i := 0; i < tagRegistry.n; i++ {
		if tagRegistry.names[i] == name {
			return 0, fmt.Errorf("tag %q already registered", name)
		}
	}
	if tagRegistry.n == len(tagRegistry.names) {
		return 0, fmt.Errorf("tag %q: all 32 tag bits are in use", name)
	}
	t := Tags(1) << tagRegistry.n
	tagRegistry.names[tagRegistry.n] = name
	tagRegistry.n++
	return t, nil
}

// TagName returns the name of tag bit i ("" when none is registered).
func TagName(i int) string {
	if i < numBuiltinTags {
		return tagRegistry.names[i]
	}
	tagRegistry.Lock()
	defer tagRegistry.Unlock()
	return tagRegistry.names[i]
}

// Names yields the names of the tags set in t, lowest bit first.
func (t Tags) Names() iter.Seq[string] {
	return func(yield func(string) bool) {
		for i := 0; t != 0 && i < 32; i++ {
			if t&(1<<i) == 0 {
				continue
			}
			t &^= 1 << i
			n := TagName(i)
			if n == "" {
				n = fmt.Sprintf("tag%d", i)
			}
			if !yield(n) {
				return
			}
		}
	}
}

// String returns the tag names joined by commas.
func (t Tags) String() string {
	return strings.Join(slices.Collect(t.Names()), ",")
}

// TagFunc computes extra tags for a packet; the Tag stage ORs them into Packet.Tags.
type TagFunc func(p *Packet) Tags

// Tag returns a stage that applies user tag functions to every packet. Place it after the
// Domains stage (and after reverse DNS if the functions look at domain names).
func Tag(fns ...TagFunc) Stage {
	return func(src iter.Seq[*Packet]) iter.Seq[*Packet] {
		return func(yield func(*Packet) bool) {
			for p := range src {
				for _, f := range fns {
					p.Tags |= f(p)
				}
				if !yield(p) {
					return
				}
			}
		}
	}
}

// Interface is a network interface the sensor watches: its own prefixes count as internal and
// its IPv4 directed broadcasts as broadcast.
type Interface struct {
	Name     string
	Index    int
	Prefixes []netip.Prefix // the interface's addresses with their prefix length
}

// LocalInterfaces describes the named interfaces of this host (all of them when names is empty).
func LocalInterfaces(names ...string) ([]Interface, error) {
	var list []net.Interface
	if len(names) == 0 {
		all, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		list = all
	} else {
		for _, n := range names {
			ifi, err := net.InterfaceByName(n)
			if err != nil {
				return nil, fmt.Errorf("interface %q: %w", n, err)
			}
			list = append(list, *ifi)
		}
	}
	out := make([]Interface, 0, len(list))
	for _, ifi := range list {
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
		}
		it := Interface{Name: ifi.Name, Index: ifi.Index}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				addr, ok := netip.AddrFromSlice(ipn.IP)
				if !ok {
					continue
				}
				ones, _ := ipn.Mask.Size()
				addr = addr.Unmap()
				it.Prefixes = append(it.Prefixes, netip.PrefixFrom(addr, ones))
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// ParsePrefixes parses a comma-separated list of CIDRs or bare addresses (as --internal takes).
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for s := range strings.SplitSeq(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("internal network %q: %w", s, err)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("internal network %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// rule maps a prefix to a class; user rules win over built-in ones of the same length.
type rule struct {
	prefix netip.Prefix
	class  Class
	user   bool
}

// Classifier gives addresses their Class by longest-prefix match over the special-purpose
// registries, the --internal networks and the interfaces' prefixes. It is immutable after
// NewClassifier and safe for concurrent use; Classify does not allocate.
//
// Rules are bucketed by the address's first 16 bits (a compressed table: offsets into one rule
// array), longest prefix first, so a public address costs one table read and a private one a
// couple of integer compares.
type Classifier struct {
	off4, off6 []uint32 // 65537 offsets into r4 / r6 per 16-bit bucket
	r4         []rule4
	r6         []rule6
}

type rule4 struct {
	net, mask uint32
	class     Class
}

type rule6 struct {
	hi, lo, mhi, mlo uint64
	class            Class
}

// builtinRules lists the IANA special-purpose registries (v4 and v6), the well-known
// multicast groups and the private ranges, as (CIDR, class) pairs.
var builtinRules = []struct {
	cidr  string
	class Class
}{
	// IPv4 special-purpose registry.
	{"0.0.0.0/8", ClassThisNetwork},
	{"0.0.0.0/32", ClassUnspecified},
	{"10.0.0.0/8", ClassInternal},
	{"100.64.0.0/10", ClassInternal},
	{"127.0.0.0/8", ClassInternal},
	{"169.254.0.0/16", ClassInternal},
	{"172.16.0.0/12", ClassInternal},
	{"192.0.0.0/24", ClassIETFProtocol},
	{"192.0.2.0/24", ClassDocumentation},
	{"192.31.196.0/24", ClassAS112},
	{"192.52.193.0/24", ClassAMT},
	{"192.88.99.0/24", Class6to4Relay},
	{"192.168.0.0/16", ClassInternal},
	{"192.175.48.0/24", ClassAS112},
	{"198.18.0.0/15", ClassBenchmarking},
	{"198.51.100.0/24", ClassDocumentation},
	{"203.0.113.0/24", ClassDocumentation},
	{"240.0.0.0/4", ClassReserved},
	{"255.255.255.255/32", ClassBroadcast},
	// IPv4 multicast.
	{"224.0.0.0/4", ClassMulticast},
	{"224.0.0.1/32", ClassAllHosts},
	{"224.0.0.2/32", ClassAllRouters},
	{"224.0.0.5/32", ClassOSPF},
	{"224.0.0.6/32", ClassOSPF},
	{"224.0.0.9/32", ClassRIP},
	{"224.0.0.10/32", ClassEIGRP},
	{"224.0.0.13/32", ClassPIM},
	{"224.0.0.18/32", ClassVRRP},
	{"224.0.0.22/32", ClassIGMPv3},
	{"224.0.0.102/32", ClassHSRP},
	{"224.0.0.251/32", ClassMulticastDNS},
	{"224.0.0.252/32", ClassLLMNR},
	{"224.0.1.1/32", ClassNTP},
	{"239.255.255.250/32", ClassSSDP},
	// IPv6 special-purpose registry.
	{"::/128", ClassUnspecified},
	{"::1/128", ClassInternal},
	{"64:ff9b::/96", ClassNAT64},
	{"64:ff9b:1::/48", ClassNAT64},
	{"100::/64", ClassDiscard},
	{"100:0:0:1::/64", ClassDiscard},
	{"2001::/23", ClassIETFProtocol},
	{"2001::/32", ClassTeredo},
	{"2001:1::1/128", ClassIETFProtocol},
	{"2001:2::/48", ClassBenchmarking},
	{"2001:3::/32", ClassAMT},
	{"2001:4:112::/48", ClassAS112},
	{"2001:10::/28", ClassORCHID},
	{"2001:20::/28", ClassORCHID},
	{"2001:30::/28", ClassDroneID},
	{"2001:db8::/32", ClassDocumentation},
	{"2002::/16", Class6to4},
	{"2620:4f:8000::/48", ClassAS112},
	{"3fff::/20", ClassDocumentation},
	{"5f00::/16", ClassSRv6},
	{"fc00::/7", ClassInternal},
	{"fe80::/10", ClassInternal},
	// IPv6 multicast.
	{"ff00::/8", ClassMulticast},
	{"ff01::1/128", ClassAllHosts},
	{"ff02::1/128", ClassAllHosts},
	{"ff01::2/128", ClassAllRouters},
	{"ff02::2/128", ClassAllRouters},
	{"ff05::2/128", ClassAllRouters},
	{"ff02::5/128", ClassOSPF},
	{"ff02::6/128", ClassOSPF},
	{"ff02::9/128", ClassRIP},
	{"ff02::a/128", ClassEIGRP},
	{"ff02::d/128", ClassPIM},
	{"ff02::12/128", ClassVRRP},
	{"ff02::16/128", ClassMLDv2},
	{"ff02::66/128", ClassHSRP},
	{"ff02::fb/128", ClassMulticastDNS},
	{"ff05::fb/128", ClassMulticastDNS},
	{"ff02::1:3/128", ClassLLMNR},
	{"ff02::1:2/128", ClassDHCPv6},
	{"ff05::1:3/128", ClassDHCPv6},
	{"ff02::1:ff00:0/104", ClassSolicitedNode},
	{"ff02::c/128", ClassSSDP},
	{"ff05::c/128", ClassSSDP},
	{"ff08::c/128", ClassSSDP},
	{"ff0e::c/128", ClassSSDP},
	{"ff01::101/128", ClassNTP},
	{"ff02::101/128", ClassNTP},
	{"ff05::101/128", ClassNTP},
	{"ff08::101/128", ClassNTP},
	{"ff0e::101/128", ClassNTP},
}

// NewClassifier builds a classifier from the built-in registries plus the user's internal
// networks and the watched interfaces (their prefixes are internal, their IPv4 directed
// broadcast addresses broadcast).
func NewClassifier(internal []netip.Prefix, ifaces []Interface) *Classifier {
	var rules []rule
	for _, b := range builtinRules {
		rules = append(rules, rule{prefix: netip.MustParsePrefix(b.cidr), class: b.class})
	}
	for _, p := range internal {
		rules = append(rules, rule{prefix: unmapPrefix(p).Masked(), class: ClassInternal, user: true})
	}
	for _, it := range ifaces {
		for _, p := range it.Prefixes {
			p = unmapPrefix(p)
			a := p.Addr()
			if a.IsLoopback() || a.IsLinkLocalUnicast() {
				continue // already internal; avoid shadowing nothing
			}
			rules = append(rules, rule{prefix: p.Masked(), class: ClassInternal, user: true})
			if a.Is4() && p.Bits() < 31 {
				rules = append(rules, rule{prefix: netip.PrefixFrom(directedBroadcast(p), 32), class: ClassBroadcast, user: true})
			}
		}
	}
	slices.SortStableFunc(rules, func(a, b rule) int {
		if a.prefix.Bits() != b.prefix.Bits() {
			return cmp.Compare(b.prefix.Bits(), a.prefix.Bits())
		}
		if a.user != b.user {
			if a.user {
				return -1
			}
			return 1
		}
		return 0
	})
	c := &Classifier{}
	c.off4, c.r4 = buildTable(rules, true, func(r rule) rule4 {
		p := r.prefix
		mask := ^uint32(0) << (32 - p.Bits())
		if p.Bits() == 0 {
			mask = 0
		}
		return rule4{net: v4u32(p.Addr()), mask: mask, class: r.class}
	})
	c.off6, c.r6 = buildTable(rules, false, func(r rule) rule6 {
		hi, lo := v6u64(r.prefix.Addr())
		mhi, mlo := mask128(r.prefix.Bits())
		return rule6{hi: hi, lo: lo, mhi: mhi, mlo: mlo, class: r.class}
	})
	return c
}

// buildTable lays out the rules of one family (already sorted, longest prefix first) as a
// compressed table: off[k]..off[k+1] index the rules that cover 16-bit bucket k.
func buildTable[T any](rules []rule, v4 bool, conv func(rule) T) ([]uint32, []T) {
	off := make([]uint32, 65537)
	for _, r := range rules {
		if r.prefix.Addr().Is4() != v4 {
			continue
		}
		lo, hi := bucketRange(r.prefix)
		for k := lo; k <= hi; k++ {
			off[k+1]++
		}
	}
	for k := 1; k <= 65536; k++ {
		off[k] += off[k-1]
	}
	out := make([]T, off[65536])
	fill := make([]uint32, 65536)
	copy(fill, off[:65536])
	for _, r := range rules {
		if r.prefix.Addr().Is4() != v4 {
			continue
		}
		t := conv(r)
		lo, hi := bucketRange(r.prefix)
		for k := lo; k <= hi; k++ {
			out[fill[k]] = t
			fill[k]++
		}
	}
	return off, out
}

func v4u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func v6u64(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return
}

func mask128(bits int) (hi, lo uint64) {
	switch {
	case bits == 0:
		return 0, 0
	case bits <= 64:
		return ^uint64(0) << (64 - bits), 0
	case bits == 128:
		return ^uint64(0), ^uint64(0)
	}
	return ^uint64(0), ^uint64(0) << (128 - bits)
}

// bucketRange returns the range of 16-bit buckets (the address's first two bytes) a prefix covers.
func bucketRange(p netip.Prefix) (lo, hi int) {
	var first int
	if p.Addr().Is4() {
		first = int(v4u32(p.Addr()) >> 16)
	} else {
		h, _ := v6u64(p.Addr())
		first = int(h >> 48)
	}
	if p.Bits() >= 16 {
		return first, first
	}
	span := 1 << (16 - p.Bits())
	lo = first &^ (span - 1)
	return lo, lo + span - 1
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() {
		bits := max(p.Bits()-96, 0)
		return netip.PrefixFrom(a.Unmap(), bits)
	}
	return p
}

func directedBroadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Classify returns the class of a; ClassNone for the zero Addr. IPv4-mapped IPv6 addresses
// are classified as the IPv4 address they carry.
func (c *Classifier) Classify(a netip.Addr) Class {
	b := a.As16()
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	if a.Is4() || a.Is4In6() {
		x := uint32(lo)
		k := x >> 16
		for _, r := range c.r4[c.off4[k]:c.off4[k+1]] {
			if x&r.mask == r.net {
				return r.class
			}
		}
		return ClassPublic
	}
	if !a.IsValid() {
		return ClassNone
	}
	k := hi >> 48
	for _, r := range c.r6[c.off6[k]:c.off6[k+1]] {
		if hi&r.mhi == r.hi && lo&r.mlo == r.lo {
			return r.class
		}
	}
	return ClassPublic
}

// Domains returns the stage that classifies both addresses of every packet, sets SrcDomain and
// DstDomain to the class names (reverse DNS later replaces those of public addresses) and adds
// the direction tags as the original chains PacketTags did: internal source to internal,
// multicast or broadcast destination is "internal", internal to elsewhere "outgoing", elsewhere
// to internal "incoming".
func Domains(c *Classifier) Stage {
	return func(src iter.Seq[*Packet]) iter.Seq[*Packet] {
		return func(yield func(*Packet) bool) {
			for p := range src {
				c.Annotate(p)
				if !yield(p) {
					return
				}
			}
		}
	}
}

// Annotate sets the classes, class-name domains and direction tags of one packet.
func (c *Classifier) Annotate(p *Packet) {
	p.SrcClass = c.Classify(p.Src)
	p.DstClass = c.Classify(p.Dst)
	p.SrcDomain = classNames[p.SrcClass]
	p.DstDomain = classNames[p.DstClass]
	p.Tags |= DirectionTag(p.SrcClass, p.DstClass)
}

// DirectionTag returns TagInternal, TagOutgoing, TagIncoming or 0 for a pair of classes.
func DirectionTag(src, dst Class) Tags {
	if src == ClassInternal {
		if dst == ClassInternal || dst == ClassBroadcast || dst.IsMulticast() {
			return TagInternal
		}
		if dst == ClassNone {
			return 0
		}
		return TagOutgoing
	}
	if dst == ClassInternal && src != ClassNone {
		return TagIncoming
	}
	return 0
}

// Meta returns a stage that fills Packet.Iface from Packet.Ifindex when the source left it empty.
func Meta(names map[uint32]string) Stage {
	return func(src iter.Seq[*Packet]) iter.Seq[*Packet] {
		return func(yield func(*Packet) bool) {
			for p := range src {
				if p.Iface == "" {
					p.Iface = names[p.Ifindex]
				}
				if !yield(p) {
					return
				}
			}
		}
	}
}
