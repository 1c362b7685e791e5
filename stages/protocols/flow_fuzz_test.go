package protocols

// Fuzz targets of the application stages, seeded from the test captures (and, under
// testdata/fuzz, with what earlier fuzzing found). Run one with e.g.
//
//	go test -run XXX -fuzz FuzzDNS -fuzztime 60s ./stages

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

// seedPayloads adds the payloads of the test captures' packets that pass keep.
func seedPayloads(f *testing.F, files []string, keep func(p *stages.Packet) bool) {
	dir := sensortest.Pcaps(f)
	for _, name := range files {
		for p := range stagestest.Capture(f, dir+"/"+name, stagestest.FullSnap) {
			if len(p.Payload) > 0 && keep(p) {
				f.Add(slices.Clone(p.Payload))
			}
		}
	}
}

var dnsSeedFiles = []string{"chains/dns.pcap", "protocols/dns_tcp.pcap", "protocols/dns_udp_txt.pcap", "protocols/mdns_ipv4_ipv6.pcap",
	"protocols/llmnr_ipv6.pcapng", "malformed/dns_compression_loop_1.pcap", "malformed/dns_compression_loop_3.pcap",
	"malformed/dns_invalid_names.pcap", "malformed/dns_malformed_ndpi.pcap", "malformed/dns_max_compression_depth.pcap"}

// FuzzDNS feeds a payload to the DNS stage over UDP and over TCP: no panic, and the message's
// lists stay within their bounds.
func FuzzDNS(f *testing.F) {
	seedPayloads(f, dnsSeedFiles, func(p *stages.Packet) bool { return IsDNSPort(p.SrcPort) || IsDNSPort(p.DstPort) })
	tr := NewDNSTracker(DNSConfig{MaxPending: 64, MaxClients: 16, NXBurst: 2})
	at := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, proto := range []uint8{stages.ProtoUDP, stages.ProtoTCP} {
			for _, resp := range []bool{false, true} {
				p := &stages.Packet{Time: at, IPVersion: 4, Proto: proto, Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "10.0.0.53"),
					SrcPort: 40000, DstPort: PortDNS, Payload: b, PayloadLen: uint16(min(len(b), 65535))}
				if resp {
					p.Src, p.Dst, p.SrcPort, p.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
				}
				tr.Packet(p)
				if d := p.DNS; d != nil {
					if len(d.Questions) > dnsMaxQuestions || len(d.Answers) > dnsMaxRecords ||
						len(d.Authority) > dnsMaxRecords || len(d.Additional) > dnsMaxRecords {
						t.Fatalf("unbounded lists: %d %d %d %d", len(d.Questions), len(d.Answers), len(d.Authority), len(d.Additional))
					}
				}
			}
		}
		if tr.pending.Len() > 64 || tr.nx.Len() > 16 {
			t.Fatalf("tables past their bounds: %d %d", tr.pending.Len(), tr.nx.Len())
		}
	})
}

// FuzzHTTP parses a head: no panic, and whatever looks like HTTP is parsed. (What reaches a
// terminal is the sinks' FuzzSinks's concern.)
func FuzzHTTP(f *testing.F) {
	seedPayloads(f, []string{"chains/http.pcap", "chains/sqli.pcap", "protocols/ipv4_tcp_http_get.pcap"},
		func(p *stages.Packet) bool { return LooksHTTP(p.Payload) })
	f.Add([]byte("GET /%1b%5b2J HTTP/1.1\r\nHost: \x1b]0;x\x07\r\nUser-Agent: \xc2\x9b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, _ := ParseHTTPHead(b)
		if info == nil {
			if LooksHTTP(b) {
				t.Fatal("looks like HTTP but not parsed")
			}
			return
		}
		if info.Request == strings.HasPrefix(string(b), "HTTP/") {
			t.Fatalf("request %v for %q", info.Request, b[:min(len(b), 16)])
		}
	})
}

var ja4Shape = regexp.MustCompile(`^t(13|12|11|10|s3|s2|d1|d2|d3|00)[di]\d\d\d\d[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`)

