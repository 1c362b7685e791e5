package sensor

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/gopacket/gopacket/pcapgo"
)

// ngDiff reads data with the pcapng reader and with pcapgo's NgReader (the oracle) and returns
// where they first differ ("" where they agree): the packets (bytes, time, captured and wire
// lengths, interface), the packet's interface (link type, snap length, name, description,
// filter, OS), how many interfaces are declared, and whether reading ends in an error.
func ngDiff(data []byte, limit int) string {
	ours, oerr := newNgReader(bufio.NewReader(bytes.NewReader(data)), DefaultMaxInterfaces)
	theirs, terr := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if (oerr == nil) != (terr == nil) {
		return fmt.Sprintf("open: ours %v, pcapgo %v", oerr, terr)
	}
	if oerr != nil {
		return ""
	}
	for n := 1; n <= limit; n++ {
		od, oci, oerr := ours.next()
		td, tci, terr := theirs.ZeroCopyReadPacketData()
		if errors.Is(terr, io.EOF) && !errors.Is(terr, io.ErrUnexpectedEOF) && len(td) == 0 {
			if !errors.Is(oerr, io.EOF) {
				return fmt.Sprintf("packet %d: ours %v, pcapgo the end of the file", n, oerr)
			}
			break
		}
		if (oerr == nil) != (terr == nil) || errors.Is(oerr, io.EOF) {
			return fmt.Sprintf("packet %d: ours %v, pcapgo %v", n, oerr, terr)
		}
		if oerr != nil {
			break
		}
		tci.AncillaryData = nil
		if !bytes.Equal(od, td) || !oci.Timestamp.Equal(tci.Timestamp) || fmt.Sprint(oci) != fmt.Sprint(tci) {
			return fmt.Sprintf("packet %d: ours %v %x, pcapgo %v %x", n, oci, od, tci, td)
		}
		if ours.NInterfaces() != theirs.NInterfaces() {
			return fmt.Sprintf("packet %d: ours %d interfaces, pcapgo %d", n, ours.NInterfaces(), theirs.NInterfaces())
		}
		oi, _ := ours.Interface(oci.InterfaceIndex)
		ti, _ := theirs.Interface(tci.InterfaceIndex)
		want := CaptureInterface{Name: ti.Name, Description: ti.Description, Filter: ti.Filter, OS: ti.OS,
			LinkType: ti.LinkType, SnapLen: ti.SnapLength}
		if oi != want {
			return fmt.Sprintf("packet %d: interface %d: ours %+v, pcapgo %+v", n, oci.InterfaceIndex, oi, want)
		}
	}
	return ""
}

