package main

import (
	"bytes"
	"errors"

	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// capFrame is one packet of a capture file as gopacket reads it.
type capFrame struct {
	data     []byte
	ci       gopacket.CaptureInfo
	link     layers.LinkType
	comments []string
	flags    uint32
}

// readFrames reads every packet of a pcap or pcapng file with gopacket (the oracle for the
// frames we write), with its interface's link type and, in pcapng, its comments and flags.
func readFrames(t *testing.T, path string) []capFrame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []capFrame
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		t.Fatal(err)
	}
	f.Seek(0, io.SeekStart)
	if magic == [4]byte{0x0a, 0x0d, 0x0d, 0x0a} {
		r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for {
			data, ci, opts, err := r.ReadPacketDataWithOptions()
			if errors.Is(err, io.EOF) {
				return out
			}
			if err != nil {
				t.Fatalf("%s: packet %d: %v", path, len(out)+1, err)
			}
			ifc, _ := r.Interface(ci.InterfaceIndex)
			cf := capFrame{data: data, ci: ci, link: ifc.LinkType, comments: opts.Comments}
			if opts.Flags != nil {
				cf.flags = opts.Flags.ToUint32()
			}
			out = append(out, cf)
		}
	}
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: packet %d: %v", path, len(out)+1, err)
		}
		out = append(out, capFrame{data: data, ci: ci, link: r.LinkType()})
	}
}

// tsharkLines runs tshark -r file with fields, one line per frame.
func tsharkLines(t *testing.T, file string, fields ...string) []string {
	t.Helper()
	sensortest.RequireTools(t, "tshark")
	args := []string{"-r", file, "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("tshark", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", file, err, stderr.String())
	}
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// commentEnds matches the endpoints a comment starts with: address, optional port, domain.
var commentEnds = regexp.MustCompile(`^\[?([0-9a-f.:]+?)\]?(?::(\d+))?\(([^)]*)\) --> \[?([0-9a-f.:]+?)\]?(?::(\d+))?\(([^)]*)\)`)

