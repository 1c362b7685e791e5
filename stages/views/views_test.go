package views

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// TestBuildViews: the list holds net_watch and packets, Build rejects unknown views, and the
// front of the chain classifies and tags.
func TestBuildViews(t *testing.T) {
	names := strings.Join(Names(), ",")
	if !strings.Contains(names, "net_watch") || !strings.Contains(names, "packets") || List[0].Name != DefaultView {
		t.Fatalf("views %s", names)
	}
	var buf bytes.Buffer
	out := sinks.NewOutput(&buf, false)
	if _, err := Build(&Config{NoDNS: true, View: "nope"}, out); err == nil {
		t.Error("unknown view accepted")
	}
	cfg := &Config{NoDNS: true, Format: sinks.FormatJSON, UTC: true}
	b, err := Build(cfg, out)
	if err != nil {
		t.Fatal(err)
	}
	p := &stages.Packet{Time: time.Unix(0, 0), IPVersion: 4, EtherType: stages.EtherTypeIPv4, Proto: stages.ProtoTCP, DstPort: 22,
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("8.8.8.8")}
	n, err := b.Run(func(yield func(*stages.Packet) bool) { yield(p) })
	if err != nil || n != 1 {
		t.Fatal(n, err)
	}
	b.Close()
	if !strings.Contains(buf.String(), `"src_domain":"internal","dst_domain":"public","tags":["outgoing"]`) {
		t.Errorf("output %s", buf.String())
	}
}

// TestCount: Run stops after Config.Count packets (-c), whatever the view.
func TestCount(t *testing.T) {
	for _, v := range List {
		var buf bytes.Buffer
		b, err := Build(&Config{NoDNS: true, View: v.Name, UTC: true, Count: 5}, sinks.NewOutput(&buf, false))
		if err != nil {
			t.Fatal(err)
		}
		n, err := b.Run(stagestest.Capture(t, stagestest.PcapPath(t, "chains/http.pcap"), stagestest.KernelSnap))
		if err != nil || n != 5 {
			t.Errorf("%s: %d packets, %v", v.Name, n, err)
		}
		b.Close()
	}
}

// TestAppViewsBuilt: the three application views build, with -n, a chain and a sink that print
// what the views print (the front adds the class names to the endpoints).
func TestAppViewsBuilt(t *testing.T) {
	for view, want := range map[string]string{
		"urlwatch":  "HTTP 145.254.160.237:3372(public) --> 65.208.228.223:80(public) GET http://www.ethereal.com/download.html",
		"weird-dns": "",
		"flows":     "FLOW TCP 145.254.160.237:3372 --> 65.208.228.223:80 end=fin state=closed duration=30.393704s packets=16/18 bytes=1351/19344",
	} {
		var buf bytes.Buffer
		out := sinks.NewOutput(&buf, false)
		built, err := Build(&Config{NoDNS: true, View: view, UTC: true}, out)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := built.Run(stagestest.Capture(t, stagestest.PcapPath(t, "chains/http.pcap"), stagestest.KernelSnap)); err != nil {
			t.Fatal(err)
		}
		if err := built.Close(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), want) || (want == "") != (buf.Len() == 0) {
			t.Errorf("%s:\n%s", view, buf.String())
		}
	}
}
