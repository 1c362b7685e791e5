package stages

import (
	"bufio"
	"errors"
	"io"
	"iter"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Sink is the end of a chain: it writes each packet (or what a view makes of it) to an Output.
// Write is called once per packet, in order, from one goroutine; it must not keep p. Close is
// called once at the end of input: the sink prints anything it still holds (a flows view its
// open flows) and flushes its Output.
type Sink interface {
	Write(p *Packet) error
	Close() error
}

// Output is the buffered destination of a sink. Sinks build a whole line (or block) in their
// own buffer and hand it over with one Write. A live Output is flushed by a timer at least every
// FlushInterval, so a lone packet still prints promptly; a file Output only when its buffer is
// full and on Close.
type Output struct {
	w    *bufio.Writer
	live bool
	mu   sync.Mutex
	err  error
	stop chan struct{}
	done chan struct{}
}

// FlushInterval is how often a live Output flushes what it holds.
const FlushInterval = 50 * time.Millisecond

// NewOutput wraps w in a 64 KiB buffer; live starts the flush timer.
func NewOutput(w io.Writer, live bool) *Output {
	o := &Output{w: bufio.NewWriterSize(w, 64<<10), live: live}
	if live {
		o.stop = make(chan struct{})
		o.done = make(chan struct{})
		go o.flusher()
	}
	return o
}

func (o *Output) flusher() {
	defer close(o.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			o.mu.Lock()
			if o.w.Buffered() > 0 && o.err == nil {
				o.err = o.w.Flush()
			}
			o.mu.Unlock()
		}
	}
}

