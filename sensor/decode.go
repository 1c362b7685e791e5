package sensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/stages"
)

// ErrShortRecord is returned by Decode for a sample shorter than its record says.
var ErrShortRecord = errors.New("short record")

// Decoder turns ring-buffer samples (or the twin's output) into Packets.
type Decoder struct {
	// BootTime is added to the record's timestamp to make Unix time: the boot time in Unix ns
	// for live records (the kernel writes bpf_ktime_get_boot_ns), 0 for capture files.
	BootTime int64
	// Frames says the samples carry their frames (the programs were loaded with
	// Config.FrameSnap): Packet.Frame is set, and Payload points into it.
	Frames bool
}

// Record returns the record at the start of raw, copied (raw need not be aligned).
func Record(raw []byte) (gen.SensorRecord, error) {
	var r gen.SensorRecord
	if len(raw) < recordSize {
		return r, fmt.Errorf("%w: %d bytes, a record has %d", ErrShortRecord, len(raw), recordSize)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), recordSize), raw)
	return r, nil
}

// SampleLen returns the length of the sample r begins: the record, its extension when it has
// one, and its payload bytes.
func SampleLen(r *gen.SensorRecord) int {
	n := recordSize + int(r.SnapLen)
	if hasExt(r) {
		n += extSize
	}
	return n
}

// Decode fills p from one sample: the record, its extension when it has one, and the payload
// bytes after them. p.Payload aliases raw. Fields the record does not carry (Iface, Num) are
// left as they are. It does not allocate.
func (d Decoder) Decode(raw []byte, p *stages.Packet) error {
	r, err := Record(raw)
	if err != nil {
		return err
	}
	var x gen.SensorRecordExt
	start := recordSize
	if hasExt(&r) {
		if len(raw) < recordSize+extSize {
			return fmt.Errorf("%w: %d bytes, the record and its extension have %d", ErrShortRecord, len(raw), recordSize+extSize)
		}
		copy(extBytes(&x), raw[recordSize:])
		start += extSize
	}
	if d.Frames {
		if err := decodeFrame(raw, start, &r, p); err != nil {
			return err
		}
	} else {
		end := SampleLen(&r)
		if len(raw) < end {
			return fmt.Errorf("%w: %d bytes, the record says %d", ErrShortRecord, len(raw), end)
		}
		p.Payload = raw[start:end:end]
	}
	p.Time = time.Unix(0, d.BootTime+int64(r.TsNs))
	p.Ifindex = r.Ifindex
	p.Dir = stages.Direction(r.Dir)
	p.WireLen = r.WireLen
	p.Status = stages.Status(r.Status)
	p.BadLayer = stages.Layer(r.BadLayer)
	p.DstMAC = r.DstMac
	p.SrcMAC = r.SrcMac
	p.EtherType = r.EthProto
	p.VLANCount = r.VlanCount
	p.VLANs = [4]uint16{r.VlanTci[0], r.VlanTci[1], x.VlanTci[0], x.VlanTci[1]}
	p.ARPOp = r.ArpOp
	p.IPVersion = r.IpVersion
	p.Src, p.Dst = netip.Addr{}, netip.Addr{}
	switch {
	case r.IpVersion == 4 || (r.EthProto == stages.EtherTypeARP && r.Status == statusOK):
		p.Src = netip.AddrFrom4([4]byte(r.SrcAddr[:4]))
		p.Dst = netip.AddrFrom4([4]byte(r.DstAddr[:4]))
	case r.IpVersion == 6:
		p.Src = netip.AddrFrom16(r.SrcAddr)
		p.Dst = netip.AddrFrom16(r.DstAddr)
	}
	p.Proto = r.L4Proto
	p.TTL = r.Ttl
	p.TOS = r.Tos
	p.IPLen = r.IpLen
	p.IPID = r.IpId
	p.FragOff = r.FragOff
	p.IPFlags = r.IpFlags
	p.ExtMask = r.ExtMask
	p.FlowLabel = r.FlowLabel
	p.SrcPort, p.DstPort = r.Sport, r.Dport
	p.ICMPID, p.ICMPSeq = 0, 0
	if (r.IpVersion == 4 && r.L4Proto == protoICMP) || (r.IpVersion == 6 && r.L4Proto == protoICMPv6) {
		// The record keeps an echo's identifier and sequence number where ports go.
		p.ICMPID, p.ICMPSeq = r.Sport, r.Dport
		p.SrcPort, p.DstPort = 0, 0
	}
	p.Seq, p.Ack = r.Seq, r.Ack
	p.Window = r.Window
	p.TCPFlags = r.TcpFlags
	p.L4HdrLen = r.L4HdrLen
	p.UDPLen = r.UdpLen
	p.ICMPType, p.ICMPCode = r.IcmpType, r.IcmpCode
	p.PayloadOff = r.PayloadOff
	p.PayloadLen = sat16(r.PayloadLen)
	p.Tunnel = stages.Tunnel{}
	if r.TunDepth > 0 {
		p.Tunnel = stages.Tunnel{Type: stages.TunnelType(r.TunType), Inner: stages.TunnelType(x.TunInner),
			Depth: r.TunDepth, Flags: x.TunFlags, ID: x.TunId}
		if x.TunFlags&tunfIP6 != 0 {
			p.Tunnel.Src, p.Tunnel.Dst = netip.AddrFrom16(x.TunSrc), netip.AddrFrom16(x.TunDst)
		} else {
			p.Tunnel.Src = netip.AddrFrom4([4]byte(x.TunSrc[:4]))
			p.Tunnel.Dst = netip.AddrFrom4([4]byte(x.TunDst[:4]))
		}
	}
	return nil
}

// frameHeadSize is the size of struct frame_head, which precedes the frame in a sample of
// programs loaded with Config.FrameSnap.
const frameHeadSize = 8

// decodeFrame reads the frame a sample carries after its record and extension (at off):
// struct frame_head (cap_len, the bytes that belong in the capture; copied, the bytes that
// follow, cap_len or more when the payload reaches further), then the frame from its first
// byte. Frame is its first cap_len bytes, Payload the record's snap_len bytes at payload_off
// within it.
func decodeFrame(raw []byte, off int, r *gen.SensorRecord, p *stages.Packet) error {
	if len(raw) < off+frameHeadSize {
		return fmt.Errorf("%w: %d bytes, a record with its frame has at least %d", ErrShortRecord, len(raw), off+frameHeadSize)
	}
	capLen := binary.NativeEndian.Uint32(raw[off:])
	copied := binary.NativeEndian.Uint32(raw[off+4:])
	start := off + frameHeadSize
	end := start + int(copied)
	if capLen > copied || len(raw) < end {
		return fmt.Errorf("%w: %d bytes, the frame head says %d of %d captured", ErrShortRecord, len(raw), capLen, copied)
	}
	frame := raw[start:end:end]
	p.Frame = frame[:capLen:capLen]
	p.FrameLen = r.WireLen
	po, pe := int(r.PayloadOff), int(r.PayloadOff)+int(r.SnapLen)
	if pe > len(frame) {
		return fmt.Errorf("%w: payload at %d to %d, the sample holds %d bytes of frame", ErrShortRecord, po, pe, len(frame))
	}
	p.Payload = frame[po:pe:pe]
	return nil
}

// sat16 is v, or 65535 when larger (a jumbogram's payload length).
func sat16(v uint32) uint16 { return uint16(min(v, 0xffff)) }
