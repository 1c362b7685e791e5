package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden (after checking them against tshark)")

// jsonPacket is the part of a JSON line the tests compare with tshark.
type jsonPacket struct {
	Num      uint64   `json:"num"`
	IP       string   `json:"ip"`
	Src      string   `json:"src"`
	Dst      string   `json:"dst"`
	Proto    string   `json:"proto"`
	Sport    uint16   `json:"sport"`
	Dport    uint16   `json:"dport"`
	TCPFlags string   `json:"tcp_flags"`
	SrcDom   string   `json:"src_domain"`
	DstDom   string   `json:"dst_domain"`
	Tags     []string `json:"tags"`
	Status   string   `json:"status"`
	BadLayer string   `json:"bad_layer"`
	Tunnel   *struct {
		Type  string   `json:"type"`
		ID    *uint32  `json:"id"`
		Src   string   `json:"src"`
		Dst   string   `json:"dst"`
		Depth int      `json:"depth"`
		Inner string   `json:"inner"`
		Flags []string `json:"flags"`
	} `json:"tunnel"`
}

// runMu serializes in-process runs: urfave/cli keeps global state (its help flag) that
// parallel apps race on. The parallel tests overlap only their tshark runs.
var runMu sync.Mutex

func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	runMu.Lock()
	defer runMu.Unlock()
	var o, e bytes.Buffer
	code = run(append([]string{"chains-sensor"}, args...), &o, &e)
	return o.String(), e.String(), code
}

// tsharkPacket is one frame as tshark decodes it, the packet inside the tunnels the sensor
// enters (sensortest.TSharkFrame.Inner): protocols from its IP header on.
type tsharkPacket struct {
	num                string
	protocols          []string
	src, dst           string
	tcpSport, tcpDport string
	udpSport, udpDport string
	arpSrc, arpDst     string
	fragOff, frag6Off  string
	moreFrags          bool
	tunnels            []string            // the tunnels the sensor enters, as tshark names them
	outer              sensortest.TSharkIP // the outermost IP header
}

func tshark(t *testing.T, file string) []tsharkPacket {
	t.Helper()
	frames := sensortest.TShark(t, file, "arp.src.proto_ipv4", "arp.dst.proto_ipv4",
		"ip.frag_offset", "ip.flags.mf", "ipv6.fraghdr.offset", "ipv6.fraghdr.more")
	var pk []tsharkPacket
	for _, f := range frames {
		if f.Protocols[0] == "pcapng" || f.Protocols[0] == "data" {
			continue // a pcapng custom block: tshark shows it as a frame, it is no packet
		}
		// The fields of the innermost IP header are the last of those before the next one;
		// a field tshark reports once for the frame belongs to the outer header.
		_, at := f.Tunnels()
		field := func(name string, i int) string {
			if v := f.Fields[name]; i < len(v) {
				return v[i]
			}
			return ""
		}
		first := func(name string) string { return field(name, 0) }
		tunnels, _ := f.Tunnels()
		p := tsharkPacket{num: fmt.Sprint(f.Num), protocols: f.Protocols[at:], tunnels: tunnels,
			arpSrc: first("arp.src.proto_ipv4"), arpDst: first("arp.dst.proto_ipv4")}
		if len(f.IPs) > 0 {
			p.outer = f.IPs[0]
		}
		if ip, ports, ok := f.Inner(); ok {
			p.src, p.dst = ip.Src, ip.Dst
			v4, v6 := 0, 0 // headers of each kind before the innermost packet's
			for _, q := range f.Protocols[:at] {
				if q == "ip" {
					v4++
				} else if q == "ipv6.fraghdr" {
					v6++
				}
			}
			if ip.Version == 4 {
				p.fragOff = field("ip.frag_offset", v4)
				p.moreFrags = field("ip.flags.mf", v4) == "1" || field("ip.flags.mf", v4) == "True"
			} else {
				p.frag6Off = field("ipv6.fraghdr.offset", v6)
				p.moreFrags = field("ipv6.fraghdr.more", v6) == "1" || field("ipv6.fraghdr.more", v6) == "True"
			}
			if ports != nil && ports.Proto == "tcp" {
				p.tcpSport, p.tcpDport = ports.Src, ports.Dst
			} else if ports != nil {
				p.udpSport, p.udpDport = ports.Src, ports.Dst
			}
		}
		pk = append(pk, p)
	}
	return pk
}

