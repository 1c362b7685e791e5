package flows

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

// TestCommunityIDBaseline checks the vectors of the Community ID specification's reference data
// (corelight/community-id-spec baseline/baseline_deflt.json, seed 0). For ICMP the ports there
// are already the type and counterpart/code pair; one-way ICMP types are marked.
func TestCommunityIDBaseline(t *testing.T) {
	for _, c := range []struct {
		proto        uint8
		saddr, daddr string
		sport, dport uint16
		want         string
	}{
		{58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="},
		{58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 135, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="},
		{58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 135, 136, "1:zavyT/cezQr1fmImYCwYnMXbgck="},
		{58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 136, 135, "1:zavyT/cezQr1fmImYCwYnMXbgck="},
		{58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0, "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="},
		{58, "3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", 1, 4, "1:hLZd0XGWojozrvxqE0dWB1iM6R0="},
		{58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 128, 129, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="},
		{58, "3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 129, 128, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="},
		{58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="},
		{58, "fe80::260:97ff:fe07:69ea", "ff02::1", 134, 133, "1:pkvHqCL88/tg1k4cPigmZXUtL00="},
		{1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="},
		{1, "192.168.0.1", "192.168.0.89", 0, 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="},
		{1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM="},
		{6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="},
		{6, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 25, 63943, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="},
		{132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="},
		{132, "192.168.170.56", "192.168.170.8", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="},
		{6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="},
		{17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="},
		{46, "10.1.12.1", "10.1.12.2", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="},
		{46, "10.1.12.2", "10.1.12.1", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="},
	} {
		oneWay := false
		if c.proto == stages.ProtoICMP || c.proto == stages.ProtoICMPv6 {
			_, _, oneWay = ICMPPorts(c.proto == stages.ProtoICMPv6, uint8(c.sport), uint8(c.dport))
		}
		got := CommunityID(0, stagestest.Addr(t, c.saddr), stagestest.Addr(t, c.daddr), c.sport, c.dport, c.proto, oneWay)
		if got != c.want {
			t.Errorf("%d %s:%d -> %s:%d: %s, want %s", c.proto, c.saddr, c.sport, c.daddr, c.dport, got, c.want)
		}
		if app := string(AppendCommunityID([]byte("x"), 0, stagestest.Addr(t, c.saddr), stagestest.Addr(t, c.daddr), c.sport, c.dport, c.proto, oneWay)); app != "x"+c.want {
			t.Errorf("AppendCommunityID %s, want %s", app, c.want)
		}
	}
}

// TestFlowCommunityIDFromPackets: an ICMP echo request and its reply land in one flow whose
// Community ID is the baseline's.
func TestFlowCommunityIDFromPackets(t *testing.T) {
	ft := New(Config{})
	req := &stages.Packet{IPVersion: 4, Proto: stages.ProtoICMP, Src: stagestest.Addr(t, "192.168.0.89"), Dst: stagestest.Addr(t, "192.168.0.1"), ICMPType: 8}
	rep := &stages.Packet{IPVersion: 4, Proto: stages.ProtoICMP, Src: stagestest.Addr(t, "192.168.0.1"), Dst: stagestest.Addr(t, "192.168.0.89"), ICMPType: 0}
	ft.Process(req)
	ft.Process(rep)
	if req.Flow != rep.Flow || !rep.FlowReply || req.FlowReply {
		t.Fatal("echo request and reply in different flows")
	}
	if got := FlowCommunityID(rep.Flow); got != "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=" {
		t.Errorf("community id %s", got)
	}
}

type flowCount struct{ frames, bytes [2]uint64 }

// TestFlowsAgainstTShark: for every TCP and UDP conversation tshark finds (tcp.stream,
// udp.stream), our flow between the same endpoints has the same frames and frame bytes in each
// direction. The flows are read as the flows view gets them: from OnEnd.
func TestFlowsAgainstTShark(t *testing.T) {
	files, _ := filepathGlob(t, "flows_*.tsv")
	for _, tsv := range files {
		pcap := flowPcapFor(tsv)
		t.Run(pcap, func(t *testing.T) {
			// tshark's side: per stream, the endpoints of its first packet and the counts.
			type conv struct {
				a, b string
				c    flowCount
			}
			convs := map[string]*conv{}
			var order []string
			for _, r := range stagestest.TSV(t, tsv) {
				proto, stream := "tcp", r[1]
				if stream == "" {
					proto, stream = "udp", r[2]
				}
				src := pick(r[3], r[4]) + "|" + pick(r[5], r[6])
				dst := pick(r[7], r[8]) + "|" + pick(r[9], r[10])
				k := proto + stream
				cv := convs[k]
				if cv == nil {
					cv = &conv{a: src, b: dst}
					convs[k] = cv
					order = append(order, k)
				}
				d := 0
				if src != cv.a {
					d = 1
				}
				n, _ := strconv.ParseUint(r[11], 10, 64)
				cv.c.frames[d]++
				cv.c.bytes[d] += n
			}
			// Ours.
			ours := map[string][]flowCount{}
			cfg := Config{OnEnd: func(f *stages.Flow) {
				a := f.Src.String() + "|" + strconv.Itoa(int(f.SrcPort))
				b := f.Dst.String() + "|" + strconv.Itoa(int(f.DstPort))
				ours[a+"-"+b] = append(ours[a+"-"+b], flowCount{f.Packets, f.Bytes})
				ours[b+"-"+a] = append(ours[b+"-"+a], flowCount{[2]uint64{f.Packets[1], f.Packets[0]}, [2]uint64{f.Bytes[1], f.Bytes[0]}})
			}}
			for range New(cfg).Stage()(stagestest.Capture(t, stagestest.PcapPath(t, pcap), stagestest.KernelSnap)) {
			}
			for _, k := range order {
				cv := convs[k]
				got := ours[cv.a+"-"+cv.b]
				if !slices.Contains(got, cv.c) {
					t.Errorf("%s %s <-> %s: tshark frames %v bytes %v; ours %v", k, cv.a, cv.b, cv.c.frames, cv.c.bytes, got)
				}
			}
		})
	}
}

func pick(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// flowPcapFor maps flows_NAME_pcap.tsv back to the test capture it was made from.
func flowPcapFor(tsv string) string {
	name := strings.TrimSuffix(strings.TrimPrefix(tsv, "flows_"), ".tsv")
	i := strings.LastIndexByte(name, '_')
	name = name[:i] + "." + name[i+1:]
	if strings.HasPrefix(name, "tcp_") || strings.HasPrefix(name, "ipv") || strings.HasPrefix(name, "mdns") || strings.HasPrefix(name, "linktype") {
		return "protocols/" + name
	}
	return "chains/" + name
}

// TestFlowTCPEnds: tcp_rst.pcap's connection ends by RST, tcp_fastopen_fin.pcap's by FIN from
// both sides (tshark shows tcp.flags.reset=1 in frame 2, and a FIN each way in the other).
func TestFlowTCPEnds(t *testing.T) {
	for pcap, want := range map[string]stages.FlowEnd{"protocols/tcp_rst.pcap": stages.FlowRST, "protocols/tcp_fastopen_fin.pcap": stages.FlowFIN} {
		var ends []string
		var states []string
		cfg := Config{OnEnd: func(f *stages.Flow) {
			if f.Proto == stages.ProtoTCP {
				ends = append(ends, f.End.String())
				states = append(states, f.State.String())
			}
		}}
		for range New(cfg).Stage()(stagestest.Capture(t, stagestest.PcapPath(t, pcap), stagestest.KernelSnap)) {
		}
		if len(ends) == 0 {
			t.Fatalf("%s: no TCP flow", pcap)
		}
		for i, e := range ends {
			if e != want.String() {
				t.Errorf("%s: flow %d ended %s (state %s), want %s", pcap, i, e, states[i], want)
			}
		}
	}
}

// TestFlowTimeouts: idle flows end after IdleTimeout, long ones are reported every
// ActiveTimeout, and a closed flow lingers for its stragglers.
func TestFlowTimeouts(t *testing.T) {
	var ended []string
	ft := New(Config{IdleTimeout: time.Minute, ActiveTimeout: 10 * time.Minute, Linger: 5 * time.Second,
		OnEnd: func(f *stages.Flow) {
			ended = append(ended, fmt.Sprintf("%d:%s:%d", f.SrcPort, f.End, f.Packets[0]+f.Packets[1]))
		}})
	t0 := time.Unix(1700000000, 0)
	udp := func(sport uint16, at time.Duration) *stages.Packet {
		return &stages.Packet{Time: t0.Add(at), IPVersion: 4, Proto: stages.ProtoUDP, Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "10.0.0.2"),
			SrcPort: sport, DstPort: 9999, WireLen: 100}
	}
	ft.Process(udp(41000, 0))
	ft.Process(udp(43000, 30*time.Second))
	for i := 0; i <= 11; i++ { // one packet every 59 seconds: never idle, but active
		ft.Process(udp(42000, time.Duration(i)*59*time.Second))
	}
	tcp := func(fl uint8, reply bool, at time.Duration) *stages.Packet {
		p := &stages.Packet{Time: t0.Add(at), IPVersion: 4, Proto: stages.ProtoTCP, Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "10.0.0.3"),
			SrcPort: 4000, DstPort: 80, TCPFlags: fl}
		if reply {
			p.Src, p.Dst, p.SrcPort, p.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
		}
		return p
	}
	ft.Process(tcp(stages.TCPSyn, false, 11*time.Minute))
	ft.Process(tcp(stages.TCPSyn|stages.TCPAck, true, 11*time.Minute))
	ft.Process(tcp(stages.TCPFin|stages.TCPAck, false, 11*time.Minute+time.Second))
	ft.Process(tcp(stages.TCPFin|stages.TCPAck, true, 11*time.Minute+time.Second))
	ft.Process(tcp(stages.TCPAck, false, 11*time.Minute+2*time.Second)) // the last ACK: counted
	ft.Process(udp(42000, 11*time.Minute+10*time.Second))
	ft.Flush()
	want := []string{"41000:idle:1", "43000:idle:1", "42000:active:11", "4000:fin:5", "42000:eof:2"}
	if strings.Join(ended, " ") != strings.Join(want, " ") {
		t.Errorf("ended %v\nwant  %v", ended, want)
	}
}

// TestFlowTableMillion: a million distinct flows through a table of 65,536 keep it at its
// bound, count every eviction, and keep the heap bounded; in steady state a new flow costs no
// allocation.
func TestFlowTableMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const total, capacity = 1_000_000, 65536
	var ended uint64
	ft := New(Config{MaxFlows: capacity, OnEnd: func(*stages.Flow) { ended++ }})
	p := &stages.Packet{IPVersion: 4, Proto: stages.ProtoTCP, TCPFlags: stages.TCPSyn, DstPort: 443, Dst: stagestest.Addr(t, "192.0.2.1"), WireLen: 60}
	t0 := time.Unix(1700000000, 0)
	feed := func(i int) {
		p.Src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p.SrcPort = uint16(1024 + i%60000)
		p.Time = t0.Add(time.Duration(i) * time.Microsecond)
		ft.Process(p)
	}
	var before, after runtime.MemStats
	for i := 0; i < capacity; i++ {
		feed(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := capacity; i < total; i++ {
		feed(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := ft.Stats()
	if ft.Len() != capacity || st.Active != capacity {
		t.Errorf("table holds %d flows, bound %d", ft.Len(), capacity)
	}
	if st.Flows != total || st.Evicted != total-capacity || ended != total-capacity {
		t.Errorf("flows %d evicted %d reported %d; want %d, %d, %d", st.Flows, st.Evicted, ended, total, total-capacity, total-capacity)
	}
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap with a full table: %.1f MiB; growth over %d more flows: %.1f MiB",
		float64(before.HeapAlloc)/(1<<20), total-capacity, float64(growth)/(1<<20))
	if growth > 16<<20 {
		t.Errorf("heap grew %d bytes while the table stayed full", growth)
	}
	i := total
	allocs := testing.AllocsPerRun(10000, func() { feed(i); i++ })
	if allocs > 0.01 {
		t.Errorf("a new flow in a full table costs %.2f allocations", allocs)
	}
	// A packet of an existing flow costs none either.
	allocs = testing.AllocsPerRun(10000, func() { p.TCPFlags = stages.TCPAck; ft.Process(p) })
	if allocs != 0 {
		t.Errorf("a packet of a known flow costs %.2f allocations", allocs)
	}
}

// filepathGlob lists testdata/tshark files matching pattern, by base name.
func filepathGlob(t testing.TB, pattern string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(stagestest.TSharkDir(t), pattern))
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m, err
}

// A flow takes the process of its first packet that names one (the SYN of an inbound
// connection names none: the accepting process is known from its later packets).
func TestFlowOwner(t *testing.T) {
	var got []stages.Owner
	ft := New(Config{OnEnd: func(f *stages.Flow) { got = append(got, f.Owner) }})
	t0 := time.Unix(1700000000, 0)
	for i, pid := range []uint32{0, 812, 0, 813} {
		p := &stages.Packet{Time: t0.Add(time.Duration(i) * time.Millisecond), IPVersion: 4, Proto: stages.ProtoUDP,
			Src: stagestest.Addr(t, "10.0.0.1"), Dst: stagestest.Addr(t, "10.0.0.2"), SrcPort: 53, DstPort: 40000, WireLen: 60}
		p.Owner.PID = pid
		ft.Process(p)
	}
	ft.Flush()
	if len(got) != 1 || got[0].PID != 812 {
		t.Fatalf("flow owners %+v, want one flow of pid 812", got)
	}
}
