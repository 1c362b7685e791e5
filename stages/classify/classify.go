// Package classify gives addresses their class (stages.Class: internal, multicast_dns,
// broadcast, documentation, ...) from the IANA special-purpose registries, the --internal
// networks and the watched interfaces' own prefixes, and tags each packet with its direction.
// A new class is a value in the vocabulary (stages/class.go) and a rule in builtinRules.
package classify

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"iter"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/chains-sensor/chains-sensor/stages"
)

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
	class  stages.Class
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
	class     stages.Class
}

type rule6 struct {
	hi, lo, mhi, mlo uint64
	class            stages.Class
}

// builtinRules lists the IANA special-purpose registries (v4 and v6), the well-known
// multicast groups and the private ranges, as (CIDR, class) pairs.
var builtinRules = []struct {
	cidr  string
	class stages.Class
}{
	// IPv4 special-purpose registry.
	{"0.0.0.0/8", stages.ClassThisNetwork},
	{"0.0.0.0/32", stages.ClassUnspecified},
	{"10.0.0.0/8", stages.ClassInternal},
	{"100.64.0.0/10", stages.ClassInternal},
	{"127.0.0.0/8", stages.ClassInternal},
	{"169.254.0.0/16", stages.ClassInternal},
	{"172.16.0.0/12", stages.ClassInternal},
	{"192.0.0.0/24", stages.ClassIETFProtocol},
	{"192.0.2.0/24", stages.ClassDocumentation},
	{"192.31.196.0/24", stages.ClassAS112},
	{"192.52.193.0/24", stages.ClassAMT},
	{"192.88.99.0/24", stages.Class6to4Relay},
	{"192.168.0.0/16", stages.ClassInternal},
	{"192.175.48.0/24", stages.ClassAS112},
	{"198.18.0.0/15", stages.ClassBenchmarking},
	{"198.51.100.0/24", stages.ClassDocumentation},
	{"203.0.113.0/24", stages.ClassDocumentation},
	{"240.0.0.0/4", stages.ClassReserved},
	{"255.255.255.255/32", stages.ClassBroadcast},
	// IPv4 multicast.
	{"224.0.0.0/4", stages.ClassMulticast},
	{"224.0.0.1/32", stages.ClassAllHosts},
	{"224.0.0.2/32", stages.ClassAllRouters},
	{"224.0.0.5/32", stages.ClassOSPF},
	{"224.0.0.6/32", stages.ClassOSPF},
	{"224.0.0.9/32", stages.ClassRIP},
	{"224.0.0.10/32", stages.ClassEIGRP},
	{"224.0.0.13/32", stages.ClassPIM},
	{"224.0.0.18/32", stages.ClassVRRP},
	{"224.0.0.22/32", stages.ClassIGMPv3},
	{"224.0.0.102/32", stages.ClassHSRP},
	{"224.0.0.251/32", stages.ClassMulticastDNS},
	{"224.0.0.252/32", stages.ClassLLMNR},
	{"224.0.1.1/32", stages.ClassNTP},
	{"239.255.255.250/32", stages.ClassSSDP},
	// IPv6 special-purpose registry.
	{"::/128", stages.ClassUnspecified},
	{"::1/128", stages.ClassInternal},
	{"64:ff9b::/96", stages.ClassNAT64},
	{"64:ff9b:1::/48", stages.ClassNAT64},
	{"100::/64", stages.ClassDiscard},
	{"100:0:0:1::/64", stages.ClassDiscard},
	{"2001::/23", stages.ClassIETFProtocol},
	{"2001::/32", stages.ClassTeredo},
	{"2001:1::1/128", stages.ClassIETFProtocol},
	{"2001:2::/48", stages.ClassBenchmarking},
	{"2001:3::/32", stages.ClassAMT},
	{"2001:4:112::/48", stages.ClassAS112},
	{"2001:10::/28", stages.ClassORCHID},
	{"2001:20::/28", stages.ClassORCHID},
	{"2001:30::/28", stages.ClassDroneID},
	{"2001:db8::/32", stages.ClassDocumentation},
	{"2002::/16", stages.Class6to4},
	{"2620:4f:8000::/48", stages.ClassAS112},
	{"3fff::/20", stages.ClassDocumentation},
	{"5f00::/16", stages.ClassSRv6},
	{"fc00::/7", stages.ClassInternal},
	{"fe80::/10", stages.ClassInternal},
	// IPv6 multicast.
	{"ff00::/8", stages.ClassMulticast},
	{"ff01::1/128", stages.ClassAllHosts},
	{"ff02::1/128", stages.ClassAllHosts},
	{"ff01::2/128", stages.ClassAllRouters},
	{"ff02::2/128", stages.ClassAllRouters},
	{"ff05::2/128", stages.ClassAllRouters},
	{"ff02::5/128", stages.ClassOSPF},
	{"ff02::6/128", stages.ClassOSPF},
	{"ff02::9/128", stages.ClassRIP},
	{"ff02::a/128", stages.ClassEIGRP},
	{"ff02::d/128", stages.ClassPIM},
	{"ff02::12/128", stages.ClassVRRP},
	{"ff02::16/128", stages.ClassMLDv2},
	{"ff02::66/128", stages.ClassHSRP},
	{"ff02::fb/128", stages.ClassMulticastDNS},
	{"ff05::fb/128", stages.ClassMulticastDNS},
	{"ff02::1:3/128", stages.ClassLLMNR},
	{"ff02::1:2/128", stages.ClassDHCPv6},
	{"ff05::1:3/128", stages.ClassDHCPv6},
	{"ff02::1:ff00:0/104", stages.ClassSolicitedNode},
	{"ff02::c/128", stages.ClassSSDP},
	{"ff05::c/128", stages.ClassSSDP},
	{"ff08::c/128", stages.ClassSSDP},
	{"ff0e::c/128", stages.ClassSSDP},
	{"ff01::101/128", stages.ClassNTP},
	{"ff02::101/128", stages.ClassNTP},
	{"ff05::101/128", stages.ClassNTP},
	{"ff08::101/128", stages.ClassNTP},
	{"ff0e::101/128", stages.ClassNTP},
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
		rules = append(rules, rule{prefix: unmapPrefix(p).Masked(), class: stages.ClassInternal, user: true})
	}
	for _, it := range ifaces {
		for _, p := range it.Prefixes {
			p = unmapPrefix(p)
			a := p.Addr()
			if a.IsLoopback() || a.IsLinkLocalUnicast() {
				continue // already internal; avoid shadowing nothing
			}
			rules = append(rules, rule{prefix: p.Masked(), class: stages.ClassInternal, user: true})
			if a.Is4() && p.Bits() < 31 {
				rules = append(rules, rule{prefix: netip.PrefixFrom(directedBroadcast(p), 32), class: stages.ClassBroadcast, user: true})
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

// Classify returns the class of a; stages.ClassNone for the zero Addr. IPv4-mapped IPv6 addresses
// are classified as the IPv4 address they carry.
func (c *Classifier) Classify(a netip.Addr) stages.Class {
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
		return stages.ClassPublic
	}
	if !a.IsValid() {
		return stages.ClassNone
	}
	k := hi >> 48
	for _, r := range c.r6[c.off6[k]:c.off6[k+1]] {
		if hi&r.mhi == r.hi && lo&r.mlo == r.lo {
			return r.class
		}
	}
	return stages.ClassPublic
}

// Stage returns the stage that classifies both addresses of every packet, sets SrcDomain and
// DstDomain to the class names (reverse DNS later replaces those of public addresses) and adds
// the direction tags as the original chains PacketTags did: internal source to internal,
// multicast or broadcast destination is "internal", internal to elsewhere "outgoing", elsewhere
// to internal "incoming".
func Stage(c *Classifier) stages.Stage {
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		return func(yield func(*stages.Packet) bool) {
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
func (c *Classifier) Annotate(p *stages.Packet) {
	p.SrcClass = c.Classify(p.Src)
	p.DstClass = c.Classify(p.Dst)
	p.SrcDomain = p.SrcClass.String()
	p.DstDomain = p.DstClass.String()
	p.Tags |= DirectionTag(p.SrcClass, p.DstClass)
}

// DirectionTag returns stages.TagInternal, stages.TagOutgoing, stages.TagIncoming or 0 for a pair of classes.
func DirectionTag(src, dst stages.Class) stages.Tags {
	if src == stages.ClassInternal {
		if dst == stages.ClassInternal || dst == stages.ClassBroadcast || dst.IsMulticast() {
			return stages.TagInternal
		}
		if dst == stages.ClassNone {
			return 0
		}
		return stages.TagOutgoing
	}
	if dst == stages.ClassInternal && src != stages.ClassNone {
		return stages.TagIncoming
	}
	return 0
}
