package main

// End to end: attach -w beside tcpdump -w on the same interface, while ping, dig and curl
// (HTTP and HTTPS) talk across the veth; -w - into tshark; rotation; SIGKILL mid-write; a full
// disk.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
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
	"github.com/gopacket/gopacket/pcapgo"
)

// startHTTPS runs a second nginx on side A: HTTPS on 443 for e2e.test (self-signed).
func (tn *testNet) startHTTPS(t *testing.T) {
	t.Helper()
	sensortest.RequireTools(t, "openssl", "nginx")
	dir := filepath.Join(tn.dir, "https")
	os.MkdirAll(dir, 0o755)
	crt, key := filepath.Join(dir, "e2e.crt"), filepath.Join(dir, "e2e.key")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=e2e.test",
		"-keyout", key, "-out", crt).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off; master_process off; pid %[1]s/nginx.pid; error_log stderr;
events { worker_connections 64; }
http { access_log off; client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  server { listen %[2]s:443 ssl; server_name e2e.test; ssl_certificate %[3]s; ssl_certificate_key %[4]s;
    location / { return 200 "hello over tls\n"; } } }
`, dir, tn.V4A, crt, key)), 0o644)
	tn.A.Start(t, nil, nil, "nginx", "-c", conf, "-p", dir, "-e", "stderr")
	for i := 0; ; i++ {
		out, err := tn.inB(t, 5*time.Second, "curl", "-sk", "-m", "1", "--resolve", "e2e.test:443:"+tn.V4A, "https://e2e.test/")
		if err == nil && strings.Contains(out, "hello over tls") {
			return
		}
		if i == 30 {
			t.Fatalf("HTTPS not answering: %v %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tcpdumpFull runs tcpdump -w on the sensor's interface with the whole frame (-s 0), until
// the returned stop; stop fails the test if tcpdump dropped anything.
func (tn *testNet) tcpdumpFull(t *testing.T, pcap string) (stop func()) {
	t.Helper()
	return tn.tcpdumpOn(t, pcap, "0")
}

// TestE2EWriteBesideTcpdump is the end-to-end check of -w: our file and tcpdump's
// from the same interface over the same traffic. tshark reads every packet of ours; each of
// our frames is one of tcpdump's, byte for byte, and each of tcpdump's is one of ours; the
// direction flag is what the MAC addresses say; each comment names tshark's endpoints and
// what the decoders found (the DNS question, the HTTP request, the TLS SNI); the statistics
// block carries the counts of the closing lines; reading our file prints the live lines.
func TestE2EWriteBesideTcpdump(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "tcpdump", "tshark", "capinfos")
	bin := buildSensor(t)
	tn.startServers(t)
	tn.startHTTPS(t)
	tn.quiet(t)
	ours, theirs := filepath.Join(tn.dir, "ours.pcapng"), filepath.Join(tn.dir, "tcpdump.pcap")
	stopTD := tn.tcpdumpFull(t, theirs)
	sp := tn.startSensor(t, bin, "-n", "-i", tn.IfA, "-w", ours)
	for _, s := range [][]string{
		{"ping", "-c2", "-i0.2", "-W2", tn.V4A},
		{"dig", "+tries=1", "+time=2", "@" + tn.V4A, "www.test.example", "A"},
		{"curl", "-sS", "-m", "3", "-A", "e2e-agent/1.0", "http://" + tn.V4A + "/index.html"},
		{"curl", "-sSk", "-m", "3", "--http1.1", "--resolve", "e2e.test:443:" + tn.V4A, "https://e2e.test/secure"},
		{"ping", "-c1", "-s", "3000", "-W2", tn.V4A}, // fragments
	} {
		if out, err := tn.inB(t, 10*time.Second, s...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	stopTD()
	_, recorded, lost := sp.counters(t)
	if lost != 0 {
		t.Fatalf("%d lost:\n%s", lost, sp.stderrText())
	}

	frames := readFrames(t, ours)
	td := readFrames(t, theirs)
	tl := tsharkLines(t, ours, "frame.number", "eth.src", "eth.dst", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport",
		"udp.srcport", "udp.dstport", "frame.comment")
	if len(tl) != len(frames) || uint64(len(frames)) != recorded || len(sp.output()) != len(frames) {
		t.Fatalf("tshark reads %d packets, gopacket %d, %d recorded, %d lines", len(tl), len(frames), recorded, len(sp.output()))
	}
	// The same frames, byte for byte (up to the snap length: ours is 262144, tcpdump's whole).
	count := map[[32]byte]int{}
	for _, f := range td {
		count[sha256.Sum256(f.data)]++
	}
	for i, f := range frames {
		h := sha256.Sum256(f.data)
		if count[h] == 0 {
			t.Errorf("packet %d (%d bytes): no frame of tcpdump's is the same", i+1, len(f.data))
			continue
		}
		count[h]--
		if f.ci.Length != len(f.data) {
			t.Errorf("packet %d: %d bytes of %d captured", i+1, len(f.data), f.ci.Length)
		}
	}
	if len(td) != len(frames) {
		t.Errorf("tcpdump captured %d packets, we wrote %d", len(td), len(frames))
	}

	macA := macOf(t, tn.A, tn.IfA)
	var dns, httpReq, tls, frag bool
	for i, l := range tl {
		f := strings.Split(l, "|")
		dir := frames[i].flags & 3
		switch {
		case f[1] == macA && dir != 2:
			t.Errorf("packet %d from A's MAC is not flagged outbound (flags %#x)", i+1, frames[i].flags)
		case f[1] != macA && dir != 1:
			t.Errorf("packet %d to A is not flagged inbound (flags %#x)", i+1, frames[i].flags)
		}
		c := f[9]
		m := commentEnds.FindStringSubmatch(c)
		if m == nil || m[1] != f[3] || m[4] != f[4] || (f[5]+f[7] != "" && (m[2] != f[5]+f[7] || m[5] != f[6]+f[8])) {
			t.Errorf("packet %d: comment %q, tshark: %s:%s --> %s:%s", i+1, c, f[3], f[5]+f[7], f[4], f[6]+f[8])
		}
		if !strings.Contains(c, "(internal) --> ") || !strings.Contains(c, "tags=internal") {
			t.Errorf("packet %d: comment %q lacks the classes or tags", i+1, c)
		}
		dns = dns || strings.Contains(c, "; DNS query id=0x") && strings.Contains(c, "q=[www.test.example A IN]")
		httpReq = httpReq || strings.Contains(c, `; HTTP GET http://`+tn.V4A+`/index.html ua="e2e-agent/1.0"`)
		tls = tls || strings.Contains(c, "; TLS ClientHello sni=e2e.test alpn=http/1.1") && strings.Contains(c, "ja4=t")
		frag = frag || len(frames[i].data) >= 1500 // a whole first fragment of the 3000-byte ping
	}
	if !dns || !httpReq || !tls || !frag {
		t.Errorf("comments: DNS query %v, HTTP request %v, TLS ClientHello with JA4 %v, a fragment %v", dns, httpReq, tls, frag)
	}
	t.Logf("%d packets in our file, each one of tcpdump's %d byte for byte; comments with the DNS query, the HTTP request and the TLS ClientHello", len(frames), len(td))
	if t.Failed() {
		t.Logf("tshark:\n%s", strings.Join(tl, "\n"))
	}

	// The statistics block: what the closing line counted, for this interface.
	stats := map[int]pcapgo.NgInterfaceStatistics{}
	f, err := os.Open(ours)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{StatisticsCallback: func(i int, s pcapgo.NgInterfaceStatistics) { stats[i] = s }})
	if err != nil {
		t.Fatal(err)
	}
	for _, _, err := r.ReadPacketData(); err == nil; _, _, err = r.ReadPacketData() {
	}
	f.Close()
	if s, ok := stats[0]; !ok || s.PacketsReceived != recorded {
		t.Errorf("the statistics block says %+v, the closing line %d seen", s, recorded)
	}
	if info, _ := execT(t, 10*time.Second, "capinfos", "-I", ours); !strings.Contains(info, "Name = "+tn.IfA) ||
		!strings.Contains(info, "Capture length = 262144") || !strings.Contains(info, "Number of stat entries = 1") {
		t.Errorf("capinfos:\n%s", info)
	}

	// read of our file prints what the live run printed, but for the live run's processes
	// (" [nginx 4242]"): a capture file names none.
	lines, stderr, code := runCmd(t, "read", "-n", ours)
	if code != 0 {
		t.Fatalf("read: exit %d\n%s", code, stderr)
	}
	owner := regexp.MustCompile(` \[\S+ \d+\]$`)
	var live []string
	for _, l := range sp.output() {
		live = append(live, owner.ReplaceAllString(l, ""))
	}
	if got, want := strings.TrimSpace(lines), strings.Join(live, "\n"); got != want {
		t.Errorf("read of our file prints\n%s\nthe live run printed\n%s", got, want)
	}
	tn.assertDetached(t)
}

