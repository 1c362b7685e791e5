package zeeklog_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
)

// logs is one capture's logs, by kind.
type logs map[string][]record

func allLogs(t *testing.T, pcap string) logs {
	t.Helper()
	dir := logsOf(t, pcap, zeeklog.Config{})
	l := logs{}
	for _, k := range zeeklog.Kinds {
		l[k] = readLog(t, filepath.Join(dir, k+".log"))
	}
	return l
}

// checkTied: every dns, http, ssl and weird line has the uid of a conn.log line, with the
// same endpoints (the uid ties a connection's lines together, as in Zeek).
func checkTied(t *testing.T, l logs) {
	t.Helper()
	conns := map[string]record{}
	for _, c := range l["conn"] {
		conns[c.str("uid")] = c
	}
	for _, k := range []string{"dns", "http", "ssl", "weird"} {
		for _, r := range l[k] {
			r.seconds(t, "ts")
			c, ok := conns[r.str("uid")]
			if !ok {
				t.Errorf("%s.log: uid %s is in no conn.log line: %v", k, r.str("uid"), r)
				continue
			}
			for _, f := range []string{"id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"} {
				if r[f] != c[f] {
					t.Errorf("%s.log uid %s: %s %v, conn.log %v", k, r.str("uid"), f, r[f], c[f])
				}
			}
		}
	}
}

// multiset compares two lists of keys as multisets.
func multiset(t *testing.T, what string, got, want []string) {
	t.Helper()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q (tshark)", what, got, want)
	}
}

// TestDNSLogTShark: dns.log has a line per response, whose trans_id, query, qtype and rcode
// are tshark's dns.id, dns.qry.name, dns.qry.type and dns.flags.rcode, and a line without
// rcode per query that no response of its conversation (tshark's udp.stream or tcp.stream)
// with its ID answered (Zeek's DNS::Info:
// trans_id count, query string, qtype count with its name, rcode count with its name, rtt
// an interval, answers a vector of strings with TTLs a vector of intervals beside it).
func TestDNSLogTShark(t *testing.T) {
	for _, name := range []string{"protocols/dns_udp_a_aaaa_ptr_mx_nxdomain.pcap", "protocols/dns_udp_txt.pcap",
		"protocols/ipv4_http_dns_wikipedia.pcap", "chains/dns.pcap", "protocols/mdns_ipv4_ipv6.pcap"} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			pcap := capture(t, name)
			var want, wantQueries []string
			for _, f := range tshark(t, pcap, "dns.flags.response==1", "dns.id", "dns.qry.name", "dns.qry.type", "dns.flags.rcode") {
				want = append(want, strings.Join([]string{strings.TrimPrefix(f[0], "0x"), f[1], f[2], f[3]}, "|"))
			}
			// Queries minus responses, by conversation and ID, in the order tshark gives them (the
			// filter is a field, not the protocol dns, which leaves mDNS and LLMNR out).
			type query struct{ conv, key string }
			var queries []query
			for _, f := range tshark(t, pcap, "dns.flags.response", "dns.flags.response", "dns.id", "dns.qry.name", "dns.qry.type", "udp.stream", "tcp.stream") {
				conv := "u" + f[4] + "t" + f[5] + "|" + f[1]
				if f[0] == "0" {
					queries = append(queries, query{conv, strings.Join([]string{strings.TrimPrefix(f[1], "0x"), f[2], f[3]}, "|")})
					continue
				}
				if i := slices.IndexFunc(queries, func(q query) bool { return q.conv == conv }); i >= 0 {
					queries = slices.Delete(queries, i, i+1)
				}
			}
			for _, q := range queries {
				wantQueries = append(wantQueries, q.key)
			}
			l := allLogs(t, pcap)
			checkTied(t, l)
			var got, gotQueries []string
			for _, r := range l["dns"] {
				id := r.count(t, "trans_id")
				if _, ok := r["rcode"]; !ok {
					gotQueries = append(gotQueries, strings.Join([]string{hex4(id), r.str("query"), itoa(r.count(t, "qtype"))}, "|"))
					if _, ok := r["answers"]; ok {
						t.Errorf("an unanswered query with answers: %v", r)
					}
					continue
				}
				k := []string{hex4(id), r.str("query"), "", itoa(r.count(t, "rcode"))}
				if _, ok := r["qtype"]; ok {
					k[2] = itoa(r.count(t, "qtype"))
					if r.str("qtype_name") == "" || r.str("qclass_name") == "" {
						t.Errorf("qtype %s without its names: %v", k[2], r)
					}
				}
				if r.str("rcode_name") == "" {
					t.Errorf("no rcode_name: %v", r)
				}
				if _, ok := r["rtt"]; ok {
					r.seconds(t, "rtt")
				}
				if a, ok := r["answers"].([]any); ok {
					ttls, _ := r["TTLs"].([]any)
					if len(ttls) != len(a) {
						t.Errorf("%d answers, %d TTLs", len(a), len(ttls))
					}
				}
				for _, b := range []string{"AA", "TC", "RD", "RA"} {
					if _, ok := r[b].(bool); !ok {
						t.Errorf("%s = %v: want a bool", b, r[b])
					}
				}
				got = append(got, strings.Join(k, "|"))
			}
			if len(want) == 0 {
				t.Fatal("tshark found no responses")
			}
			multiset(t, "dns.log responses", got, want)
			multiset(t, "dns.log unanswered queries", gotQueries, wantQueries)
		})
	}
}

