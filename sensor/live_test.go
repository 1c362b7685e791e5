package sensor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
)

func TestAccountBalances(t *testing.T) {
	for _, c := range []struct {
		k    KernelCounts
		u    LiveCounts
		want Loss
	}{
		// Everything arrived.
		{KernelCounts{XDPSeen: 7, TCSeen: 3, Emitted: 10}, LiveCounts{Read: 10, Decoded: 10},
			Loss{Seen: 10, Recorded: 10}},
		// The ring was full for 4 and one sample did not decode.
		{KernelCounts{XDPSeen: 100, Emitted: 96, RingFull: 4}, LiveCounts{Read: 96, Decoded: 95, Undecodable: 1},
			Loss{Seen: 100, Recorded: 95, Lost: 5, RingFull: 4, Undecodable: 1}},
		// Read while attached: 2 records still in the ring.
		{KernelCounts{XDPSeen: 12, Emitted: 12}, LiveCounts{Read: 10, Decoded: 10},
			Loss{Seen: 12, Recorded: 10, Lost: 2, Unread: 2}},
	} {
		got := Account(c.k, c.u)
		if got != c.want {
			t.Errorf("Account(%+v, %+v) = %+v, want %+v", c.k, c.u, got, c.want)
		}
		if got.Seen != got.Recorded+got.Lost {
			t.Errorf("%+v: seen != recorded + lost", got)
		}
		if got.Lost != got.RingFull+got.Undecodable+got.Unread {
			t.Errorf("%+v: the reasons do not add up to the loss", got)
		}
	}
}

func TestWriteStatsLastLine(t *testing.T) {
	var buf bytes.Buffer
	u := LiveCounts{Read: 96, Decoded: 95, Undecodable: 1,
		Ifaces: []IfaceCounts{{Iface: "eth0", Ifindex: 2, In: 60, Out: 30}, {Iface: "eth1", Ifindex: 3, In: 5}},
		Reader: ReaderStats{Records: 96, Wakeups: 2, Lingers: 1}}
	WriteStats(&buf, KernelCounts{XDPSeen: 70, TCSeen: 30, Emitted: 96, RingFull: 4, LostByIfindex: map[uint32]uint64{2: 3, 3: 1}}, u)
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if last := lines[len(lines)-1]; last != "100 packets seen, 95 recorded, 5 lost" {
		t.Errorf("last line %q", last)
	}
	for _, want := range []string{"eth0: 93 seen, 60 in and 30 out records, 3 lost to a full ring buffer",
		"eth1: 6 seen, 5 in and 0 out records, 1 lost to a full ring buffer",
		"4 lost to a full ring buffer", "1 undecodable", fmt.Sprintf("%d records each", 96/3)} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no %q in\n%s", want, buf.String())
		}
	}
}

// TestWriteStatsFiltered: with a filter the per-interface lines and the closing line count what
// the filter rejected, and N = F + M + L.
func TestWriteStatsFiltered(t *testing.T) {
	var buf bytes.Buffer
	u := LiveCounts{Read: 40, Decoded: 40, Ifaces: []IfaceCounts{{Iface: "eth0", Ifindex: 2, In: 30, Out: 10}}}
	k := KernelCounts{XDPSeen: 930, TCSeen: 110, Emitted: 41, RingFull: 1, Filter: true, Filtered: 998,
		FilteredByIfindex: map[uint32]uint64{2: 998}, LostByIfindex: map[uint32]uint64{2: 1}}
	l := WriteStats(&buf, k, u)
	if l.Seen != l.Filtered+l.Recorded+l.Lost || l.Filtered != 998 || l.Recorded != 40 || l.Lost != 2 {
		t.Errorf("account %+v", l)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if last := lines[len(lines)-1]; last != "1040 packets seen, 998 filtered out, 40 recorded, 2 lost" {
		t.Errorf("last line %q", last)
	}
	for _, want := range []string{"eth0: 1039 seen, 998 filtered out, 30 in and 10 out records, 1 lost to a full ring buffer",
		"kernel: 1040 seen (930 ingress, 110 egress), 998 filtered out, 41 records"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no %q in\n%s", want, buf.String())
		}
	}
}

// fakeDecoder reads the sample number the ringProducer wrote: interface 1 or 2 by parity,
// direction out for multiples of 3, and fails for numbers ending in 9.
type fakeDecoder struct{}

func (fakeDecoder) Decode(raw []byte, p *stages.Packet) error {
	n := binary.LittleEndian.Uint64(raw)
	if n%10 == 9 {
		return errors.New("undecodable")
	}
	p.Ifindex = uint32(n%2 + 1)
	if n%3 == 0 {
		p.Dir = stages.DirOut
	}
	p.IPID = uint32(n)
	return nil
}

// TestLivePacketsAndDrain: Packets yields every decodable sample in order, numbered, named and
// counted per interface; after the consumer stops, Drain counts the rest.
func TestLivePacketsAndDrain(t *testing.T) {
	p := newRingProducer(t, 1<<20, 0)
	r, err := NewReader(p.ring, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l := NewLive(r, fakeDecoder{}, map[uint32]string{1: "one", 2: "two"})
	p.emit(t, 0, 1000)
	var got []uint32
	for pk := range l.Packets() {
		if pk.Num != uint64(len(got)+1) || pk.Iface != map[uint32]string{1: "one", 2: "two"}[pk.Ifindex] {
			t.Fatalf("packet %d: Num %d Iface %q", len(got)+1, pk.Num, pk.Iface)
		}
		got = append(got, pk.IPID)
		if len(got) == 500 {
			break
		}
	}
	if l.Err() != nil {
		t.Fatal(l.Err())
	}
	r.Stop()
	if err := l.Drain(); err != nil {
		t.Fatal(err)
	}
	c := l.Counts()
	// 1000 samples, 100 of them (…9) undecodable.
	if c.Read != 1000 || c.Decoded != 900 || c.Undecodable != 100 {
		t.Fatalf("counts %+v", c)
	}
	var in, out uint64
	for _, ic := range c.Ifaces {
		in += ic.In
		out += ic.Out
	}
	if in+out != 900 || out != 300 { // multiples of 3 below 1000 not ending in 9: 334 - 34
		t.Errorf("per-interface in %d out %d, want 900 in all, 300 out", in, out)
	}
	want := uint32(0)
	for i, n := range got {
		if want%10 == 9 {
			want++
		}
		if n != want {
			t.Fatalf("packet %d is sample %d, want %d", i, n, want)
		}
		want++
	}
}
