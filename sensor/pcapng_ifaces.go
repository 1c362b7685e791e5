package sensor

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/gopacket/gopacket/layers"
)

// The pcapng reader's interface table: 12 bytes an interface in chunks that are never copied,
// and an arena of the interfaces' timestamp offsets and strings.

// iface returns interface i of the section (i < ng.n).
func (ng *ngReader) iface(i int) *ngIface { return &ng.ifaces[i/ngChunk][i%ngChunk] }

// keepExtra puts the interface's timestamp offset and strings in the arena, once for
// interfaces in a row that repeat them. The arena is in chunks of ngArenaChunk bytes, filled
// and never copied; a record (at most 4 × 64 KiB) does not straddle two.
func (ng *ngReader) keepExtra(ifc *ngIface, tsoff uint64) error {
	if tsoff == 0 && len(ng.strs[0])+len(ng.strs[1])+len(ng.strs[2])+len(ng.strs[3]) == 0 {
		return nil
	}
	rec := binary.AppendUvarint(ng.rec[:0], tsoff)
	for _, s := range ng.strs {
		rec = binary.AppendUvarint(rec, uint64(len(s)))
		rec = append(rec, s...)
	}
	ng.rec = rec
	if ng.last != 0 && len(rec) == ng.lastLen && bytes.Equal(ng.record(ng.last)[:len(rec)], rec) {
		ifc.extra = ng.last
		return nil
	}
	k := len(ng.arena) - 1
	if k < 0 || ngArenaChunk-len(ng.arena[k]) < len(rec) {
		if (k+2)*ngArenaChunk > maxIfaceStrings {
			return fmt.Errorf("the pcapng section's interface blocks hold more than %d MiB of names, descriptions and filters: more than any capture has", maxIfaceStrings>>20)
		}
		ng.arena = append(ng.arena, make([]byte, 0, ngArenaChunk))
		k++
	}
	ng.last = uint32(k*ngArenaChunk+len(ng.arena[k])) + 1
	ng.lastLen = len(rec)
	ng.arena[k] = append(ng.arena[k], rec...)
	ifc.extra = ng.last
	return nil
}

// ngArenaChunk is the size of a chunk of the interfaces' arena.
const ngArenaChunk = 1 << 20

// record returns the arena from the record extra x names to the end of its chunk.
func (ng *ngReader) record(x uint32) []byte {
	off := int(x - 1)
	return ng.arena[off/ngArenaChunk][off%ngArenaChunk:]
}

// extra returns interface i's timestamp offset and its strings (name, description, filter, OS).
func (ng *ngReader) extra(i int) (uint64, [4]string) {
	var s [4]string
	x := ng.iface(i).extra
	if x == 0 {
		return 0, s
	}
	b := ng.record(x)
	tsoff, k := binary.Uvarint(b)
	b = b[k:]
	for j := range s {
		n, k := binary.Uvarint(b)
		s[j], b = string(b[k:k+int(n)]), b[k+int(n):]
	}
	return tsoff, s
}

// tsoffset returns interface i's if_tsoffset, without making its strings.
func (ng *ngReader) tsoffset(i int) uint64 {
	if x := ng.iface(i).extra; x != 0 {
		v, _ := binary.Uvarint(ng.record(x))
		return v
	}
	return 0
}

// NInterfaces returns how many interfaces the current section has declared so far.
func (ng *ngReader) NInterfaces() int { return ng.n }

// Interface returns what the current section says of interface i.
func (ng *ngReader) Interface(i int) (CaptureInterface, bool) {
	if i < 0 || i >= ng.n {
		return CaptureInterface{}, false
	}
	_, s := ng.extra(i)
	ifc := ng.iface(i)
	return CaptureInterface{Name: s[0], Description: s[1], Filter: s[2], OS: s[3],
		LinkType: layers.LinkType(ifc.link), SnapLen: ifc.snap}, true
}
