package zeeklog_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
)

// uidShape is Zeek's uid: 'C' and base62 digits.
var uidShape = regexp.MustCompile(`^C[0-9A-Za-z]{17}$`)

// connStates are the conn_state values Zeek's documentation lists (base/protocols/conn).
var connStates = map[string]bool{"S0": true, "S1": true, "SF": true, "REJ": true, "S2": true, "S3": true, "RSTO": true,
	"RSTR": true, "RSTOS0": true, "RSTRH": true, "SH": true, "SHR": true, "OTH": true}

// checkConnTypes checks a conn.log line's fields against their types in Zeek's documentation
// of Conn::Info: ts time, uid string, id.orig_h/id.resp_h addr, id.orig_p/id.resp_p port
// (a count in JSON), proto enum (tcp, udp, icmp, unknown_transport), duration interval,
// orig_bytes/resp_bytes/orig_pkts/orig_ip_bytes/resp_pkts/resp_ip_bytes count, conn_state
// one of the documented letters, history letters only (S H A D F R here, upper case for the
// originator), community_id "1:" and base64.
func checkConnTypes(t *testing.T, r record) {
	t.Helper()
	r.seconds(t, "ts")
	r.seconds(t, "duration")
	if !uidShape.MatchString(r.str("uid")) {
		t.Errorf("uid %q: not Zeek's shape", r.str("uid"))
	}
	for _, k := range []string{"id.orig_p", "id.resp_p", "orig_bytes", "resp_bytes", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes"} {
		r.count(t, k)
	}
	switch r.str("proto") {
	case "tcp", "udp", "icmp", "unknown_transport":
	default:
		t.Errorf("proto %q", r.str("proto"))
	}
	if !connStates[r.str("conn_state")] {
		t.Errorf("conn_state %q: not one of Zeek's", r.str("conn_state"))
	}
	if h, ok := r["history"]; ok && !regexp.MustCompile(`^[SHADFRshadfr]+$`).MatchString(h.(string)) {
		t.Errorf("history %q", h)
	}
	if !regexp.MustCompile(`^1:[A-Za-z0-9+/]{27}=$`).MatchString(r.str("community_id")) {
		t.Errorf("community_id %q", r.str("community_id"))
	}
}

// TestConnStateHistoryByHand: conn_state and history of TCP captures, written by hand from
// tshark's per-packet TCP flags (tshark -T fields -e tcp.flags.str -e tcp.len) by Zeek's
// rules: a letter per direction at its first occurrence (S SYN, H SYN-ACK, A pure ACK, D
// payload, F FIN, R RST; upper case the originator's), conn_state from what each side sent.
func TestConnStateHistoryByHand(t *testing.T) {
	for _, tc := range []struct {
		pcap    string
		origP   uint64
		state   string
		history string
		why     string
	}{
		// 1 S, 2 SA, 3 A, 4 AP 136, 5 a, 6-9 a+data, 10-11 A, 12 FA, 13 fa, 14 A.
		{"protocols/ipv4_tcp_http_get.pcap", 59856, "SF", "ShADadFf", "handshake, data both ways, both FIN"},
		// stream 0: 1 S, 2 SA, 3 AP 65 (data on the first ACK: D, no pure A), 4 a, 5 a+data, 6 fa, 7 FA.
		{"protocols/tcp_fastopen_fin.pcap", 55533, "SF", "ShDadfF", "the first ACK carries data"},
		// stream 1: 8 S with 86 bytes (TCP Fast Open: S then D), 10 SA, 11 A, 12 a+data, 14 fa, 15 FA, 16 a.
		{"protocols/tcp_fastopen_fin.pcap", 55534, "SF", "SDhAdfFa", "data on the SYN"},
		// 1 S, 2 SA, 3 A: the capture ends there.
		{"protocols/linktype_sll_nsec_tcp.pcap", 46656, "S1", "ShA", "established, never closed"},
		// 1 S, 2 ra (an injected RST), 3 SA, 4 A, 5 AP 25, 6 a, 7 ra, 8 AP 150, 9 r: the responder reset an established connection.
		{"protocols/tcp_rst.pcap", 2527, "RSTR", "SrhADa", "the responder resets"},
	} {
		t.Run(fmt.Sprintf("%s:%d", filepath.Base(tc.pcap), tc.origP), func(t *testing.T) {
			dir := logsOf(t, capture(t, tc.pcap), zeeklog.Config{})
			var found []record
			for _, r := range readLog(t, filepath.Join(dir, "conn.log")) {
				checkConnTypes(t, r)
				if r.str("proto") == "tcp" && r.count(t, "id.orig_p") == tc.origP {
					found = append(found, r)
				}
			}
			if len(found) != 1 {
				t.Fatalf("%d conn.log lines from port %d, want 1: %v", len(found), tc.origP, found)
			}
			r := found[0]
			if r.str("conn_state") != tc.state || r.str("history") != tc.history {
				t.Errorf("conn_state %s history %s, want %s %s (%s)", r.str("conn_state"), r.str("history"), tc.state, tc.history, tc.why)
			}
		})
	}
}