// FuzzTLS decodes TLS records: no panic, and a complete ClientHello's JA4 has the
// specification's shape.
func FuzzTLS(f *testing.F) {
	seedPayloads(f, []string{"chains/https.pcap", "protocols/tls12_clienthello_sni.pcap", "protocols/tls13_clienthello_sni.pcapng",
		"protocols/tls13_large_clienthello_kyber.pcap", "protocols/tls13_ech_ipv6.pcapng", "malformed/tls_clienthello_fuzzed.pcap",
		"malformed/tls_invalid_reads.pcap"}, func(p *stages.Packet) bool { return len(p.Payload) > 5 && p.Payload[0] == 0x16 })
	var scratch []byte
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, _, _, complete, ok, sc := tlsHandshake(b, scratch)
		scratch = sc
		if !ok {
			return
		}
		info := ParseTLSHello(msg)
		if info == nil {
			return
		}
		if complete && info.Hello == stages.TLSClientHello && !info.Partial && !ja4Shape.MatchString(info.JA4) {
			t.Fatalf("JA4 %q", info.JA4)
		}
	})
}

// FuzzFlow drives a small flow table with packets described by the input (8 bytes of header
// each: flags, direction and port choice, sequence offset, payload length; then the payload):
// no panic, the table and its buffers stay within their bounds, and the HTTP and TLS stages
// read the reassembly safely.
func FuzzFlow(f *testing.F) {
	hello := []byte(nil)
	for p := range stagestest.Capture(f, stagestest.PcapPath(f, "protocols/tls12_clienthello_sni.pcap"), stagestest.FullSnap) {
		if len(p.Payload) > 0 && p.Payload[0] == 0x16 && hello == nil {
			hello = slices.Clone(p.Payload)
		}
	}
	enc := func(flags, dir byte, off uint16, payload []byte) []byte {
		h := []byte{flags, dir, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(h[2:], off)
		binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
		binary.BigEndian.PutUint16(h[6:], uint16(len(payload)))
		return append(h, payload...)
	}
	var seed []byte
	seed = append(seed, enc(stages.TCPSyn, 0, 0, nil)...)
	seed = append(seed, enc(stages.TCPSyn|stages.TCPAck, 1, 0, nil)...)
	if len(hello) > 100 {
		seed = append(seed, enc(stages.TCPAck, 0, 1+100, hello[100:])...)
		seed = append(seed, enc(stages.TCPAck, 0, 1, hello[:100])...)
	}
	seed = append(seed, enc(stages.TCPAck, 1, 1, []byte("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"))...)
	seed = append(seed, enc(stages.TCPFin|stages.TCPAck, 0, 0, nil)...)
	f.Add(seed)
	q := []byte{0, 29, 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1}
	var dnsSeed []byte
	dnsSeed = append(dnsSeed, enc(stages.TCPSyn, 0x08, 0, nil)...)
	dnsSeed = append(dnsSeed, enc(stages.TCPSyn|stages.TCPAck, 0x09, 0, nil)...)
	dnsSeed = append(dnsSeed, enc(stages.TCPAck, 0x08, 1+10, q[10:])...)
	dnsSeed = append(dnsSeed, enc(stages.TCPAck, 0x08, 1, q[:10])...)
	f.Add(dnsSeed)
	f.Fuzz(func(t *testing.T, b []byte) {
		const maxFlows, streamBytes = 4, 256
		tr := NewDNSTracker(DNSConfig{MaxPending: 8})
		ft := flows.New(flows.Config{MaxFlows: maxFlows, StreamBytes: streamBytes, StreamBudget: 3 * streamBytes,
			IdleTimeout: time.Second, Linger: time.Millisecond, Handlers: []flows.Handler{tr, HTTPHandler{}, &TLSHandler{}}})
		at := time.Unix(1700000000, 0)
		for n := 0; len(b) >= 8 && n < 256; n++ {
			flags, dir := b[0], b[1]
			off := binary.BigEndian.Uint16(b[2:])
			plen, declared := int(binary.BigEndian.Uint16(b[4:])), binary.BigEndian.Uint16(b[6:])
			b = b[8:]
			plen = min(plen, len(b))
			p := &stages.Packet{Time: at.Add(time.Duration(n) * time.Duration(dir&0x30) * time.Millisecond), IPVersion: 4, Proto: stages.ProtoTCP,
				Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "10.0.0.2"), SrcPort: 40000 + uint16(dir>>6), DstPort: 443 - 390*uint16(dir>>3&1),
				TCPFlags: flags, Seq: 1000 + uint32(off), Payload: b[:plen], PayloadLen: max(declared, uint16(plen))}
			if dir&1 == 1 {
				p.Src, p.Dst, p.SrcPort, p.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
				p.Seq += 5000
			}
			b = b[plen:]
			ft.Process(p)
			if st := ft.Stats(); ft.Len() > maxFlows || st.StreamBytes > 3*streamBytes || st.StreamBytes < 0 {
				t.Fatalf("bounds: %d flows, %d stream bytes", ft.Len(), st.StreamBytes)
			}
		}
		ft.Flush()
		if ft.Len() != 0 || ft.Stats().StreamBytes != 0 {
			t.Fatalf("after flush: %d flows, %d stream bytes", ft.Len(), ft.Stats().StreamBytes)
		}
	})
}

