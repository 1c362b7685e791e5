package sensor_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
)

// arpFrame is a 42-byte Ethernet ARP frame, enough for every reader.
var arpFrame = append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 2, 0x08, 0x06}, make([]byte, 28)...)

// pcapWith returns a microsecond (nano: nanosecond) pcap file with one ARP frame per
// timestamp, the fraction fields written as given (gopacket's writer cannot write impossible
// ones).
func pcapWith(nano bool, ts [][2]uint32) []byte {
	var b bytes.Buffer
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	binary.Write(&b, binary.LittleEndian, []uint32{magic, 2 | 4<<16, 0, 0, 65535, 1})
	for _, t := range ts {
		binary.Write(&b, binary.LittleEndian, []uint32{t[0], t[1], uint32(len(arpFrame)), uint32(len(arpFrame))})
		b.Write(arpFrame)
	}
	return b.Bytes()
}

// ngBlock is one little-endian pcapng block.
func ngBlock(typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, []uint32{typ, n})
	b.Write(body)
	binary.Write(&b, binary.LittleEndian, n)
	return b.Bytes()
}

func ngSHB() []byte {
	var body bytes.Buffer
	binary.Write(&body, binary.LittleEndian, uint32(0x1a2b3c4d))
	binary.Write(&body, binary.LittleEndian, []uint16{1, 0})
	binary.Write(&body, binary.LittleEndian, int64(-1))
	return ngBlock(0x0a0d0d0a, body.Bytes())
}

// ngIDB is an Ethernet interface block named name (if_name option).
func ngIDB(name string) []byte {
	var body bytes.Buffer
	binary.Write(&body, binary.LittleEndian, []uint16{1, 0})
	binary.Write(&body, binary.LittleEndian, uint32(65535))
	if name != "" {
		binary.Write(&body, binary.LittleEndian, []uint16{2, uint16(len(name))})
		body.WriteString(name)
		for body.Len()%4 != 0 {
			body.WriteByte(0)
		}
	}
	binary.Write(&body, binary.LittleEndian, []uint16{0, 0})
	return ngBlock(1, body.Bytes())
}

// ngEPB is an enhanced packet block of interface 0 at ts (in the default microseconds).
func ngEPB(ts uint64) []byte {
	var body bytes.Buffer
	binary.Write(&body, binary.LittleEndian, []uint32{0, uint32(ts >> 32), uint32(ts), uint32(len(arpFrame)), uint32(len(arpFrame))})
	body.Write(arpFrame)
	return ngBlock(6, body.Bytes())
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFrames(t *testing.T, data []byte) []sensor.Frame {
	t.Helper()
	c, err := sensor.OpenCapture(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var out []sensor.Frame
	for {
		f, err := c.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *f)
	}
}

// TestCaptureImpossibleFractions: a pcap fraction field past a second is kept as written and
// noted, as tcpdump prints it (SECONDS.FIELD), never carried into the seconds or wrapped in 32
// bits (pcapgo multiplies a microsecond field by 1000 in a uint32).
func TestCaptureImpossibleFractions(t *testing.T) {
	sensortest.RequireTools(t, "tcpdump")
	for _, nano := range []bool{false, true} {
		ts := [][2]uint32{{1441652914, 999_999}, {1441652914, 1_000_000}, {1441652914, 1_500_000}, {1441652914, 0xffffffff}}
		if nano {
			ts = [][2]uint32{{1441652914, 999_999_999}, {1441652914, 1_000_000_000}, {1441652914, 0xffffffff}}
		}
		data := pcapWith(nano, ts)
		file := writeTemp(t, "frac.pcap", data)
		args := []string{"-n", "-tt", "-r", file}
		if nano {
			args = append([]string{"--time-stamp-precision=nano"}, args...)
		}
		out, err := exec.Command("tcpdump", args...).Output()
		if err != nil {
			t.Fatalf("tcpdump: %v", err)
		}
		var want []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			want = append(want, strings.Fields(l)[0])
		}
		frames := readFrames(t, data)
		if len(frames) != len(ts) || len(want) != len(ts) {
			t.Fatalf("nano %v: %d frames, tcpdump %d lines, want %d", nano, len(frames), len(want), len(ts))
		}
		for i, f := range frames {
			if f.TimeNote != stages.TimeValid && f.TimeNote != stages.TimeInvalidMicro && f.TimeNote != stages.TimeInvalidNano {
				t.Fatalf("frame %d: note %v", i+1, f.TimeNote)
			}
			got := sprintTT(f, nano)
			if got != want[i] {
				t.Errorf("nano %v frame %d: %s (note %d), tcpdump %s", nano, i+1, got, f.TimeNote, want[i])
			}
			invalid := ts[i][1] > 999_999 && !nano || ts[i][1] > 999_999_999
			if invalid != (f.TimeNote != stages.TimeValid) || f.Time.Unix() != int64(ts[i][0]) {
				t.Errorf("nano %v frame %d: note %d, seconds %d, want invalid %v and seconds %d", nano, i+1, f.TimeNote, f.Time.Unix(), invalid, ts[i][0])
			}
		}
	}
}

