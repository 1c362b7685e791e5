package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// selfSigned writes a self-signed certificate for the pair's addresses and its key into dir
// and returns their paths.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chains-e2e"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"www.test.example"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// startNginx runs nginx in ns from a configuration written to dir/name.conf: with master
// true a master process and one worker (whose pid it returns, read from /proc as the child of
// the pid in nginx's pid file), else a single process (its pid). listen is the server block's
// listen directives; every request is answered "hello from nginx". It waits (bounded) until
// nginx's pid file is there.
func startNginx(t *testing.T, ns *sensortest.Netns, dir, name string, master bool, listen string) uint32 {
	t.Helper()
	sensortest.RequireTools(t, "nginx")
	mp, pid := "off", filepath.Join(dir, name+".pid")
	if master {
		mp = "on"
	}
	conf := filepath.Join(dir, name+".conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process %[3]s;
worker_processes 1;
user root;
pid %[2]s;
error_log stderr;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/%[4]s-body;
	proxy_temp_path %[1]s/%[4]s-proxy;
	fastcgi_temp_path %[1]s/%[4]s-fastcgi;
	uwsgi_temp_path %[1]s/%[4]s-uwsgi;
	scgi_temp_path %[1]s/%[4]s-scgi;
	server {
		%[5]s
		location / { return 200 "hello from nginx\n"; }
	}
}
`, dir, pid, mp, name, listen)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	p := ns.Start(t, log, log, "nginx", "-c", conf, "-p", dir, "-e", "stderr")
	for i := 0; ; i++ {
		b, err := os.ReadFile(pid)
		var mpid uint32
		if err == nil {
			fmt.Sscan(string(b), &mpid)
		}
		if mpid != 0 && mpid != uint32(p.Process.Pid) {
			t.Fatalf("nginx's pid file names %d, not the process the test started (%d)", mpid, p.Process.Pid)
		}
		if mpid != 0 && !master {
			return mpid
		}
		if mpid != 0 {
			kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", mpid, mpid))
			var w uint32
			if n, _ := fmt.Sscan(string(kids), &w); n == 1 {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", w))
				if strings.TrimSpace(string(comm)) != "nginx" {
					t.Fatalf("nginx's worker %d has command %q", w, comm)
				}
				return w
			}
		}
		if i == 100 {
			logs, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			t.Fatalf("nginx did not start (or no worker) within 10s:\n%s", logs)
		}
		select {
		case <-p.Done():
			logs, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			t.Fatalf("nginx exited: %v\n%s", p.Err(), logs)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitPort waits (bounded) until something in ns listens on the port ("tcp" or "udp").
func waitPort(t *testing.T, ns *sensortest.Netns, proto string, port int) {
	t.Helper()
	flag := "-Hltn"
	if proto == "udp" {
		flag = "-Hlun"
	}
	for i := 0; ; i++ {
		out, err := ns.Run(t, 5*time.Second, "ss", flag, fmt.Sprintf("sport = :%d", port))
		if err == nil && strings.TrimSpace(out) != "" {
			return
		}
		if i == 50 {
			t.Fatalf("nothing listens on %s port %d in %s after 5s: %v %s", proto, port, ns.Name, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// portMatch matches the lines of the flow with the local address and port.
func portMatch(local string, p int) func(ownerLine) bool {
	return func(l ownerLine) bool {
		return (l.Src == local && l.Sport == p) || (l.Dst == local && l.Dport == p)
	}
}

// TestE2EProcessAttributionClients starts the sensor in B with process attribution and, for
// servers in A (nginx over HTTPS, nc over TCP and UDP, IPv4 and IPv6), clients in B each with
// a known pid and a fixed source port: curl over HTTPS and nc as a client over TCP and UDP,
// IPv4 and IPv6. Every packet of a client's flow, both ways, names its pid and command.
func TestE2EProcessAttributionClients(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "nc", "curl", "ss")
	bin := buildSensor(t)
	cert, key := selfSigned(t, tn.dir)
	startNginx(t, tn.A, tn.dir, "https", false, fmt.Sprintf(`listen %s:443 ssl;
		listen [%s]:443 ssl;
		ssl_certificate %s;
		ssl_certificate_key %s;`, tn.V4A, tn.V6A, cert, key))
	waitPort(t, tn.A, "tcp", 443)

	// nc servers in A: each answers its one client with its stdin.
	type ncCase struct {
		local, remote string
		sport, dport  int
		udp           bool
	}
	ncs := []ncCase{
		{tn.V4B, tn.V4A, 40201, 9201, false},
		{tn.V6B, tn.V6A, 40202, 9202, false},
		{tn.V4B, tn.V4A, 40203, 9203, true},
		{tn.V6B, tn.V6A, 40204, 9204, true},
	}
	for _, c := range ncs {
		args := []string{"-N", "-l", c.remote, fmt.Sprint(c.dport)}
		proto := "tcp"
		if c.udp {
			args[0], proto = "-u", "udp" // and no -N: UDP has no shutdown
		}
		srv := tn.A.Command(context.Background(), "nc", args...)
		srv.Stdin = strings.NewReader("hello from nc\n")
		sensortest.StartProc(t, srv)
		waitPort(t, tn.A, proto, c.dport)
	}

	sp := tn.startSensorInB(t, bin, "-n", "-o", "json", tn.IfB)
	if !strings.Contains(sp.stderrText(), "process attribution on") {
		t.Fatalf("attribution is not on:\n%s", sp.stderrText())
	}

	var clients []client
	run := func(want string, stdin string, match func(ownerLine) bool, name string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := tn.B.Command(ctx, name, args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if !strings.Contains(string(out), want) {
			t.Fatalf("%s %s: %v %q, want %q", name, strings.Join(args, " "), err, out, want)
		}
		clients = append(clients, client{comm: name, pid: uint32(cmd.Process.Pid), match: match})
	}
	run("hello from nginx", "", portMatch(tn.V4B, 40205), "curl", "-sS", "-k", "-m", "5", "--local-port", "40205", "https://"+tn.V4A+"/")
	run("hello from nginx", "", portMatch(tn.V6B, 40206), "curl", "-sS", "-k", "-m", "5", "--local-port", "40206", "-g", "https://["+tn.V6A+"]/")
	for _, c := range ncs {
		args := []string{"-N", "-w2"}
		if c.udp {
			args = []string{"-u", "-w1"}
		}
		args = append(args, "-p", fmt.Sprint(c.sport), c.remote, fmt.Sprint(c.dport))
		run("hello from nc", "hi\n", portMatch(c.local, c.sport), "nc", args...)
	}

	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	checkOwners(t, ownerLines(t, sp), clients)
	sp.counters(t)
}

// TestE2EProcessAttributionNginxWorker starts nginx in B (a master and one worker) with the
// sensor there, and curl in A over IPv4 and IPv6 (two requests on one connection each, from a
// fixed source port): the worker, whose pid the test reads from /proc, is named on ingress and
// egress; the only packets that name no process are the documented ones before the worker
// first uses the accepted connection (the handshake and the first request), never one after a
// named one; none names another process (the master included).
func TestE2EProcessAttributionNginxWorker(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "curl", "ss")
	bin := buildSensor(t)
	worker := startNginx(t, tn.B, tn.dir, "worker", true, fmt.Sprintf("listen %s:80;\n\t\tlisten [%s]:80;", tn.V4B, tn.V6B))
	waitPort(t, tn.B, "tcp", 80)

	sp := tn.startSensorInB(t, bin, "-n", "-o", "json", tn.IfB)
	if !strings.Contains(sp.stderrText(), "process attribution on") {
		t.Fatalf("attribution is not on:\n%s", sp.stderrText())
	}
	flows := []struct {
		sport int
		url   string
	}{{40301, "http://" + tn.V4B + "/"}, {40302, "http://[" + tn.V6B + "]/"}}
	for _, f := range flows {
		out, err := tn.inA(t, 10*time.Second, "curl", "-sS", "-m", "5", "-g", "--local-port", fmt.Sprint(f.sport), f.url, f.url+"again")
		if strings.Count(out, "hello from nginx") != 2 {
			t.Fatalf("curl %s twice: %v %q", f.url, err, out)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	lines := ownerLines(t, sp)
	var clients []client
	for i, f := range flows {
		local := []string{tn.V4B, tn.V6B}[i]
		match := func(l ownerLine) bool {
			return (l.Src == local && l.Sport == 80 && l.Dport == f.sport) || (l.Dst == local && l.Dport == 80 && l.Sport == f.sport)
		}
		clients = append(clients, client{comm: "nginx", pid: worker, match: match, server: true})
		var flow []string
		named, unnamedAfter := false, 0
		for _, l := range lines {
			if !match(l) {
				continue
			}
			flow = append(flow, l.String())
			if l.PID != nil {
				named = true
			} else if named {
				unnamedAfter++
			}
		}
		t.Logf("port %d, the worker %d:\n%s", f.sport, worker, strings.Join(flow, "\n"))
		if unnamedAfter > 0 {
			t.Errorf("port %d: %d packets name no process after the worker was named; the flow:\n%s", f.sport, unnamedAfter, strings.Join(flow, "\n"))
		}
	}
	checkOwners(t, lines, clients)
	sp.counters(t)
}

// TestE2EProcessAttributionServerOlderThanSensor starts dnsmasq in B, and has it answer once,
// before the sensor starts there: its UDP sockets were bound before any hook could see them.
// Then dig in A asks it three times over IPv4 and IPv6 from fixed source ports: only the first
// query of each may name no process (the sockets are learned when dnsmasq first reads after
// the sensor started); every other packet, each later query from a port it never answered
// before included, names dnsmasq's pid and command.
func TestE2EProcessAttributionServerOlderThanSensor(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "dnsmasq", "dig")
	bin := buildSensor(t)
	log, err := os.Create(filepath.Join(tn.dir, "dnsmasq-b.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	p := tn.B.Start(t, log, log, "dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
		"--no-hosts", "--bind-interfaces", "--listen-address="+tn.V4B+","+tn.V6B, "--except-interface=lo",
		"--address=/www.test.example/"+tn.V4B, "--user=root", "--log-facility=-")
	for i := 0; ; i++ {
		out, err := tn.inA(t, 5*time.Second, "dig", "+short", "+tries=1", "+time=1", "@"+tn.V4B, "www.test.example", "A")
		if err == nil && strings.TrimSpace(out) == tn.V4B {
			break
		}
		if i == 30 {
			logs, _ := os.ReadFile(filepath.Join(tn.dir, "dnsmasq-b.log"))
			t.Fatalf("dnsmasq in B not answering: %q %v\n%s", out, err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// --no-daemon writes no pid file: the process the test started is dnsmasq itself (ip netns
	// exec execs it), as /proc says.
	pid := uint32(p.Process.Pid)
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "dnsmasq" {
		t.Fatalf("process %d has command %q (%v), not dnsmasq", pid, comm, err)
	}

	sp := tn.startSensorInB(t, bin, "-n", "-o", "json", tn.IfB)
	if !strings.Contains(sp.stderrText(), "process attribution on") {
		t.Fatalf("attribution is not on:\n%s", sp.stderrText())
	}
	type query struct {
		server, client string
		sport          int
	}
	queries := []query{
		{tn.V4B, tn.V4A, 40501}, {tn.V4B, tn.V4A, 40502}, {tn.V4B, tn.V4A, 40503},
		{tn.V6B, tn.V6A, 40504}, {tn.V6B, tn.V6A, 40505}, {tn.V6B, tn.V6A, 40506},
	}
	for _, q := range queries {
		out, err := tn.inA(t, 10*time.Second, "dig", "+short", "+tries=1", "+time=2", "-b", q.client+"#"+fmt.Sprint(q.sport), "@"+q.server, "www.test.example", "A")
		if err != nil || strings.TrimSpace(out) != tn.V4B {
			t.Fatalf("dig from port %d: %v %q", q.sport, err, out)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, sp.stderrText())
	}
	lines := ownerLines(t, sp)
	var clients []client
	for i, q := range queries {
		match := func(l ownerLine) bool {
			return l.Proto == "UDP" && (l.Src == q.server && l.Sport == 53 && l.Dport == q.sport || l.Dst == q.server && l.Dport == 53 && l.Sport == q.sport)
		}
		first := i%3 == 0
		// The first query: named on its answer only (sendOnly), its ingress may name no process.
		clients = append(clients, client{comm: "dnsmasq", pid: pid, match: match, server: first, sendOnly: first})
		var flow []string
		for _, l := range lines {
			if match(l) {
				flow = append(flow, l.String())
			}
		}
		t.Logf("query from port %d:\n%s", q.sport, strings.Join(flow, "\n"))
		if first && len(flow) != 2 {
			t.Errorf("query from port %d: %d packets, want the query and the answer", q.sport, len(flow))
		}
	}
	checkOwners(t, lines, clients)
	sp.counters(t)
}
