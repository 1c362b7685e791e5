package views

// End to end on real traffic: in network namespaces of its own, the test runs nginx (HTTP and
// HTTPS) and dnsmasq, makes curl and dig talk to them, captures the client side with tcpdump,
// and reads the capture through the sensor's read path into the urlwatch and weird-dns views.
// Needs root (namespaces) and the Debian packages of scripts/provision.sh.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
)

// e2eNet is the namespaces of a test: sensortest's Pair, servers on side A, clients (and the
// capture) on side B.
type e2eNet struct{ *sensortest.Pair }

func (n *e2eNet) srvIP() string { return n.V4A }

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// e2eLong is the long high-entropy label of the TXT query (40 characters, entropy 4.85 bits).
const e2eLong = "x7q9zk2m4v8b1n6c3r5t0y7u2i4o9p1a8s3d5f7g"

// e2eServers starts nginx (HTTP and HTTPS for e2e.test, self-signed) and dnsmasq in the server
// namespace and waits until nginx answers the client.
func e2eServers(t *testing.T, n *e2eNet) {
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "e2e.crt"), filepath.Join(dir, "e2e.key")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=e2e.test",
		"-keyout", key, "-out", crt).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off; pid %[1]s/nginx.pid; error_log %[1]s/error.log;
events {}
http { access_log off; client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen %[2]s:80; listen %[2]s:443 ssl; server_name e2e.test; ssl_certificate %[3]s; ssl_certificate_key %[4]s;
    location / { return 200 "hello\n"; } } }
