package classify

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
)

// Expectations computed by hand from the RFCs each range comes from: the first and last
// addresses inside a range and the neighbours just outside it.
func TestClassifyRFC(t *testing.T) {
	c := NewClassifier(nil, nil)
	cases := []struct {
		addr string
		want stages.Class
	}{
		// RFC 1918 private: 10/8, 172.16/12, 192.168/16.
		{"9.255.255.255", stages.ClassPublic},
		{"10.0.0.0", stages.ClassInternal},
		{"10.255.255.255", stages.ClassInternal},
		{"11.0.0.0", stages.ClassPublic},
		{"172.15.255.255", stages.ClassPublic},
		{"172.16.0.0", stages.ClassInternal},
		{"172.31.255.255", stages.ClassInternal},
		{"172.32.0.0", stages.ClassPublic},
		{"192.167.255.255", stages.ClassPublic},
		{"192.168.1.9", stages.ClassInternal},
		{"192.169.0.0", stages.ClassPublic},
		// RFC 6598 shared address space 100.64.0.0/10 = 100.64.0.0 - 100.127.255.255.
		{"100.63.255.255", stages.ClassPublic},
		{"100.64.0.0", stages.ClassInternal},
		{"100.127.255.255", stages.ClassInternal},
		{"100.128.0.0", stages.ClassPublic},
		// RFC 1122 loopback, RFC 3927 link-local.
		{"127.0.0.1", stages.ClassInternal},
		{"127.255.255.254", stages.ClassInternal},
		{"169.254.0.1", stages.ClassInternal},
		{"169.255.0.1", stages.ClassPublic},
		// RFC 791 this network, RFC 1122 unspecified.
		{"0.0.0.0", stages.ClassUnspecified},
		{"0.1.2.3", stages.ClassThisNetwork},
		// RFC 919 limited broadcast; RFC 1112 reserved 240/4.
		{"255.255.255.255", stages.ClassBroadcast},
		{"255.255.255.254", stages.ClassReserved},
		{"240.0.0.0", stages.ClassReserved},
		{"239.255.255.255", stages.ClassMulticast},
		// RFC 5737 documentation.
		{"192.0.2.1", stages.ClassDocumentation},
		{"198.51.100.255", stages.ClassDocumentation},
		{"203.0.113.7", stages.ClassDocumentation},
		{"203.0.114.0", stages.ClassPublic},
		// RFC 2544 benchmarking 198.18.0.0/15 = 198.18.0.0 - 198.19.255.255.
		{"198.17.255.255", stages.ClassPublic},
		{"198.18.0.0", stages.ClassBenchmarking},
		{"198.19.255.255", stages.ClassBenchmarking},
		{"198.20.0.0", stages.ClassPublic},
		// RFC 6890 IETF protocol assignments, RFC 7535 AS112, RFC 7450 AMT, RFC 7526 6to4 relay.
		{"192.0.0.8", stages.ClassIETFProtocol},
		{"192.31.196.1", stages.ClassAS112},
		{"192.175.48.6", stages.ClassAS112},
		{"192.52.193.1", stages.ClassAMT},
		{"192.88.99.1", stages.Class6to4Relay},
		// Multicast (RFC 5771) and well-known groups.
		{"224.0.0.1", stages.ClassAllHosts},
		{"224.0.0.2", stages.ClassAllRouters},
		{"224.0.0.22", stages.ClassIGMPv3},
		{"224.0.0.251", stages.ClassMulticastDNS},
		{"224.0.0.252", stages.ClassLLMNR},
		{"239.255.255.250", stages.ClassSSDP},
		{"224.0.0.253", stages.ClassMulticast},
		{"233.252.0.1", stages.ClassMulticast},
		// Public.
		{"8.8.8.8", stages.ClassPublic},
		{"54.164.252.174", stages.ClassPublic},
		// IPv6: RFC 4291 unspecified, loopback, link-local; RFC 4193 ULA fc00::/7.
		{"::", stages.ClassUnspecified},
		{"::1", stages.ClassInternal},
		{"::2", stages.ClassPublic},
		{"fe80::1", stages.ClassInternal},
		{"febf:ffff::1", stages.ClassInternal},
		{"fec0::1", stages.ClassPublic},
		{"fbff:ffff::1", stages.ClassPublic},
		{"fc00::1", stages.ClassInternal},
		{"fdff:ffff::1", stages.ClassInternal},
		// IPv4-mapped addresses are classified as the IPv4 address.
		{"::ffff:192.168.1.1", stages.ClassInternal},
		{"::ffff:8.8.8.8", stages.ClassPublic},
		// RFC 3849 and RFC 9637 documentation: 2001:db8::/32, 3fff::/20 = 3fff:0000:: - 3fff:0fff::.
		{"2001:db8::1", stages.ClassDocumentation},
		{"2001:db9::1", stages.ClassPublic},
		{"3fff:fff:ffff::1", stages.ClassDocumentation},
		{"3fff:1000::", stages.ClassPublic},
		// RFC 4380 Teredo 2001::/32 inside RFC 2928 2001::/23; RFC 5180 benchmarking 2001:2::/48.
		{"2001::1", stages.ClassTeredo},
		{"2001:1::1", stages.ClassIETFProtocol},
		{"2001:2::1", stages.ClassBenchmarking},
		{"2001:2:1::1", stages.ClassIETFProtocol},
		{"2001:1ff::1", stages.ClassIETFProtocol},
		{"2001:200::1", stages.ClassPublic},
		{"2001:10::1", stages.ClassORCHID},
		{"2001:20::1", stages.ClassORCHID},
		{"2002:c000:0204::1", stages.Class6to4},
		{"64:ff9b::808:808", stages.ClassNAT64},
		{"100::1", stages.ClassDiscard},
		{"5f00::1", stages.ClassSRv6},
		// IPv6 multicast (RFC 4291, RFC 6762, RFC 4795, RFC 3810).
		{"ff02::1", stages.ClassAllHosts},
		{"ff02::2", stages.ClassAllRouters},
		{"ff02::fb", stages.ClassMulticastDNS},
		{"ff02::1:3", stages.ClassLLMNR},
		{"ff02::16", stages.ClassMLDv2},
		{"ff02::c", stages.ClassSSDP},
		{"ff02::1:ff12:3456", stages.ClassSolicitedNode},
		{"ff02::1:fe12:3456", stages.ClassMulticast},
		{"ff0e::1234", stages.ClassMulticast},
		{"2a00:1450:4001:80b::200e", stages.ClassPublic},
	}
	for _, tc := range cases {
		if got := c.Classify(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Classify(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	if got := c.Classify(netip.Addr{}); got != stages.ClassNone {
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
		want stages.Class
	}{
		{"203.0.113.7", stages.ClassInternal}, // user rule beats documentation at equal length
		{"8.8.8.8", stages.ClassInternal},
		{"8.8.4.4", stages.ClassPublic},
		{"2001:db8:1::1", stages.ClassInternal},
		{"2001:db8:2::1", stages.ClassDocumentation},
		// 81.2.69.130/26 = 81.2.69.128 - 81.2.69.191, broadcast 81.2.69.191.
		{"81.2.69.128", stages.ClassInternal},
		{"81.2.69.190", stages.ClassInternal},
		{"81.2.69.191", stages.ClassBroadcast},
		{"81.2.69.192", stages.ClassPublic},
		{"2a02:8010::9", stages.ClassInternal},
		{"2a02:8010:0:1::9", stages.ClassPublic},
		{"255.255.255.255", stages.ClassBroadcast},
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
		src, dst stages.Class
		want     stages.Tags
	}{
		{stages.ClassInternal, stages.ClassInternal, stages.TagInternal},
		{stages.ClassInternal, stages.ClassMulticastDNS, stages.TagInternal},
		{stages.ClassInternal, stages.ClassBroadcast, stages.TagInternal},
		{stages.ClassInternal, stages.ClassPublic, stages.TagOutgoing},
		{stages.ClassPublic, stages.ClassInternal, stages.TagIncoming},
		{stages.ClassPublic, stages.ClassPublic, 0},
		{stages.ClassUnspecified, stages.ClassBroadcast, 0},
		{stages.ClassNone, stages.ClassNone, 0},
	}
	for _, tc := range cases {
		if got := DirectionTag(tc.src, tc.dst); got != tc.want {
			t.Errorf("DirectionTag(%s, %s) = %s, want %s", tc.src, tc.dst, got, tc.want)
		}
	}
}

func TestTags(t *testing.T) {
	got := slices.Collect((stages.TagOutgoing | stages.TagNXDomain | 1<<9).Names())
	want := []string{"outgoing", "nxdomain", "tag9"}
	if !slices.Equal(got, want) {
		t.Errorf("names = %v, want %v", got, want)
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