// transportAfterIP returns the first protocol tshark names after the IP header that starts
// protos (skipping IPv6 extension headers and AH).
func transportAfterIP(protos []string) string {
	for i, p := range protos {
		if p == "ip" || p == "ipv6" {
			for _, q := range protos[i+1:] {
				if !strings.HasPrefix(q, "ipv6.") && q != "ah" {
					return q
				}
			}
			return ""
		}
	}
	return ""
}

var tsharkProto = map[string]string{"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMP6": "icmpv6", "GRE": "gre", "IGMP": "igmp"}

// checkAgainstTshark compares our JSON lines with tshark's decode of the same file.
// skipped are the frames the reader skipped (stderr's "N skipped: reason" lines): tshark shows
// them, the output has no line for them.
func checkAgainstTshark(t *testing.T, file string, lines []jsonPacket, skipped int) {
	t.Helper()
	all := tshark(t, file)
	if len(all) != len(lines)+skipped {
		t.Errorf("%s: %d packets and %d skipped, tshark %d", file, len(lines), skipped, len(all))
		return
	}
	ts := all
	if skipped > 0 { // the frames of our lines, by number
		byNum := map[string]tsharkPacket{}
		for _, w := range all {
			byNum[w.num] = w
		}
		ts = nil
		for _, p := range lines {
			ts = append(ts, byNum[fmt.Sprint(p.Num)])
		}
	}
	for i, p := range lines {
		w := ts[i]
		if fmt.Sprint(p.Num) != w.num && !strings.HasSuffix(file, "custom_blocks.pcapng") {
			t.Errorf("%s: line %d is packet %d, tshark frame %s", file, i+1, p.Num, w.num)
		}
		// The tunnel object names what tshark enters, from its outermost IP header.
		switch tun := p.Tunnel; {
		case len(w.tunnels) == 0 && tun != nil:
			t.Errorf("%s #%d: tunnel %+v, tshark none", file, p.Num, *tun)
		case len(w.tunnels) > 0 && p.Status != "malformed" && (tun == nil || tun.Src != w.outer.Src || tun.Dst != w.outer.Dst || tun.Depth != len(w.tunnels)):
			t.Errorf("%s #%d: tunnel %+v, tshark %v from %s -> %s", file, p.Num, tun, w.tunnels, w.outer.Src, w.outer.Dst)
		}
		switch p.IP {
		case "ARP":
			if p.Status == "ok" && (p.Src != w.arpSrc || p.Dst != w.arpDst) {
				t.Errorf("%s #%d: ARP %s -> %s, tshark %s -> %s", file, p.Num, p.Src, p.Dst, w.arpSrc, w.arpDst)
			}
			continue
		case "IP", "IP6":
		default:
			// An 802.3 frame is named by what its LLC header says, as tshark names it.
			if i := slices.Index(w.protocols, "llc"); i >= 0 && p.Status == "ok" {
				want := "LLC"
				if i+1 < len(w.protocols) && w.protocols[i+1] != "data" {
					want = strings.ToUpper(w.protocols[i+1])
				}
				if p.IP != want {
					t.Errorf("%s #%d: network %s, tshark %s", file, p.Num, p.IP, strings.Join(w.protocols, ":"))
				}
			}
			continue
		}
		if w.src == "" { // tshark found no IP header: we must not have addresses either
			if strings.Contains(p.Src, ".") && !strings.Contains(p.Src, ":") {
				t.Errorf("%s #%d: we have %s -> %s, tshark no IP header", file, p.Num, p.Src, p.Dst)
			}
			continue
		}
		if p.Src != w.src || p.Dst != w.dst {
			t.Errorf("%s #%d: %s -> %s, tshark %s -> %s", file, p.Num, p.Src, p.Dst, w.src, w.dst)
		}
		if p.Status != "ok" {
			continue // truncated or malformed: tshark's transport fields are guesses past the damage
		}
		nonFirstFragment := (w.fragOff != "" && w.fragOff != "0") || (w.frag6Off != "" && w.frag6Off != "0")
		if want, ok := tsharkProto[p.Proto]; ok && !nonFirstFragment {
			if got := transportAfterIP(w.protocols); got != want && got != "data" {
				t.Errorf("%s #%d: proto %s, tshark %s (%v)", file, p.Num, p.Proto, got, w.protocols)
			}
		}
		sport, dport := w.tcpSport, w.tcpDport
		if p.Proto == "UDP" {
			sport, dport = w.udpSport, w.udpDport
		}
		if (p.Proto == "TCP" || p.Proto == "UDP") && !nonFirstFragment && !(w.moreFrags && sport == "") {
			if fmt.Sprint(p.Sport) != sport || fmt.Sprint(p.Dport) != dport {
				t.Errorf("%s #%d: ports %d -> %d, tshark %s -> %s", file, p.Num, p.Sport, p.Dport, sport, dport)
			}
		}
	}
}

