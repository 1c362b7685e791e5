package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// tcpdumpEpochs is each packet's time as tcpdump -tt --time-stamp-precision=nano prints it,
// parsed; empty where libpcap cannot read the file.
func tcpdumpEpochs(t *testing.T, file string) []time.Time {
	t.Helper()
	out, _ := exec.Command("tcpdump", "-n", "-tt", "--time-stamp-precision=nano", "-r", file).Output()
	var ts []time.Time
	for _, line := range strings.Split(string(out), "\n") {
		f, _, _ := strings.Cut(line, " ")
		sec, nsec, ok := strings.Cut(f, ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		n, err2 := strconv.ParseInt(nsec, 10, 64)
		if ok && err1 == nil && err2 == nil && len(nsec) == 9 {
			ts = append(ts, time.Unix(s, n).UTC())
		}
	}
	return ts
}

// TestReadTimesAsTcpdump: the time of every packet, in the JSON ts and in the net_watch line,
// is the one tcpdump gives it, for every capture libpcap reads. pcapng Simple Packet Blocks
// carry no time: libpcap, and so tcpdump, dates them at the Unix epoch (tcpdump -tttt prints
// 1970-01-01 00:00:00.000000); tshark shows no time at all. The sensor prints the epoch too,
// as a tcpdump user expects and as the net_watch line, which always has a time, can show;
// before, it printed year 1754.
func TestReadTimesAsTcpdump(t *testing.T) {
	sensortest.RequireTools(t, "tcpdump")
	root := sensortest.Pcaps(t)
	var files []string
	for _, sub := range []string{"chains", "protocols"} {
		m, _ := filepath.Glob(filepath.Join(root, sub, "*.pcap*"))
		files = append(files, m...)
	}
	checked, epoch := 0, 0
	for _, file := range files {
		want := tcpdumpEpochs(t, file)
		if len(want) == 0 {
			continue // libpcap reads nothing here (link types mixed)
		}
		name := filepath.Base(file)
		js, stderr, code := runCmd(t, "read", "-n", "--utc", "-o", "json", file)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
		var nums []int
		for l := range strings.Lines(js) {
			var p struct {
				Num int    `json:"num"`
				TS  string `json:"ts"`
			}
			if err := json.Unmarshal([]byte(l), &p); err != nil {
				t.Fatalf("%s: bad JSON %q: %v", name, l, err)
			}
			if p.Num < 1 || p.Num > len(want) {
				t.Fatalf("%s: packet %d, tcpdump reads %d", name, p.Num, len(want))
			}
			ts, err := time.Parse(time.RFC3339Nano, p.TS)
			if w := want[p.Num-1]; err != nil || !ts.Equal(w) {
				t.Errorf("%s: packet %d: ts %q, tcpdump %s", name, p.Num, p.TS, w.Format(time.RFC3339Nano))
			}
			if want[p.Num-1].Unix() == 0 {
				epoch++
			}
			nums = append(nums, p.Num)
			checked++
		}
		text, _, _ := runCmd(t, "read", "-n", "--utc", file)
		var tl []string // none when every frame was skipped (802.11 management frames)
		if text != "" {
			tl = strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		}
		if len(tl) != len(nums) {
			t.Fatalf("%s: %d text lines, %d JSON lines", name, len(tl), len(nums))
		}
		for i, l := range tl {
			if w := want[nums[i]-1].Format(time.DateTime) + " - "; !strings.HasPrefix(l, w) {
				t.Errorf("%s: line %d %q: tcpdump -tttt dates the packet %s", name, i+1, l, w)
			}
		}
	}
	if epoch == 0 {
		t.Error("no packet without a time among the captures (the Simple Packet Block files)")
	}
	t.Logf("%d packet times as tcpdump's, %d at the epoch", checked, epoch)
}

// TestReadImpossibleTimes: a pcap fraction field past a second prints as tcpdump -tttt prints
// it (the date of the seconds field, then the field as written: ".1500000"), marked "(invalid
// us)", and JSON says ts_invalid; a pcapng timestamp of 2^64-1 us, which tcpdump cannot
// convert either, prints as "[timestamp overflow]", never as a wrapped date.
func TestReadImpossibleTimes(t *testing.T) {
	sensortest.RequireTools(t, "tcpdump")
	arp := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2, 8, 6}, make([]byte, 28)...)
	var pc bytes.Buffer
	binary.Write(&pc, binary.LittleEndian, []uint32{0xa1b2c3d4, 2 | 4<<16, 0, 0, 65535, 1})
	for _, frac := range []uint32{999_999, 1_500_000, 0xffffffff} {
		binary.Write(&pc, binary.LittleEndian, []uint32{1441652914, frac, uint32(len(arp)), uint32(len(arp))})
		pc.Write(arp)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "frac.pcap")
	if err := os.WriteFile(file, pc.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	td := exec.Command("tcpdump", "-n", "-tttt", "-r", file)
	td.Env = append(os.Environ(), "TZ=UTC")
	out, err := td.Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string // "2015-09-07 19:08:34.1500000"
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			want = append(want, f[0]+" "+f[1])
		}
	}
	text, stderr, code := runCmd(t, "read", "-n", "--utc", "--view", "packets", file)
	var got []string
	for _, l := range strings.Split(text, "\n") {
		if ts, ok := strings.CutPrefix(l, "Timestamp: "); ok {
			got = append(got, ts)
		}
	}
	if code != 0 || len(got) != 3 || len(want) != 3 {
		t.Fatalf("exit %d, %d times, tcpdump %d:\n%s%s", code, len(got), len(want), text, stderr)
	}
	for i := range got {
		invalid := i > 0
		if !strings.HasPrefix(got[i], want[i]+" ") || strings.Contains(got[i], "(invalid us)") != invalid {
			t.Errorf("packet %d: %q, tcpdump %q (invalid: %v)", i+1, got[i], want[i], invalid)
		}
	}
	js, _, _ := runCmd(t, "read", "-n", "-o", "json", file)
	if n := strings.Count(js, `"ts_invalid":"fraction `); n != 2 {
		t.Errorf("%d ts_invalid, want 2:\n%s", n, js)
	}

	// pcapng: 2^64-1 microseconds, then a time that is fine.
	block := func(typ uint32, body []byte) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, []uint32{typ, uint32(12 + len(body))})
		b.Write(body)
		binary.Write(&b, binary.LittleEndian, uint32(12+len(body)))
		return b.Bytes()
	}
	var ng, body bytes.Buffer
	binary.Write(&body, binary.LittleEndian, []uint32{0x1a2b3c4d, 1, 0xffffffff, 0xffffffff}) // magic, version 1.0, no length
	ng.Write(block(0x0a0d0d0a, body.Bytes()))
	body.Reset()
	binary.Write(&body, binary.LittleEndian, []uint32{1, 65535, 0}) // Ethernet, snap length, no option
	ng.Write(block(1, body.Bytes()))
	for _, ts := range []uint64{1<<64 - 1, 1441652914_000000} {
		body.Reset()
		binary.Write(&body, binary.LittleEndian, []uint32{0, uint32(ts >> 32), uint32(ts), uint32(len(arp)), uint32(len(arp))})
		body.Write(arp)
		body.Write(make([]byte, (4-len(arp)%4)%4))
		ng.Write(block(6, body.Bytes()))
	}
	file = filepath.Join(dir, "overflow.pcapng")
	if err := os.WriteFile(file, ng.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("tcpdump", "-n", "-tttt", "-r", file).CombinedOutput(); !strings.Contains(string(out), "[Error converting time]") {
		t.Fatalf("tcpdump converts 2^64-1 us: %s", out)
	}
	text, stderr, code = runCmd(t, "read", "-n", "--utc", file)
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "[timestamp overflow] ") || !strings.HasPrefix(lines[1], "2015-09-07 19:08:34 ") {
		t.Errorf("exit %d:\n%s%s", code, text, stderr)
	}
}