// TestE2EWriteStdout: attach -w - | tshark -r -: tshark reads every recorded packet from the
// pipe while the lines go to stderr.
func TestE2EWriteStdout(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "tshark")
	bin := buildSensor(t)
	tn.startServers(t)
	sensorCmd := tn.A.Command(t.Context(), bin, "attach", "-n", "-i", tn.IfA, "-w", "-")
	var sensorErr safeBuf
	sensorCmd.Stderr = &sensorErr
	pipe, err := sensorCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ts := exec.Command("tshark", "-l", "-r", "-", "-T", "fields", "-e", "frame.number", "-e", "frame.comment")
	ts.Stdin = pipe
	var tsOut, tsErr safeBuf
	ts.Stdout, ts.Stderr = &tsOut, &tsErr
	sp := sensortest.StartProc(t, sensorCmd)
	if err := ts.Start(); err != nil {
		t.Fatal(err)
	}
	tsDone := make(chan error, 1)
	go func() { tsDone <- ts.Wait() }()
	for i := 0; !strings.Contains(sensorErr.String(), "attached to"); i++ {
		if i == 200 {
			t.Fatalf("no attach:\n%s", sensorErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tn.clientTraffic(t)
	time.Sleep(300 * time.Millisecond)
	sp.Process.Signal(syscall.SIGINT)
	if !sp.WaitFor(10 * time.Second) {
		t.Fatal("sensor did not stop")
	}
	select {
	case err := <-tsDone:
		if err != nil {
			t.Fatalf("tshark -r -: %v\n%s", err, tsErr.String())
		}
	case <-time.After(10 * time.Second):
		ts.Process.Kill()
		t.Fatal("tshark did not end with the sensor's output")
	}
	m := countersRE.FindStringSubmatch(lastLine(sensorErr.String()))
	if m == nil {
		t.Fatalf("no counters line:\n%s", sensorErr.String())
	}
	n := strings.Count(tsOut.String(), "\n")
	if strconv.Itoa(n) != m[2] || n < 20 {
		t.Errorf("tshark read %d packets from the pipe, the sensor recorded %s", n, m[2])
	}
	// The lines went to stderr.
	if strings.Count(sensorErr.String(), " --> ") < n {
		t.Errorf("stderr holds fewer lines than packets:\n%s", sensorErr.String())
	}
}

// blockEnds walks a pcapng file's blocks by their lengths (draft-ietf-opsawg-pcapng 3.1): the
// number of enhanced packet blocks that are complete, and the offset where the complete
// blocks end.
func blockEnds(t *testing.T, data []byte) (packets int, end int) {
	t.Helper()
	for end+12 <= len(data) {
		typ, n := binary.LittleEndian.Uint32(data[end:]), int(binary.LittleEndian.Uint32(data[end+4:]))
		if n < 12 || n%4 != 0 || end+n > len(data) || binary.LittleEndian.Uint32(data[end+n-4:]) != uint32(n) {
			break
		}
		if typ == 6 {
			packets++
		}
		end += n
	}
	return packets, end
}

// TestE2EWriteRotatesAndSurvivesKill: -C and -G files while the sensor runs, each complete; a
// SIGKILL mid-write leaves a file tshark reads up to its last complete block.
func TestE2EWriteRotatesAndSurvivesKill(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "tshark")
	bin := buildSensor(t)
	ping := func(n int) {
		if out, err := tn.inB(t, 30*time.Second, "ping", "-q", "-c", strconv.Itoa(n), "-i", "0.002", "-s", "200", "-W", "2", tn.V4A); err != nil {
			t.Fatalf("ping: %v\n%s", err, out)
		}
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"size", []string{"-C", "20k"}},
		{"time", []string{"-G", "1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "cap")
			if c.name == "time" {
				base += "-%H%M%S"
			}
			sp := tn.startSensor(t, bin, append([]string{"-n", "-q", "-i", tn.IfA, "-w", base}, c.args...)...)
			ping(300)
			if c.name == "time" {
				time.Sleep(2200 * time.Millisecond)
				ping(50)
			}
			if code := sp.stop(t, syscall.SIGTERM); code != 0 {
				t.Fatalf("exit %d\n%s", code, sp.stderrText())
			}
			_, recorded, _ := sp.counters(t)
			ents, _ := os.ReadDir(dir)
			if len(ents) < 2 {
				t.Fatalf("%d files: %v", len(ents), ents)
			}
			total := 0
			for _, e := range ents {
				p := filepath.Join(dir, e.Name())
				n := len(tsharkLines(t, p, "frame.number"))
				data, _ := os.ReadFile(p)
				if pk, end := blockEnds(t, data); pk != n || end != len(data) {
					t.Errorf("%s: %d packets in %d whole blocks of %d bytes, tshark reads %d", e.Name(), pk, end, len(data), n)
				}
				if info, _ := execT(t, 10*time.Second, "capinfos", "-I", p); !strings.Contains(info, "Number of stat entries = 1") {
					t.Errorf("%s has no statistics block:\n%s", e.Name(), info)
				}
				total += n
			}
			if uint64(total) != recorded {
				t.Errorf("the files hold %d packets, %d recorded", total, recorded)
			}
		})
	}
	t.Run("kill", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "killed.pcapng")
		sp := tn.startSensor(t, bin, "-n", "-q", "-i", tn.IfA, "-w", path)
		go tn.inB(t, 30*time.Second, "ping", "-q", "-f", "-c", "20000", "-s", "1000", tn.V4A)
		for i := 0; ; i++ {
			if st, err := os.Stat(path); err == nil && st.Size() > 1<<20 {
				break
			}
			if i == 300 {
				t.Fatal("the file did not grow")
			}
			time.Sleep(20 * time.Millisecond)
		}
		sp.Process.Kill()
		sp.WaitFor(10 * time.Second)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		whole, end := blockEnds(t, data)
		out, _ := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.number").Output()
		n := strings.Count(string(out), "\n")
		t.Logf("killed: %d bytes, %d packets in %d bytes of whole blocks, tshark reads %d", len(data), whole, end, n)
		if n != whole || whole == 0 {
			t.Errorf("tshark reads %d packets, the file holds %d whole", n, whole)
		}
		tn.assertDetached(t)
	})
}

