package sensor_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/filter"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// diffExpressions are the expressions of the differential test against tcpdump: every
// primitive family of pcap-filter(7) the captures exercise, and some that match nothing.
var diffExpressions = []string{
	// protocols
	"tcp", "udp", "icmp", "icmp6", "arp", "ip", "ip6", "ip6 and udp",
	// ports and port ranges
	"port 53", "tcp port 80", "udp port 53 or udp port 5353", "src port 53",
	"portrange 1-1023", "tcp portrange 8000-9000", "dst portrange 49152-65535", "udp port 4789",
	// hosts and nets
	"net 10.0.0.0/8", "src net 192.168.0.0/16", "dst net 224.0.0.0/4", "ip6 net fe80::/10",
	"host 224.0.0.251 or host ff02::fb",
	// negations
	"not tcp", "not ip and not ip6", "!(udp or tcp)", "not (port 53 or port 5353)",
	// VLAN, QinQ
	"vlan", "vlan and ip", "vlan and vlan", "vlan and arp", "vlan 0 and tcp",
	// IPv6 with extension headers
	"ip6 protochain 6", "ip6 protochain 17", "ip6 protochain 44", "ip6[6] = 0", "ip6[6] = 43",
	"ip6[6] == 44", "ip6[6] = 60", "icmp6 and ip6[40] = 134",
	// TCP flags
	"tcp[tcpflags] & tcp-syn != 0", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
	"tcp[tcpflags] & tcp-rst != 0", "tcp[tcpflags] & tcp-fin != 0", "tcp[13] = 0xff",
	// IPv4 fragments
	"ip[6:2] & 0x1fff != 0", "ip[6] & 0x20 != 0", "ip[6:2] & 0x3fff != 0",
	// broadcast, multicast
	"broadcast", "multicast", "ip broadcast", "ip multicast", "ip6 multicast",
	// lengths (the wire length: several captures are cut short)
	"greater 1000", "less 64", "len >= 100 and len <= 200",
	// byte offsets and arithmetic
	"ether[12:2] = 0x8100", "ip[9] = 47", "udp[10] & 0x80 != 0", "ip[2:2] > 1400",
	"tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "tcp and tcp[((tcp[12] & 0xf0) >> 2)] = 0x16",
	"icmp[icmptype] = icmp-echo or icmp[icmptype] = icmp-echoreply", "arp[6:2] = 1",
	"ip[0] & 0xf > 5", "ip[0] - 0x40 = 5", "ip[8] * 2 > 100", "ip[8] / 2 = 32", "ip[8] % 10 = 4",
	"ip[8] ^ 0xff = 0xbf", "ip[8] & ip[9] != 0", "ip[8] % ip[1] = 0", "udp[4:2] / (ip[0] & 0xf) > 10",
	"-ip[8] < 0xffffff00", "ip[2:2] - len < 0x7fffffff",
	// direction: in the header of Linux cooked captures; an error on others, as in tcpdump
	"inbound", "outbound and tcp",
	// matches nothing
	"tcp and udp", "ip and ip6", "ether proto 0x1234", "port 1 and port 2 and port 3",
	// refused by libpcap everywhere
	"tcp port", "host 999.1.1.1",
}

// shortExpressions are what -short compares (the Go path only).
var shortExpressions = []string{"tcp port 80", "vlan and ip", "ip6 protochain 17", "tcp[tcpflags] & tcp-syn != 0",
	"ip[6:2] & 0x3fff != 0", "broadcast", "greater 1000", "inbound", "not ip", "tcp port"}

// oracle is tcpdump's selection on one capture: the packet numbers, or libpcap's complaint.
type oracle struct {
	nums []uint64
	err  string
}