// read FILE -w OUT keeps every frame as the file holds it (bytes, lengths, times, link types),
// gives each a comment whose endpoints are tshark's, and reading OUT prints what reading FILE
// printed.
func TestReadWriteReannotates(t *testing.T) {
	pcaps := sensortest.Pcaps(t)
	dir := t.TempDir()
	for _, name := range []string{"chains/http.pcap", "chains/https.pcap", "chains/dns.pcap",
		"protocols/linktype_sll2_tls13_sni.pcap", "protocols/linktype_raw_ipv4_dns.pcap",
		"protocols/pcapng_mixed_linktypes.pcapng", "protocols/ipv6_fragmented_dns.pcap",
		"protocols/arp_who_has.pcap", "protocols/tls13_ech_ipv6.pcapng"} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			in := filepath.Join(pcaps, name)
			out := filepath.Join(dir, strings.ReplaceAll(name, "/", "_")+".pcapng")
			for _, view := range []string{"net_watch", "urlwatch"} {
				lines, stderr, code := runCmd(t, "read", "-n", "--view", view, in, "-w", out)
				if code != 0 {
					t.Fatalf("read -w: exit %d\n%s", code, stderr)
				}
				again, stderr, code := runCmd(t, "read", "-n", "--view", view, out)
				if code != 0 {
					t.Fatalf("read of our file: exit %d\n%s", code, stderr)
				}
				if again != lines {
					t.Errorf("%s: reading our file prints\n%s\nreading the original printed\n%s", view, again, lines)
				}
			}
			orig, ours := readFrames(t, in), readFrames(t, out)
			if len(ours) != len(orig) {
				t.Fatalf("%d packets written of %d", len(ours), len(orig))
			}
			for i := range orig {
				o, w := orig[i], ours[i]
				if !bytes.Equal(o.data, w.data) || o.ci.Length != w.ci.Length || !o.ci.Timestamp.Equal(w.ci.Timestamp) || o.link != w.link {
					t.Errorf("packet %d: wrote %d of %d bytes at %v (%v), the file has %d of %d at %v (%v)", i+1,
						len(w.data), w.ci.Length, w.ci.Timestamp, w.link, len(o.data), o.ci.Length, o.ci.Timestamp, o.link)
				}
				if len(w.comments) != 1 {
					t.Errorf("packet %d: %d comments", i+1, len(w.comments))
				}
			}
			// tshark reads every packet of our file, and its addresses and ports are the comments'.
			tl := tsharkLines(t, out, "frame.comment", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
				"arp.src.proto_ipv4", "arp.dst.proto_ipv4", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport")
			if len(tl) != len(orig) {
				t.Fatalf("tshark reads %d packets of our file, want %d", len(tl), len(orig))
			}
			checked := 0
			for i, l := range tl {
				f := strings.Split(l, "|")
				m := commentEnds.FindStringSubmatch(f[0])
				if m == nil {
					continue
				}
				src, dst := first(f[1], f[3], f[5]), first(f[2], f[4], f[6])
				sport, dport := first(f[7], f[9]), first(f[8], f[10])
				// (tshark shows the ports of a fragmented datagram with its last fragment only.)
				if m[1] != src || m[4] != dst || (m[2] != "" && sport != "" && (m[2] != sport || m[5] != dport)) {
					t.Errorf("packet %d: comment %q, tshark: %s:%s --> %s:%s", i+1, f[0], src, sport, dst, dport)
				}
				checked++
			}
			if checked == 0 {
				t.Error("no comment named the endpoints")
			}
		})
	}
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// The comments say what the decoders found, as the application views print it: each HTTP and
// TLS line of urlwatch is in the comment of the packet it came from.
func TestReadWriteComments(t *testing.T) {
	pcaps := sensortest.Pcaps(t)
	dir := t.TempDir()
	for _, name := range []string{"chains/http.pcap", "chains/https.pcap", "protocols/tls13_large_clienthello_kyber.pcap"} {
		in := filepath.Join(pcaps, name)
		out := filepath.Join(dir, filepath.Base(name)+".pcapng")
		// net_watch's view: the comments still hold the decoders' findings.
		if _, stderr, code := runCmd(t, "read", "-n", in, "-w", out); code != 0 {
			t.Fatalf("%s: exit %d\n%s", name, code, stderr)
		}
		lines, _, _ := runCmd(t, "read", "-n", "--view", "urlwatch", in)
		var comments []string
		for _, f := range readFrames(t, out) {
			comments = append(comments, f.comments...)
		}
		all := strings.Join(comments, "\n")
		n := 0
		for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
			// 2004-05-13 10:17:08 - HTTP a:p(d) --> b:p(d) GET ...: the comment holds "a:p(d) --> b:p(d) ...; HTTP GET ..."
			_, rest, ok := strings.Cut(l, " - ")
			if !ok {
				continue
			}
			kind, rest, _ := strings.Cut(rest, " ")
			arrow := strings.Index(rest, " --> ")
			i := strings.Index(rest[max(arrow, 0):], ") ") + max(arrow, 0)
			if arrow < 0 || i < arrow {
				t.Fatalf("line %q", l)
			}
			ends, what := rest[:i+1], rest[i+2:]
			found := false
			for _, c := range comments {
				if strings.HasPrefix(c, ends) && strings.Contains(c, "; "+kind+" "+what) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no comment says %q of %s:\n%s", name, kind+" "+what, ends, all)
			}
			n++
		}
		if n == 0 {
			t.Errorf("%s: urlwatch printed nothing", name)
		}
	}
}

// A filter expression selects what is written, as tcpdump -r FILE -w OUT EXPRESSION does.
func TestReadWriteFilter(t *testing.T) {
	in := filepath.Join(sensortest.Pcaps(t), "chains/http.pcap")
	out := filepath.Join(t.TempDir(), "f.pcapng")
	_, stderr, code := runCmd(t, "read", "-n", "-q", in, "tcp", "port", "80", "and", "greater", "100", "-w", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	want, _ := tcpdumpCount(t, in, "tcp port 80 and greater 100")
	if got := len(readFrames(t, out)); got != want || want == 0 {
		t.Errorf("%d packets written, tcpdump selects %d", got, want)
	}
}

// -w -: the capture alone on stdout (tshark reads it from a pipe), the lines on stderr; -q:
// no lines; --no-comments: no comments; -s: frames cut.
func TestReadWriteStdout(t *testing.T) {
	sensortest.RequireTools(t, "tshark")
	in := filepath.Join(sensortest.Pcaps(t), "chains/dns.pcap")
	lines, _, _ := runCmd(t, "read", "-n", in)
	stdout, stderr, code := runCmd(t, "read", "-n", in, "-w", "-")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "\x0a\x0d\x0d\x0a") {
		t.Fatalf("stdout does not start with a section header: %q", stdout[:min(len(stdout), 16)])
	}
	if !strings.Contains(stderr, lines) {
		t.Errorf("stderr lacks the lines:\n%s", stderr)
	}
	cmd := exec.Command("tshark", "-r", "-", "-T", "fields", "-e", "frame.number")
	cmd.Stdin = strings.NewReader(stdout)
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r -: %v", err)
	}
	if n := strings.Count(string(got), "\n"); n != len(readFrames(t, in)) {
		t.Errorf("tshark reads %d packets from the pipe, want %d", n, len(readFrames(t, in)))
	}

	out := filepath.Join(t.TempDir(), "q.pcapng")
	stdout, _, code = runCmd(t, "read", "-n", "-q", "--no-comments", "-s", "40", in, "-w", out)
	if code != 0 || stdout != "" {
		t.Errorf("-q: exit %d, stdout %q", code, stdout)
	}
	for i, f := range readFrames(t, out) {
		if len(f.comments) != 0 || len(f.data) > 40 {
			t.Errorf("packet %d: %d comments, %d bytes with -s 40", i+1, len(f.comments), len(f.data))
		}
	}
}