// sprintTT formats a frame's time as tcpdump -tt does: SECONDS.FRACTION, the fraction in 6
// digits (9 for nanoseconds) or, when impossible, the field as written.
func sprintTT(f sensor.Frame, nano bool) string {
	frac, format := uint64(f.Time.Nanosecond()/1000), "%d.%06d"
	if nano {
		frac, format = uint64(f.Time.Nanosecond()), "%d.%09d"
	}
	if f.TimeNote == stages.TimeInvalidMicro || f.TimeNote == stages.TimeInvalidNano {
		frac = uint64(f.TimeFrac)
	}
	return fmt.Sprintf(format, f.Time.Unix(), frac)
}

// TestCaptureTimestampOverflow: pcapng timestamps past what a record's int64 nanoseconds hold
// (2^64-1 µs once printed as 1969-12-31) are noted as overflow, where tcpdump prints no date
// either; one inside the range is read as written.
func TestCaptureTimestampOverflow(t *testing.T) {
	sensortest.RequireTools(t, "tcpdump")
	stamps := []uint64{1441652914_000000, 1<<64 - 1, 253402300800_000000}
	data := ngSHB()
	data = append(data, ngIDB("lo")...)
	for _, ts := range stamps {
		data = append(data, ngEPB(ts)...)
	}
	out, _ := exec.Command("tcpdump", "-n", "-tt", "-r", writeTemp(t, "ts.pcapng", data)).Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "1441652914.000000 ") {
		t.Fatalf("tcpdump:\n%s", out)
	}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "1") || strings.HasPrefix(l, "2") {
			t.Fatalf("tcpdump printed a time for an overflowing timestamp: %s", l)
		}
	}
	frames := readFrames(t, data)
	if len(frames) != 3 || frames[0].TimeNote != stages.TimeValid || frames[0].Time.Unix() != 1441652914 {
		t.Fatalf("frames %+v", frames)
	}
	for i, f := range frames[1:] {
		if f.TimeNote != stages.TimeOverflow {
			t.Errorf("timestamp %d µs: note %d, time %v; want overflow", stamps[i+1], f.TimeNote, f.Time)
		}
	}
}

