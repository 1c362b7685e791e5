package protocols

import (
	"strconv"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

var httpCaptures = []struct{ pcap, tsv string }{
	{"chains/http.pcap", "http_http_pcap.tsv"},
	{"chains/sqli.pcap", "http_sqli_pcap.tsv"},
	{"chains/nb6-http.pcap", "http_nb6-http_pcap.tsv"},
	{"protocols/ipv4_tcp_http_get.pcap", "http_ipv4_tcp_http_get_pcap.tsv"},
	{"protocols/vlan0_priority_http.pcap", "http_vlan0_priority_http_pcap.tsv"},
	{"protocols/tcp_fastopen_fin.pcap", "http_tcp_fastopen_fin_pcap.tsv"},
}

// TestHTTPAgainstTShark: every request tshark decodes (frame, method, host, URI, user agent,
// referer) is ours on the same frame; responses have the same status codes in the same order
// (tshark reports a response on the frame that ends its body, we on the frame of its head).
func TestHTTPAgainstTShark(t *testing.T) {
	for _, snap := range []stagestest.Snap{stagestest.KernelSnap, stagestest.FullSnap} {
		for _, c := range httpCaptures {
			t.Run(c.pcap, func(t *testing.T) {
				got := runApp(t, c.pcap, snap)
				var wantStatus, gotStatus []string
				requests := 0
				for _, r := range stagestest.TSV(t, c.tsv) {
					num, _ := strconv.ParseUint(r[0], 10, 64)
					if r[6] != "" {
						wantStatus = append(wantStatus, r[6])
						continue
					}
					requests++
					h := got[num].http
					if h == nil || !h.Request {
						t.Errorf("frame %d: tshark decodes a request, we %+v", num, h)
						continue
					}
					for _, f := range [][3]string{{"method", r[1], h.Method}, {"host", r[2], h.Host}, {"uri", r[3], h.URI},
						{"user agent", r[4], h.UserAgent}, {"referer", r[5], h.Referer}} {
						if f[1] != f[2] {
							t.Errorf("frame %d %s: tshark %q, we %q", num, f[0], f[1], f[2])
						}
					}
				}
				ourRequests := 0
				for num := uint64(1); num < 1<<16; num++ {
					res, ok := got[num]
					if !ok || res.http == nil {
						continue
					}
					if res.http.Request {
						ourRequests++
					} else {
						gotStatus = append(gotStatus, strconv.Itoa(res.http.Status))
					}
				}
				if ourRequests != requests {
					t.Errorf("we found %d requests, tshark %d", ourRequests, requests)
				}
				if strings.Join(gotStatus, ",") != strings.Join(wantStatus, ",") {
					t.Errorf("statuses: tshark %v, we %v", wantStatus, gotStatus)
				}
			})
		}
	}
}

// TestHTTPMultiSegmentHead: a request head split over three segments, delivered out of order,
// is reported once, complete, on the packet that completes it.
func TestHTTPMultiSegmentHead(t *testing.T) {
	head := "GET /a%20b?x=%1b[31m HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1.0\r\nReferer: http://r.example/\r\n\r\n"
	parts := []string{head[:20], head[20:50], head[50:]}
	seqs := []uint32{1001, 1021, 1051}
	order := []int{0, 2, 1}
	ft := flows.New(flows.Config{Handlers: []flows.Handler{HTTPHandler{}}})
	var reported []*stages.HTTPInfo
	mk := func(flags uint8, seq uint32, payload string, reply bool) *stages.Packet {
		p := &stages.Packet{IPVersion: 4, Proto: stages.ProtoTCP, Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "10.0.0.2"),
			SrcPort: 40000, DstPort: 8080, TCPFlags: flags, Seq: seq, Payload: []byte(payload), PayloadLen: uint16(len(payload))}
		if reply {
			p.Src, p.Dst, p.SrcPort, p.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
		}
		return p
	}
	for _, p := range []*stages.Packet{mk(stages.TCPSyn, 1000, "", false), mk(stages.TCPSyn|stages.TCPAck, 5000, "", true), mk(stages.TCPAck, 1001, "", false)} {
		ft.Process(p)
	}
	for _, i := range order {
		// The kernel would give a continuation segment 64 bytes; these are shorter.
		p := mk(stages.TCPAck|stages.TCPPsh, seqs[i], parts[i], false)
		ft.Process(p)
		if p.HTTP != nil {
			reported = append(reported, p.HTTP)
		}
	}
	if len(reported) != 1 {
		t.Fatalf("reported %d times", len(reported))
	}
	h := reported[0]
	if h.Partial || h.Method != "GET" || h.Host != "example.com" || h.UserAgent != "test/1.0" ||
		h.Referer != "http://r.example/" || h.Segments != 3 {
		t.Errorf("got %+v", h)
	}
}

// TestHTTPInSYN: a request carried in a TCP Fast Open SYN (its data starts one past the SYN's
// sequence number) is read from the reassembly, once.
func TestHTTPInSYN(t *testing.T) {
	ft := flows.New(flows.Config{Handlers: []flows.Handler{HTTPHandler{}}})
	req := "GET /tfo HTTP/1.1\r\nHost: tfo.example\r\n\r\n"
	syn := &stages.Packet{IPVersion: 4, Proto: stages.ProtoTCP, Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "10.0.0.2"),
		SrcPort: 40001, DstPort: 80, TCPFlags: stages.TCPSyn, Seq: 7000, Payload: []byte(req), PayloadLen: uint16(len(req))}
	ft.Process(syn)
	// Segments 1: read from the reassembly, whose first byte is one past the SYN's (a stream
	// starting at the SYN's own number would wait for a byte that never comes).
	if syn.HTTP == nil || syn.HTTP.URI != "/tfo" || syn.HTTP.Host != "tfo.example" || syn.HTTP.Partial || syn.HTTP.Segments != 1 {
		t.Fatalf("SYN data: %+v", syn.HTTP)
	}
}