// TestE2EWriteFullDisk: a tmpfs of 1 MiB fills up: the run ends with exit 1, an error that
// says the disk is full, the counters line; the file ends on a complete block.
func TestE2EWriteFullDisk(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "tshark", "mount", "umount")
	bin := buildSensor(t)
	mnt := t.TempDir()
	if out, err := execT(t, 10*time.Second, "mount", "-t", "tmpfs", "-o", "size=1m", "cs-pcapng-full", mnt); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { execT(t, 10*time.Second, "umount", mnt) })
	path := filepath.Join(mnt, "full.pcapng")
	sp := tn.startSensor(t, bin, "-n", "-q", "-i", tn.IfA, "-w", path)
	go tn.inB(t, 30*time.Second, "ping", "-q", "-f", "-c", "20000", "-s", "1000", tn.V4A)
	code := sp.wait(t)
	stderr := sp.stderrText()
	if code != 1 || !strings.Contains(stderr, "no space left on device") || !strings.Contains(stderr, "ends with its last complete block") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	sp.counters(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	whole, end := blockEnds(t, data)
	t.Logf("full disk: %d bytes, %d whole packets; stderr:\n%s", len(data), whole, stderr)
	out, err := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.number").Output()
	if err != nil || end != len(data) || strings.Count(string(out), "\n") != whole || whole == 0 {
		t.Errorf("file of %d bytes, whole blocks end at %d with %d packets; tshark: %v\n%s", len(data), end, whole, err, out)
	}
	tn.assertDetached(t)
}