func hex4(v uint64) string {
	const d = "0123456789abcdef"
	return string([]byte{d[v>>12&15], d[v>>8&15], d[v>>4&15], d[v&15]})
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

// TestHTTPLogTShark: http.log's method, host, uri and user_agent are tshark's
// http.request.method, http.host, http.request.uri and http.user_agent for each request; its
// status codes are tshark's http.response.code; requests and responses on one connection are
// paired in order (trans_depth counts from 1) and every line's uid is its connection's. The
// sensor does not enter L2TP: the requests tshark finds inside it are left out.
func TestHTTPLogTShark(t *testing.T) {
	for _, name := range []string{"protocols/ipv4_tcp_http_get.pcap", "chains/http.pcap", "chains/nb6-http.pcap", "chains/sqli.pcap"} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			pcap := capture(t, name)
			var wantReq, wantStatus []string
			for _, f := range tshark(t, pcap, "http.request and not l2tp", "http.request.method", "http.host", "http.request.uri", "http.user_agent") {
				for len(f) < 4 {
					f = append(f, "")
				}
				wantReq = append(wantReq, strings.Join(f, "|"))
			}
			for _, f := range tshark(t, pcap, "http.response and not l2tp", "http.response.code") {
				wantStatus = append(wantStatus, f[0])
			}
			l := allLogs(t, pcap)
			checkTied(t, l)
			var gotReq, gotStatus []string
			depth := map[string]uint64{}
			for _, r := range l["http"] {
				d := r.count(t, "trans_depth")
				if d != depth[r.str("uid")]+1 {
					t.Errorf("uid %s: trans_depth %d after %d", r.str("uid"), d, depth[r.str("uid")])
				}
				depth[r.str("uid")] = d
				if r.str("method") != "" {
					gotReq = append(gotReq, strings.Join([]string{r.str("method"), r.str("host"), r.str("uri"), r.str("user_agent")}, "|"))
				}
				if _, ok := r["status_code"]; ok {
					gotStatus = append(gotStatus, itoa(r.count(t, "status_code")))
				}
			}
			if len(wantReq) == 0 {
				t.Fatal("tshark found no requests")
			}
			multiset(t, "http.log requests", gotReq, wantReq)
			multiset(t, "http.log status codes", gotStatus, wantStatus)
		})
	}
}