`, dir, n.srvIP(), crt, key)), 0o600)
	var nginxErr, dnsErr syncBuf
	n.A.Start(t, nil, &nginxErr, "nginx", "-c", conf)
	n.A.Start(t, nil, &dnsErr, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address="+n.srvIP(), "--address=/e2e.test/"+n.srvIP(), "--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--user=root")
	waitFor(t, "nginx", func() bool {
		_, err := n.B.Run(t, 2*time.Second, "curl", "-s", "-o", "/dev/null", "--max-time", "1", "http://"+n.srvIP()+"/")
		return err == nil
	})
}

// e2eTraffic makes the client ask: a long high-entropy TXT query, an HTTP GET with an encoded
// path and query, an HTTPS GET with SNI e2e.test.
func e2eTraffic(t *testing.T, n *e2eNet) {
	for _, args := range [][]string{
		{"dig", "+tries=1", "+time=2", "@" + n.srvIP(), e2eLong + ".e2e.test", "TXT"},
		{"curl", "-s", "-o", "/dev/null", "--max-time", "5", "-A", "e2e-agent/1.0", "-H", "Host: e2e.test",
			"http://" + n.srvIP() + "/path%20with?q=%3Cscript%3E"},
		{"curl", "-s", "-k", "-o", "/dev/null", "--max-time", "5", "--http1.1", "--resolve", "e2e.test:443:" + n.srvIP(),
			"https://e2e.test/secure"},
	} {
		n.B.MustRun(t, args[0], args[1:]...)
	}
}

// e2eCheck checks the urlwatch and weird-dns output of e2eTraffic. full says the ClientHello
// must be whole (JA4 present).
func e2eCheck(t *testing.T, url, weird string, full bool) {
	want := []string{
		"GET http://e2e.test/path with?q=<script> ua=\"e2e-agent/1.0\"",
		"200 OK",
		"ClientHello sni=e2e.test alpn=http/1.1",
		"ServerHello version=TLS 1.",
	}
	if full {
		want = append(want, "ja4=t13d")
	}
	for _, w := range want {
		if !strings.Contains(url, w) {
			t.Errorf("urlwatch lacks %q:\n%s", w, url)
		}
	}
	for _, w := range []string{"query id=", "weird=[query_type=TXT subdomain=len=40 entropy=4.85 sub=" + e2eLong,
		"q=[" + e2eLong + ".e2e.test TXT IN]"} {
		if !strings.Contains(weird, w) {
			t.Errorf("weird-dns lacks %q:\n%s", w, weird)
		}
	}
	t.Logf("urlwatch:\n%s\nweird-dns:\n%s", url, weird)
}

// TestE2EURLWatchAndWeirdDNS: the traffic captured by tcpdump on the client's side and read
// through the sensor's read path.
func TestE2EURLWatchAndWeirdDNS(t *testing.T) {
	sensortest.RequireEndToEnd(t)
	sensortest.RequireTools(t, "ip", "nginx", "dnsmasq", "curl", "dig", "tcpdump", "openssl")
	n := &e2eNet{sensortest.NewPair(t)}
	e2eServers(t, n)
	var dumpErr syncBuf
	pcap := filepath.Join(t.TempDir(), "e2e.pcap")
	dump := n.B.Start(t, nil, &dumpErr, "tcpdump", "--immediate-mode", "-Z", "root", "-i", n.IfB, "-U", "-s", "0", "-w", pcap)
	waitFor(t, "tcpdump", func() bool { return strings.Contains(dumpErr.String(), "listening on") })
	e2eTraffic(t, n)
	time.Sleep(300 * time.Millisecond)
	dump.Process.Signal(os.Interrupt)
	dump.WaitFor(10 * time.Second)

	pkts := readPackets(t, pcap)
	if len(pkts) < 10 {
		t.Fatalf("captured %d packets; tcpdump: %s", len(pkts), dumpErr.String())
	}
	view := func(name string) string {
		var out bytes.Buffer
		chain, _ := Build(&Config{View: name, NoDNS: true, UTC: true}, sinks.NewOutput(&out, false))
		st, sink := chain.Stage, chain.Sink
		for p := range st(stagestest.Replay(pkts)) {
			sink.Write(p)
		}
		sink.Close()
		return out.String()
	}
	e2eCheck(t, view("urlwatch"), view("weird-dns"), true)
}

// TestE2ELiveViews: the same traffic watched live: the sensor attached to the client's veth
// (XDP ingress, TC egress), its ring buffer read into the urlwatch and weird-dns views.
func TestE2ELiveViews(t *testing.T) {
	sensortest.RequireEndToEnd(t)
	sensortest.RequireTools(t, "ip", "nginx", "dnsmasq", "curl", "dig", "openssl")
	n := &e2eNet{sensortest.NewPair(t)}
	e2eServers(t, n)

	objs, err := sensor.Load(sensor.Config{})
	if err != nil {
		t.Fatal(sensor.Explain(err))
	}
	defer objs.Close()
	rd, err := sensor.NewReader(objs.Events, sensor.ReaderOptions{Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var att *sensor.Attached
	if err := n.B.Do(func() (err error) {
		att, err = sensor.Attach(objs.XDP, objs.TC, []string{n.IfB}, sensor.AttachOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { att.Close() })
	boot, err := sensor.BootTime()
	if err != nil {
		t.Fatal(err)
	}
	live := sensor.NewLive(rd, sensor.Decoder{BootTime: boot}, nil)

	var url, weird bytes.Buffer
	st := AppStage(flows.Config{}, protocols.DNSConfig{})
	urlSink := sinks.NewURLWatch(sinks.NewOutput(&url, false), sinks.Options{UTC: true})
	weirdSink := sinks.NewWeirdDNS(sinks.NewOutput(&weird, false), sinks.Options{UTC: true})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range st(live.Packets()) {
			urlSink.Write(p)
			weirdSink.Write(p)
		}
	}()
	e2eTraffic(t, n)
	time.Sleep(300 * time.Millisecond)
	att.Close()
	rd.Stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		rd.Close()
		<-done
	}
	urlSink.Close()
	weirdSink.Close()
	// The client's ClientHello leaves through tc_sensor: its payload must arrive whole,
	// past the skb's pulled linear part, for the JA4 fingerprint to be there.
	e2eCheck(t, url.String(), weird.String(), true)
}

// syncBuf collects a command's stderr while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
