package protocols

// Messages cut by hand: an HTTP request head, a post-quantum ClientHello and a DNS-over-TCP
// response, each taken from a real capture and cut into segments as an evasive or unlucky
// sender would (a first segment of 1, 2, 3 or 10 bytes; 2 and 3 segments), delivered in order
// and in reverse. Each must come out once, whole, with the values tshark decodes from the
// capture it was cut from.

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

// cutMessages are the messages cut: a capture, the frame holding the message, its length, and
// the tshark decode that says what it holds.
var cutMessages = []struct {
	name, pcap string
	frame      uint64
	tsv        string
	row        int
}{
	{"http", "chains/http.pcap", 4, "http_http_pcap.tsv", 0},
	{"tls", "protocols/tls13_large_clienthello_kyber.pcap", 4, "tls_tls13_large_clienthello_kyber_pcap.tsv", 0},
	{"dns", "protocols/dns_tcp.pcap", 6, "dns_dns_tcp_pcap.tsv", 1},
}

// cutPlans returns where to cut a payload of n bytes.
func cutPlans(n int) map[string][]int {
	return map[string][]int{
		"first 1 byte":   {1},
		"first 2 bytes":  {2},
		"first 3 bytes":  {3},
		"first 10 bytes": {10},
		"2 segments":     {n / 2},
		"3 segments":     {n / 3, 2 * n / 3},
		"1, 2, rest":     {1, 3},
		"3 then halves":  {3, n / 2},
	}
}

func TestMessagesCutByHand(t *testing.T) {
	for _, m := range cutMessages {
		row := stagestest.TSV(t, m.tsv)[m.row]
		_, whole := stagestest.Cut(t, m.pcap, m.frame)
		for plan, at := range cutPlans(len(whole[0].Payload)) {
			for _, reversed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/reversed=%v", m.name, plan, reversed), func(t *testing.T) {
					before, segs := stagestest.Cut(t, m.pcap, m.frame, at...)
					order := make([]int, len(segs))
					for i := range order {
						order[i] = i
					}
					if reversed {
						slices.Reverse(order)
					}
					ft := flows.New(flows.Config{Handlers: []flows.Handler{NewDNSTracker(DNSConfig{}), HTTPHandler{}, &TLSHandler{}}})
					for _, p := range before {
						ft.Process(p)
					}
					var got []*stages.Packet
					for k, i := range order {
						p := segs[i]
						ft.Process(p)
						if p.DNS != nil || p.HTTP != nil || p.TLS != nil {
							got = append(got, p)
							if k != len(order)-1 {
								t.Errorf("reported on segment %d of %d delivered", k+1, len(order))
							}
						}
					}
					if len(got) != 1 {
						t.Fatalf("reported %d times", len(got))
					}
					p := got[0]
					switch m.name {
					case "http":
						h := p.HTTP
						if h == nil || h.Next != nil || h.Partial || h.Segments != len(segs) {
							t.Fatalf("head %+v", h)
						}
						for _, f := range [][3]string{{"method", row[1], h.Method}, {"host", row[2], h.Host}, {"uri", row[3], h.URI},
							{"user agent", row[4], h.UserAgent}, {"referer", row[5], h.Referer}} {
							if f[1] != f[2] {
								t.Errorf("%s: tshark %q, we %q", f[0], f[1], f[2])
							}
						}
					case "tls":
						if p.TLS == nil || p.TLS.Next != nil || p.TLS.Segments != len(segs) {
							t.Fatalf("hello %+v", p.TLS)
						}
						checkTLSRow(t, m.frame, row, p.TLS)
					case "dns":
						if p.DNS == nil || p.DNS.Next != nil || !p.DNS.TCP {
							t.Fatalf("message %+v", p.DNS)
						}
						checkDNSRow(t, m.frame, row, p.DNS, false)
					}
				})
			}
		}
	}
}

