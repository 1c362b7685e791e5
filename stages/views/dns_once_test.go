package views

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// splitResponse returns protocols/dns_tcp.pcap's packets with frame 6, the DNS response, cut
// into TCP segments of at most size bytes, followed by a packet to one of the addresses the
// response gives www.tcpdump.org (so that a name learned from the wire shows).
func splitResponse(t *testing.T, size int) []stages.Packet {
	t.Helper()
	var out []stages.Packet
	for p := range stagestest.Capture(t, stagestest.PcapPath(t, "protocols/dns_tcp.pcap"), stagestest.FullSnap) {
		c := *p
		c.Payload = slices.Clone(p.Payload)
		if c.Num != 6 {
			out = append(out, c)
			continue
		}
		for off := 0; off < len(c.Payload); off += size {
			s := c
			s.Payload = c.Payload[off:min(off+size, len(c.Payload))]
			s.PayloadLen = uint16(len(s.Payload))
			s.Seq = c.Seq + uint32(off)
			out = append(out, s)
		}
	}
	last := out[len(out)-1]
	to := last
	to.Num++
	to.Time = to.Time.Add(time.Second)
	to.Src, to.Dst = netip.MustParseAddr("192.168.1.11"), netip.MustParseAddr("192.139.46.66")
	to.SrcPort, to.DstPort, to.Payload, to.PayloadLen, to.TCPFlags = 40000, 443, nil, 0, stages.TCPSyn
	return append(out, to)
}

// TestDNSDecodedOnce: dns_tcp.pcap's response cut into 40-byte segments is decoded exactly
// once, whole, as tshark decodes it (testdata/tshark/dns_dns_tcp_pcap.tsv, frame 6: id 0x4319,
// 2 answers, the A and AAAA records and TTLs below), under every view and every --names mode
// that decodes DNS (every one but --names ptr or -n with a view that does not read the
// application layer, which decode none); and the weird-dns view, which printed the segments
// as four broken messages, prints nothing.
func TestDNSDecodedOnce(t *testing.T) {
	pkts := splitResponse(t, 40)
	if n := len(pkts); n < 16 {
		t.Fatalf("%d packets", n)
	}
	var row []string
	for _, r := range stagestest.TSV(t, "dns_dns_tcp_pcap.tsv") {
		if r[0] == "6" {
			row = r
		}
	}
	if row == nil {
		t.Fatal("tshark decodes no frame 6")
	}
	dead := stagestest.SilentDNS(t)
	type mode struct {
		name  string
		noDNS bool
		names names.Mode
	}
	for _, v := range List {
		for _, m := range []mode{{"-n", true, names.ModeBoth}, {"both", false, names.ModeBoth}, {"wire", false, names.ModeWire}, {"ptr", false, names.ModePTR}} {
			t.Run(v.Name+"/"+m.name, func(t *testing.T) {
				var buf bytes.Buffer
				cfg := &Config{View: v.Name, UTC: true, NoDNS: m.noDNS, Names: m.names,
					RDNS: names.ResolverConfig{Servers: []string{dead}, HostsFile: "-", Wait: 5 * time.Millisecond, Timeout: 50 * time.Millisecond}}
				chain, err := Build(cfg, sinks.NewOutput(&buf, false))
				if err != nil {
					t.Fatal(err)
				}
				var got []stages.DNSInfo
				named := ""
				for p := range chain.Stage(stagestest.Replay(pkts)) {
					if p.DNS != nil && p.DNS.Response {
						got = append(got, *p.DNS)
					}
					if p.Dst == netip.MustParseAddr("192.139.46.66") {
						named = p.DstDomain
					}
					if err := chain.Sink.Write(p); err != nil {
						t.Fatal(err)
					}
				}
				chain.Close()
				decodes := v.App || (!m.noDNS && m.names != names.ModePTR)
				if want := map[bool]int{true: 1, false: 0}[decodes]; len(got) != want {
					t.Fatalf("%d responses decoded, want %d: %+v", len(got), want, got)
				}
				if decodes {
					checkTSharkResponse(t, row, &got[0])
				}
				if v.Name == "weird-dns" && buf.Len() != 0 {
					t.Errorf("weird-dns printed:\n%s", buf.String())
				}
				if wire := !m.noDNS && m.names != names.ModePTR; wire && named != "www.tcpdump.org" {
					t.Errorf("192.139.46.66 named %q after the response, want www.tcpdump.org", named)
				}
			})
		}
	}
}

// checkTSharkResponse compares a decoded response with tshark's row (gen.sh's fields: frame,
// id, response, opcode, rcode, z, truncated, queries, answers, query names, query types, TTLs,
// A, AAAA).
func checkTSharkResponse(t *testing.T, r []string, d *stages.DNSInfo) {
	t.Helper()
	var ttls, as, aaaas []string
	for _, sec := range [][]stages.DNSRecord{d.Answers, d.Authority, d.Additional} {
		for _, rr := range sec {
			if rr.Type == 41 { // OPT
				continue
			}
			ttls = append(ttls, strconv.FormatUint(uint64(rr.TTL), 10))
			switch rr.Type {
			case 1:
				as = append(as, rr.Data)
			case 28:
				aaaas = append(aaaas, rr.Data)
			}
		}
	}
	var qnames []string
	for _, q := range d.Questions {
		qnames = append(qnames, q.Name)
	}
	for _, c := range [][3]string{
		{"id", r[1], fmt.Sprintf("0x%04x", d.ID)},
		{"rcode", r[4], strconv.Itoa(d.Rcode)},
		{"questions", r[7], strconv.Itoa(len(d.Questions))},
		{"answers", r[8], strconv.Itoa(len(d.Answers))},
		{"query names", r[9], strings.Join(qnames, ",")},
		{"TTLs", r[11], strings.Join(ttls, ",")},
		{"A", r[12], strings.Join(as, ",")},
		{"AAAA", r[13], strings.Join(aaaas, ",")},
	} {
		if c[1] != c[2] {
			t.Errorf("%s: tshark %s, we %s", c[0], c[1], c[2])
		}
	}
	if d.Err != "" || !d.TCP {
		t.Errorf("error %q, TCP %v", d.Err, d.TCP)
	}
}
