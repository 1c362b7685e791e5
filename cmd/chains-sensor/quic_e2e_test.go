package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// quicHello is what a QUIC ClientHello says that the test checks: the QUIC version of the
// Initial that carried it, the server name and the ALPN protocols.
type quicHello struct {
	Version, SNI, ALPN string
}

// quicRun is one QUIC connection the test makes: the version the client speaks, the server name
// and the ALPN protocol it offers.
type quicRun struct {
	version int
	sni     string
	alpn    string
	quicVer string // the version field of its Initials, as urlwatch and tshark write it
}

// TestAttachQUICInitial: a real QUIC client (quic-go, built from testdata/quicpeer) in one
// namespace connects over the veth to a real QUIC server in the other, on UDP port 4443 (not
// 443), once with QUIC v1 (RFC 9000) and once with v2 (RFC 9369), each with its own server name
// and ALPN protocol, while attach --view urlwatch watches the server's end: first with -o json,
// then as text. Each ClientHello spans two Initials, the second often sent to the server's
// chosen connection ID (RFC 9000 7.2). tshark, decrypting the Initials of tcpdump's capture of the same link, is the
// oracle: every ClientHello it finds, urlwatch reports with the same server name, ALPN and QUIC
// version, and the same client port. read (the Go twin) and read --kernel of that capture give
// the very lines attach printed, their times aside.
func TestAttachQUICInitial(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "go", "tcpdump", "tshark")
	bin := buildSensor(t)
	peer := buildQUICPeer(t, tn.dir)

	const port = "4443"
	server := tn.startA(t, peer, "-server", "-addr", tn.V4A+":"+port, "-alpn", "h3,hq-interop", "-timeout", "3m")
	waitLog(t, tn, "quicpeer.log", "listening on", server)
	pcap := filepath.Join(tn.dir, "quic.pcap")
	dump := tn.startA(t, "tcpdump", "-i", tn.IfA, "--immediate-mode", "-U", "-n", "-s", "0", "-w", pcap, "udp port "+port)
	waitLog(t, tn, "tcpdump.log", "listening on", dump)

	jsonRuns := []quicRun{
		{1, "v1.quic-live.test", "h3", "0x00000001"},
		{2, "v2.quic-live.test", "hq-interop", "0x6b3343cf"},
	}
	textRuns := []quicRun{
		{1, "text-v1.quic-live.test", "hq-interop", "0x00000001"},
		{2, "text-v2.quic-live.test", "h3", "0x6b3343cf"},
	}
	attachRuns := func(args []string, runs []quicRun) *sensorProc {
		t.Helper()
		sp := tn.startSensor(t, bin, append([]string{"-n", "--view", "urlwatch"}, append(args, tn.IfA)...)...)
		for _, r := range runs {
			out, err := tn.inB(t, 30*time.Second, peer, "-addr", tn.V4A+":"+port, "-sni", r.sni, "-alpn", r.alpn,
				"-version", strconv.Itoa(r.version), "-timeout", "20s")
			if want := "version " + r.quicVer + " alpn " + r.alpn; err != nil || strings.TrimSpace(out) != want {
				log, _ := os.ReadFile(filepath.Join(tn.dir, "quicpeer.log"))
				t.Fatalf("quicpeer client (v%d, %s): %v\n%s\nwant %q\nserver: %s", r.version, r.sni, err, out, want, log)
			}
		}
		time.Sleep(500 * time.Millisecond)
		if code := sp.stop(t, syscall.SIGINT); code != 0 {
			t.Fatalf("exit %d\n%s", code, sp.stderrText())
		}
		return sp
	}
	js := attachRuns([]string{"-o", "json"}, jsonRuns)
	text := attachRuns(nil, textRuns)
	dump.Process.Signal(syscall.SIGINT)
	if !dump.WaitFor(5 * time.Second) {
		t.Fatal("tcpdump still running 5s after SIGINT")
	}

	// tshark's view: each client port's ClientHello, decrypted from its Initials.
	// Go's ClientHello (its ML-KEM key share) does not fit one Initial: each port's hello
	// should come in CRYPTO frames of at least two.
	oracle := map[string]quicHello{}
	cryptoInitials := map[string]int{} // client port: its Initials with CRYPTO frames, up to the hello
	switched := 0                      // hellos whose Initials went to more than one connection ID
	dcids := map[string]string{}       // client port: the connection ID of its first Initial
	for _, f := range sensortest.TShark(t, pcap, "quic.version", "tls.handshake.type",
		"tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str", "quic.crypto.offset", "quic.dcid") {
		if len(f.Ports) != 1 || f.Ports[0].Dst != port {
			continue
		}
		if _, done := oracle[f.Ports[0].Src]; !done && len(f.Fields["quic.crypto.offset"]) > 0 {
			cryptoInitials[f.Ports[0].Src]++
			dcid := first(f.Fields["quic.dcid"]...)
			if old, ok := dcids[f.Ports[0].Src]; !ok {
				dcids[f.Ports[0].Src] = dcid
			} else if old != dcid && slices.Contains(f.Fields["tls.handshake.type"], "1") {
				switched++
			}
		}
		if !slices.Contains(f.Fields["tls.handshake.type"], "1") {
			continue
		}
		h := quicHello{Version: first(f.Fields["quic.version"]...), SNI: first(f.Fields["tls.handshake.extensions_server_name"]...),
			ALPN: strings.Join(f.Fields["tls.handshake.extensions_alpn_str"], ",")}
		if old, ok := oracle[f.Ports[0].Src]; ok && old != h {
			t.Fatalf("tshark: two ClientHellos from port %s: %+v and %+v", f.Ports[0].Src, old, h)
		}
		oracle[f.Ports[0].Src] = h
	}
	bySNI := map[string]string{} // server name: the client port tshark saw it from
	for p, h := range oracle {
		bySNI[h.SNI] = p
	}
	for _, r := range append(slices.Clone(jsonRuns), textRuns...) {
		p, ok := bySNI[r.sni]
		if !ok || oracle[p] != (quicHello{r.quicVer, r.sni, r.alpn}) {
			t.Fatalf("tshark decrypts %+v: not the QUIC v%d hello for %s with ALPN %s the client was asked for", oracle, r.version, r.sni, r.alpn)
		}
	}
	if len(oracle) != len(jsonRuns)+len(textRuns) {
		t.Fatalf("tshark finds %d ClientHellos, want %d: %+v", len(oracle), len(jsonRuns)+len(textRuns), oracle)
	}
	for p := range oracle {
		if cryptoInitials[p] < 2 {
			t.Errorf("tshark: the ClientHello from port %s in %d Initials, want several (the test's premise)", p, cryptoInitials[p])
		}
	}
	t.Logf("tshark: %d of the %d ClientHellos completed in an Initial to the server's connection ID", switched, len(oracle))
	if *update {
		// The capture of testdata/pcaps/protocols/quic_go_server_id.pcap: kept only when it
		// holds the case the test was made for.
		if switched == 0 {
			t.Fatal("-update: no ClientHello completed in an Initial to the server's connection ID this time; run again")
		}
		b, err := os.ReadFile(pcap)
		if err == nil {
			err = os.WriteFile(filepath.Join(sensortest.Pcaps(t), "protocols", "quic_go_server_id.pcap"), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	// attach -o json: one quic object per hello, the same as tshark's.
	got := map[string]quicHello{}
	for _, l := range js.output() {
		var m struct {
			Type, Hello, SNI, JA4 string
			Version               string `json:"quic_version"`
			Src, Dst              string
			Sport, Dport          int
			ALPN                  []string
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if m.Type != "quic" || m.Hello != "client" {
			continue
		}
		if m.Src != tn.V4B || m.Dst != tn.V4A || strconv.Itoa(m.Dport) != port || !strings.HasPrefix(m.JA4, "q13d") {
			t.Errorf("urlwatch -o json: %s: want %s:* --> %s:%s and a JA4 q13d...", l, tn.V4B, tn.V4A, port)
		}
		got[strconv.Itoa(m.Sport)] = quicHello{m.Version, m.SNI, strings.Join(m.ALPN, ",")}
	}
	for _, r := range jsonRuns {
		if p := bySNI[r.sni]; got[p] != oracle[p] {
			t.Errorf("urlwatch -o json from port %s: %+v, tshark %+v\n%s\n%s", p, got[p], oracle[p], strings.Join(js.output(), "\n"), js.stderrText())
		}
	}
	if len(got) != len(jsonRuns) {
		t.Errorf("urlwatch -o json reports %d QUIC ClientHellos, want %d:\n%s", len(got), len(jsonRuns), strings.Join(js.output(), "\n"))
	}

	// attach as text: one QUIC line per hello naming the same server name and ALPN.
	attachLines := quicLines(text.output())
	for _, r := range textRuns {
		p := bySNI[r.sni]
		want := quicLine(tn, p, port, r) + " versions=TLS 1.3 ja4=q13d"
		if n := countPrefix(attachLines, want); n != 1 {
			t.Errorf("urlwatch: %d lines begin %q, want 1:\n%s\n%s", n, want, strings.Join(text.output(), "\n"), text.stderrText())
		}
	}
	if len(attachLines) != len(textRuns) {
		t.Errorf("urlwatch prints %d QUIC ClientHello lines, want %d:\n%s", len(attachLines), len(textRuns), strings.Join(text.output(), "\n"))
	}

	// read of the capture, with the Go twin and with the kernel program: the same QUIC lines
	// as attach, for all four connections.
	for _, mode := range [][]string{nil, {"--kernel"}} {
		out, stderr, code := runCmd(t, append(append([]string{"read", "-n", "--view", "urlwatch"}, mode...), pcap)...)
		if code != 0 {
			t.Fatalf("read %v: exit %d\n%s", mode, code, stderr)
		}
		lines := quicLines(strings.Split(strings.TrimRight(out, "\n"), "\n"))
		if len(lines) != len(oracle) {
			t.Errorf("read %v: %d QUIC ClientHello lines, want %d:\n%s", mode, len(lines), len(oracle), out)
		}
		for _, l := range attachLines {
			if !slices.Contains(lines, l) {
				t.Errorf("read %v: no line %q, which attach printed:\n%s", mode, l, out)
			}
		}
		for _, r := range jsonRuns {
			p := bySNI[r.sni]
			want := quicLine(tn, p, port, r) + " "
			if countPrefix(lines, want) != 1 {
				t.Errorf("read %v: no line %q:\n%s", mode, want, out)
			}
		}
	}
}

// buildQUICPeer builds testdata/quicpeer (its own module: quic-go is a dependency of this
// test alone) into dir.
func buildQUICPeer(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "quicpeer")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", out, ".")
	cmd.Dir = filepath.Join("testdata", "quicpeer")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build testdata/quicpeer: %v\n%s", err, b)
	}
	return out
}

// waitLog waits (10 s at most) until DIR/NAME holds want, failing if p ends first.
func waitLog(t *testing.T, tn *testNet, name, want string, p *sensortest.Proc) {
	t.Helper()
	for i := 0; ; i++ {
		b, _ := os.ReadFile(filepath.Join(tn.dir, name))
		if strings.Contains(string(b), want) {
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("%s ended (%v) before saying %q:\n%s", name, p.Err(), want, b)
		case <-time.After(100 * time.Millisecond):
		}
		if i == 100 {
			t.Fatalf("%s does not say %q within 10s:\n%s", name, want, b)
		}
	}
}

// quicLine is the start of urlwatch's text line of run r's ClientHello from client port p
// (the test's private addresses are of class internal).
func quicLine(tn *testNet, p, port string, r quicRun) string {
	return fmt.Sprintf("QUIC %s:%s(internal) --> %s:%s(internal) ClientHello sni=%s alpn=%s", tn.V4B, p, tn.V4A, port, r.sni, r.alpn)
}

// quicLines returns urlwatch's text lines of QUIC ClientHellos, from "QUIC" on (the time cut).
func quicLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if i := strings.Index(l, "QUIC "); i >= 0 && strings.Contains(l, " ClientHello ") {
			out = append(out, l[i:])
		}
	}
	return out
}

// countPrefix counts the lines that begin with prefix.
func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}