// Write appends b to the buffer. It returns the first write error the Output met.
func (o *Output) Write(b []byte) error {
	if o.live {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	if o.err != nil {
		return o.err
	}
	_, o.err = o.w.Write(b)
	return o.err
}

// Flush writes out what is buffered.
func (o *Output) Flush() error {
	if o.live {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	if o.err == nil {
		o.err = o.w.Flush()
	}
	return o.err
}

// Close stops the flush timer and flushes. It is safe to call twice.
func (o *Output) Close() error {
	if o.live && o.stop != nil {
		close(o.stop)
		<-o.done
		o.stop = nil
	}
	return o.Flush()
}

// ErrLimit is returned by Run when it stopped because the packet limit was reached.
var ErrLimit = errors.New("packet limit reached")

// Run pulls src through stage into sink until src ends, the sink fails, or limit packets (0: no
// limit) were written. It returns how many packets the sink got. It does not close the sink.
func Run(src iter.Seq[*Packet], stage Stage, sink Sink, limit uint64) (uint64, error) {
	var n uint64
	if stage != nil {
		src = stage(src)
	}
	for p := range src {
		if err := sink.Write(p); err != nil {
			return n, err
		}
		n++
		if limit != 0 && n >= limit {
			break
		}
	}
	return n, nil
}

// Colours of the text sinks (ANSI SGR sequences).
const (
	colReset   = "\x1b[0m"
	colDim     = "\x1b[2m"
	colBold    = "\x1b[1m"
	colRed     = "\x1b[31m"
	colGreen   = "\x1b[32m"
	colYellow  = "\x1b[33m"
	colBlue    = "\x1b[34m"
	colMagenta = "\x1b[35m"
	colCyan    = "\x1b[36m"
)

// clock formats timestamps, reformatting the date and time only when the second changes.
type clock struct {
	utc  bool
	sec  int64
	loc  *time.Location
	date [19]byte // YYYY-MM-DD HH:MM:SS
	zone []byte   // Z or +hh:mm, for RFC 3339
}

func newClock(utc bool) *clock {
	c := &clock{utc: utc, sec: -1 << 62, loc: time.Local}
	if utc {
		c.loc = time.UTC
	}
	return c
}

func (c *clock) update(t time.Time) {
	sec := t.Unix()
	if sec == c.sec {
		return
	}
	c.sec = sec
	t = t.In(c.loc)
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	b := c.date[:0]
	b = append4(b, y)
	b = append(b, '-')
	b = append2(b, int(mo))
	b = append(b, '-')
	b = append2(b, d)
	b = append(b, ' ')
	b = append2(b, h)
	b = append(b, ':')
	b = append2(b, mi)
	b = append(b, ':')
	append2(b, s)
	_, off := t.Zone()
	c.zone = c.zone[:0]
	if off == 0 && c.utc {
		c.zone = append(c.zone, 'Z')
	} else {
		sign := byte('+')
		if off < 0 {
			sign, off = '-', -off
		}
		c.zone = append(c.zone, sign)
		c.zone = append2(c.zone, off/3600)
		c.zone = append(c.zone, ':')
		c.zone = append2(c.zone, off/60%60)
	}
}

// appendSeconds appends "YYYY-MM-DD HH:MM:SS".
func (c *clock) appendSeconds(b []byte, t time.Time) []byte {
	c.update(t)
	return append(b, c.date[:]...)
}

// appendMicro appends "YYYY-MM-DD HH:MM:SS.ffffff".
func (c *clock) appendMicro(b []byte, t time.Time) []byte {
	b = c.appendSeconds(b, t)
	return appendFrac(b, t.Nanosecond())
}

// appendRFC3339 appends "YYYY-MM-DDTHH:MM:SS.ffffff" and the zone ("Z" with --utc).
func (c *clock) appendRFC3339(b []byte, t time.Time) []byte {
	c.update(t)
	n := len(b)
	b = append(b, c.date[:]...)
	b[n+10] = 'T'
	b = appendFrac(b, t.Nanosecond())
	return append(b, c.zone...)
}

// appendFrac appends ".ffffff", or nine digits when the nanoseconds need them.
func appendFrac(b []byte, ns int) []byte {
	digits, v := 6, ns/1000
	if ns%1000 != 0 {
		digits, v = 9, ns
	}
	b = append(b, '.')
	var tmp [9]byte
	for i := digits - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, tmp[:digits]...)
}

func append2(b []byte, v int) []byte {
	return append(b, byte('0'+v/10%10), byte('0'+v%10))
}

func append4(b []byte, v int) []byte {
	if v < 0 || v > 9999 {
		return strconv.AppendInt(b, int64(v), 10)
	}
	return append(b, byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
}

// protoNames holds the net_watch TRANSPORT token for every IP protocol number.
var protoNames = func() (t [256]string) {
	known := map[int]string{
		0: "HOPOPT", 1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 8: "EGP", 9: "IGP", 17: "UDP",
		27: "RDP", 33: "DCCP", 41: "IPV6", 43: "IPV6-ROUTE", 44: "IPV6-FRAG", 46: "RSVP", 47: "GRE",
		50: "ESP", 51: "AH", 58: "ICMP6", 59: "IPV6-NONXT", 60: "IPV6-OPTS", 88: "EIGRP", 89: "OSPF",
		94: "IPIP", 97: "ETHERIP", 103: "PIM", 108: "IPCOMP", 112: "VRRP", 115: "L2TP", 132: "SCTP",
		135: "MOBILITY", 136: "UDPLITE", 137: "MPLS",
	}
	for i := range t {
		if n, ok := known[i]; ok {
			t[i] = n
		} else {
			t[i] = "PROTO-" + strconv.Itoa(i)
		}
	}
	return t
}()

// ProtoName returns the name of an IP protocol number as the sinks print it (TCP, UDP, ICMP,
// ICMP6, GRE, ..., PROTO-<n>).
func ProtoName(p uint8) string { return protoNames[p] }

// NetworkName returns the net_watch NETWORK token of a packet: IP, IP6, ARP, or the
// ethertype's name (LLDP, ...) or hexadecimal value.
func NetworkName(p *Packet) string {
	switch p.EtherType {
	case EtherTypeIPv4:
		return "IP"
	case EtherTypeIPv6:
		return "IP6"
	case EtherTypeARP:
		return "ARP"
	}
	switch p.IPVersion {
	case 4:
		return "IP"
	case 6:
		return "IP6"
	}
	if p.EtherType < 0x0600 {
		return llcName(p.Payload) // an 802.3 frame: its LLC header, the payload, names it
	}
	if n, ok := etherNames[p.EtherType]; ok {
		return n
	}
	return ""
}

// llcName names the protocol an 802.3 frame's LLC header (DSAP, SSAP, control, and for SNAP
// an OUI and protocol id) says it carries.
func llcName(b []byte) string {
	switch {
	case len(b) >= 2 && b[0] == 0xff && b[1] == 0xff:
		return "IPX" // Novell's raw 802.3
	case len(b) >= 8 && b[0] == 0xaa && b[1] == 0xaa && b[2] == 0x03:
		if b[3] == 0x00 && b[4] == 0x00 && b[5] == 0x0c { // Cisco
			switch uint16(b[6])<<8 | uint16(b[7]) {
			case 0x2000:
				return "CDP"
			case 0x2003:
				return "VTP"
			case 0x2004:
				return "DTP"
			case 0x010b:
				return "STP" // PVST+
			case 0x0111:
				return "UDLD"
			}
		}
		return "SNAP"
	case len(b) >= 1:
		switch b[0] {
		case 0x42:
			return "STP"
		case 0xe0:
			return "IPX"
		case 0xf0:
			return "NETBIOS"
		case 0xfe:
			return "OSI"
		}
	}
	return "LLC"
}

var etherNames = map[uint16]string{
	0x8035: "RARP", 0x809b: "APPLETALK", 0x8100: "VLAN", 0x8137: "IPX", 0x8847: "MPLS",
	0x8848: "MPLS", 0x8863: "PPPOE-DISC", 0x8864: "PPPOE", 0x880b: "PPP", 0x888e: "EAPOL", 0x88a8: "VLAN",
	0x88cc: "LLDP", 0x88e5: "MACSEC", 0x88f7: "PTP", 0x8906: "FCOE", 0x9000: "LOOPBACK",
}

// appendNetwork appends NetworkName, or "ETHER-0x...." for an unnamed ethertype.
func appendNetwork(b []byte, p *Packet) []byte {
	if n := NetworkName(p); n != "" {
		return append(b, n...)
	}
	b = append(b, "ETHER-0x"...)
	return appendHex16(b, p.EtherType)
}

func appendHex16(b []byte, v uint16) []byte {
	const hex = "0123456789abcdef"
	return append(b, hex[v>>12], hex[v>>8&15], hex[v>>4&15], hex[v&15])
}

// hasTransport reports whether the packet's IP protocol field is meaningful.
func hasTransport(p *Packet) bool { return p.IPVersion != 0 && p.Src.IsValid() }

func appendMAC(b []byte, m [6]byte) []byte {
	const hex = "0123456789abcdef"
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&15])
	}
	return b
}

