package main

// End-to-end tests: the chains-sensor binary attached for real to one end of a veth between two
// network namespaces the test makes (sensortest.NewPair), with real servers (dnsmasq, nginx) on
// that side and real clients (ping, dig, curl) on the other. They need root and skip under
// -short; without root they skip, and with CHAINS_REQUIRE_BPF=1 they fail instead. Traffic only
// ever goes to addresses inside the namespaces; every wait is bounded. This file is the harness:
// the network, the servers, the client traffic and the sensor process; the tests are in
// e2e_*_test.go by concern.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// sensorBin is the binary the end-to-end tests run, built once per test process.
var sensorBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// TestMain removes the binary the end-to-end tests built; run with CHAINS_E2E_ONESHOT set it
// is instead the short-lived client of TestE2EProcessExitsAtOnce.
func TestMain(m *testing.M) {
	if mode := os.Getenv(oneshotEnv); mode != "" { // this binary as a test's short-lived client
		os.Exit(oneshot(mode))
	}
	code := m.Run()
	if sensorBin.dir != "" {
		os.RemoveAll(sensorBin.dir)
	}
	os.Exit(code)
}

// buildSensor builds the binary (once per test process) into a directory others can read,
// so that it also runs as nobody.
func buildSensor(t *testing.T) string {
	t.Helper()
	sensorBin.once.Do(func() {
		if sensorBin.dir, sensorBin.err = os.MkdirTemp("", "chains-sensor-e2e-"); sensorBin.err != nil {
			return
		}
		os.Chmod(sensorBin.dir, 0o755)
		sensorBin.path = filepath.Join(sensorBin.dir, "chains-sensor")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// No VCS stamp: a clone owned by another user than the one running the tests (sudo)
		// would make git refuse.
		if out, err := exec.CommandContext(ctx, "go", "build", "-buildvcs=false", "-o", sensorBin.path, ".").CombinedOutput(); err != nil {
			sensorBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if sensorBin.err != nil {
		t.Fatal(sensorBin.err)
	}
	return sensorBin.path
}

// execT runs a command here (not in a test namespace) with a timeout and returns its combined
// output.
func execT(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// testNet is a sensortest.Pair for these tests: the sensor side A with the servers, the
// client side B, and a scratch directory for configurations and logs.
type testNet struct {
	*sensortest.Pair
	dir string
}

// newTestNet gates t as an end-to-end test needing ip, bpftool and tc, and makes the pair.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	sensortest.RequireEndToEnd(t)
	sensortest.RequireTools(t, "ip", "bpftool", "tc")
	return &testNet{Pair: sensortest.NewPair(t), dir: t.TempDir()}
}

// inA and inB run a command in a namespace.
func (tn *testNet) inA(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	return tn.A.Run(t, timeout, args[0], args[1:]...)
}

func (tn *testNet) inB(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	return tn.B.Run(t, timeout, args[0], args[1:]...)
}

// startA starts a long-running process in namespace A, its output in DIR/NAME.log.
func (tn *testNet) startA(t *testing.T, args ...string) *sensortest.Proc {
	t.Helper()
	log, err := os.Create(filepath.Join(tn.dir, filepath.Base(args[0])+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return tn.A.Start(t, log, log, args[0], args[1:]...)
}

// startServers runs dnsmasq (www.test.example A and AAAA) and nginx on side A and waits until
// both answer from side B.
func (tn *testNet) startServers(t *testing.T) {
	t.Helper()
	sensortest.RequireTools(t, "dnsmasq", "nginx", "dig", "curl")
	tn.startA(t, "dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
		"--no-hosts", "--bind-interfaces", "--listen-address="+tn.V4A+","+tn.V6A, "--except-interface=lo",
		"--address=/www.test.example/"+tn.V4A, "--address=/www.test.example/"+tn.V6A,
		"--pid-file="+filepath.Join(tn.dir, "dnsmasq.pid"), "--user=root", "--log-facility=-")
	conf := filepath.Join(tn.dir, "nginx.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s:80;
		listen [%[3]s]:80;
		location / { return 200 "hello from nginx\n"; }
	}
}
`, tn.dir, tn.V4A, tn.V6A)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	tn.startA(t, "nginx", "-c", conf, "-p", tn.dir, "-e", "stderr")
	for i := 0; ; i++ {
		dns, derr := tn.inB(t, 5*time.Second, "dig", "+short", "+tries=1", "+time=1", "@"+tn.V4A, "www.test.example", "A")
		web, werr := tn.inB(t, 5*time.Second, "curl", "-s", "-m", "1", "http://"+tn.V4A+"/")
		if derr == nil && strings.TrimSpace(dns) == tn.V4A && werr == nil && strings.Contains(web, "hello") {
			return
		}
		if i == 30 {
			logs, _ := os.ReadFile(filepath.Join(tn.dir, "dnsmasq.log"))
			nlogs, _ := os.ReadFile(filepath.Join(tn.dir, "nginx.log"))
			t.Fatalf("servers not answering: dig %q %v, curl %q %v\ndnsmasq: %s\nnginx: %s", dns, derr, web, werr, logs, nlogs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clientTraffic makes ICMP, DNS (UDP) and HTTP (TCP) exchanges over IPv4 and IPv6 from B to A,
// plus broadcast and multicast pings, and checks that each worked.
func (tn *testNet) clientTraffic(t *testing.T) {
	t.Helper()
	steps := [][]string{
		{"ping", "-c2", "-i0.2", "-W2", tn.V4A},
		{"ping", "-6", "-c2", "-i0.2", "-W2", tn.V6A},
		{"dig", "+short", "+tries=1", "+time=2", "@" + tn.V4A, "www.test.example", "A"},
		{"dig", "+short", "+tries=1", "+time=2", "@" + tn.V6A, "www.test.example", "AAAA"},
		{"curl", "-sS", "-m", "3", "http://" + tn.V4A + "/"},
		{"curl", "-sS", "-m", "3", "-g", "http://[" + tn.V6A + "]/"},
	}
	for _, s := range steps {
		if out, err := tn.inB(t, 10*time.Second, s...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	// Broadcast and multicast: nobody need answer.
	tn.inB(t, 5*time.Second, "ping", "-b", "-c1", "-W1", tn.V4BC)
	tn.inB(t, 5*time.Second, "ping", "-c1", "-W1", "-I", tn.IfB, "224.0.0.251")
	tn.inB(t, 5*time.Second, "ping", "-6", "-c1", "-W1", "ff02::1%"+tn.IfB)
}

// sensorProc is a running chains-sensor attach: its stdout lines with the time each arrived,
// and its stderr.
type sensorProc struct {
	*sensortest.Proc
	mu      sync.Mutex
	partial []byte
	lines   []string
	times   []time.Time
	stderr  bytes.Buffer
}

// Write collects stdout, line by line.
func (sp *sensorProc) Write(b []byte) (int, error) {
	now := time.Now()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.partial = append(sp.partial, b...)
	for {
		i := bytes.IndexByte(sp.partial, '\n')
		if i < 0 {
			break
		}
		sp.lines = append(sp.lines, string(sp.partial[:i]))
		sp.times = append(sp.times, now)
		sp.partial = sp.partial[i+1:]
	}
	return len(b), nil
}

// startSensor runs `chains-sensor attach ARGS` in namespace A and waits until it has attached.
func (tn *testNet) startSensor(t *testing.T, bin string, args ...string) *sensorProc {
	t.Helper()
	sp := &sensorProc{}
	cmd := tn.A.Command(context.Background(), bin, append([]string{"attach"}, args...)...)
	cmd.Stdout = sp
	cmd.Stderr = &lockedWriter{mu: &sp.mu, w: &sp.stderr}
	sp.Proc = sensortest.StartProc(t, cmd)
	for i := 0; ; i++ {
		if strings.Contains(sp.stderrText(), "attached to") {
			return sp
		}
		select {
		case <-sp.Done():
			t.Fatalf("chains-sensor exited before attaching: %v\n%s", sp.Err(), sp.stderrText())
		case <-time.After(50 * time.Millisecond):
		}
		if i == 200 {
			t.Fatalf("chains-sensor did not attach within 10s:\n%s", sp.stderrText())
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (sp *sensorProc) stderrText() string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.stderr.String()
}

func (sp *sensorProc) output() []string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return append([]string(nil), sp.lines...)
}

// stop sends sig and waits (bounded) for the process to end; it returns the exit code.
func (sp *sensorProc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := sp.Process.Signal(sig); err != nil {
		t.Fatalf("signal: %v", err)
	}
	return sp.wait(t)
}

// wait waits (bounded) for the process to end and returns its exit code, or minus the signal
// that ended it.
func (sp *sensorProc) wait(t *testing.T) int {
	t.Helper()
	if !sp.WaitFor(10 * time.Second) {
		sp.Process.Kill()
		t.Fatalf("chains-sensor still running 10s after the signal:\n%s", sp.stderrText())
	}
	return exitCode(t, sp.Err())
}

// exitCode turns what Wait returned into the exit code, or minus the signal that ended the
// process.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", err)
	return -1
}

var countersRE = regexp.MustCompile(`^(\d+) packets seen, (\d+) recorded, (\d+) lost$`)

// counters checks that stderr ends with the counters line and that N = M + L; it returns them.
func (sp *sensorProc) counters(t *testing.T) (seen, recorded, lost uint64) {
	t.Helper()
	last := lastLine(sp.stderrText())
	m := countersRE.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("stderr does not end with the counters line:\n%s", sp.stderrText())
	}
	seen, _ = strconv.ParseUint(m[1], 10, 64)
	recorded, _ = strconv.ParseUint(m[2], 10, 64)
	lost, _ = strconv.ParseUint(m[3], 10, 64)
	if seen != recorded+lost {
		t.Fatalf("counters do not add up: %s", last)
	}
	return seen, recorded, lost
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

// assertDetached checks with ip link and bpftool that no XDP program, no TCX program and no tc
// filter is left on the interface (except the filters listed in keep, by name).
func (tn *testNet) assertDetached(t *testing.T, keepFilters ...string) {
	t.Helper()
	link, err := tn.inA(t, 5*time.Second, "ip", "link", "show", "dev", tn.IfA)
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, link)
	}
	if strings.Contains(link, "xdp") {
		t.Errorf("ip link still shows an XDP program:\n%s", link)
	}
	out, err := tn.inA(t, 5*time.Second, "bpftool", "-j", "net", "show", "dev", tn.IfA)
	if err != nil {
		t.Fatalf("bpftool net: %v\n%s", err, out)
	}
	var nets []struct {
		XDP []json.RawMessage `json:"xdp"`
		TC  []struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		} `json:"tc"`
	}
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		t.Fatalf("bpftool -j net: %v\n%s", err, out)
	}
	for _, n := range nets {
		if len(n.XDP) != 0 {
			t.Errorf("bpftool net still shows XDP: %s", out)
		}
		for _, tc := range n.TC {
			kept := false
			for _, k := range keepFilters {
				kept = kept || strings.Contains(tc.Name, k)
			}
			if !kept {
				t.Errorf("bpftool net still shows a tc program %q (%s): %s", tc.Name, tc.Kind, out)
			}
		}
	}
}

// macOf returns the MAC address of an interface in namespace ns.
func macOf(t *testing.T, ns *sensortest.Netns, iface string) string {
	t.Helper()
	out := ns.MustRun(t, "ip", "-j", "link", "show", "dev", iface)
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link: %v\n%s", err, out)
	}
	return links[0].Address
}
