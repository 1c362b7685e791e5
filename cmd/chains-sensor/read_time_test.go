package main

import (
	"encoding/json"
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
