package views

import (
	"bufio"
	"os"
	"slices"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages"
)

// readPackets returns deep copies of the Packets the sensor's read path (capture reader, Go twin
// parser, decoder) yields for a capture, as `chains-sensor read` makes them; nil for a file
// whose header the reader refuses.
func readPackets(t testing.TB, path string) []stages.Packet {
	t.Helper()
	return readPacketsWith(t, path, sensor.Config{})
}

// readPacketsWith is readPackets with the parser's knobs cfg (NoDecap: tunnels' outer packets).
func readPacketsWith(t testing.TB, path string, cfg sensor.Config) []stages.Packet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := sensor.OpenCapture(bufio.NewReader(f))
	if err != nil {
		return nil // damaged headers: the reader's own tests cover them
	}
	src := sensor.NewFileSource(c, sensor.NewTwin(cfg), nil)
	var out []stages.Packet
	for p := range src.Packets() {
		q := *p
		q.Payload = slices.Clone(p.Payload)
		q.Frame = slices.Clone(p.Frame)
		out = append(out, q)
	}
	return out
}
