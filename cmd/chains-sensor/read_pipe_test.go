package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestReadStdinPipeIsLive: from a pipe that stays open (a live tcpdump -w -), the packets
// read so far print promptly instead of waiting for a full buffer or the end of input.
func TestReadStdinPipeIsLive(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	// The file header and the first packet record (16-byte header + 74-byte frame here).
	first := 24 + 16 + int(binary.LittleEndian.Uint32(data[24+8:]))
	if _, err := pw.Write(data[:first]); err != nil {
		t.Fatal(err)
	}
	runMu.Lock()
	old := os.Stdin
	os.Stdin = pr
	var out, errb syncBuffer
	done := make(chan int)
	go func() { done <- run([]string{"chains-sensor", "read", "-n", "-"}, &out, &errb) }()
	deadline := time.Now().Add(2 * time.Second)
	for out.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := out.String()
	pw.Write(data[first:])
	pw.Close()
	code := <-done
	os.Stdin = old
	runMu.Unlock()
	if strings.Count(got, "\n") != 1 {
		t.Errorf("while the pipe was open: %q, want the first packet's line", got)
	}
	if code != 0 || strings.Count(out.String(), "\n") != 38 {
		t.Errorf("exit %d, %d lines in all, stderr %q", code, strings.Count(out.String(), "\n"), errb.String())
	}
}

// TestReadCountFromPipe: `-c 5` reading a pipe with reverse-DNS lookups on (a stage that reads
// ahead while it holds packets for their names) prints 5 packets and counts 5 seen, not every
// packet the pipe held (it once said "2000 seen, 2000 recorded").
func TestReadCountFromPipe(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sensortest.Pcaps(t), "chains", "dns.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go func() { pw.Write(data); pw.Close() }()
	runMu.Lock()
	old := os.Stdin
	os.Stdin = pr
	var out, errb syncBuffer
	// 127.0.0.1:9 (discard): nothing answers there, so every lookup ends refused at once.
	code := run([]string{"chains-sensor", "read", "-c", "5", "--dns-server", "127.0.0.1:9", "-"}, &out, &errb)
	os.Stdin = old
	runMu.Unlock()
	if m := countsLine.FindStringSubmatch(errb.String()); code != 0 || strings.Count(out.String(), "\n") != 5 || m == nil || m[1] != "5" || m[2] != "5" {
		t.Errorf("exit %d, %d lines, stderr:\n%s\nwant 0, 5 lines and 5 packets seen, 5 recorded", code, strings.Count(out.String(), "\n"), errb.String())
	}
}
