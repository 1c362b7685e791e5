package names

import (
	"fmt"
	"iter"
	"net/netip"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

// decodeDNS is a source of a capture's packets with their DNS messages decoded.
func decodeDNS(t testing.TB, pcap string) iter.Seq[*stages.Packet] {
	dns := protocols.NewDNSTracker(protocols.DNSConfig{})
	ft := flows.New(flows.Config{Handlers: []flows.Handler{dns}})
	return ft.Stage()(stagestest.Capture(t, stagestest.PcapPath(t, pcap), stagestest.KernelSnap))
}

// TestWireNames: the A and AAAA answers of chains/dns.pcap name their addresses (tshark shows
// frame 10 answering www.netbsd.org with 204.152.190.12, frame 12 with 2001:4f8:4:7:2e0:81ff:fe52:9a6b).
func TestWireNames(t *testing.T) {
	names := NewWire(0, 0)
	for range names.Stage(nil)(decodeDNS(t, "chains/dns.pcap")) {
	}
	for addr, want := range map[string]string{
		"204.152.190.12":                  "www.netbsd.org",
		"2001:4f8:4:7:2e0:81ff:fe52:9a6b": "www.netbsd.org",
		"216.239.37.26":                   "google.com", // frame 4: an MX answer's additional A: not named
	} {
		a := stagestest.Addr(t, addr)
		got, ok := names.Lookup(a, time.Time{})
		if addr == "216.239.37.26" {
			if ok {
				t.Errorf("%s named %q from an additional record", addr, got)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("%s: got %q %v, want %q", addr, got, ok, want)
		}
	}
}

func TestWireNamesCNAME(t *testing.T) {
	w := NewWire(4, time.Minute)
	now := time.Unix(1000, 0)
	info := &stages.DNSInfo{Response: true, Matched: true,
		Questions: []stages.DNSQuestion{{Name: "www.example.com", Type: 1, Class: 1}},
		Answers: []stages.DNSRecord{
			{Name: "www.example.com", Type: 5, Class: 1, TTL: 30, Data: "edge.cdn.net"},
			{Name: "EDGE.cdn.net", Type: 1, Class: 1, TTL: 30, Data: "192.0.2.7", Addr: stagestest.Addr(t, "192.0.2.7")},
			{Name: "other.net", Type: 1, Class: 1, TTL: 30, Data: "192.0.2.8", Addr: stagestest.Addr(t, "192.0.2.8")},
		}}
	w.Learn(info, now)
	if n, ok := w.Lookup(stagestest.Addr(t, "192.0.2.7"), now); !ok || n != "www.example.com" {
		t.Errorf("via CNAME: %q %v", n, ok)
	}
	if n, ok := w.Lookup(stagestest.Addr(t, "192.0.2.8"), now); !ok || n != "other.net" {
		t.Errorf("unrelated owner: %q %v", n, ok)
	}
	if _, ok := w.Lookup(stagestest.Addr(t, "192.0.2.7"), now.Add(2*time.Minute)); ok {
		t.Error("name outlived max(TTL, minTTL)")
	}
	for i := 0; i < 10; i++ {
		w.Add(stagestest.Addr(t, fmt.Sprintf("198.51.100.%d", i)), "x", time.Hour, now)
	}
	if w.Len() != 4 {
		t.Errorf("bounded table holds %d, want 4", w.Len())
	}
	if m, err := ParseMode("wire"); err != nil || m != ModeWire {
		t.Error("ParseMode wire")
	}
	if _, err := ParseMode("bogus"); err == nil {
		t.Error("ParseMode accepted bogus")
	}
}

// TestWireStage: in chains/https.pcap, frame 4 answers api.facebook.com with a CNAME to
// star.c10r.facebook.com and A 31.13.93.3 (tshark: dns.cname, dns.a). From then on the TLS
// connection to 31.13.93.3 is named api.facebook.com, the name the client asked for.
func TestWireStage(t *testing.T) {
	names := NewWire(0, 0)
	fb := stagestest.Addr(t, "31.13.93.3")
	named, unnamed := 0, 0
	for p := range names.Stage(nil)(decodeDNS(t, "chains/https.pcap")) {
		if p.Dst != fb && p.Src != fb {
			continue
		}
		d := p.DstDomain
		if p.Src == fb {
			d = p.SrcDomain
		}
		switch {
		case p.Num > 4 && d == "api.facebook.com":
			named++
		case p.Num <= 4 && d == "":
			unnamed++
		default:
			t.Errorf("frame %d: domain %q", p.Num, d)
		}
	}
	if named < 30 {
		t.Errorf("%d packets named", named)
	}
	// A class filter keeps the name off addresses it refuses.
	for p := range names.Stage(func(stages.Class) bool { return false })(decodeDNS(t, "chains/https.pcap")) {
		if p.SrcDomain != "" || p.DstDomain != "" {
			t.Fatalf("frame %d named despite the filter", p.Num)
		}
	}
}

// TestWireBounded: a table of 3 names that learns 5 addresses keeps the last 3, counts the 2
// it pushed out, and reports 3 as its peak; a name learned again is no eviction.
func TestWireBounded(t *testing.T) {
	w := NewWire(3, 0)
	now := time.Unix(1441652914, 0)
	for i := range 5 {
		w.Add(netip.AddrFrom4([4]byte{44, 0, 0, byte(i)}), fmt.Sprintf("h%d.example", i), time.Hour, now)
	}
	w.Add(netip.AddrFrom4([4]byte{44, 0, 0, 4}), "h4.example", time.Hour, now)
	if w.Len() != 3 || w.Size() != 3 || w.Peak() != 3 || w.Evicted() != 2 {
		t.Errorf("len %d, size %d, peak %d, evicted %d: want 3, 3, 3, 2", w.Len(), w.Size(), w.Peak(), w.Evicted())
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := w.Lookup(netip.AddrFrom4([4]byte{44, 0, 0, byte(i)}), now); ok != want {
			t.Errorf("44.0.0.%d named: %v, want %v", i, ok, want)
		}
	}
}
