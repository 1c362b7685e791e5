package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/sinks/pcapng"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/gopacket/gopacket/pcapgo"
)

// FuzzReadPipeline feeds mutated capture files through the whole read path: the pcap/pcapng
// reader, the Go twin, the decoder, the domains stage and every sink. It must never panic, and
// every packet the source yields must come out as exactly one JSON line.
func FuzzReadPipeline(f *testing.F) {
	root := sensortest.Pcaps(f)
	for _, sub := range []string{"chains", "protocols", "malformed"} {
		files, _ := filepath.Glob(filepath.Join(root, sub, "*.pcap*"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err == nil && len(data) <= 64<<10 {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		capt, err := sensor.OpenCapture(bytes.NewReader(data))
		if err != nil {
			return
		}
		src := sensor.NewFileSource(capt, sensor.NewTwin(sensor.Config{}), nil)
		var js, ng bytes.Buffer
		w, err := pcapng.Create(pcapng.Options{Path: "-", Stdout: &ng})
		if err != nil {
			t.Fatal(err)
		}
		cfg := &views.Config{NoDNS: true, Format: sinks.FormatJSON, UTC: true,
			Capture: &sinks.CaptureConfig{Writer: w, Comments: true, Interface: func(i uint32) pcapng.Interface {
				d := capt.Interface(int(i))
				return pcapng.Interface{Name: d.Name, LinkType: uint16(d.LinkType), SnapLen: d.SnapLen}
			}}}
		out := sinks.NewOutput(&js, false)
		b, err := views.Build(cfg, out)
		if err != nil {
			t.Fatal(err)
		}
		text := sinks.NewNetWatch(sinks.NewOutput(io.Discard, false), sinks.Options{UTC: true, Color: true})
		pk := sinks.NewPackets(sinks.NewOutput(io.Discard, false), sinks.Options{UTC: true})
		n := uint64(0)
		for p := range b.Stage(src.Packets()) {
			b.Sink.Write(p)
			text.Write(p)
			pk.Write(p)
			n++
			if n > 100000 {
				break
			}
		}
		b.Sink.Close()
		if got := uint64(bytes.Count(js.Bytes(), []byte("\n"))); got != n || n != src.Counts().Recorded {
			t.Fatalf("%d JSON lines, %d packets, %d recorded", got, n, src.Counts().Recorded)
		}
		// -w: every packet is one enhanced packet block gopacket reads back.
		r, err := pcapgo.NewNgReader(&ng, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatalf("our pcapng: %v", err)
		}
		got := uint64(0)
		for _, _, err := r.ReadPacketData(); err == nil; _, _, err = r.ReadPacketData() {
			got++
		}
		if got != n {
			t.Fatalf("%d packets in our pcapng, %d yielded", got, n)
		}
	})
}
