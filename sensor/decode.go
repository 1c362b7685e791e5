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

// Decode fills p from one sample: the record and the payload bytes after it. p.Payload aliases
// raw. Fields the record does not carry (Iface, Num) are left as they are. It does not allocate.
func (d Decoder) Decode(raw []byte, p *stages.Packet) error {
	r, err := Record(raw)
	if err != nil {
		return err
	}
	end := recordSize + int(r.SnapLen)
	if len(raw) < end {
		return fmt.Errorf("%w: %d bytes, the record says %d", ErrShortRecord, len(raw), end)
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
	p.VLANs = r.VlanTci
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
	p.Seq, p.Ack = r.Seq, r.Ack
	p.Window = r.Window
	p.TCPFlags = r.TcpFlags
	p.L4HdrLen = r.L4HdrLen
	p.UDPLen = r.UdpLen
	p.ICMPType, p.ICMPCode = r.IcmpType, r.IcmpCode
	p.ICMPID, p.ICMPSeq = r.IcmpId, r.IcmpSeq
	p.PayloadOff = r.PayloadOff
	p.PayloadLen = r.PayloadLen
	p.Payload = raw[recordSize:end:end]
	return nil
}
