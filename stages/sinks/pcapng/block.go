// Package pcapng writes pcapng files (draft-ietf-opsawg-pcapng): a section header, an
// interface description per interface, an enhanced packet block per packet (nanosecond
// timestamps, the direction in epb_flags, a comment) and interface statistics at the end of
// each file, in files rotated as tcpdump rotates them (-C, -G, -W).
//
// gopacket's pcapgo has a pcapng writer, but it cannot write what a sensor's file needs: its
// statistics block knows only isb_ifrecv and isb_ifdrop (not isb_osdrop, the packets lost to
// a full ring, nor isb_filteraccept or isb_usrdeliv), and its buffered writer hands the file
// pieces of blocks, so a full disk leaves half a block at the end that cannot be cut back.
// The blocks here are built whole in memory and written whole (block.go); files.go decides
// where they go.
package pcapng

import (
	"encoding/binary"
	"time"
)

// Block types and option codes (draft-ietf-opsawg-pcapng, sections 4 and 3.5).
const (
	blockSHB = 0x0a0d0d0a
	blockIDB = 0x00000001
	blockISB = 0x00000005
	blockEPB = 0x00000006

	optEnd     = 0
	optComment = 1

	shbHardware = 2
	shbOS       = 3
	shbUserAppl = 4

	ifName        = 2
	ifDescription = 3
	ifTsresol     = 9
	ifFilter      = 11
	ifOS          = 12

	epbFlags = 2

	isbStartTime    = 2
	isbEndTime      = 3
	isbIfRecv       = 4
	isbIfDrop       = 5
	isbFilterAccept = 6
	isbOSDrop       = 7
	isbUsrDeliv     = 8

	byteOrderMagic = 0x1a2b3c4d
)

// Direction bits of epb_flags (bits 0-1).
const (
	FlagInbound  uint32 = 1
	FlagOutbound uint32 = 2
)

// MaxComment is the longest comment an option can carry: its length is 16 bits.
const MaxComment = 0xffff

// Section is what the section header says about the capture.
type Section struct {
	Hardware    string // shb_hardware
	OS          string // shb_os
	Application string // shb_userappl: the program and its version
	Comment     string // opt_comment: e.g. the host
}

// Interface is what an interface description block says. Timestamps are always in
// nanoseconds (if_tsresol 9).
type Interface struct {
	Name        string // if_name
	Description string // if_description
	LinkType    uint16 // LINKTYPE_* (1: Ethernet)
	SnapLen     uint32 // the most bytes of a packet captured (0: no limit)
	Filter      string // if_filter, as a libpcap expression
	OS          string // if_os
}

// Stats are the counts of an interface statistics block, each from the start of the capture.
// A count is written only when its Has bit is set.
type Stats struct {
	Has          StatsField
	Received     uint64 // isb_ifrecv: packets the capture saw on the interface
	IfDrop       uint64 // isb_ifdrop: packets the interface dropped
	FilterAccept uint64 // isb_filteraccept: packets the filter expression passed
	OSDrop       uint64 // isb_osdrop: packets the capture lost for want of buffer (a full ring)
	Delivered    uint64 // isb_usrdeliv: packets delivered to the program
	Comment      string
}

// StatsField says which counts of a Stats are known.
type StatsField uint8

// Stats fields.
const (
	HasReceived StatsField = 1 << iota
	HasIfDrop
	HasFilterAccept
	HasOSDrop
	HasDelivered
)

var le = binary.LittleEndian

// beginBlock appends a block header with a placeholder length; endBlock fills it in.
func beginBlock(b []byte, typ uint32) ([]byte, int) {
	start := len(b)
	b = le.AppendUint32(b, typ)
	return le.AppendUint32(b, 0), start
}

// endBlock appends the end-of-options option when options were written, the trailing length,
// and sets the leading one.
func endBlock(b []byte, start int, opts bool) []byte {
	if opts {
		b = le.AppendUint32(b, optEnd)
	}
	n := len(b) - start + 4
	le.PutUint32(b[start+4:], uint32(n))
	return le.AppendUint32(b, uint32(n))
}

// pad appends zeros up to a multiple of four bytes from n.
func pad(b []byte, n int) []byte {
	for ; n&3 != 0; n++ {
		b = append(b, 0)
	}
	return b
}

// appendOption appends option code with value v (at most MaxComment bytes are kept).
func appendOption[T string | []byte](b []byte, code uint16, v T) []byte {
	if len(v) > MaxComment {
		v = v[:MaxComment]
	}
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	return pad(b, len(v))
}

func appendStrOption(b []byte, code uint16, v string, any *bool) []byte {
	if v == "" {
		return b
	}
	*any = true
	return appendOption(b, code, v)
}