// ngFiles returns the pcapng test captures, damaged ones included.
func ngFiles(t testing.TB) []string {
	var files []string
	root := sensortest.Pcaps(t)
	for _, sub := range []string{"chains", "protocols", "malformed"} {
		m, err := filepath.Glob(filepath.Join(root, sub, "*.pcapng"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no pcapng captures")
	}
	return files
}

// TestPcapngReadVsPcapgo: every pcapng test capture, and the crafted streams below, read as
// pcapgo reads them.
func TestPcapngReadVsPcapgo(t *testing.T) {
	for _, file := range ngFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if d := ngDiff(data, 1<<20); d != "" {
			t.Errorf("%s: %s", filepath.Base(file), d)
		}
	}
	for name, data := range ngCrafted() {
		if d := ngDiff(data, 1<<20); d != "" {
			t.Errorf("%s: %s", name, d)
		}
	}
}

// ngCrafted returns streams for what the test captures lack: big-endian sections, timestamp
// resolutions and offsets, names that repeat and change, the obsolete packet block, simple
// packets cut to the snap length, statistics and name records, and lengths that lie.
func ngCrafted() map[string][]byte {
	type byteOrder interface {
		binary.ByteOrder
		binary.AppendByteOrder
	}
	le, be := byteOrder(binary.LittleEndian), byteOrder(binary.BigEndian)
	blk := func(o byteOrder, typ uint32, body ...[]byte) []byte {
		b := bytes.Join(body, nil)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		n := uint32(12 + len(b))
		out := o.AppendUint32(o.AppendUint32(nil, typ), n)
		return o.AppendUint32(append(out, b...), n)
	}
	opt := func(o byteOrder, code uint16, v []byte) []byte {
		b := o.AppendUint16(o.AppendUint16(nil, code), uint16(len(v)))
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	end := []byte{0, 0, 0, 0}
	shb := func(o byteOrder) []byte {
		return blk(o, ngBlockSHB, o.AppendUint32(nil, ngBOM), o.AppendUint16(o.AppendUint16(nil, 1), 0),
			o.AppendUint64(nil, ^uint64(0)), opt(o, 4, []byte("test")), end)
	}
	idb := func(o byteOrder, link uint16, snap uint32, opts ...[]byte) []byte {
		return blk(o, ngBlockIDB, o.AppendUint32(o.AppendUint16(o.AppendUint16(nil, link), 0), snap), bytes.Join(opts, nil), end)
	}
	frame := bytes.Repeat([]byte{0xaa}, 60)
	epb := func(o byteOrder, id uint32, ts uint64, opts ...[]byte) []byte {
		h := o.AppendUint32(nil, id)
		h = o.AppendUint32(o.AppendUint32(h, uint32(ts>>32)), uint32(ts))
		h = o.AppendUint32(o.AppendUint32(h, uint32(len(frame))), 1500)
		return blk(o, ngBlockEPB, h, frame, bytes.Join(opts, nil))
	}
	pb := func(o byteOrder, id uint16, ts uint64) []byte {
		h := o.AppendUint16(o.AppendUint16(nil, id), 0)
		h = o.AppendUint32(o.AppendUint32(h, uint32(ts>>32)), uint32(ts))
		h = o.AppendUint32(o.AppendUint32(h, uint32(len(frame))), 61)
		return blk(o, ngBlockPB, h, frame)
	}
	spb := func(o byteOrder) []byte { return blk(o, ngBlockSPB, o.AppendUint32(nil, 60), frame) }
	isb := func(o byteOrder, id uint32) []byte {
		return blk(o, ngBlockISB, o.AppendUint32(nil, id), make([]byte, 8), opt(o, 4, make([]byte, 8)), end)
	}
	nrb := func(o byteOrder, recs ...[]byte) []byte { return blk(o, ngBlockNRB, bytes.Join(recs, nil)) }
	cat := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	m := map[string][]byte{}
	for _, o := range []byteOrder{le, be} {
		p := fmt.Sprint(o) + " "
		ts := uint64(1441652914_123456)
		m[p+"names"] = cat(shb(o), idb(o, 1, 0, opt(o, 2, []byte("eth0"))), idb(o, 1, 0, opt(o, 2, []byte("eth0"))),
			idb(o, 1, 0, opt(o, 2, []byte("lo")), opt(o, 3, []byte("loopback")), opt(o, 11, []byte("\x00tcp")), opt(o, 12, []byte("Linux"))),
			idb(o, 113, 0), idb(o, 1, 0, opt(o, 2, nil)), epb(o, 0, ts), epb(o, 1, ts), epb(o, 2, ts), epb(o, 3, ts), epb(o, 4, ts))
		m[p+"resolutions"] = cat(shb(o), idb(o, 1, 0, opt(o, 9, []byte{9})), idb(o, 1, 0, opt(o, 9, []byte{0x80 | 20})),
			idb(o, 1, 0, opt(o, 9, []byte{3}), opt(o, 14, o.AppendUint64(nil, 1000))), idb(o, 1, 0, opt(o, 9, []byte{0x80 | 63})),
			idb(o, 1, 0, opt(o, 9, []byte{19})), idb(o, 1, 0, opt(o, 9, nil), opt(o, 14, []byte{1})),
			epb(o, 0, ts), epb(o, 1, ts), epb(o, 2, ts), epb(o, 3, ^uint64(0)), epb(o, 4, ts), epb(o, 5, ts))
		m[p+"resolution too fine"] = cat(shb(o), idb(o, 1, 0, opt(o, 9, []byte{64})), epb(o, 0, ts))
		m[p+"binary resolution too fine"] = cat(shb(o), idb(o, 1, 0, opt(o, 9, []byte{0x80 | 64})), epb(o, 0, ts))
		m[p+"old blocks"] = cat(shb(o), idb(o, 1, 32), spb(o), pb(o, 0, ts), isb(o, 0), nrb(o, opt(o, 1, []byte{10, 0, 0, 1, 'a', 0}), end),
			blk(o, 0x0a, make([]byte, 8)), blk(o, 0x40000bad, []byte("custom")), epb(o, 0, ts))
		m[p+"sections"] = cat(shb(o), idb(o, 1, 0, opt(o, 2, []byte("a"))), epb(o, 0, ts), shb(o), epb(o, 0, ts))
		m[p+"second section"] = cat(shb(o), idb(o, 1, 0), shb(o), idb(o, 101, 0, opt(o, 2, []byte("b"))), epb(o, 0, ts))
		m[p+"id out of range"] = cat(shb(o), idb(o, 1, 0), epb(o, 0, ts), epb(o, 1, ts))
		m[p+"pb id out of range"] = cat(shb(o), idb(o, 1, 0), pb(o, 1, ts))
		m[p+"isb id out of range"] = cat(shb(o), idb(o, 1, 0), isb(o, 3), epb(o, 0, ts))
		m[p+"spb first"] = cat(shb(o), spb(o))
		m[p+"nrb short"] = cat(shb(o), idb(o, 1, 0), nrb(o, opt(o, 2, []byte{1, 2}), end), epb(o, 0, ts))
		m[p+"nrb no end"] = cat(shb(o), idb(o, 1, 0), nrb(o, opt(o, 99, []byte{1, 2})), epb(o, 0, ts))
		m[p+"end of options not empty"] = cat(shb(o), idb(o, 1, 0, opt(o, 0, []byte{1})), epb(o, 0, ts))
		m[p+"bad version"] = cat(blk(o, ngBlockSHB, o.AppendUint32(nil, ngBOM), o.AppendUint16(o.AppendUint16(nil, 1), 2), make([]byte, 8)), idb(o, 1, 0))
		lie := epb(o, 0, ts)
		o.PutUint32(lie[4:], 40) // shorter than its packet
		m[p+"block shorter than its packet"] = cat(shb(o), idb(o, 1, 0), lie, epb(o, 0, ts))
		tiny := blk(o, 0x99, nil)
		o.PutUint32(tiny[4:], 4)
		m[p+"block shorter than its header"] = cat(shb(o), idb(o, 1, 0), tiny, epb(o, 0, ts))
		huge := epb(o, 0, ts)
		o.PutUint32(huge[20:], 1<<30) // a captured length past the end of the file
		o.PutUint32(huge[4:], 1<<31)
		m[p+"packet past the end"] = cat(shb(o), idb(o, 1, 0), huge)
		m[p+"cut"] = cat(shb(o), idb(o, 1, 0), epb(o, 0, ts))[:100]
		m[p+"cut header"] = cat(shb(o), idb(o, 1, 0), epb(o, 0, ts), []byte{6, 0, 0})
		long := idb(o, 1, 0, opt(o, 2, []byte("eth0")))
		o.PutUint16(long[18:], 200) // an option longer than its block
		m[p+"option past the block"] = cat(shb(o), long, epb(o, 0, ts))
		unaligned := blk(o, 0x99, nil)
		o.PutUint32(unaligned[4:], 13)
		m[p+"unaligned"] = cat(shb(o), idb(o, 1, 0), unaligned, []byte{0, 0, 0})
	}
	var long [][]byte // names past a chunk of the arena
	long = append(long, shb(le))
	for i := range 40 {
		long = append(long, idb(le, 1, 0, opt(le, 2, bytes.Repeat([]byte{'a' + byte(i%26)}, 60000+i)), opt(le, 14, le.AppendUint64(nil, uint64(i)))))
	}
	for i := range 40 {
		long = append(long, epb(le, uint32(39-i), 1e6))
	}
	m["long names"] = cat(long...)
	bom := shb(le)
	bom[8] = 0x4e
	m["bad byte order"] = cat(bom, idb(le, 1, 0))
	m["byte order changes"] = cat(shb(le), idb(le, 1, 0), epb(le, 0, 1), shb(be), idb(be, 1, 0), epb(be, 0, 2))
	return m
}

// FuzzPcapngRead: mutated pcapng streams, seeded from the test captures, read as pcapgo reads
// them (and never a panic or a hang).
func FuzzPcapngRead(f *testing.F) {
	for _, file := range ngFiles(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if len(data) <= 1<<16 {
			f.Add(data)
		}
	}
	for _, data := range ngCrafted() {
		if len(data) <= 1<<16 {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 || !bytes.Equal(data[:4], []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
			return // not pcapng: the capture never gives it to this reader
		}
		if d := ngDiff(data, 4096); d != "" {
			t.Error(d)
		}
	})
}

// TestPcapngNamesBound: a section's interface strings stop at maxIfaceStrings with an error,
// and interfaces in a row with the same name take its bytes once.
func TestPcapngNamesBound(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB of names under -short")
	}
	ng := &ngReader{max: DefaultMaxInterfaces}
	ng.strs[0] = bytes.Repeat([]byte{'a'}, 60000)
	var ifc ngIface
	for range 1000 {
		if err := ng.keepExtra(&ifc, 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(ng.arena) != 1 || ifc.extra != 1 {
		t.Fatalf("1000 interfaces of one name: %d chunks, record %d", len(ng.arena), ifc.extra)
	}
	var err error
	for i := 0; err == nil && i < 2*maxIfaceStrings/60000; i++ {
		ng.strs[0][0], ng.strs[0][1] = byte(i), byte(i>>8)
		err = ng.keepExtra(&ifc, 0)
	}
	if err == nil || !strings.Contains(err.Error(), "64 MiB") {
		t.Fatalf("past the bound: %v", err)
	}
	if got := len(ng.arena) * ngArenaChunk; got > maxIfaceStrings {
		t.Fatalf("%d bytes of chunks", got)
	}
}

// BenchmarkPcapngRead: the reader beside pcapgo's NgReader on a stream of 10,000 packets of
// 60 bytes (ns a packet).
func BenchmarkPcapngRead(b *testing.B) {
	stream := ngCrafted()["LittleEndian names"]
	packet := stream[len(stream)-92:] // the last enhanced packet block: interface 4
	stream = append(stream[:len(stream)-92:len(stream)-92], bytes.Repeat(packet, 10000)...)
	b.Run("ours", func(b *testing.B) {
		for b.Loop() {
			ng, err := newNgReader(bufio.NewReader(bytes.NewReader(stream)), DefaultMaxInterfaces)
			for err == nil {
				_, _, err = ng.next()
			}
			if err != io.EOF {
				b.Fatal(err)
			}
		}
	})
	b.Run("pcapgo", func(b *testing.B) {
		for b.Loop() {
			ng, err := pcapgo.NewNgReader(bytes.NewReader(stream), pcapgo.NgReaderOptions{WantMixedLinkType: true})
			for err == nil {
				_, _, err = ng.ZeroCopyReadPacketData()
			}
			if err != io.EOF {
				b.Fatal(err)
			}
		}
	})
}
