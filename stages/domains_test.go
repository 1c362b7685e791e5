package stages

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// Expectations computed by hand from the RFCs each range comes from: the first and last
// addresses inside a range and the neighbours just outside it.
func TestClassifyRFC(t *testing.T) {
	c := NewClassifier(nil, nil)
	cases := []struct {
		addr string
		want Class
	}{
		// RFC 1918 private: 10/8, 172.16/12, 192.168/16.
		{"9.255.255.255", ClassPublic},
		{"10.0.0.0", ClassInternal},
		{"10.255.255.255", ClassInternal},
		{"11.0.0.0", ClassPublic},
		{"172.15.255.255", ClassPublic},
		{"172.16.0.0", ClassInternal},
		{"172.31.255.255", ClassInternal},
		{"172.32.0.0", ClassPublic},
		{"192.167.255.255", ClassPublic},
		{"192.168.1.9", ClassInternal},
		{"192.169.0.0", ClassPublic},
		// RFC 6598 shared address space 100.64.0.0/10 = 100.64.0.0 - 100.127.255.255.
		{"100.63.255.255", ClassPublic},
		{"100.64.0.0", ClassInternal},
		{"100.127.255.255", ClassInternal},
		{"100.128.0.0", ClassPublic},
		// RFC 1122 loopback, RFC 3927 link-local.
		{"127.0.0.1", ClassInternal},
		{"127.255.255.254", ClassInternal},
		{"169.254.0.1", ClassInternal},
		{"169.255.0.1", ClassPublic},
		// RFC 791 this network, RFC 1122 unspecified.
		{"0.0.0.0", ClassUnspecified},
		{"0.1.2.3", ClassThisNetwork},
		// RFC 919 limited broadcast; RFC 1112 reserved 240/4.
		{"255.255.255.255", ClassBroadcast},
		{"255.255.255.254", ClassReserved},
		{"240.0.0.0", ClassReserved},
		{"239.255.255.255", ClassMulticast},
		// RFC 5737 documentation.
		{"192.0.2.1", ClassDocumentation},
		{"198.51.100.255", ClassDocumentation},
		{"203.0.113.7", ClassDocumentation},
		{"203.0.114.0", ClassPublic},
		// RFC 2544 benchmarking 198.18.0.0/15 = 198.18.0.0 - 198.19.255.255.
		{"198.17.255.255", ClassPublic},
		{"198.18.0.0", ClassBenchmarking},
		{"198.19.255.255", ClassBenchmarking},
		{"198.20.0.0", ClassPublic},
		// RFC 6890 IETF protocol assignments, RFC 7535 AS112, RFC 7450 AMT, RFC 7526 6to4 relay.
		{"192.0.0.8", ClassIETFProtocol},
		{"192.31.196.1", ClassAS112},
		{"192.175.48.6", ClassAS112},
		{"192.52.193.1", ClassAMT},
		{"192.88.99.1", Class6to4Relay},
		// Multicast (RFC 5771) and well-known groups.
		{"224.0.0.1", ClassAllHosts},
		{"224.0.0.2", ClassAllRouters},
		{"224.0.0.22", ClassIGMPv3},
		{"224.0.0.251", ClassMulticastDNS},
		{"224.0.0.252", ClassLLMNR},
		{"239.255.255.250", ClassSSDP},
		{"224.0.0.253", ClassMulticast},
		{"233.252.0.1", ClassMulticast},
		// Public.
		{"8.8.8.8", ClassPublic},
		{"54.164.252.174", ClassPublic},
		// IPv6: RFC 4291 unspecified, loopback, link-local; RFC 4193 ULA fc00::/7.
		{"::", ClassUnspecified},
		{"::1", ClassInternal},
		{"::2", ClassPublic},
		{"fe80::1", ClassInternal},
		{"febf:ffff::1", ClassInternal},
		{"fec0::1", ClassPublic},
		{"fbff:ffff::1", ClassPublic},
		{"fc00::1", ClassInternal},
		{"fdff:ffff::1", ClassInternal},
		// IPv4-mapped addresses are classified as the IPv4 address.
		{"::ffff:192.168.1.1", ClassInternal},
		{"::ffff:8.8.8.8", ClassPublic},
		// RFC 3849 and RFC 9637 documentation: 2001:db8::/32, 3fff::/20 = 3fff:0000:: - 3fff:0fff::.
		{"2001:db8::1", ClassDocumentation},
		{"2001:db9::1", ClassPublic},
		{"3fff:fff:ffff::1", ClassDocumentation},
		{"3fff:1000::", ClassPublic},
		// RFC 4380 Teredo 2001::/32 inside RFC 2928 2001::/23; RFC 5180 benchmarking 2001:2::/48.
		{"2001::1", ClassTeredo},
		{"2001:1::1", ClassIETFProtocol},
		{"2001:2::1", ClassBenchmarking},
		{"2001:2:1::1", ClassIETFProtocol},
		{"2001:1ff::1", ClassIETFProtocol},
		{"2001:200::1", ClassPublic},
		{"2001:10::1", ClassORCHID},
		{"2001:20::1", ClassORCHID},
		{"2002:c000:0204::1", Class6to4},
		{"64:ff9b::808:808", ClassNAT64},
		{"100::1", ClassDiscard},
		{"5f00::1", ClassSRv6},
		// IPv6 multicast (RFC 4291, RFC 6762, RFC 4795, RFC 3810).
		{"ff02::1", ClassAllHosts},
		{"ff02::2", ClassAllRouters},
		{"ff02::fb", ClassMulticastDNS},
		{"ff02::1:3", ClassLLMNR},
		{"ff02::16", ClassMLDv2},
		{"ff02::c", ClassSSDP},
		{"ff02::1:ff12:3456", ClassSolicitedNode},
		{"ff02::1:fe12:3456", ClassMulticast},
		{"ff0e::1234", ClassMulticast},
		{"2a00:1450:4001:80b::200e", ClassPublic},
	}
	for _, tc := range cases {
		if got := c.Classify(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Classify(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	if got := c.Classify(netip.Addr{}); got != ClassNone {
		t.Errorf("Classify(zero) = %v", got)
	}
}

func TestClassifyUserAndInterfaces(t *testing.T) {
	internal, err := ParsePrefixes("203.0.113.0/24, 8.8.8.8,2001:db8:1::/48")
	if err != nil {
		t.Fatal(err)
	}
	ifaces := []Interface{{Name: "eth0", Prefixes: []netip.Prefix{
		netip.MustParsePrefix("81.2.69.130/26"), netip.MustParsePrefix("2a02:8010::5/64"),
	}}}
	c := NewClassifier(internal, ifaces)
	cases := []struct {
		addr string
		want Class
	}{
		{"203.0.113.7", ClassInternal}, // user rule beats documentation at equal length
		{"8.8.8.8", ClassInternal},
		{"8.8.4.4", ClassPublic},
		{"2001:db8:1::1", ClassInternal},
		{"2001:db8:2::1", ClassDocumentation},
		// 81.2.69.130/26 = 81.2.69.128 - 81.2.69.191, broadcast 81.2.69.191.
		{"81.2.69.128", ClassInternal},
		{"81.2.69.190", ClassInternal},
		{"81.2.69.191", ClassBroadcast},
		{"81.2.69.192", ClassPublic},
		{"2a02:8010::9", ClassInternal},
		{"2a02:8010:0:1::9", ClassPublic},
		{"255.255.255.255", ClassBroadcast},
	}
	for _, tc := range cases {
		if got := c.Classify(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Classify(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	if _, err := ParsePrefixes("10.0.0.0/33"); err == nil {
		t.Error("ParsePrefixes accepted /33")
	}
}

func TestDirectionTags(t *testing.T) {
	cases := []struct {
		src, dst Class
		want     Tags
	}{
		{ClassInternal, ClassInternal, TagInternal},
		{ClassInternal, ClassMulticastDNS, TagInternal},
		{ClassInternal, ClassBroadcast, TagInternal},
		{ClassInternal, ClassPublic, TagOutgoing},
		{ClassPublic, ClassInternal, TagIncoming},
		{ClassPublic, ClassPublic, 0},
		{ClassUnspecified, ClassBroadcast, 0},
		{ClassNone, ClassNone, 0},
	}
	for _, tc := range cases {
		if got := DirectionTag(tc.src, tc.dst); got != tc.want {
			t.Errorf("DirectionTag(%s, %s) = %s, want %s", tc.src, tc.dst, got, tc.want)
		}
	}
}

// testTag registers the test's tag once per process (go test -count=N runs tests again).
var testTag = sync.OnceValues(func() (Tags, error) { return NewTag("test_tag_x") })

func TestTags(t *testing.T) {
	bit, err := testTag()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewTag("test_tag_x"); err == nil {
		t.Error("duplicate tag accepted")
	}
	got := slices.Collect((TagOutgoing | TagNXDomain | bit).Names())
	want := []string{"outgoing", "nxdomain", "test_tag_x"}
	if !slices.Equal(got, want) {
		t.Errorf("names = %v, want %v", got, want)
	}
	st := Tag(func(p *Packet) Tags {
		if p.DstPort == 22 {
			return bit
		}
		return 0
	})
	p := &Packet{DstPort: 22}
	for q := range st(slices.Values([]*Packet{p})) {
		if q.Tags != bit {
			t.Errorf("tags = %v", q.Tags)
		}
	}
	for i, n := range classNames {
		if i > 0 {
			if c, ok := ClassByName(n); !ok || c != Class(i) {
				t.Errorf("ClassByName(%q) = %v", n, c)
			}
		}
	}
}

func TestClassifyNoAlloc(t *testing.T) {
	c := NewClassifier(nil, nil)
	a := netip.MustParseAddr("192.168.3.4")
	b := netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(100, func() { c.Classify(a); c.Classify(b) }); n != 0 {
		t.Errorf("Classify allocates %v times", n)
	}
}
