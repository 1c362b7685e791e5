package sensor_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// tcpdumpTimes is the timestamp of each packet tcpdump (libpcap) reads from file, as
// tcpdump -tt --time-stamp-precision=nano prints it ("1340954905.298858000"), up to where
// it stops.
func tcpdumpTimes(t *testing.T, file string) []string {
	t.Helper()
	out, _ := exec.Command("tcpdump", "-n", "-tt", "--time-stamp-precision=nano", "-r", file).Output()
	var ts []string
	for _, line := range strings.Split(string(out), "\n") {
		if f, _, ok := strings.Cut(line, " "); ok && strings.Contains(f, ".") {
			ts = append(ts, f)
		}
	}
	return ts
}

// frameTimes reads file with OpenCapture and returns each frame's time in tcpdump's -tt form.
func frameTimes(t *testing.T, file string) []string {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	c, err := sensor.OpenCapture(fh)
	if err != nil {
		return nil
	}
	var ts []string
	for {
		f, err := c.Next()
		if err != nil {
			return ts
		}
		ts = append(ts, fmt.Sprintf("%d.%09d", f.Time.Unix(), f.Time.Nanosecond()))
	}
}

// TestCaptureTimesAsTcpdump: every packet of every test capture libpcap reads has the
// timestamp tcpdump prints for it, to the nanosecond. The Simple Packet Blocks of pcapng have
// none: libpcap gives them the Unix epoch, and so does OpenCapture (not year 1, which once
// printed as 1754).
func TestCaptureTimesAsTcpdump(t *testing.T) {
	sensortest.RequireTools(t, "tcpdump")
	compared, epoch := 0, 0
	for _, file := range sensortest.PcapFiles(t) {
		want := tcpdumpTimes(t, file)
		if len(want) == 0 {
			continue // libpcap reads nothing here (damaged, or link types mixed)
		}
		got := frameTimes(t, file)
		name := filepath.Base(file)
		if len(got) < len(want) {
			t.Errorf("%s: %d frames, tcpdump reads %d", name, len(got), len(want))
			continue
		}
		for i, w := range want {
			if got[i] != w {
				t.Errorf("%s: packet %d at %s, tcpdump says %s", name, i+1, got[i], w)
			}
			if w == "0.000000000" {
				epoch++
			}
			compared++
		}
	}
	if epoch == 0 {
		t.Error("no packet without a timestamp among the captures: the Simple Packet Block files are gone")
	}
	t.Logf("%d packet times as tcpdump's, %d of them without a timestamp (the epoch)", compared, epoch)
}

// TestSimplePacketBlocksHaveNoTime: the packets OpenCapture dates at the epoch are exactly
// those tshark says have no time (frame.time_epoch empty: Simple Packet Blocks).
func TestSimplePacketBlocksHaveNoTime(t *testing.T) {
	sensortest.RequireTools(t, "tshark")
	for _, name := range []string{"pcapng_le_simple_packet_blocks.pcapng", "pcapng_le_custom_blocks.pcapng"} {
		file := filepath.Join(sensortest.Pcaps(t), "protocols", name)
		out, err := exec.Command("tshark", "-r", file, "-Y", "eth", "-T", "fields", "-e", "frame.time_epoch").Output()
		if err != nil {
			t.Fatalf("tshark %s: %v", name, err)
		}
		want := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") // a line a packet, empty when undated
		got := frameTimes(t, file)
		if len(got) != len(want) {
			t.Fatalf("%s: %d frames, tshark shows %d", name, len(got), len(want))
		}
		for i := range want {
			if noTime, atEpoch := want[i] == "", got[i] == "0.000000000"; noTime != atEpoch {
				t.Errorf("%s: packet %d: tshark time %q, ours %s", name, i+1, want[i], got[i])
			}
		}
	}
}