// TestHTTPPipelined: three requests in one segment (the second a POST whose body the head gives
// a length), then a fourth alone: every head is reported, the three on the segment that carries
// them, in order; the body is skipped, not read as a head.
func TestHTTPPipelined(t *testing.T) {
	body := "GET /not-a-head HTTP/1.1\r\n\r\n"
	seg := "GET /one HTTP/1.1\r\nHost: a.example\r\nUser-Agent: ua/1\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: b.example\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body +
		"HEAD /three HTTP/1.1\r\nHost: c.example\r\n\r\n"
	tail := "GET /four HTTP/1.1\r\nHost: d.example\r\n\r\n"
	c := newConn(t, 40010, 80)
	ft := flows.New(flows.Config{Handlers: []flows.Handler{NewDNSTracker(DNSConfig{}), HTTPHandler{}, &TLSHandler{}}})
	c.open(ft)
	p := c.send(ft, 0, []byte(seg))
	var uris []string
	for h := p.HTTP; h != nil; h = h.Next {
		uris = append(uris, h.Method+" "+h.Host+h.URI)
		if h.Partial {
			t.Errorf("%s partial", h.URI)
		}
	}
	if want := []string{"GET a.example/one", "POST b.example/two", "HEAD c.example/three"}; !slices.Equal(uris, want) {
		t.Errorf("pipelined heads %q, want %q", uris, want)
	}
	p = c.send(ft, len(seg), []byte(tail))
	if p.HTTP == nil || p.HTTP.URI != "/four" || p.HTTP.Next != nil {
		t.Errorf("fourth head %+v", p.HTTP)
	}
}

// TestHTTPHeadAfterBody: a response with a Content-Length body spanning segments is skipped,
// and the next response on the connection is read again, however its segments fall.
func TestHTTPHeadAfterBody(t *testing.T) {
	body := make([]byte, 3000)
	r1 := "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n"
	r2 := "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	c := newConn(t, 40011, 8080)
	ft := flows.New(flows.Config{Handlers: []flows.Handler{HTTPHandler{}}})
	c.open(ft)
	stream := append(append([]byte(r1), body...), r2...)
	var status []string
	for off := 0; off < len(stream); off += 1000 {
		p := c.send(ft, off, stream[off:min(off+1000, len(stream))])
		for h := p.HTTP; h != nil; h = h.Next {
			status = append(status, strconv.Itoa(h.Status))
		}
	}
	if !slices.Equal(status, []string{"200", "404"}) {
		t.Errorf("statuses %v", status)
	}
}

// conn is a hand-made TCP connection: a client port to a server port, SYN and SYN-ACK sent by
// open; send gives the server (from the client, dir 0) payload at an offset of the stream.
type conn struct {
	t            *testing.T
	cport, sport uint16
	isn          uint32
}

func newConn(t *testing.T, cport, sport uint16) *conn {
	return &conn{t: t, cport: cport, sport: sport, isn: 1000}
}

func (c *conn) pkt(flags uint8, seq uint32, payload []byte, reply bool) *stages.Packet {
	p := &stages.Packet{IPVersion: 4, Proto: stages.ProtoTCP, Src: stagestest.Addr(c.t, "10.0.0.1"), Dst: stagestest.Addr(c.t, "10.0.0.2"),
		SrcPort: c.cport, DstPort: c.sport, TCPFlags: flags, Seq: seq, Payload: payload, PayloadLen: uint16(len(payload))}
	if reply {
		p.Src, p.Dst, p.SrcPort, p.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
	}
	return p
}

func (c *conn) open(ft *flows.Table) {
	ft.Process(c.pkt(stages.TCPSyn, c.isn, nil, false))
	ft.Process(c.pkt(stages.TCPSyn|stages.TCPAck, 5000, nil, true))
	ft.Process(c.pkt(stages.TCPAck, c.isn+1, nil, false))
}

// send sends payload at offset off of the client's stream to the server.
func (c *conn) send(ft *flows.Table, off int, payload []byte) *stages.Packet {
	p := c.pkt(stages.TCPAck|stages.TCPPsh, c.isn+1+uint32(off), payload, false)
	ft.Process(p)
	return p
}