// TestCaptureInterfaceNames: the name of a packet's pcapng interface is the if_name tshark
// shows, for every pcapng test capture (they were read before pcapgo had read the blocks).
func TestCaptureInterfaceNames(t *testing.T) {
	sensortest.RequireTools(t, "tshark")
	checked := 0
	for _, file := range sensortest.PcapFiles(t) {
		if !strings.HasSuffix(file, ".pcapng") {
			continue
		}
		out, err := exec.Command("tshark", "-r", file, "-T", "fields", "-E", "separator=|", "-e", "frame.interface_id", "-e", "frame.interface_name").Output()
		if err != nil {
			continue // tshark refuses it: the damaged-file tests cover it
		}
		want := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		for i, w := range want {
			id, name, _ := strings.Cut(w, "|")
			switch {
			case id == "":
				want[i] = "-" // a Simple Packet Block: tshark names no interface (pcapng gives it the first)
			case name == "unknown":
				want[i] = "" // tshark's word for an interface block without if_name
			default:
				want[i] = name
			}
		}
		fh, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		c, err := sensor.OpenCapture(fh)
		if err != nil {
			fh.Close()
			continue
		}
		for {
			f, err := c.Next()
			if err != nil {
				break
			}
			i := int(f.Num) - 1 // frames of no packet are skipped, but numbered
			if i < len(want) && want[i] != "-" && c.IfaceName(f.Iface) != want[i] {
				t.Errorf("%s #%d: interface %q, tshark %q", filepath.Base(file), i+1, c.IfaceName(f.Iface), want[i])
			}
			checked++
		}
		fh.Close()
	}
	if checked == 0 {
		t.Fatal("no pcapng packet checked")
	}
}

// TestCaptureInterfaceBound: a pcapng section may declare MaxInterfaces interfaces; one more
// stops reading with an error that names the bound and the flag (a stream of interface blocks
// alone would otherwise grow without bound). A new section starts the count again.
func TestCaptureInterfaceBound(t *testing.T) {
	const max = 100
	var data []byte
	for range 2 { // two sections of max interfaces each, then a packet: fine
		data = append(data, ngSHB()...)
		for range max {
			data = append(data, ngIDB("x")...)
		}
	}
	data = append(data, ngEPB(1441652914_000000)...)
	c, err := sensor.OpenCaptureWith(bytes.NewReader(data), sensor.CaptureOptions{MaxInterfaces: max})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(); err != nil {
		t.Fatalf("%d interfaces per section: %v", max, err)
	}
	data = append(ngSHB(), bytes.Repeat(ngIDB("x"), max+1)...)
	data = append(data, ngEPB(1441652914_000000)...)
	c, err = sensor.OpenCaptureWith(bytes.NewReader(data), sensor.CaptureOptions{MaxInterfaces: max})
	if err == nil {
		_, err = c.Next()
	}
	var many sensor.ErrTooManyInterfaces
	if !errors.As(err, &many) || !strings.Contains(err.Error(), "--max-interfaces") {
		t.Fatalf("%d interfaces: %v", max+1, err)
	}
}

// repeatReader yields b n times.
type repeatReader struct {
	b   []byte
	n   int
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	k := 0
	for k < len(p) && r.n > 0 {
		c := copy(p[k:], r.b[r.off:])
		k, r.off = k+c, r.off+c
		if r.off == len(r.b) {
			r.off, r.n = 0, r.n-1
		}
	}
	if k == 0 {
		return 0, io.EOF
	}
	return k, nil
}

// TestCaptureMillionInterfaces: a section of 1M interface blocks (the README's memory stream)
// reads with the default bound, and the interfaces take a few bytes each on the heap (pcapgo
// kept some 850 bytes an interface: 850 MB).
func TestCaptureMillionInterfaces(t *testing.T) {
	if testing.Short() {
		t.Skip("1M interface blocks (32 MB) under -short")
	}
	const n = 1_000_000
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	in := io.MultiReader(bytes.NewReader(ngSHB()), &repeatReader{b: ngIDB("x"), n: n}, bytes.NewReader(ngEPB(1441652914_000000)))
	c, err := sensor.OpenCapture(in)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Next()
	if err != nil {
		t.Fatalf("%d interfaces: %v", n, err)
	}
	if f.Num != 1 || c.IfaceName(n-1) != "x" || c.IfaceName(n) != "" || len(c.LinkTypes()) != n {
		t.Fatalf("packet %d, interface %d named %q, %d link types", f.Num, n-1, c.IfaceName(n-1), len(c.LinkTypes()))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n; per > 24 {
		t.Errorf("%d bytes of heap an interface", per)
	}
	runtime.KeepAlive(c)
}
