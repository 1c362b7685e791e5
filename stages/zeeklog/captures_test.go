package zeeklog_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
)

// TestEveryCapture: every capture of the repository, the malformed ones too, gives logs
// without a panic: each line one JSON object, the files valid UTF-8 with no control byte but
// the newlines, every conn.log line of Zeek's types, every other line tied to a conn.log line.
func TestEveryCapture(t *testing.T) {
	for _, pcap := range sensortest.PcapFiles(t) {
		name := strings.TrimPrefix(pcap, sensortest.Pcaps(t)+"/")
		t.Run(name, func(t *testing.T) {
			if !readable(pcap) {
				t.Skip("a capture whose header the reader refuses (its own tests cover it)")
			}
			dir := logsOf(t, pcap, zeeklog.Config{})
			l := logs{}
			for _, k := range zeeklog.Kinds {
				path := filepath.Join(dir, k+".log")
				b, err := os.ReadFile(path)
				if os.IsNotExist(err) {
					continue
				}
				if !utf8.Valid(b) {
					t.Errorf("%s.log: not UTF-8", k)
				}
				for _, c := range bytes.TrimSuffix(b, []byte("\n")) {
					if c < 0x20 && c != '\n' || c == 0x7f {
						t.Fatalf("%s.log: raw control byte %#x", k, c)
					}
				}
				l[k] = readLog(t, path)
			}
			for _, r := range l["conn"] {
				checkConnTypes(t, r)
			}
			checkTied(t, l)
		})
	}
}

// readable says whether the sensor's reader takes the capture's header.
func readable(pcap string) bool {
	f, err := os.Open(pcap)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = sensor.OpenCapture(bufio.NewReader(f))
	return err == nil
}
