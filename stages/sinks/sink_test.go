package sinks

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/classify"
)

// lockedBuffer is a bytes.Buffer safe for the Output's flush goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLiveOutputFlushes: a lone line on a live Output reaches the writer without Close (how
// soon is BenchmarkLiveOutputLatency's measure); a file Output holds it until Close.
func TestLiveOutputFlushes(t *testing.T) {
	want := "2015-09-07 19:08:34 - UDP IP 192.168.1.9(internal) --> 224.0.0.251(multicast_dns)\n"
	var buf lockedBuffer
	out := NewOutput(&buf, true)
	defer out.Close()
	if err := NewNetWatch(out, Options{UTC: true}).Write(lonePacket()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); buf.String() == "" && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if buf.String() != want {
		t.Errorf("live output %q, want %q", buf.String(), want)
	}
	var fb bytes.Buffer
	fo := NewOutput(&fb, false)
	NewNetWatch(fo, Options{UTC: true}).Write(lonePacket())
	time.Sleep(3 * FlushInterval)
	if fb.Len() != 0 {
		t.Error("file output flushed before Close")
	}
	fo.Close()
	if fb.String() != want {
		t.Errorf("file output %q", fb.String())
	}
}

func lonePacket() *stages.Packet {
	return &stages.Packet{Time: time.Unix(1441652914, 0), IPVersion: 4, EtherType: stages.EtherTypeIPv4, Proto: stages.ProtoUDP,
		Src: netip.MustParseAddr("192.168.1.9"), Dst: netip.MustParseAddr("224.0.0.251"),
		SrcDomain: "internal", DstDomain: "multicast_dns"}
}

// BenchmarkLiveOutputLatency: how long a lone line on a live Output takes to reach the writer
// (ms/line; the budget is 100 ms: the flush timer runs every FlushInterval, 50 ms).
func BenchmarkLiveOutputLatency(b *testing.B) {
	var total time.Duration
	for range b.N {
		var buf lockedBuffer
		out := NewOutput(&buf, true)
		start := time.Now()
		NewNetWatch(out, Options{UTC: true}).Write(lonePacket())
		for buf.String() == "" && time.Since(start) < 10*time.Second {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		out.Close()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/line")
}

// TestNetWatchLines pins the net_watch line for each kind of packet, written by hand from
// DESIGN.md's format.
func TestNetWatchLines(t *testing.T) {
	ts := time.Date(2015, 9, 7, 19, 8, 34, 491658000, time.UTC)
	c := classify.NewClassifier(nil, nil)
	cases := []struct {
		p    stages.Packet
		want string
	}{
		{stages.Packet{IPVersion: 4, EtherType: stages.EtherTypeIPv4, Proto: stages.ProtoTCP, L4HdrLen: 20,
			Src: netip.MustParseAddr("192.168.1.9"), Dst: netip.MustParseAddr("54.164.252.174")},
			"2015-09-07 19:08:34 - TCP IP 192.168.1.9(internal) --> 54.164.252.174(public)"},
		{stages.Packet{IPVersion: 6, EtherType: stages.EtherTypeIPv6, Proto: stages.ProtoICMPv6,
			Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("ff02::1")},
			"2015-09-07 19:08:34 - ICMP6 IP6 fe80::1(internal) --> ff02::1(all_hosts)"},
		{stages.Packet{EtherType: stages.EtherTypeARP, ARPOp: 1,
			Src: netip.MustParseAddr("10.0.0.2"), Dst: netip.MustParseAddr("10.0.0.1")},
			"2015-09-07 19:08:34 - ARP 10.0.0.2(internal) --> 10.0.0.1(internal)"},
		{stages.Packet{IPVersion: 4, EtherType: stages.EtherTypeIPv4, Proto: 47,
			Src: netip.MustParseAddr("0.0.0.0"), Dst: netip.MustParseAddr("255.255.255.255")},
			"2015-09-07 19:08:34 - GRE IP 0.0.0.0(unspecified) --> 255.255.255.255(broadcast)"},
		{stages.Packet{EtherType: 0x88cc, SrcMAC: [6]byte{0, 1, 2, 3, 4, 5}, DstMAC: [6]byte{1, 0x80, 0xc2, 0, 0, 0xe}},
			"2015-09-07 19:08:34 - LLDP 00:01:02:03:04:05(ethernet) --> 01:80:c2:00:00:0e(multicast)"},
		{stages.Packet{EtherType: stages.EtherTypeIPv4, Status: stages.StatusTruncated, BadLayer: stages.LayerIPv4,
			DstMAC: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
			"2015-09-07 19:08:34 - IP 00:00:00:00:00:00(ethernet) --> ff:ff:ff:ff:ff:ff(broadcast) [truncated ip]"},
		{stages.Packet{EtherType: 0x1234},
			"2015-09-07 19:08:34 - ETHER-0x1234 00:00:00:00:00:00(ethernet) --> 00:00:00:00:00:00(ethernet)"},
	}
	s := NewNetWatch(nil, Options{UTC: true})
	for _, tc := range cases {
		p := tc.p
		p.Time = ts
		c.Annotate(&p)
		got := strings.TrimSuffix(string(s.AppendLine(nil, &p)), "\n")
		if got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

// TestJSONTimes checks the JSON timestamp against time.Format (an independent formatter).
func TestJSONTimes(t *testing.T) {
	loc := time.FixedZone("X", -(3*3600 + 30*60))
	for _, ts := range []time.Time{
		time.Date(2015, 9, 7, 19, 8, 34, 491658000, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 123456789, time.UTC),
		time.Unix(0, 0),
	} {
		c := newClock(true)
		got := string(c.appendRFC3339(nil, ts))
		want := ts.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
		if ts.Nanosecond()%1000 != 0 {
			want = ts.UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
		}
		if got != want {
			t.Errorf("utc: got %s want %s", got, want)
		}
		c = &clock{sec: -1 << 62, loc: loc}
		got = string(c.appendRFC3339(nil, ts))
		want = ts.In(loc).Format("2006-01-02T15:04:05.000000-07:00")
		if ts.Nanosecond()%1000 != 0 {
			want = ts.In(loc).Format("2006-01-02T15:04:05.000000000-07:00")
		}
		if got != want {
			t.Errorf("local: got %s want %s", got, want)
		}
	}
}
func TestText(t *testing.T) {
	for in, want := range map[string]string{
		"plain":       "plain",
		"a\x1b[2Jb":   `a\x1b[2Jb`,
		"back\\slash": `back\\slash`,
		"caf\u00e9":   "caf\u00e9",
		"bad\xffutf8": `bad\xffutf8`,
		"c1\u009bx":   `c1\xc2\x9bx`,
		"nl\r\n":      `nl\x0d\x0a`,
		"\u202e-rtl":  "\u202e-rtl",
		"%41%zz%4":    "%41%zz%4",
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
	if got := PercentDecode("%41%zz%4%2f"); got != "A%zz%4/" {
		t.Errorf("PercentDecode: %q", got)
	}
}
