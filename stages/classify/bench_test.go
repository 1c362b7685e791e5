package classify

import (
	"net/netip"
	"testing"
)

// BenchmarkClassify: one address classification.
func BenchmarkClassify(b *testing.B) {
	c := NewClassifier(nil, nil)
	addrs := []netip.Addr{netip.MustParseAddr("54.164.252.174"), netip.MustParseAddr("192.168.1.9"),
		netip.MustParseAddr("224.0.0.251"), netip.MustParseAddr("2001:4860:4860::8888")}
	for i := 0; b.Loop(); i++ {
		c.Classify(addrs[i&3])
	}
}