// appendLink appends the MAC address m, or "?" when the capture did not give it (unknown:
// Packet.NoMAC's bit for it is set).
func appendLink(b []byte, m [6]byte, unknown bool) []byte {
	if unknown {
		return append(b, '?')
	}
	return appendMAC(b, m)
}

// linkClass is macClass, or "unknown" for an address the capture did not give.
func linkClass(m [6]byte, unknown bool) string {
	if unknown {
		return "unknown"
	}
	return macClass(m)
}

// macClass names a MAC address as the net_watch line shows a non-IP endpoint.
func macClass(m [6]byte) string {
	switch {
	case m == [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}:
		return "broadcast"
	case m[0]&1 != 0:
		return "multicast"
	}
	return "ethernet"
}

// appendAddr appends a network address ("?" when it is missing). IPv4 goes through a table of
// the 256 decimal octets, several times faster than netip's formatting.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		for i, x := range v {
			if i > 0 {
				b = append(b, '.')
			}
			d := &octets[x]
			b = append(b, d[1:1+d[0]]...)
		}
		return b
	}
	if !a.IsValid() {
		return append(b, '?')
	}
	return a.AppendTo(b)
}

// octets holds the decimal text of each byte value: length, then up to three digits.
var octets = func() (t [256][4]byte) {
	for i := range t {
		s := strconv.Itoa(i)
		t[i][0] = byte(len(s))
		copy(t[i][1:], s)
	}
	return t
}()

// TCPFlagString appends the TCP flags as tcpdump prints them: F S R P . U E W in that order,
// "none" when no flag is set.
func appendTCPFlags(b []byte, f uint8) []byte {
	if f == 0 {
		return append(b, "none"...)
	}
	const letters = "FSRP.UEW"
	for i := 0; i < 8; i++ {
		if f&(1<<i) != 0 {
			b = append(b, letters[i])
		}
	}
	return b
}

// appendText appends s for a terminal: printable ASCII as is, every other byte as \xHH.
func appendText[T string | []byte](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			b = append(b, c)
		} else if c == '\\' {
			b = append(b, '\\', '\\')
		} else {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		}
	}
	return b
}

// appendSafe appends s for a terminal: printable ASCII (backslash included) as is, every
// other byte as \xHH. Names are sanitized when they enter the cache; this guards the sinks
// against names that other stages put in Packet.SrcDomain and DstDomain.
func appendSafe(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return append(b, s...) // the common case: one copy
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		} else {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		}
	}
	return b
}

// appendStatus appends " [truncated tcp]" and the like for a packet the parser could not finish.
func appendStatus(b []byte, p *Packet) []byte {
	if p.Status == StatusOK {
		return b
	}
	b = append(b, " ["...)
	b = append(b, p.Status.String()...)
	if p.BadLayer != LayerNone {
		b = append(b, ' ')
		b = append(b, p.BadLayer.String()...)
	}
	return append(b, ']')
}
