package views_test

// End to end on real traffic: in network namespaces of its own, the test runs nginx (HTTP and
// HTTPS) and dnsmasq, makes curl and dig talk to them, captures the client side with tcpdump,
// and reads the capture through the sensor's read path into the urlwatch and weird-dns views.
// Needs root (namespaces) and the Debian packages of scripts/provision.sh.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/vishvananda/netns"
)

// requireRoot skips without root, or fails when CHAINS_REQUIRE_BPF=1 says privileged tests must run.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	must := os.Getenv("CHAINS_REQUIRE_BPF") == "1"
	miss := func(why string) {
		if must {
			t.Fatalf("%s (CHAINS_REQUIRE_BPF=1)", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		miss("needs root for network namespaces")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			miss(tool + " not installed")
		}
	}
}

type netnsPair struct {
	srv, cli string
	srvIP    string
	cliIf    string
}

func (n *netnsPair) inSrv(args ...string) []string {
	return append([]string{"ip", "netns", "exec", n.srv}, args...)
}

func (n *netnsPair) inCli(args ...string) []string {
	return append([]string{"ip", "netns", "exec", n.cli}, args...)
}

// setupNetns makes two namespaces joined by a veth pair: server 10.231.77.1, client .2.
func setupNetns(t *testing.T) *netnsPair {
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	n := &netnsPair{srv: "csb-srv-" + id, cli: "csb-cli-" + id, srvIP: "10.231.77.1", cliIf: "csbc" + id}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.srv).Run()
		exec.Command("ip", "netns", "del", n.cli).Run()
	})
	run("ip", "netns", "add", n.srv)
	run("ip", "netns", "add", n.cli)
	run("ip", "link", "add", "csbs"+id, "netns", n.srv, "type", "veth", "peer", "name", n.cliIf, "netns", n.cli)
	run("ip", "-n", n.srv, "addr", "add", n.srvIP+"/24", "dev", "csbs"+id)
	run("ip", "-n", n.cli, "addr", "add", "10.231.77.2/24", "dev", n.cliIf)
	for _, ns := range []string{n.srv, n.cli} {
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "-n", n.srv, "link", "set", "csbs"+id, "up")
	run("ip", "-n", n.cli, "link", "set", n.cliIf, "up")
	return n
}

// background starts a command that the test stops at its end.
func background(t *testing.T, stderr *syncBuf, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

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
func e2eServers(t *testing.T, n *netnsPair) {
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
`, dir, n.srvIP, crt, key)), 0o600)
	var nginxErr, dnsErr syncBuf
	background(t, &nginxErr, n.inSrv("nginx", "-c", conf)...)
	background(t, &dnsErr, n.inSrv("dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address="+n.srvIP, "--address=/e2e.test/"+n.srvIP, "--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--user=root")...)
	waitFor(t, "nginx", func() bool {
		args := n.inCli("curl", "-s", "-o", "/dev/null", "--max-time", "1", "http://"+n.srvIP+"/")
		return exec.Command(args[0], args[1:]...).Run() == nil
	})
}

// e2eTraffic makes the client ask: a long high-entropy TXT query, an HTTP GET with an encoded
// path and query, an HTTPS GET with SNI e2e.test.
func e2eTraffic(t *testing.T, n *netnsPair) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, args := range [][]string{
		n.inCli("dig", "+tries=1", "+time=2", "@"+n.srvIP, e2eLong+".e2e.test", "TXT"),
		n.inCli("curl", "-s", "-o", "/dev/null", "--max-time", "5", "-A", "e2e-agent/1.0", "-H", "Host: e2e.test",
			"http://"+n.srvIP+"/path%20with?q=%3Cscript%3E"),
		n.inCli("curl", "-s", "-k", "-o", "/dev/null", "--max-time", "5", "--http1.1", "--resolve", "e2e.test:443:"+n.srvIP,
			"https://e2e.test/secure"),
	} {
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
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
	if testing.Short() {
		t.Skip("end to end: not under -short")
	}
	requireRoot(t, "ip", "nginx", "dnsmasq", "curl", "dig", "tcpdump", "openssl")
	n := setupNetns(t)
	e2eServers(t, n)
	var dumpErr syncBuf
	pcap := filepath.Join(t.TempDir(), "e2e.pcap")
	dump := background(t, &dumpErr, n.inCli("tcpdump", "--immediate-mode", "-Z", "root", "-i", n.cliIf, "-U", "-s", "0", "-w", pcap)...)
	waitFor(t, "tcpdump", func() bool { return strings.Contains(dumpErr.String(), "listening on") })
	e2eTraffic(t, n)
	time.Sleep(300 * time.Millisecond)
	dump.Process.Signal(os.Interrupt)
	dump.Wait()

	pkts := stagestest.ReadPackets(t, pcap)
	if len(pkts) < 10 {
		t.Fatalf("captured %d packets; tcpdump: %s", len(pkts), dumpErr.String())
	}
	view := func(name string) string {
		var out bytes.Buffer
		chain, _ := views.Build(&views.Config{View: name, NoDNS: true, UTC: true}, sinks.NewOutput(&out, false))
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
	if testing.Short() {
		t.Skip("end to end: not under -short")
	}
	requireRoot(t, "ip", "nginx", "dnsmasq", "curl", "dig", "openssl")
	sensortest.RequireBPF(t)
	n := setupNetns(t)
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
	att := attachIn(t, n.cli, objs, n.cliIf)
	boot, err := sensor.BootTime()
	if err != nil {
		t.Fatal(err)
	}
	live := sensor.NewLive(rd, sensor.Decoder{BootTime: boot}, nil)

	var url, weird bytes.Buffer
	st := views.AppStage(flows.Config{}, protocols.DNSConfig{})
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

// attachIn attaches the sensor to iface inside network namespace ns.
func attachIn(t *testing.T, ns string, objs *sensor.Objects, iface string) *sensor.Attached {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	att, err := sensor.Attach(objs.XDP, objs.TC, []string{iface}, sensor.AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { att.Close() })
	return att
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
