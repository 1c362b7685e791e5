package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/miekg/dns"
)

// startDNS runs an in-process DNS server on 127.0.0.1 answering PTR queries from names
// (address -> name), NXDOMAIN for every other address.
func startDNS(t *testing.T, names map[string]string) string {
	t.Helper()
	table := map[string]string{}
	for a, n := range names {
		arpa, err := dns.ReverseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		table[arpa] = n
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(req)
			if n, ok := table[req.Question[0].Name]; ok {
				m.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypePTR,
					Class: dns.ClassINET, Ttl: 600}, Ptr: n}}
			} else {
				m.Rcode = dns.RcodeNameError
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestReadReverseDNS: read with --dns-server names public addresses from the server (the first
// packet already, thanks to the bounded wait), shows nxdomain and the nxdomain tag for failures,
// and keeps classes for internal addresses.
func TestReadReverseDNS(t *testing.T) {
	addr := startDNS(t, map[string]string{"65.208.228.223": "www.ethereal.com.", "145.254.160.237": "dialin-145-254-160-237.pools.arcor-ip.net."})
	file := filepath.Join(sensortest.Pcaps(t), "chains", "http.pcap")
	out, stderr, code := runCmd(t, "read", "--utc", "--dns-server", addr, file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want0 := "2004-05-13 10:17:07 - TCP IP 145.254.160.237(dialin-145-254-160-237.pools.arcor-ip.net) --> 65.208.228.223(www.ethereal.com)"
	if lines[0] != want0 {
		t.Errorf("first line\n got %q\nwant %q", lines[0], want0)
	}
	// 216.239.59.99 (packet 18 in tshark's numbering) is not in the table: nxdomain.
	js, _, _ := runCmd(t, "read", "--utc", "--dns-server", addr, "-o", "json", file)
	if !strings.Contains(js, `"dst_domain":"nxdomain","tags":["nxdomain"]`) && !strings.Contains(js, `"src_domain":"nxdomain"`) {
		t.Errorf("no nxdomain in %s", js)
	}
	if strings.Count(out, "\n") != 43 {
		t.Errorf("%d lines, want 43", strings.Count(out, "\n"))
	}
}
