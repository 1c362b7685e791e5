package views

// The application stages on packets made by the sensor's own read path (capture reader, Go
// twin parser, decoder), with the kernel's payload policy, as `chains-sensor read` makes them.

import (
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

// TestAppOnSensorPackets runs every test capture, damaged ones included, through the
// application stages as the read path delivers them: no panic, and the SNI of every ClientHello
// tshark decodes in the TLS captures (testdata/tshark/tls_*.tsv, third field) is found.
func TestAppOnSensorPackets(t *testing.T) {
	wantSNI := map[string]bool{}
	tsvs, _ := filepath.Glob(filepath.Join(stagestest.TSharkDir(t), "tls_*.tsv"))
	for _, tsv := range tsvs {
		b, err := os.ReadFile(tsv)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Split(l, "|"); f[1] == "1" && f[2] != "" {
				wantSNI[f[2]] = false
			}
		}
	}
	for _, path := range sensortest.PcapFiles(t) {
		st := AppStage(flows.Config{}, protocols.DNSConfig{})
		for p := range st(stagestest.Replay(readPackets(t, path))) {
			if p.TLS != nil && p.TLS.Hello == stages.TLSClientHello {
				if _, ok := wantSNI[p.TLS.SNI]; ok {
					wantSNI[p.TLS.SNI] = true
				}
			}
		}
	}
	for sni, seen := range wantSNI {
		if !seen {
			t.Errorf("ClientHello with SNI %q not found through the sensor read path", sni)
		}
	}
	if len(wantSNI) < 5 {
		t.Errorf("only %d SNIs to look for", len(wantSNI))
	}
}

// benchPackets builds n packets from the chains/ and protocols/ captures, repeated; each
// repetition shifts time by an hour (so earlier flows time out) and the client addresses (so
// flows, DNS clients and wire names keep coming).
func benchPackets(b *testing.B, n int) []stages.Packet {
	var base []stages.Packet
	for _, path := range sensortest.PcapFiles(b) {
		if strings.Contains(path, "malformed") {
			continue
		}
		base = append(base, readPackets(b, path)...)
	}
	if len(base) == 0 {
		b.Skip("no captures")
	}
	out := make([]stages.Packet, 0, n)
	t0 := time.Unix(1700000000, 0)
	for rep := 0; len(out) < n; rep++ {
		for i := range base {
			if len(out) == n {
				break
			}
			p := base[i]
			p.Time = t0.Add(time.Duration(rep)*time.Hour + time.Duration(i)*time.Microsecond)
			p.Src, p.Dst = shift(p.Src, rep), shift(p.Dst, rep)
			out = append(out, p)
		}
	}
	return out
}

func shift(a netip.Addr, rep int) netip.Addr {
	if !a.IsValid() || a.IsMulticast() {
		return a
	}
	b := a.As16()
	b[13] ^= byte(rep >> 8)
	b[14] ^= byte(rep)
	if a.Is4() {
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	return netip.AddrFrom16(b)
}

// BenchmarkAppChain: flows, DNS (with wire names), HTTP and TLS over 300,000 packets from the
// shared captures (a DNS-, TLS- and HTTP-heavy mix: every stage works on most packets).
// Reports packets/s on one core.
func BenchmarkAppChain(b *testing.B) {
	benchApp(b, benchPackets(b, 300_000))
}

// benchMixPackets builds n packets of a more usual link: 85% TCP data segments of 2,000
// established connections (payload neither HTTP nor TLS), 10% UDP datagrams of 500 QUIC-like
// flows, 3% DNS messages and 2% TLS and HTTP packets, the last two taken from the test
// captures (addresses shifted per round, so flows and clients keep coming).
func benchMixPackets(b *testing.B, n int) []stages.Packet {
	var dns, app []stages.Packet
	for _, path := range sensortest.PcapFiles(b) {
		if strings.Contains(path, "malformed") {
			continue
		}
		for _, p := range readPackets(b, path) {
			switch {
			case protocols.IsDNSPort(p.SrcPort) || protocols.IsDNSPort(p.DstPort):
				dns = append(dns, p)
			case p.Proto == stages.ProtoTCP && (len(p.Payload) > 0 && p.Payload[0] == 0x16 || protocols.LooksHTTP(p.Payload)):
				app = append(app, p)
			}
		}
	}
	if len(dns) == 0 || len(app) == 0 {
		b.Skip("no captures")
	}
	t0 := time.Unix(1700000000, 0)
	data := make([]byte, 64)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	var seq [2000]uint32
	out := make([]stages.Packet, 0, n)
	for i := 0; i < n; i++ {
		var p stages.Packet
		switch r := i % 100; {
		case r < 3:
			k := i / 100 * 3 % len(dns)
			p = dns[k]
			p.Src, p.Dst = shift(p.Src, i/len(dns)), shift(p.Dst, i/len(dns))
		case r < 5:
			k := (i / 100 * 2) % len(app)
			p = app[k]
			p.Src, p.Dst = shift(p.Src, i/len(app)), shift(p.Dst, i/len(app))
		case r < 15:
			k := i % 500
			p = stages.Packet{IPVersion: 6, EtherType: stages.EtherTypeIPv6, Proto: stages.ProtoUDP,
				Src: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(k >> 8), 15: byte(k)}),
				Dst: netip.MustParseAddr("2001:db8:ffff::443"), SrcPort: uint16(40000 + k), DstPort: 443,
				WireLen: 1292, PayloadLen: 1230, Payload: data}
		default:
			k := i % 2000
			seq[k] += 1448
			p = stages.Packet{IPVersion: 4, EtherType: stages.EtherTypeIPv4, Proto: stages.ProtoTCP,
				Src: netip.AddrFrom4([4]byte{10, 1, byte(k >> 8), byte(k)}), Dst: netip.AddrFrom4([4]byte{192, 0, 2, 80}),
				SrcPort: uint16(30000 + k), DstPort: 8443, TCPFlags: stages.TCPAck | stages.TCPPsh, Seq: seq[k],
				WireLen: 1514, PayloadLen: 1448, Payload: data}
		}
		p.Time = t0.Add(time.Duration(i) * time.Microsecond)
		out = append(out, p)
	}
	return out
}

// BenchmarkAppChainMix: the application stages over 300,000 packets of benchMixPackets' mix.
func BenchmarkAppChainMix(b *testing.B) {
	benchApp(b, benchMixPackets(b, 300_000))
}

// learnWire is a stage that only learns wire names from the decoded responses (the work the
// DNS stage did for --names before the split), without naming packets.
func learnWire(w *names.Wire) stages.Stage {
	return func(src iter.Seq[*stages.Packet]) iter.Seq[*stages.Packet] {
		return func(yield func(*stages.Packet) bool) {
			for p := range src {
				if d := p.DNS; d != nil && d.Response && d.Rcode == 0 {
					w.Learn(d, p.Time)
				}
				if !yield(p) {
					return
				}
			}
		}
	}
}

// benchApp runs pkts through the application stages (and the wire-names learner) b.N times.
func benchApp(b *testing.B, pkts []stages.Packet) {
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), stagestest.CPUTime()
	for i := 0; i < b.N; i++ {
		st := stages.Chain(AppStage(flows.Config{}, protocols.DNSConfig{}), learnWire(names.NewWire(0, 0)))
		for range st(stagestest.Replay(pkts)) {
		}
	}
	stagestest.ReportRate(b, len(pkts), time.Since(start), stagestest.CPUTime()-cpu)
}