var countsLine = regexp.MustCompile(`(?m)^(\d+) packets seen, (\d+) recorded, (\d+) lost\n\z`)

// skippedLine is read's report of frames that carry no packet it parses.
var skippedLine = regexp.MustCompile(`(?m)^chains-sensor: read .*: (\d+) skipped: .*$`)

// TestReadGolden reads every capture in chains/ and protocols/: the JSON output is checked
// packet by packet against tshark (count, addresses, transport, ports), the net_watch text
// against the JSON (same count, same addresses in order) and against the golden file.
func TestReadGolden(t *testing.T) {
	root := sensortest.Pcaps(t)
	var files []string
	for _, sub := range []string{"chains", "protocols"} {
		m, _ := filepath.Glob(filepath.Join(root, sub, "*.pcap*"))
		files = append(files, m...)
	}
	if len(files) < 40 {
		t.Fatalf("only %d captures under %s", len(files), root)
	}
	for _, file := range files {
		rel, _ := filepath.Rel(root, file)
		t.Run(rel, func(t *testing.T) {
			t.Parallel()
			js, stderr, code := runCmd(t, "read", "-n", "--utc", "-o", "json", file)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			m := countsLine.FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("stderr does not end with the counters line: %q", stderr)
			}
			var lines []jsonPacket
			for l := range strings.Lines(js) {
				var p jsonPacket
				if err := json.Unmarshal([]byte(l), &p); err != nil {
					t.Fatalf("bad JSON line %q: %v", l, err)
				}
				lines = append(lines, p)
			}
			if m[1] != fmt.Sprint(len(lines)) || m[3] != "0" {
				t.Errorf("counters %q for %d lines", m[0], len(lines))
			}
			skipped := 0
			for _, m := range skippedLine.FindAllStringSubmatch(stderr, -1) {
				n, _ := strconv.Atoi(m[1])
				skipped += n
			}
			checkAgainstTshark(t, file, lines, skipped)

			text, _, code := runCmd(t, "read", "-n", "--utc", file)
			if code != 0 {
				t.Fatalf("text exit %d", code)
			}
			tl := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
			if text == "" {
				tl = nil
			}
			if len(tl) != len(lines) {
				t.Fatalf("%d text lines, %d JSON lines", len(tl), len(lines))
			}
			unknown := func(a string) string { // a link address the capture does not give: "" in JSON, "?" in text
				if a == "" {
					return "?"
				}
				return a
			}
			for i, l := range tl {
				if !strings.Contains(l, " "+unknown(lines[i].Src)+"(") || !strings.Contains(l, " --> "+unknown(lines[i].Dst)+"(") {
					t.Errorf("line %d %q lacks %s --> %s", i+1, l, lines[i].Src, lines[i].Dst)
				}
				if !netWatchRE.MatchString(l) {
					t.Errorf("line %d %q is not a net_watch line", i+1, l)
				}
			}
			golden := filepath.Join("testdata", "golden", strings.ReplaceAll(rel, string(filepath.Separator), "_")+".txt")
			if *update && !t.Failed() {
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update after checking the output)", err)
			}
			if string(want) != text {
				t.Errorf("output differs from %s:\n%s", golden, firstDiff(string(want), text))
			}
		})
	}
}

