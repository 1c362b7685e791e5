package sensor

import (
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

// SampleLen returns the length of the sample r begins: the record, its extension and its
// owner when it has them, and its payload bytes.
func SampleLen(r *gen.SensorRecord) int {
	n := recordSize + int(r.SnapLen)
	if hasExt(r) {
		n += extSize
	}
	if hasOwner(r) {
		n += ownerSize
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
	end := SampleLen(&r)
	if len(raw) < end {
		return fmt.Errorf("%w: %d bytes, the record says %d", ErrShortRecord, len(raw), end)
	}
	var x gen.SensorRecordExt
	start := recordSize
	if hasExt(&r) {
		copy(extBytes(&x), raw[recordSize:])
		start += extSize
	}
	p.Owner = stages.Owner{}
	if hasOwner(&r) {
		var o gen.SensorRecordOwner
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&o)), ownerSize), raw[start:])
		start += ownerSize
		p.Owner.PID, p.Owner.UID, p.Owner.CgroupID = o.Pid, o.Uid, o.CgroupId
		p.Owner.Comm = *(*[16]byte)(unsafe.Pointer(&o.Comm))
	}
	p.Time = time.Unix(0, d.BootTime+int64(r.TsNs))
	p.Ifindex = r.Ifindex
	p.Dir = stages.Direction(r.Dir &^ dirOwner)
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
	p.Payload = raw[start:end:end]
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

// sat16 is v, or 65535 when larger (a jumbogram's payload length).
func sat16(v uint32) uint16 { return uint16(min(v, 0xffff)) }
