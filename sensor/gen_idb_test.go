package sensor_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteIDBStreams writes the pcapng streams the README's memory figures are measured on
// (`read -` beside tcpdump, under /usr/bin/time -v), into $CHAINS_BENCH_DIR:
//
//	idb-1m.pcapng       one section with 1,000,000 interface blocks, then one packet
//	sections-1m.pcapng  1,000,000 sections, each with one interface block and one packet
//	idb-1m-names.pcapng one section with 1,000,000 interface blocks named eth0 ... eth999999
//	idb-4m.pcapng       one section with 4,194,304 (the default --max-interfaces), then one packet
//
// Otherwise each interface block is named "x" (if_name): 32 bytes on disk.
func TestWriteIDBStreams(t *testing.T) {
	dir := os.Getenv("CHAINS_BENCH_DIR")
	if dir == "" {
		t.Skip("set CHAINS_BENCH_DIR to write the interface-block streams there")
	}
	const n = 1_000_000
	write := func(name string, blocks func(w *bufio.Writer)) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		blocks(w)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	idb, epb := ngIDB("x"), ngEPB(1441652914_000000)
	write("idb-1m.pcapng", func(w *bufio.Writer) {
		w.Write(ngSHB())
		for range n {
			w.Write(idb)
		}
		w.Write(epb)
	})
	write("idb-1m-names.pcapng", func(w *bufio.Writer) {
		w.Write(ngSHB())
		for i := range n {
			w.Write(ngIDB(fmt.Sprintf("eth%d", i)))
		}
		w.Write(epb)
	})
	write("idb-4m.pcapng", func(w *bufio.Writer) {
		w.Write(ngSHB())
		for range 1 << 22 {
			w.Write(idb)
		}
		w.Write(epb)
	})
	write("sections-1m.pcapng", func(w *bufio.Writer) {
		shb := ngSHB()
		for range n {
			w.Write(shb)
			w.Write(idb)
			w.Write(epb)
		}
	})
}