// safeBuf collects a command's output while the test reads it.
type safeBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// isbOptions returns the options of the last interface statistics block of a pcapng file, by
// code (draft-ietf-opsawg-pcapng 4.6: 64-bit counts; read here by hand, as gopacket reads
// only two of them).
func isbOptions(t *testing.T, data []byte) map[uint16]uint64 {
	t.Helper()
	var opts map[uint16]uint64
	for off := 0; off+12 <= len(data); {
		typ, n := binary.LittleEndian.Uint32(data[off:]), int(binary.LittleEndian.Uint32(data[off+4:]))
		if n < 12 || off+n > len(data) {
			t.Fatalf("bad block at %d", off)
		}
		if typ == 5 {
			opts = map[uint16]uint64{}
			for o := off + 20; o+4 <= off+n-4; {
				code, l := binary.LittleEndian.Uint16(data[o:]), int(binary.LittleEndian.Uint16(data[o+2:]))
				if code == 0 {
					break
				}
				if l == 8 {
					opts[code] = binary.LittleEndian.Uint64(data[o+4:])
				}
				o += 4 + (l+3)&^3
			}
		}
		off += n
	}
	return opts
}

// TestE2EWriteFilterStats: with a filter expression the interface block names it and the
// statistics block counts what the programs saw, what the filter passed and what was lost, as
// the stats line does.
func TestE2EWriteFilterStats(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "capinfos")
	bin := buildSensor(t)
	tn.startServers(t)
	path := filepath.Join(tn.dir, "icmp.pcapng")
	sp := tn.startSensor(t, bin, "-n", "-q", "-i", tn.IfA, "icmp", "-w", path)
	tn.clientTraffic(t)
	time.Sleep(300 * time.Millisecond)
	if code := sp.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d\n%s", code, sp.stderrText())
	}
	m := regexp.MustCompile(`(?m)^` + tn.IfA + `: (\d+) seen, (\d+) filtered out, (\d+) in and (\d+) out records, (\d+) lost`).FindStringSubmatch(sp.stderrText())
	if m == nil {
		t.Fatalf("no stats line:\n%s", sp.stderrText())
	}
	n := func(i int) uint64 { v, _ := strconv.ParseUint(m[i], 10, 64); return v }
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := isbOptions(t, data)
	want := map[uint16]uint64{4: n(1), 6: n(1) - n(2), 7: n(5), 8: n(3) + n(4)}
	for code, v := range want {
		if opts[code] != v {
			t.Errorf("statistics option %d: %d, the stats line says %d (options %v)\n%s", code, opts[code], v, opts, sp.stderrText())
		}
	}
	if n(2) == 0 || n(3)+n(4) == 0 {
		t.Errorf("nothing filtered out or nothing recorded:\n%s", sp.stderrText())
	}
	if info, _ := execT(t, 10*time.Second, "capinfos", "-I", path); !strings.Contains(info, "Filter string = icmp") {
		t.Errorf("capinfos:\n%s", info)
	}
}