// TestSSLLogTShark: ssl.log has a line per connection with a hello; its server_name is
// tshark's tls.handshake.extensions_server_name of the ClientHello, its next_protocol the
// ServerHello's tls.handshake.extensions_alpn_str, its version the ServerHello's
// (tls.handshake.extensions.supported_version, else tls.handshake.version) in Zeek's names,
// and ja4 is there for every ClientHello.
func TestSSLLogTShark(t *testing.T) {
	zeekVersion := map[string]string{"0x0301": "TLSv10", "0x0302": "TLSv11", "0x0303": "TLSv12", "0x0304": "TLSv13"}
	for _, name := range []string{"protocols/tls12_clienthello_sni.pcap", "chains/https.pcap", "protocols/tls13_clienthello_sni.pcapng",
		"protocols/linktype_sll2_tls13_sni.pcap", "protocols/tls13_large_clienthello_kyber.pcap"} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			pcap := capture(t, name)
			var wantSNI, wantALPN, wantVer []string
			for _, f := range tshark(t, pcap, "tls.handshake.type==1 and not quic", "tls.handshake.extensions_server_name") {
				wantSNI = append(wantSNI, f[0])
			}
			for _, f := range tshark(t, pcap, "tls.handshake.type==2 and not quic", "tls.handshake.extensions_alpn_str",
				"tls.handshake.extensions.supported_version", "tls.handshake.version") {
				for len(f) < 3 {
					f = append(f, "")
				}
				if f[0] != "" {
					wantALPN = append(wantALPN, f[0])
				}
				wantVer = append(wantVer, zeekVersion[or(f[1], f[2])])
			}
			l := allLogs(t, pcap)
			checkTied(t, l)
			var gotSNI, gotALPN, gotVer []string
			for _, r := range l["ssl"] {
				if _, ok := r["ja4"]; ok {
					gotSNI = append(gotSNI, r.str("server_name"))
				}
				if v := r.str("next_protocol"); v != "" {
					gotALPN = append(gotALPN, v)
				}
				if v := r.str("version"); v != "" {
					gotVer = append(gotVer, v)
				}
			}
			if len(wantSNI) == 0 {
				t.Fatal("tshark found no ClientHello")
			}
			multiset(t, "ssl.log server_name", gotSNI, wantSNI)
			multiset(t, "ssl.log next_protocol", gotALPN, wantALPN)
			multiset(t, "ssl.log version", gotVer, wantVer)
		})
	}
}

// TestWeirdLogTShark: weird.log has a dns_query_type line (addl TXT) for each DNS message whose
// question is of type TXT (tshark's dns.qry.type == 16), at its time, with its connection's
// uid; Zeek's Weird::Info fields: name, addl, notice (a bool), peer, source.
func TestWeirdLogTShark(t *testing.T) {
	for _, name := range []string{"protocols/dns_udp_txt.pcap", "protocols/ipv4_http_dns_wikipedia.pcap"} {
		t.Run(filepath.Base(name), func(t *testing.T) {
			pcap := capture(t, name)
			var want []string
			for _, f := range tshark(t, pcap, "dns.qry.type==16", "frame.time_epoch") {
				want = append(want, f[0][:strings.IndexByte(f[0], '.')+7])
			}
			l := allLogs(t, pcap)
			checkTied(t, l)
			var got []string
			for _, r := range l["weird"] {
				if _, ok := r["notice"].(bool); !ok || r.str("peer") == "" || r.str("source") != "DNS" {
					t.Errorf("weird line without Zeek's fields: %v", r)
				}
				if r.str("name") == "dns_query_type" && r.str("addl") == "TXT" {
					got = append(got, string(r["ts"].(interface{ String() string }).String()))
				}
			}
			if len(want) == 0 {
				t.Fatal("tshark found no TXT question")
			}
			multiset(t, "weird.log dns_query_type TXT times", got, want)
		})
	}
}