// netWatchRE is DESIGN.md's line: date, time, " - ", optional TRANSPORT, NETWORK, two endpoints.
// A tunnelled packet names its tunnel before that: " [vxlan 42 via 192.0.2.1 --> 192.0.2.2]".
var netWatchRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - ([A-Z0-9-]+ )?[A-Z0-9x-]+ \S+\([a-z0-9_.-]*\) --> \S+\([a-z0-9_.-]*\)` +
	`( \[[a-z0-9]+( [a-z]+)?( \d+)? via [0-9a-f.:]+ --> [0-9a-f.:]+(, \d deep: [a-z0-9]+)?\])?( \[[a-z]+ ?[a-z0-9]*\])?$`)

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, x, y)
		}
	}
	return ""
}

// TestReadMalformed: every damaged capture gives a line per readable packet, or a clear error
// naming the problem, exit 1, and the counters line last; never a panic.
func TestReadMalformed(t *testing.T) {
	root := sensortest.Pcaps(t)
	files, _ := filepath.Glob(filepath.Join(root, "malformed", "*.pcap*"))
	if len(files) == 0 {
		t.Fatal("no malformed captures")
	}
	for _, file := range files {
		rel, _ := filepath.Rel(root, file)
		t.Run(rel, func(t *testing.T) {
			out, stderr, code := runCmd(t, "read", "-n", "--utc", file)
			m := countsLine.FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("stderr does not end with the counters line: %q", stderr)
			}
			n := strings.Count(out, "\n")
			if m[2] != fmt.Sprint(n) {
				t.Errorf("%d lines but %s recorded", n, m[2])
			}
			switch code {
			case 0:
				if strings.Contains(stderr, "chains-sensor:") {
					t.Errorf("exit 0 with an error: %s", stderr)
				}
			case 1:
				if !strings.Contains(stderr, "chains-sensor: read "+file+": ") {
					t.Errorf("error does not name the file: %s", stderr)
				}
			default:
				t.Errorf("exit %d", code)
			}
		})
	}
}

// TestReadDamagedMidway cuts a good capture in the middle of a packet: the packets before
// it print, then the error names the packet, exit 1.
func TestReadDamagedMidway(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sensortest.Pcaps(t), "chains", "http.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(cut, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCmd(t, "read", "-n", cut)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	n := strings.Count(out, "\n")
	if n == 0 || !strings.Contains(stderr, fmt.Sprintf("packet %d", n+1)) {
		t.Errorf("%d lines; stderr %q should name packet %d", n, stderr, n+1)
	}
	if !countsLine.MatchString(stderr) {
		t.Errorf("no counters line last: %q", stderr)
	}
}

func TestReadFlags(t *testing.T) {
	file := filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap")
	out, stderr, code := runCmd(t, "read", "-n", "-c", "5", file)
	if code != 0 || strings.Count(out, "\n") != 5 {
		t.Errorf("-c 5: exit %d, %d lines, %s", code, strings.Count(out, "\n"), stderr)
	}
	// Bad usage exits 2 with the error and no counters line; a file that cannot be opened
	// is an error of the run (1, counters line).
	for _, bad := range [][]string{
		{"read", "-n", "-o", "xml", file},
		{"read", "-n", "--view", "nope", file},
		{"read", "-n", "--color", "sometimes", file},
		{"read", "-n", "--internal", "10.0.0.0/33", file},
		{"read", "-n"},
	} {
		out, stderr, code := runCmd(t, bad...)
		if code != 2 || !strings.Contains(stderr, "chains-sensor: ") || strings.Contains(stderr, "packets seen") || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", bad, code, out, stderr)
		}
	}
	if _, stderr, code := runCmd(t, "read", "-n", "/nonexistent.pcap"); code != 1 || !countsLine.MatchString(stderr) {
		t.Errorf("a missing file: exit %d, stderr %q", code, stderr)
	}
	out, _, _ = runCmd(t, "read", "-n", "--color", "always", "-c", "1", file)
	if !strings.Contains(out, "\x1b[") {
		t.Errorf("--color always: no colour in %q", out)
	}
	out, _, _ = runCmd(t, "read", "-n", "-c", "1", file)
	if strings.Contains(out, "\x1b") {
		t.Errorf("colour on a non-terminal: %q", out)
	}
	out, _, _ = runCmd(t, "read", "-n", "--internal", "192.168.170.0/24", "--view", "packets", "-c", "1", file)
	if !strings.Contains(out, "Timestamp: ") || !strings.Contains(out, "Domains: internal --> internal") {
		t.Errorf("packets view: %q", out)
	}
}

// TestReadKernelMatchesTwin: `read --kernel` (each frame through xdp_sensor or tc_sensor with
// BPF_PROG_TEST_RUN) prints the same JSON as the Go twin for every test capture.
func TestReadKernelMatchesTwin(t *testing.T) {
	sensortest.RequireBPF(t)
	for _, file := range sensortest.PcapFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			twin, _, c1 := runCmd(t, "read", "-n", "--utc", "-o", "json", file)
			kern, stderr, c2 := runCmd(t, "read", "--kernel", "-n", "--utc", "-o", "json", file)
			if c1 != c2 {
				t.Fatalf("exit %d with the twin, %d with --kernel: %s", c1, c2, stderr)
			}
			if twin != kern {
				t.Errorf("--kernel output differs:\n%s", firstDiff(twin, kern))
			}
		})
	}
}

// TestReadStdin: `read -` reads the capture from standard input.
func TestReadStdin(t *testing.T) {
	f, err := os.Open(filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	out, stderr, code := runCmd(t, "read", "-n", "-")
	if code != 0 || strings.Count(out, "\n") != 38 || !strings.HasSuffix(stderr, "38 packets seen, 38 recorded, 0 lost\n") {
		t.Errorf("exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), stderr)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReadKernelTwinFallbacks: `read --kernel` says how many frames went to the Go twin
// because BPF_PROG_TEST_RUN cannot take them: as many as tshark counts outside 14 to 3520
// bytes captured.
func TestReadKernelTwinFallbacks(t *testing.T) {
	sensortest.RequireBPF(t)
	root := sensortest.Pcaps(t)
	for _, file := range []string{"protocols/ipv6_jumbogram_icmpv6.pcap", "protocols/tls13_large_clienthello_kyber.pcap", "chains/dns.pcap"} {
		path := filepath.Join(root, file)
		want := 0
		for _, f := range sensortest.TShark(t, path, "frame.cap_len") {
			if n, _ := strconv.Atoi(f.Fields["frame.cap_len"][0]); n < 14 || n > 3520 {
				want++
			}
		}
		_, stderr, code := runCmd(t, "read", "--kernel", "-n", path)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", file, code, stderr)
		}
		if !strings.Contains(stderr, fmt.Sprintf(": %d frames went to the Go twin, which BPF_PROG_TEST_RUN cannot take: %d outside 14 to 3520 bytes", want, want)) {
			t.Errorf("%s: want %d frames to the twin; stderr %q", file, want, stderr)
		}
	}
}

// TestReadSkipped: the packets of a pcapng interface of a link type the sensor cannot read
// are skipped and counted by name; the other interfaces' packets are read.
func TestReadSkipped(t *testing.T) {
	path := filepath.Join(sensortest.Pcaps(t), "protocols", "crafted_pcapng_unsupported_interface.pcapng")
	out, stderr, code := runCmd(t, "read", "-n", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if n := strings.Count(out, "\n"); n != 3 || !strings.Contains(stderr, ": 2 skipped: packets of pcapng interface 1 (FRelay, link type 107, not supported)\n") ||
		!strings.HasSuffix(stderr, "3 packets seen, 3 recorded, 0 lost\n") {
		t.Errorf("%d lines; stderr %q", n, stderr)
	}
}

// TestReadNoDecap: `read --no-decap` shows the tunnels' outer packets, tshark's first IP
// header, where `read` shows the inner ones; with --kernel the same.
func TestReadNoDecap(t *testing.T) {
	path := filepath.Join(sensortest.Pcaps(t), "protocols", "crafted_encapsulations.pcap")
	runs := [][]string{{"read", "--no-decap", "-n", "-o", "json", path}}
	if os.Geteuid() == 0 {
		runs = append(runs, []string{"read", "--kernel", "--no-decap", "-n", "-o", "json", path})
	}
	frames := sensortest.TShark(t, path)
	for _, args := range runs {
		out, stderr, code := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		n := 0
		for l := range strings.Lines(out) {
			var p jsonPacket
			if err := json.Unmarshal([]byte(l), &p); err != nil {
				t.Fatal(err)
			}
			f := frames[p.Num-1]
			if len(f.IPs) > 0 && p.Status != "malformed" {
				n++
				if p.Src != f.IPs[0].Src || p.Dst != f.IPs[0].Dst {
					t.Errorf("%v #%d: %s -> %s, tshark's outer %s -> %s", args[1], p.Num, p.Src, p.Dst, f.IPs[0].Src, f.IPs[0].Dst)
				}
			}
		}
		if n < 25 {
			t.Errorf("%v: only %d packets compared", args, n)
		}
	}
}