// -C through the command line: files FILE, FILE1, ..., every one readable, the packets in order.
func TestReadWriteRotates(t *testing.T) {
	in := filepath.Join(sensortest.Pcaps(t), "chains/sqli.pcap")
	dir := t.TempDir()
	out := filepath.Join(dir, "r.pcapng")
	if _, stderr, code := runCmd(t, "read", "-n", "-q", "-C", "10k", in, "-w", out); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	orig := readFrames(t, in)
	var got []capFrame
	for i := 0; ; i++ {
		name := out
		if i > 0 {
			name += strconv.Itoa(i)
		}
		if _, err := os.Stat(name); err != nil {
			if i < 3 {
				t.Fatalf("only %d files", i)
			}
			break
		}
		if n := len(tsharkLines(t, name, "frame.number")); n == 0 {
			t.Errorf("%s: no packet", name)
		}
		got = append(got, readFrames(t, name)...)
	}
	if len(got) != len(orig) {
		t.Fatalf("%d packets in the files, %d in the capture", len(got), len(orig))
	}
	for i := range orig {
		if !bytes.Equal(got[i].data, orig[i].data) {
			t.Fatalf("packet %d differs", i+1)
		}
	}
}

// Bad -w settings are bad usage: exit 2, nothing written.
func TestWriteFlagsBadUsage(t *testing.T) {
	in := filepath.Join(sensortest.Pcaps(t), "chains/dns.pcap")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-C", "10", in},
		{"-w", "-", "-C", "1", in},
		{"-w", filepath.Join(dir, "x"), "-W", "3", in},
		{"-w", filepath.Join(dir, "%Q"), "-G", "5", in},
		{"-w", filepath.Join(dir, "x"), "-s", "0", in},
		{"-w", filepath.Join(dir, "x"), "-C", "ten", in},
		{"-w", filepath.Join(dir, "x"), "-C", "0", in},
	} {
		stdout, stderr, code := runCmd(t, append([]string{"read"}, args...)...)
		if code != 2 || stdout != "" {
			t.Errorf("read %v: exit %d, stdout %q, stderr %s", args, code, stdout, stderr)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("bad usage left files: %v", ents)
	}
}

// A tunnelled packet's comment names its outermost tunnel as net_watch does, with tshark's
// VNI and outer addresses.
func TestReadWriteTunnelComments(t *testing.T) {
	in := filepath.Join(sensortest.Pcaps(t), "protocols/vxlan_http.pcap")
	out := filepath.Join(t.TempDir(), "vxlan.pcapng")
	if _, stderr, code := runCmd(t, "read", "-n", "-q", in, "-w", out); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	n := 0
	for i, l := range tsharkLines(t, out, "vxlan.vni", "ip.src", "ip.dst", "frame.comment") {
		f := strings.Split(l, "|")
		if f[0] == "" {
			continue
		}
		n++
		if want := "[vxlan " + f[0] + " via " + f[1] + " --> " + f[2] + "]"; !strings.Contains(f[3], want) {
			t.Errorf("packet %d: comment %q lacks %q", i+1, f[3], want)
		}
	}
	if n == 0 {
		t.Error("tshark finds no VXLAN packet")
	}
}

// flagsFirst moves a command's own flags (with their values) before its other arguments, and
// nothing else: a filter's words, "-" (stdin) and what follows "--" stay where they are.
func TestFlagsFirst(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	for _, c := range []struct{ in, want string }{
		{"read f.pcap -w out.pcapng tcp port 80", "read -w out.pcapng f.pcap tcp port 80"},
		{"read - -q -C 10k -w o", "read -q -C 10k -w o -"},
		{"read f.pcap --no-comments -w=o udp", "read --no-comments -w=o f.pcap udp"},
		{"attach -i eth0 icmp -w - -s 100", "attach -i eth0 -w - -s 100 icmp"},
		{"read f.pcap not -x -- -w o", "read f.pcap not -x -- -w o"},
		{"read f.pcap len < 100", "read f.pcap len < 100"},
		{"check eth0", "check eth0"},
		{"nosuch -w x", "nosuch -w x"},
	} {
		got := strings.Join(flagsFirst(app, append([]string{"chains-sensor"}, strings.Fields(c.in)...))[1:], " ")
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}