func appendU64Option(b []byte, code uint16, v uint64) []byte {
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, 8)
	return le.AppendUint64(b, v)
}

// appendTimestamp appends a timestamp as the blocks hold it: the upper 32 bits of the
// nanoseconds since 1970, then the lower 32.
func appendTimestamp(b []byte, ns int64) []byte {
	b = le.AppendUint32(b, uint32(uint64(ns)>>32))
	return le.AppendUint32(b, uint32(ns))
}

func appendTimeOption(b []byte, code uint16, t time.Time) []byte {
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, 8)
	return appendTimestamp(b, t.UnixNano())
}

// AppendSHB appends a section header block of unspecified length.
func AppendSHB(b []byte, s *Section) []byte {
	b, start := beginBlock(b, blockSHB)
	b = le.AppendUint32(b, byteOrderMagic)
	b = le.AppendUint16(b, 1) // major version
	b = le.AppendUint16(b, 0) // minor version
	b = le.AppendUint64(b, ^uint64(0))
	var opts bool
	b = appendStrOption(b, optComment, s.Comment, &opts)
	b = appendStrOption(b, shbHardware, s.Hardware, &opts)
	b = appendStrOption(b, shbOS, s.OS, &opts)
	b = appendStrOption(b, shbUserAppl, s.Application, &opts)
	return endBlock(b, start, opts)
}

// AppendIDB appends an interface description block, with if_tsresol 9 (nanoseconds).
func AppendIDB(b []byte, ifc *Interface) []byte {
	b, start := beginBlock(b, blockIDB)
	b = le.AppendUint16(b, ifc.LinkType)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, ifc.SnapLen)
	opts := true
	b = appendStrOption(b, ifName, ifc.Name, &opts)
	b = appendStrOption(b, ifDescription, ifc.Description, &opts)
	b = appendOption(b, ifTsresol, []byte{9})
	if ifc.Filter != "" {
		// The first byte says what follows: 0, a libpcap filter string.
		b = le.AppendUint16(b, ifFilter)
		b = le.AppendUint16(b, uint16(1+len(ifc.Filter)))
		b = append(b, 0)
		b = append(b, ifc.Filter...)
		b = pad(b, 1+len(ifc.Filter))
	}
	b = appendStrOption(b, ifOS, ifc.OS, &opts)
	return endBlock(b, start, opts)
}

// EPB is one packet for AppendEPB.
type EPB struct {
	Iface   int    // the interface's number in the section (its IDB's order)
	TS      int64  // nanoseconds since 1970
	WireLen uint32 // the packet's length on the wire (at least len(Data))
	Flags   uint32 // epb_flags; 0: none written
	Data    []byte // the captured bytes
	Comment []byte // opt_comment; empty: none
}

// AppendEPB appends an enhanced packet block.
func AppendEPB(b []byte, p *EPB) []byte {
	b, start := beginBlock(b, blockEPB)
	b = le.AppendUint32(b, uint32(p.Iface))
	b = appendTimestamp(b, p.TS)
	b = le.AppendUint32(b, uint32(len(p.Data)))
	b = le.AppendUint32(b, max(p.WireLen, uint32(len(p.Data))))
	b = append(b, p.Data...)
	b = pad(b, len(p.Data))
	opts := false
	if p.Flags != 0 {
		opts = true
		b = le.AppendUint16(b, epbFlags)
		b = le.AppendUint16(b, 4)
		b = le.AppendUint32(b, p.Flags)
	}
	if len(p.Comment) > 0 {
		opts = true
		b = appendOption(b, optComment, p.Comment)
	}
	return endBlock(b, start, opts)
}

// AppendISB appends an interface statistics block for interface iface at time now, counting
// from start.
func AppendISB(b []byte, iface int, now, start time.Time, s *Stats) []byte {
	b, begin := beginBlock(b, blockISB)
	b = le.AppendUint32(b, uint32(iface))
	b = appendTimestamp(b, now.UnixNano())
	opts := true
	b = appendStrOption(b, optComment, s.Comment, &opts)
	b = appendTimeOption(b, isbStartTime, start)
	b = appendTimeOption(b, isbEndTime, now)
	for _, c := range [...]struct {
		has  StatsField
		code uint16
		v    uint64
	}{
		{HasReceived, isbIfRecv, s.Received},
		{HasIfDrop, isbIfDrop, s.IfDrop},
		{HasFilterAccept, isbFilterAccept, s.FilterAccept},
		{HasOSDrop, isbOSDrop, s.OSDrop},
		{HasDelivered, isbUsrDeliv, s.Delivered},
	} {
		if s.Has&c.has != 0 {
			b = appendU64Option(b, c.code, c.v)
		}
	}
	return endBlock(b, begin, opts)
}