// TestAppFastPathNoAlloc: a packet that is neither DNS, HTTP nor TLS, of a known flow, goes
// through the flows, DNS, HTTP and TLS stages without allocating; so does a TCP data segment
// of an uninteresting protocol.
func TestAppFastPathNoAlloc(t *testing.T) {
	dt := NewDNSTracker(DNSConfig{})
	ft := flows.New(flows.Config{Handlers: []flows.Handler{dt, HTTPHandler{}, &TLSHandler{}}})
	p := &stages.Packet{IPVersion: 4, Proto: stages.ProtoTCP, Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "192.0.2.9"),
		SrcPort: 50000, DstPort: 22, TCPFlags: stages.TCPAck, Seq: 1, WireLen: 1500, PayloadLen: 1448,
		Payload: []byte("SSH-2.0-OpenSSH_9.6 some more bytes of an ssh stream, not decoded by anyone")[:64]}
	at := time.Unix(1700000000, 0)
	run := func() {
		at = at.Add(time.Microsecond)
		p.Time = at
		p.Seq += 1448
		ft.Process(p)
	}
	run()
	if n := testing.AllocsPerRun(10000, run); n != 0 {
		t.Errorf("%.2f allocations per packet", n)
	}
	u := &stages.Packet{IPVersion: 6, Proto: stages.ProtoUDP, Src: stagestest.Addr(t, "2001:db8::1"), Dst: stagestest.Addr(t, "2001:db8::2"),
		SrcPort: 40000, DstPort: 443, WireLen: 1300, PayloadLen: 1250, Payload: make([]byte, 64)}
	if n := testing.AllocsPerRun(10000, func() { ft.Process(u) }); n != 0 {
		t.Errorf("QUIC-like UDP: %.2f allocations per packet", n)
	}
}

// FuzzQUIC feeds a datagram to the QUIC handler, seeded with RFC 9001's and RFC 9369's client
// Initials and the test captures' QUIC datagrams: no panic, and its table within its bound.
func FuzzQUIC(f *testing.F) {
	seedPayloads(f, []string{"protocols/quic_ja4_chrome.pcap", "protocols/quic_v2_echo.pcap", "protocols/quic_crypto_across_initials.pcap"},
		func(p *stages.Packet) bool { return p.Proto == stages.ProtoUDP })
	for _, name := range []string{"rfc9001_a2_client_initial.hex", "rfc9369_a2_client_initial.hex"} {
		s, err := os.ReadFile(filepath.Join("testdata", "quic", name))
		if err != nil {
			f.Fatal(err)
		}
		b, _ := hex.DecodeString(strings.Join(strings.Fields(string(s)), ""))
		f.Add(b)
	}
	h := NewQUICHandler(QUICConfig{MaxConns: 8, MaxHello: 4096})
	at := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		at = at.Add(time.Millisecond)
		for _, sport := range []uint16{40000, 443} {
			p := &stages.Packet{Time: at, IPVersion: 4, Proto: stages.ProtoUDP, Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "10.0.0.2"),
				SrcPort: sport, DstPort: 443, Payload: b, PayloadLen: uint16(min(len(b), 65535))}
			h.Packet(p)
			if p.TLS != nil && p.TLS.QUIC == 0 {
				t.Fatal("a QUIC hello without its version")
			}
		}
		if h.conns.Len() > 8 {
			t.Fatalf("%d handshakes, bound 8", h.conns.Len())
		}
	})
}
