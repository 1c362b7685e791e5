package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestAttachHeadsAcrossSegments: over a veth whose server advertises an MSS of 300, a real
// curl sends an HTTP head with a long cookie and a real openssl s_client a ClientHello with a
// long ALPN list, each in several segments (tshark, reading tcpdump's capture of the same
// link, says how many). attach's urlwatch reports the host, user agent, SNI and ALPN tshark
// decodes, and its exit line says the kernel followed the continuation segments.
func TestAttachHeadsAcrossSegments(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "openssl", "tcpdump", "tshark")
	bin := buildSensor(t)
	tn.startServers(t)
	// The server's SYN-ACK advertises MSS 300: the client's segments carry at most 300 bytes.
	if out, err := tn.inA(t, 5*time.Second, "ip", "route", "replace", "10.77.0.0/24", "dev", tn.IfA, "src", tn.V4A, "advmss", "300"); err != nil {
		t.Fatalf("advmss: %v\n%s", err, out)
	}
	key, crt := filepath.Join(tn.dir, "key.pem"), filepath.Join(tn.dir, "crt.pem")
	if out, err := execT(t, 20*time.Second, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-subj", "/CN=split.test", "-days", "1", "-keyout", key, "-out", crt); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	tn.startA(t, "openssl", "s_server", "-accept", tn.V4A+":4433", "-key", key, "-cert", crt, "-naccept", "1", "-quiet")
	pcap := filepath.Join(tn.dir, "split.pcap")
	dump := tn.startA(t, "tcpdump", "-i", tn.IfA, "--immediate-mode", "-U", "-n", "-w", pcap, "tcp")
	sp := tn.startSensor(t, bin, "-n", "-o", "json", "--view", "urlwatch", "--direction", "in", tn.IfA)
	// tcpdump says "listening on" on stderr (its log) once it captures.
	for i := 0; ; i++ {
		if b, _ := os.ReadFile(filepath.Join(tn.dir, "tcpdump.log")); strings.Contains(string(b), "listening on") {
			break
		}
		if i == 100 {
			t.Fatal("tcpdump did not start within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	const ua = "split-head-e2e/1"
	cookie := "c=" + strings.Repeat("k", 1500)
	if out, err := tn.inB(t, 10*time.Second, "curl", "-sS", "-m", "3", "-A", ua, "-H", "Cookie: "+cookie, "http://"+tn.V4A+"/split"); err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	var alpn []string
	for i := range 60 {
		alpn = append(alpn, "proto-"+strconv.Itoa(i)+"-"+strings.Repeat("a", 8))
	}
	const sni = "a-rather-long-server-name-for-the-split-hello.test"
	// s_client's stdin is empty: it ends after the handshake. Its own exit status does not
	// matter (the server offers none of the protocols); the hello went out.
	waitListening(t, tn, "4433")
	tn.inB(t, 10*time.Second, "openssl", "s_client", "-connect", tn.V4A+":4433", "-servername", sni, "-alpn", strings.Join(alpn, ","))
	time.Sleep(500 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	dump.Process.Signal(syscall.SIGINT)
	dump.WaitFor(5 * time.Second)

	// tshark's view: the head and the hello, each reassembled from at least 2 segments.
	var tsHost, tsUA, tsSNI, tsALPN string
	for _, f := range sensortest.TShark(t, pcap, "http.host", "http.user_agent", "tls.handshake.extensions_server_name",
		"tls.handshake.extensions_alpn_str", "tcp.segment.count", "tls.handshake.type") {
		segs := f.Fields["tcp.segment.count"]
		if len(f.Fields["http.host"]) > 0 {
			tsHost, tsUA = f.Fields["http.host"][0], strings.Join(f.Fields["http.user_agent"], ",")
			if n, _ := strconv.Atoi(first(segs...)); n < 2 {
				t.Errorf("tshark: the HTTP head in %v segments, want several", segs)
			}
		}
		if len(f.Fields["tls.handshake.extensions_server_name"]) > 0 && slices.Contains(f.Fields["tls.handshake.type"], "1") {
			tsSNI, tsALPN = f.Fields["tls.handshake.extensions_server_name"][0], strings.Join(f.Fields["tls.handshake.extensions_alpn_str"], ",")
			if n, _ := strconv.Atoi(first(segs...)); n < 2 {
				t.Errorf("tshark: the ClientHello in %v segments, want several", segs)
			}
		}
	}
	if tsHost != tn.V4A || tsUA != ua || tsSNI != sni || tsALPN != strings.Join(alpn, ",") {
		log, _ := os.ReadFile(filepath.Join(tn.dir, "tcpdump.log"))
		t.Fatalf("tshark decodes host %q ua %q sni %q alpn %q: the clients did not send what the test asked\ntcpdump: %s\nsensor: %s", tsHost, tsUA, tsSNI, tsALPN, log, strings.Join(sp.output(), "\n"))
	}

	gotHTTP, gotTLS := splitReported(t, sp.output(), tsHost, tsUA, tsSNI, alpn)
	if !gotHTTP || !gotTLS {
		t.Errorf("urlwatch: the split HTTP head reported %v, the split ClientHello %v:\n%s\n%s", gotHTTP, gotTLS, strings.Join(sp.output(), "\n"), sp.stderrText())
	}
	if !strings.Contains(sp.stderrText(), "kernel: message following: ") || strings.Contains(sp.stderrText(), "message following: 0 packets followed") {
		t.Errorf("the exit lines do not say the kernel followed segments:\n%s", sp.stderrText())
	}

	// The control: without following, the continuation segments come cut to 64 bytes and the
	// ClientHello never completes.
	tn.startA(t, "openssl", "s_server", "-accept", tn.V4A+":4434", "-key", key, "-cert", crt, "-naccept", "1", "-quiet")
	sp = tn.startSensor(t, bin, "-n", "-o", "json", "--view", "urlwatch", "--direction", "in", "--no-follow", tn.IfA)
	waitListening(t, tn, "4434")
	tn.inB(t, 10*time.Second, "openssl", "s_client", "-connect", tn.V4A+":4434", "-servername", sni, "-alpn", strings.Join(alpn, ","))
	time.Sleep(500 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	if m := regexp.MustCompile(`"flow_streams":(\d+)`).FindStringSubmatch(sp.stderrText()); m == nil || m[1] == "0" {
		t.Errorf("--no-follow: the control's connection was not seen:\n%s", sp.stderrText())
	}
	if _, got := splitReported(t, sp.output(), tsHost, tsUA, tsSNI, alpn); got {
		t.Errorf("--no-follow: the split ClientHello was reported whole: is the test's hello split at all?\n%s", strings.Join(sp.output(), "\n"))
	}
}

// waitListening waits (bounded) until a TCP socket in namespace A listens on port.
func waitListening(t *testing.T, tn *testNet, port string) {
	t.Helper()
	for i := 0; ; i++ {
		if out, _ := tn.inA(t, 5*time.Second, "ss", "-Hltn", "sport = :"+port); strings.Contains(out, ":"+port) {
			return
		}
		if i == 50 {
			t.Fatalf("openssl s_server not listening on %s within 10s", port)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// splitReported says whether urlwatch's JSON lines hold the split head and hello.
func splitReported(t *testing.T, lines []string, host, ua, sni string, alpn []string) (gotHTTP, gotTLS bool) {
	for _, l := range lines {
		var m struct {
			Type, Host, Hello, SNI, JA4 string
			UserAgent                   string `json:"user_agent"`
			ALPN                        []string
		}
		if json.Unmarshal([]byte(l), &m) != nil {
			t.Fatalf("not JSON: %q", l)
		}
		switch {
		case m.Type == "http" && m.Host == host && m.UserAgent == ua:
			gotHTTP = true
		// The decoder keeps the first 16 ALPN protocols (stages/protocols/tls.go); JA4 counts
		// the extensions and takes the first protocol's ends ("pa"), tshark 4.0 has no JA4.
		case m.Type == "tls" && m.Hello == "client" && m.SNI == sni && strings.Join(m.ALPN, ",") == strings.Join(alpn[:16], ",") && len(m.JA4) > 10 && m.JA4[:4] == "t13d" && m.JA4[8:10] == "pa":
			gotTLS = true
		}
	}
	return gotHTTP, gotTLS
}
