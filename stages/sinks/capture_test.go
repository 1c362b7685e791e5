package sinks

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
	"github.com/gopacket/gopacket/pcapgo"
)

func commentPacket() *stages.Packet {
	return &stages.Packet{
		Time: time.Unix(1700000000, 0), EtherType: stages.EtherTypeIPv4, IPVersion: 4,
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("93.184.216.34"),
		Proto: stages.ProtoTCP, SrcPort: 40000, DstPort: 443, L4HdrLen: 20,
		SrcDomain: "internal", DstDomain: "example.com", Tags: stages.TagOutgoing | stages.TagNXDomain,
	}
}

// The comment is the lines' text: endpoints, tags, and the decoders' findings as urlwatch and
// weird-dns print them (checked by hand against those sinks' formats).
func TestAppendComment(t *testing.T) {
	p := commentPacket()
	if got, want := string(AppendComment(nil, p)), "10.0.0.1:40000(internal) --> 93.184.216.34:443(example.com) tags=outgoing,nxdomain"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p.TLS = &stages.TLSInfo{Hello: stages.TLSClientHello, SNI: "example.com", ALPN: []string{"h2"}, Versions: []uint16{0x0a0a, 0x0304}, JA4: "t13d0101h2_x_y"}
	p.HTTP = &stages.HTTPInfo{Request: true, Method: "GET", URI: "/a%20b", Host: "example.com\x1b[31m"}
	p.DNS = &stages.DNSInfo{ID: 0x1a2b, Questions: []stages.DNSQuestion{{Name: "x.example", Type: 16, Class: 1}},
		Weird: []stages.DNSWeird{{Rule: "query_type", Detail: "TXT"}}}
	p.Status, p.BadLayer = stages.StatusTruncated, stages.LayerTCP
	want := "10.0.0.1:40000(internal) --> 93.184.216.34:443(example.com) [truncated tcp] tags=outgoing,nxdomain" +
		`; HTTP GET http://example.com\x1b[31m/a b` +
		"; TLS ClientHello sni=example.com alpn=h2 versions=TLS 1.3 ja4=t13d0101h2_x_y" +
		"; DNS query id=0x1a2b weird=[query_type=TXT] q=[x.example TXT IN]"
	if got := string(AppendComment(nil, p)); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// A long comment is cut at a character's start, with "...".
	p = commentPacket()
	p.DNS = &stages.DNSInfo{Response: true}
	for i := 0; i < 400; i++ {
		p.DNS.Answers = append(p.DNS.Answers, stages.DNSRecord{Name: "ü.example", Type: 16, Class: 1, Data: `"ééé"`})
	}
	c := AppendComment(nil, p)
	if len(c) > MaxComment || !bytes.HasSuffix(c, []byte("...")) || !strings.Contains(string(c), "an=[ü.example") {
		t.Errorf("a long comment: %d bytes, ends %q", len(c), c[max(0, len(c)-10):])
	}
	if !utf8Valid(c) {
		t.Error("the cut comment is not valid UTF-8")
	}
}

func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "\uFFFD") == string(b) }

// The cached Community IDs are the flows' own, also when two flows share a cache slot.
func TestCommentCommunityIDCache(t *testing.T) {
	var cids cidCache
	mk := func(id uint64, sport uint16) *stages.Flow {
		return &stages.Flow{ID: id, Proto: stages.ProtoTCP, Src: netip.MustParseAddr("10.0.0.1"),
			Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: sport, DstPort: 80}
	}
	a, b := mk(7, 1000), mk(7+uint64(len(cids)), 2000)
	for i := 0; i < 4; i++ {
		for _, f := range []*stages.Flow{a, b, a} {
			p := commentPacket()
			p.Flow = f
			got := string(appendComment(nil, p, &cids))
			if want := " community_id=" + flows.FlowCommunityID(f); !strings.HasSuffix(got, want) {
				t.Fatalf("flow %d: %q, want the suffix %q", f.ID, got, want)
			}
		}
	}
}

// The capture sink: frames cut to the snap length, a capture file's directions (outbound only
// where it said so), interfaces declared as packets come, what it writes per interface; Tee
// writes to all and closes all.
func TestCaptureSink(t *testing.T) {
	var out bytes.Buffer
	w, err := pcapng.Create(pcapng.Options{Path: "-", Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	var declared []uint32
	c := NewCapture(CaptureConfig{Writer: w, SnapLen: 10, Comments: true,
		Interface: func(i uint32) pcapng.Interface { declared = append(declared, i); return pcapng.Interface{LinkType: 1} }})
	var lines bytes.Buffer
	tee := Tee{c, NewNetWatch(NewOutput(&lines, false), Options{UTC: true})}
	p := commentPacket()
	p.Frame, p.FrameLen = make([]byte, 60), 60
	for i, idx := range []uint32{5, 9, 5} {
		p.Ifindex = idx
		p.Dir = stages.Direction(i % 2)
		if err := tee.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	p.Frame = nil
	tee.Write(p)
	if err := tee.Close(); err != nil {
		t.Fatal(err)
	}
	if len(declared) != 2 || declared[0] != 5 || declared[1] != 9 {
		t.Errorf("interfaces declared %v, want [5 9]", declared)
	}
	if got := c.Written(); len(got) != 2 || got[0] != 2 || got[1] != 1 || c.NoFrame != 1 {
		t.Errorf("written %v, %d without a frame", got, c.NoFrame)
	}
	if n := strings.Count(lines.String(), "\n"); n != 4 {
		t.Errorf("net_watch beside it printed %d lines", n)
	}
	r, err := pcapgo.NewNgReader(&out, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			if i != 3 {
				t.Errorf("%d packets read: %v", i, err)
			}
			break
		}
		var flags uint32
		if opts.Flags != nil {
			flags = opts.Flags.ToUint32()
		}
		if len(data) != 10 || ci.Length != 60 || flags != uint32(i%2)*2 || len(opts.Comments) != 1 {
			t.Errorf("packet %d: %d of %d bytes, flags %#x, comments %q", i+1, len(data), ci.Length, flags, opts.Comments)
		}
	}
}