// tcpdumpSelect runs `tcpdump -nr file -w out expr` and numbers the packets tcpdump wrote by
// their place in file (tcpdump's own --number counts the packets it prints, not the file's):
// they are a subsequence of the file's, found by time and bytes, read with gopacket.
func tcpdumpSelect(t *testing.T, file, expr string) oracle {
	t.Helper()
	out := filepath.Join(t.TempDir(), "selected.pcap")
	args := []string{"-nr", file, "-w", out}
	if expr != "" {
		args = append(args, "--", expr) // "--": an expression may start with "-"
	}
	cmd := exec.Command("tcpdump", args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	runErr := cmd.Run()
	selected := readPackets(out)
	var o oracle
	if runErr != nil {
		for _, l := range strings.Split(errb.String(), "\n") {
			if msg, ok := strings.CutPrefix(l, "tcpdump: "); ok {
				o.err = msg
			}
		}
		if o.err == "" {
			o.err = strings.TrimSpace(errb.String())
		}
	}
	all := readPackets(file)
	j := 0
	for _, p := range selected {
		for j < len(all) && !all[j].is(p) {
			j++
		}
		if j == len(all) {
			break // gopacket reads less of a damaged file than libpcap: compare what both read
		}
		o.nums = append(o.nums, uint64(j+1))
		j++
	}
	return o
}

type packet struct {
	wireLen int
	data    []byte
}

// is says whether w, as tcpdump wrote it, is p: the same wire length and bytes, or their first
// part where libpcap cut a frame longer than the file's snapshot length. (Times are not
// compared: libpcap and gopacket read out-of-range microseconds differently.)
func (p packet) is(w packet) bool {
	return p.wireLen == w.wireLen && bytes.HasPrefix(p.data, w.data) && (len(w.data) > 0 || len(p.data) == 0)
}

// readPackets reads what gopacket can of a pcap or pcapng file (nothing if it is unreadable).
func readPackets(path string) []packet {
	fh, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var next func() ([]byte, gopacket.CaptureInfo, error)
	if r, err := pcapgo.NewReader(fh); err == nil {
		next = r.ReadPacketData
	} else {
		fh.Seek(0, io.SeekStart)
		ng, err := pcapgo.NewNgReader(fh, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil
		}
		next = ng.ReadPacketData
	}
	var ps []packet
	for {
		data, ci, err := next()
		if err != nil {
			return ps
		}
		ps = append(ps, packet{ci.Length, data})
	}
}

// captureCase is one capture as tcpdump can read it: the mixed-link-type pcapng, which
// tcpdump refuses, is split by interface into pcap files (with gopacket, not the code under
// test), each with the numbers its packets have in the original.
type captureCase struct {
	unreadable string // tcpdump cannot read the file at all: what it says
	readErr    string // what tcpdump says where it stops reading a damaged file
	name       string
	path       string   // what we read
	parts      []string // what tcpdump reads (the path itself, or the split)
	number     [][]uint64
	skipped    map[uint64]bool // frames the sensor skips, carrying no packet it parses (802.11 management, ...)
}

func captureCases(t *testing.T) []captureCase {
	var cases []captureCase
	for _, path := range sensortest.PcapFiles(t) {
		c := captureCase{name: filepath.Base(filepath.Dir(path)) + "/" + filepath.Base(path), path: path, parts: []string{path}, number: [][]uint64{nil},
			skipped: skippedFrames(path)}
		o := tcpdumpSelect(t, path, "")
		switch {
		case refusesLinkType(path):
			continue // a link type libpcap reads and the sensor does not (TestLinkTypeRefused)
		case strings.Contains(o.err, "different from the type of the first interface"):
			c.parts, c.number = splitByInterface(t, path)
			for i := 0; i < len(c.parts); i++ {
				if refusesLinkType(c.parts[i]) { // the sensor skips that interface's packets
					c.parts = slices.Delete(c.parts, i, i+1)
					c.number = slices.Delete(c.number, i, i+1)
					i--
				}
			}
		case o.err != "" && len(o.nums) == 0:
			c.unreadable = o.err
		default:
			c.readErr = o.err
		}
		cases = append(cases, c)
	}
	return cases
}

// skippedFrames returns the numbers of the frames of the file that the sensor's reader skips.
func skippedFrames(path string) map[uint64]bool {
	fh, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer fh.Close()
	c, err := sensor.OpenCapture(fh)
	if err != nil {
		return nil
	}
	skipped := map[uint64]bool{}
	for want := uint64(1); ; want++ {
		f, err := c.Next()
		if err != nil {
			for ; want <= c.Frames(); want++ {
				skipped[want] = true
			}
			return skipped
		}
		for ; want < f.Num; want++ {
			skipped[want] = true
		}
	}
}

// refusesLinkType says whether the sensor refuses the file for its link type.
func refusesLinkType(path string) bool {
	fh, err := os.Open(path)
	if err != nil {
		return false
	}
	defer fh.Close()
	_, err = sensor.OpenCapture(fh)
	return errors.Is(err, sensor.ErrUnsupportedLinkType)
}

func splitByInterface(t *testing.T, path string) ([]string, [][]uint64) {
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcapgo.NewNgReader(fh, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	writers := map[int]*pcapgo.Writer{}
	index := map[int]int{}
	var parts []string
	var numbers [][]uint64
	for n := uint64(1); ; n++ {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w := writers[ci.InterfaceIndex]
		if w == nil {
			ifc, err := r.Interface(ci.InterfaceIndex)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Join(t.TempDir(), fmt.Sprintf("if%d.pcap", ci.InterfaceIndex))
			out, err := os.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { out.Close() })
			w = pcapgo.NewWriter(out)
			if err := w.WriteFileHeader(uint32(max(ifc.SnapLength, 65535)), ifc.LinkType); err != nil {
				t.Fatal(err)
			}
			writers[ci.InterfaceIndex] = w
			index[ci.InterfaceIndex] = len(parts)
			parts = append(parts, name)
			numbers = append(numbers, nil)
		}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
		numbers[index[ci.InterfaceIndex]] = append(numbers[index[ci.InterfaceIndex]], n)
	}
	return parts, numbers
}

// want is tcpdump's selection over the whole capture, in the capture's numbering.
func (c captureCase) want(t *testing.T, expr string) oracle {
	var all oracle
	for i, part := range c.parts {
		o := tcpdumpSelect(t, part, expr)
		if o.err != "" && o.err != c.readErr {
			return o // the expression's error
		}
		for _, n := range o.nums {
			if c.number[i] != nil {
				n = c.number[i][n-1]
			}
			all.nums = append(all.nums, n)
		}
	}
	slices.Sort(all.nums)
	return all
}

// readFiltered reads a capture with the filter on the Go path (reps nil) or through the
// kernel, and returns the numbers of the packets recorded, how many were read, and the error
// that ended the read.
func readFiltered(path string, f *sensor.FileFilter, reps *sensor.Replayers) (nums []uint64, seen uint64, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer fh.Close()
	c, err := sensor.OpenCapture(fh)
	if err != nil {
		return nil, 0, err
	}
	if err := f.Check(c); err != nil {
		return nil, 0, err
	}
	src := sensor.NewFileSource(c, sensor.NewTwin(sensor.Config{}), nil)
	src.SetFilter(f, reps)
	for p := range src.Packets() {
		nums = append(nums, p.Num)
	}
	n := src.Counts()
	if src.Err() == nil && n.Seen != n.Filtered+n.Recorded {
		return nums, n.Seen, fmt.Errorf("%d seen, %d filtered, %d recorded: the counts do not add up", n.Seen, n.Filtered, n.Recorded)
	}
	return nums, c.Frames(), src.Err() // frames read, with those skipped for carrying no packet
}

// TestFilterMatchesTcpdump: for every expression and every capture, the packets selected on
// the Go path and through the kernel programs (read --kernel) are the ones tcpdump selects,
// and an expression libpcap refuses is refused with libpcap's message.
func TestFilterMatchesTcpdump(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump, the oracle, is not installed (scripts/provision.sh installs it)")
	}
	if len(diffExpressions) < 40 {
		t.Fatalf("only %d expressions", len(diffExpressions))
	}
	exprs := diffExpressions
	kernel := !testing.Short()
	if kernel {
		sensortest.RequireBPF(t)
	} else {
		exprs = shortExpressions // -short: the Go path on a sample
	}
	cases := captureCases(t)
	// tcpdump's numbers, computed two at a time.
	wants := make([][]oracle, len(exprs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, expr := range exprs {
		wants[i] = make([]oracle, len(cases))
		for j, c := range cases {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				wants[i][j] = c.want(t, expr)
			}()
		}
	}
	wg.Wait()

	var mu sync.Mutex
	var selected, compared int
	t.Cleanup(func() {
		t.Logf("%d expressions over %d captures: %d comparisons, %d packets selected in all", len(exprs), len(cases), compared, selected)
	})
	for i, expr := range exprs {
		t.Run(expr, func(t *testing.T) {
			t.Parallel() // two at a time (GOMAXPROCS): the kernel's verifier is the cost
			f := sensor.NewFileFilter(expr)
			var reps *sensor.Replayers
			if kernel {
				reps = sensor.NewReplayers(sensor.Config{}, f)
				defer reps.Close()
			}
			for j, c := range cases {
				want := wants[i][j]
				for _, path := range []string{"go", "kernel"} {
					if path == "kernel" && !kernel {
						continue
					}
					var r *sensor.Replayers
					if path == "kernel" {
						r = reps
					}
					got, seen, err := readFiltered(c.path, f, r)
					if c.unreadable != "" {
						if err == nil {
							t.Errorf("%s (%s): tcpdump cannot read it (%s); we say %v", c.name, path, c.unreadable, err)
						}
						continue
					}
					if want.err != "" {
						if err == nil || !strings.Contains(err.Error(), want.err) {
							t.Errorf("%s (%s): tcpdump says %q; we say %v", c.name, path, want.err, err)
						}
						continue
					}
					if errors.Is(err, filter.ErrSyntax) {
						t.Errorf("%s (%s): %v, but tcpdump takes the expression", c.name, path, err)
						continue
					}
					// Damaged files: compare the packets both read.
					w := slices.DeleteFunc(slices.Clone(want.nums), func(n uint64) bool { return n > seen || c.skipped[n] })
					if !slices.Equal(got, w) {
						t.Errorf("%s (%s): selected %v, tcpdump %v", c.name, path, got, w)
					}
					mu.Lock()
					selected += len(got)
					compared++
					mu.Unlock()
				}
			}
		})
	}
}
