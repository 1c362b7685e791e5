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

// frameTimes reads file with OpenCapture and returns each frame's time in tcpdump's -tt form,
// by frame number (frames that carry no packet are skipped), and the last number read.
func frameTimes(t *testing.T, file string) (map[uint64]string, uint64) {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	c, err := sensor.OpenCapture(fh)
	if err != nil {
		return nil, 0
	}
	ts := map[uint64]string{}
	for {
		f, err := c.Next()
		if err != nil {
			return ts, c.Frames()
		}
		ts[f.Num] = fmt.Sprintf("%d.%09d", f.Time.Unix(), f.Time.Nanosecond())
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
		got, frames := frameTimes(t, file)
		name := filepath.Base(file)
		if got == nil && refusesLinkType(file) {
			continue // a link type libpcap reads and the sensor does not
		}
		if frames < uint64(len(want)) {
			t.Errorf("%s: %d frames, tcpdump reads %d", name, frames, len(want))
			continue
		}
		for i, w := range want {
			g, ok := got[uint64(i+1)]
			if !ok {
				continue // skipped: no packet in it
			}
			if g != w {
				t.Errorf("%s: packet %d at %s, tcpdump says %s", name, i+1, g, w)
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
		byNum, _ := frameTimes(t, file)
		var got []string // in order: tshark's -Y eth shows the packets, not the custom blocks
		for n := uint64(1); len(got) < len(byNum); n++ {
			if ts, ok := byNum[n]; ok {
				got = append(got, ts)
			}
		}
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