// convKey names a conversation by its endpoints, in the originator's order.
func convKey(proto, a string, ap string, b string, bp string) string {
	return proto + " " + a + ":" + ap + " " + b + ":" + bp
}

// dirCount is what one direction of a conversation carried, as tshark counts it.
type dirCount struct{ pkts, bytes, ipBytes uint64 }

// TestConnCountsTShark: conn.log's packets, payload bytes and IP bytes per direction equal
// tshark's per-packet sums (frame count, tcp.len or udp.length-8, ip.len or ipv6.plen+40)
// for every TCP and UDP conversation of the captures, summed over the conn.log lines of the
// same endpoints; the uids of different lines differ.
func TestConnCountsTShark(t *testing.T) {
	for _, name := range []string{"protocols/ipv4_tcp_http_get.pcap", "protocols/ipv4_http_dns_wikipedia.pcap", "protocols/tcp_rst.pcap",
		"protocols/tcp_fastopen_fin.pcap", "protocols/dns_udp_txt.pcap", "protocols/dns_udp_a_aaaa_ptr_mx_nxdomain.pcap",
		"chains/http.pcap", "chains/https.pcap", "chains/dns.pcap", "protocols/ipv6_tcp_smtp.pcap", "protocols/tls12_clienthello_sni.pcap"} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			pcap := capture(t, name)
			want := map[string]*dirCount{}
			for _, f := range tshark(t, pcap, "(tcp or udp) and not icmp and not icmpv6 and not ip.flags.mf==1 and not ip.frag_offset>0",
				"ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
				"tcp.len", "udp.length", "ip.len", "ipv6.plen") {
				for len(f) < 12 {
					f = append(f, "")
				}
				src, dst := or(f[0], f[1]), or(f[2], f[3])
				proto, sp, dp, plen := "tcp", f[4], f[5], num(f[8])
				if sp == "" {
					proto, sp, dp, plen = "udp", f[6], f[7], num(f[9])-8
				}
				ip := num(f[10])
				if f[10] == "" {
					ip = num(f[11]) + 40
				}
				k := convKey(proto, src, sp, dst, dp)
				if want[k] == nil {
					want[k] = &dirCount{}
				}
				want[k].pkts++
				want[k].bytes += plen
				want[k].ipBytes += ip
			}
			got := map[string]*dirCount{}
			uids := map[string]bool{}
			for _, r := range readLog(t, filepath.Join(logsOf(t, pcap, zeeklog.Config{}), "conn.log")) {
				checkConnTypes(t, r)
				if uids[r.str("uid")] {
					t.Errorf("uid %s twice", r.str("uid"))
				}
				uids[r.str("uid")] = true
				if p := r.str("proto"); p == "tcp" || p == "udp" {
					op, rp := strconv.FormatUint(r.count(t, "id.orig_p"), 10), strconv.FormatUint(r.count(t, "id.resp_p"), 10)
					for _, d := range []struct {
						k            string
						pkts, b, ipb string
					}{{convKey(p, r.str("id.orig_h"), op, r.str("id.resp_h"), rp), "orig_pkts", "orig_bytes", "orig_ip_bytes"},
						{convKey(p, r.str("id.resp_h"), rp, r.str("id.orig_h"), op), "resp_pkts", "resp_bytes", "resp_ip_bytes"}} {
						if got[d.k] == nil {
							got[d.k] = &dirCount{}
						}
						got[d.k].pkts += r.count(t, d.pkts)
						got[d.k].bytes += r.count(t, d.b)
						got[d.k].ipBytes += r.count(t, d.ipb)
					}
				}
			}
			if len(want) == 0 {
				t.Fatal("tshark found no TCP or UDP packets")
			}
			for k, w := range want {
				g := got[k]
				if g == nil || *g != *w {
					t.Errorf("%s: conn.log %+v, tshark %+v", k, g, *w)
				}
			}
			for k, g := range got {
				if want[k] == nil && g.pkts != 0 {
					t.Errorf("%s: in conn.log (%+v), not in tshark", k, *g)
				}
			}
		})
	}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func num(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}
