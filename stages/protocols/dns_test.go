package protocols

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

// TestTSharkDecodesCurrent re-runs gen.sh when tshark is installed and checks that the stored
// decodes are still what tshark says (so the expected values cannot drift from tshark).
func TestTSharkDecodesCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: tshark is slow")
	}
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed; the stored decodes are used as they are")
	}
	dir := t.TempDir()
	gen, _ := filepath.Abs(filepath.Join(stagestest.TSharkDir(t), "gen.sh"))
	cmd := exec.Command(gen, sensortest.Pcaps(t))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(stagestest.TSharkDir(t), "*.tsv"))
	for _, f := range files {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join(dir, filepath.Base(f)))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s differs from tshark's decode now (rerun gen.sh)", f)
		}
	}
}

// dnsCaptures pairs shared captures with their tshark decodes.
var dnsCaptures = []struct{ pcap, tsv string }{
	{"chains/dns.pcap", "dns_dns_pcap.tsv"},
	{"chains/https.pcap", "dns_https_pcap.tsv"},
	{"chains/nb6-http.pcap", "dns_nb6-http_pcap.tsv"},
	{"protocols/dns_tcp.pcap", "dns_dns_tcp_pcap.tsv"},
	{"protocols/dns_udp_a_aaaa_ptr_mx_nxdomain.pcap", "dns_dns_udp_a_aaaa_ptr_mx_nxdomain_pcap.tsv"},
	{"protocols/dns_udp_txt.pcap", "dns_dns_udp_txt_pcap.tsv"},
	{"protocols/mdns_ipv4_ipv6.pcap", "dns_mdns_ipv4_ipv6_pcap.tsv"},
	{"protocols/mdns_queries_answers.pcap", "dns_mdns_queries_answers_pcap.tsv"},
	{"protocols/llmnr_ipv6.pcapng", "dns_llmnr_ipv6_pcapng.tsv"},
	{"protocols/ipv4_http_dns_wikipedia.pcap", "dns_ipv4_http_dns_wikipedia_pcap.tsv"},
	{"protocols/pcapng_multi_interface_dns.pcapng", "dns_pcapng_multi_interface_dns_pcapng.tsv"},
	{"protocols/linktype_raw_ipv4_dns.pcap", "dns_linktype_raw_ipv4_dns_pcap.tsv"},
}

// runApp runs the app chain over a capture and returns a copy of the DNS, HTTP and TLS results
// per frame number.
type appResult struct {
	dst  netip.Addr
	dns  *stages.DNSInfo
	http *stages.HTTPInfo
	tls  *stages.TLSInfo
}

// appChain is the application layer as the views run it: the flow table with the DNS, HTTP and
// TLS handlers.
func appChain() stages.Stage {
	return flows.New(flows.Config{Handlers: []flows.Handler{NewDNSTracker(DNSConfig{}), HTTPHandler{}, &TLSHandler{}}}).Stage()
}

func runApp(t *testing.T, pcap string, snap stagestest.Snap) map[uint64]appResult {
	t.Helper()
	out := map[uint64]appResult{}
	chain := appChain()
	for p := range chain(stagestest.Capture(t, stagestest.PcapPath(t, pcap), snap)) {
		if p.DNS != nil || p.HTTP != nil || p.TLS != nil {
			out[p.Num] = appResult{p.Dst, p.DNS, p.HTTP, p.TLS}
		}
	}
	return out
}

func TestDNSAgainstTShark(t *testing.T) {
	for _, c := range dnsCaptures {
		t.Run(c.pcap, func(t *testing.T) {
			got := runApp(t, c.pcap, stagestest.KernelSnap)
			rows := stagestest.TSV(t, c.tsv)
			if len(rows) == 0 {
				t.Fatal("tshark decoded no DNS")
			}
			seen := 0
			for _, r := range rows {
				num, _ := strconv.ParseUint(r[0], 10, 64)
				res := got[num]
				if res.dns == nil {
					t.Errorf("frame %d: tshark decodes DNS, we do not", num)
					continue
				}
				seen++
				checkDNSRow(t, num, r, res.dns, res.dst.IsMulticast())
			}
			dnsFrames := 0
			for _, res := range got {
				if res.dns != nil {
					dnsFrames++
				}
			}
			if dnsFrames != seen {
				t.Errorf("we decoded DNS in %d frames, tshark in %d", dnsFrames, seen)
			}
		})
	}
}

