package main

import (
	"os"
	"testing"
)

func TestWriteBenchCaptures(t *testing.T) {
	dir := os.Getenv("CHAINS_BENCH_DIR")
	if dir == "" {
		t.Skip("set CHAINS_BENCH_DIR to write the benchmark captures there")
	}
	writeCapture(t, dir+"/few.pcap", 300000, 20)
	writeCapture(t, dir+"/many.pcap", 300000, 65000)
}
