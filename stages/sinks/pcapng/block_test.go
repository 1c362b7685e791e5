package pcapng

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/gopacket/gopacket/pcapgo"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The blocks byte for byte, as draft-ietf-opsawg-pcapng lays them out (computed by hand).
func TestBlockBytes(t *testing.T) {
	epb := AppendEPB(nil, &EPB{Iface: 1, TS: 1<<32 | 2, WireLen: 5, Flags: FlagInbound,
		Data: []byte{0xaa, 0xbb, 0xcc}, Comment: []byte("hi")})
	want := unhex(t, `06000000 38000000 01000000 01000000 02000000 03000000 05000000 aabbcc00
		02000400 01000000 01000200 68690000 00000000 38000000`)
	if !bytes.Equal(epb, want) {
		t.Errorf("EPB\n got %x\nwant %x", epb, want)
	}
	isb := AppendISB(nil, 0, time.Unix(0, 10), time.Unix(0, 5), &Stats{Has: HasReceived | HasOSDrop, Received: 9, OSDrop: 7})
	want = unhex(t, `05000000 4c000000 00000000 00000000 0a000000
		02000800 00000000 05000000 03000800 00000000 0a000000
		04000800 09000000 00000000 07000800 07000000 00000000 00000000 4c000000`)
	if !bytes.Equal(isb, want) {
		t.Errorf("ISB\n got %x\nwant %x", isb, want)
	}
	idb := AppendIDB(nil, &Interface{Name: "eth0", LinkType: 1, SnapLen: 262144})
	want = unhex(t, `01000000 28000000 0100 0000 00000400 02000400 65746830 09000100 09000000
		00000000 28000000`)
	if !bytes.Equal(idb, want) {
		t.Errorf("IDB\n got %x\nwant %x", idb, want)
	}
	shb := AppendSHB(nil, &Section{Application: "cs"})
	want = unhex(t, `0a0d0d0a 28000000 4d3c2b1a 0100 0000 ffffffffffffffff 04000200 63730000 00000000 28000000`)
	if !bytes.Equal(shb, want) {
		t.Errorf("SHB\n got %x\nwant %x", shb, want)
	}
	// A packet without options has no end-of-options either.
	if n := len(AppendEPB(nil, &EPB{Data: []byte{1, 2, 3, 4}})); n != 36 {
		t.Errorf("an EPB of 4 bytes without options is %d bytes, want 36", n)
	}
}

func tshark(t *testing.T, file string, fields ...string) []string {
	t.Helper()
	args := []string{"-r", file, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", file, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.HasPrefix(l, "Running as user") {
			lines = append(lines, l)
		}
	}
	return lines
}

func capinfos(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("capinfos", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("capinfos %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// A file with two interfaces of different link types, read by tshark and capinfos (the
// packets, their interface, direction, comment, lengths and nanosecond times; the section
// header; the interfaces with their snap length, precision and filter; a statistics block per
// interface) and by gopacket's reader (the counts it knows).
func TestFileReadByTShark(t *testing.T) {
	sensortest.RequireTools(t, "tshark", "capinfos")
	path := filepath.Join(t.TempDir(), "a.pcapng")
	stats := func() []Stats {
		var s []Stats
		for i := range 2 {
			s = append(s, Stats{Has: HasReceived | HasIfDrop | HasOSDrop | HasFilterAccept | HasDelivered,
				Received: uint64(10 + i), IfDrop: 1, OSDrop: 2, FilterAccept: 7, Delivered: 5})
		}
		return s
	}
	w, err := Create(Options{Path: path, Stats: stats,
		Section: Section{Hardware: "x86_64", OS: "Linux 6.18", Application: "chains-sensor test", Comment: "host h1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(Interface{Name: "eth0", LinkType: 1, SnapLen: 262144, Filter: "icmp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(Interface{Name: "raw0", LinkType: 101, SnapLen: 100}); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 61)
	frame[12], frame[13] = 0x88, 0xb5 // a local experimental ethertype: tshark shows it as data
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 123456789, time.UTC)
	pkts := []EPB{
		{Iface: 0, TS: t0.UnixNano(), WireLen: 100, Flags: FlagInbound, Data: frame, Comment: []byte("one: 10.0.0.1(internal) --> 10.0.0.2(ünïcode)")},
		{Iface: 1, TS: t0.Add(time.Second + 1).UnixNano(), WireLen: 3, Flags: FlagOutbound, Data: []byte{0x45, 0, 0}},
		{Iface: 0, TS: t0.Add(2 * time.Second).UnixNano(), WireLen: 61, Data: frame[:61], Comment: []byte("x")},
	}
	for i := range pkts {
		if err := w.WritePacket(&pkts[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := tshark(t, path, "frame.interface_name", "frame.packet_flags_direction", "frame.len", "frame.cap_len", "frame.time_epoch", "frame.comment")
	want := []string{
		"eth0|0x00000001|100|61|1704164645.123456789|one: 10.0.0.1(internal) --> 10.0.0.2(ünïcode)",
		"raw0|0x00000002|3|3|1704164646.123456790|",
		"eth0||61|61|1704164647.123456789|x",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tshark reads\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	info := capinfos(t, "-I", "-F", "-k", path)
	for _, s := range []string{"Capture hardware:    x86_64", "Capture oper-sys:    Linux 6.18",
		"Capture application: chains-sensor test", "Capture comment:     host h1",
		"Name = eth0", "Encapsulation = Ethernet (1 - ether)", "Capture length = 262144", "Filter string = icmp",
		"Name = raw0", "Encapsulation = Raw IP (7 - rawip)", "Capture length = 100",
		"Time precision = nanoseconds (9)", "Number of stat entries = 1"} {
		if !strings.Contains(info, s) {
			t.Errorf("capinfos does not say %q:\n%s", s, info)
		}
	}
	if n := strings.Count(info, "Number of stat entries = 1"); n != 2 {
		t.Errorf("capinfos finds statistics for %d interfaces, want 2", n)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[int]pcapgo.NgInterfaceStatistics{}
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true,
		StatisticsCallback: func(i int, s pcapgo.NgInterfaceStatistics) { seen[i] = s }})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
	}
	for i := 0; i < 2; i++ {
		s, ok := seen[i]
		if !ok || s.PacketsReceived != uint64(10+i) || s.PacketsDropped != 1 || s.StartTime.IsZero() || s.EndTime.Before(s.StartTime) {
			t.Errorf("interface %d: gopacket reads the statistics %+v (found %v), want received %d, dropped 1, start <= end", i, s, ok, 10+i)
		}
	}
}