// checkDNSRow compares one tshark row (gen.sh's field order) with our decode. With noPairing,
// tshark's pairing of the response with a query is not checked: responses sent to a multicast
// group (mDNS) are not matched to queries (every responder answers and ids are 0), and tshark
// pairs by id alone where we also want the question to be the query's.
func checkDNSRow(t *testing.T, num uint64, r []string, d *stages.DNSInfo, noPairing bool) {
	t.Helper()
	errf := func(field string, want, got any) {
		t.Errorf("frame %d %s: tshark %v, we %v", num, field, want, got)
	}
	if want := r[1]; want != fmt.Sprintf("0x%04x", d.ID) {
		errf("id", want, d.ID)
	}
	if want := r[2] == "1"; want != d.Response {
		errf("response", want, d.Response)
	}
	if r[3] != strconv.Itoa(d.Opcode) {
		errf("opcode", r[3], d.Opcode)
	}
	if r[4] != "" && r[4] != strconv.Itoa(d.Rcode) {
		errf("rcode", r[4], d.Rcode)
	}
	if (r[5] == "1") != d.Z {
		errf("z", r[5], d.Z)
	}
	if (r[6] == "1") != d.TC {
		errf("truncated", r[6], d.TC)
	}
	if r[7] != strconv.Itoa(len(d.Questions)) {
		errf("questions", r[7], len(d.Questions))
	}
	if r[8] != strconv.Itoa(len(d.Answers)) {
		errf("answers", r[8], len(d.Answers))
	}
	var names, types []string
	for _, q := range d.Questions {
		n := q.Name
		if n == "." {
			n = "<Root>"
		}
		names = append(names, n)
		types = append(types, strconv.Itoa(int(q.Type)))
	}
	if want, got := r[9], strings.Join(names, ","); want != got {
		errf("query names", want, got)
	}
	if want, got := r[10], strings.Join(types, ","); want != got {
		errf("query types", want, got)
	}
	var ttls, as, aaaas []string
	for _, sec := range [][]stages.DNSRecord{d.Answers, d.Authority, d.Additional} {
		for _, rr := range sec {
			if rr.Type == dns.TypeOPT {
				continue
			}
			ttls = append(ttls, strconv.FormatUint(uint64(rr.TTL), 10))
			switch rr.Type {
			case dns.TypeA:
				as = append(as, rr.Data)
			case dns.TypeAAAA:
				aaaas = append(aaaas, rr.Data)
			}
		}
	}
	if want, got := r[11], strings.Join(ttls, ","); want != got {
		errf("ttls", want, got)
	}
	if want, got := r[12], strings.Join(as, ","); want != got {
		errf("A", want, got)
	}
	if want, got := r[13], strings.Join(aaaas, ","); want != got {
		errf("AAAA", want, got)
	}
	if noPairing {
		return
	}
	if r[14] != "" {
		sec, _ := strconv.ParseFloat(r[14], 64)
		if !d.Matched {
			errf("matched", true, false)
		} else if math.Abs(d.Latency.Seconds()-sec) > 1e-6 {
			errf("latency", sec, d.Latency)
		}
	} else if d.Matched && d.Response {
		errf("matched", false, d.Latency)
	}
}

// TestDNSOverTCPAcrossSegments: dns_tcp.pcap's response (frame 6; tshark: 2 answers, A
// 192.139.46.66 and 198.199.88.104 among the records) cut into 40-byte segments delivered out of
// order decodes whole, once, on the segment that completes it, matched to its query.
func TestDNSOverTCPAcrossSegments(t *testing.T) {
	before, segs := stagestest.Split(t, "protocols/dns_tcp.pcap", 6, 40)
	tr := NewDNSTracker(DNSConfig{})
	ft := flows.New(flows.Config{Handlers: []flows.Handler{tr}})
	for _, p := range before {
		ft.Process(p)
	}
	order := []int{1, 0}
	for i := 2; i < len(segs); i++ {
		order = append(order, i)
	}
	order[len(order)-1], order[len(order)-2] = order[len(order)-2], order[len(order)-1]
	var got []*stages.DNSInfo
	for _, i := range order {
		p := segs[i]
		ft.Process(p)
		if p.DNS != nil {
			got = append(got, p.DNS)
		}
	}
	if len(got) != 1 {
		t.Fatalf("decoded %d times", len(got))
	}
	d := got[0]
	rows := stagestest.TSV(t, "dns_dns_tcp_pcap.tsv")
	checkDNSRow(t, 6, rows[1], d, false)
	if d.Err != "" || !d.TCP {
		t.Errorf("err %q tcp %v", d.Err, d.TCP)
	}
}

// TestDNSOverTCPIncomplete: suricata-verify's dns-incomplete trace. Its second TXT query is
// split over two segments (frames 9 and 11, 14 and 16 bytes: tshark reassembles it on frame
// 11). We decode the DNS messages tshark decodes, on the same frames, with the same values, and
// nothing from frame 9 alone (which read on its own is a header with no question, Z and TC set:
// a false weird alert).
func TestDNSOverTCPIncomplete(t *testing.T) {
	for _, snap := range []stagestest.Snap{stagestest.FullSnap} {
		got := runApp(t, "protocols/dns_tcp_incomplete.pcap", snap)
		rows := stagestest.TSV(t, "dns_dns_tcp_incomplete_pcap.tsv")
		frames := map[uint64]bool{}
		for _, r := range rows {
			num, _ := strconv.ParseUint(r[0], 10, 64)
			frames[num] = true
			d := got[num].dns
			if d == nil {
				t.Errorf("frame %d: tshark decodes DNS, we do not", num)
				continue
			}
			checkDNSRow(t, num, r, d, true)
			if d.Next != nil || !d.TCP || d.Err != "" {
				t.Errorf("frame %d: %+v", num, d)
			}
			for _, w := range d.Weird {
				if w.Rule == "z" || w.Rule == "truncated" {
					t.Errorf("frame %d: weird %v", num, d.Weird)
				}
			}
			// Frame 7 answers id 0x1032 before anyone asked it (the query of frame 5 has id
			// 0x1133); frame 13 answers 0x1032 about google.com A where frame 11 asked TXT
			// (tshark pairs 13 with 11 on the id alone).
			want := map[uint64]string{7: "unsolicited_answer=no query", 13: "unsolicited_answer=question differs: asked google.com TXT"}[num]
			if d.Response && (weirdRules(d) != want || d.Matched) {
				t.Errorf("frame %d: weird %q matched %v, want %q", num, weirdRules(d), d.Matched, want)
			}
		}
		for num, res := range got {
			if res.dns != nil && !frames[num] {
				t.Errorf("frame %d: we decode DNS, tshark does not: %+v", num, res.dns)
			}
		}
	}
}
