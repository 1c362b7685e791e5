package sensortest

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TSharkIP is one IP header as tshark decodes it.
type TSharkIP struct {
	Version  int // 4 or 6
	Src, Dst string
}

// TSharkPorts is one TCP or UDP header as tshark decodes it.
type TSharkPorts struct {
	Proto    string // "tcp" or "udp"
	Src, Dst string
}

// TSharkFrame is one frame as tshark decodes it: its protocol stack, and in the order they
// appear in it its IP headers, its TCP and UDP headers, and every occurrence of the extra
// fields asked for.
type TSharkFrame struct {
	Num       int
	Protocols []string
	IPs       []TSharkIP
	Ports     []TSharkPorts
	Fields    map[string][]string
}

// TShark decodes file with tshark, the independent oracle of the parser tests. Without tshark
// it skips t, or fails it when CHAINS_REQUIRE_BPF=1 (RequireTools).
func TShark(t testing.TB, file string, extra ...string) []TSharkFrame {
	t.Helper()
	RequireTools(t, "tshark") // the oracle the parser is checked against
	path, _ := exec.LookPath("tshark")
	base := []string{"frame.number", "frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
		"tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"}
	// Decoded as the sensor does: UDP 8472 is VXLAN (as Linux has it), and each fragment on its
	// own (no reassembly, which would move a datagram's decode to its last fragment).
	args := []string{"-r", file, "-d", "udp.port==8472,vxlan", "-o", "ip.defragment:FALSE",
		"-o", "ipv6.defragment:FALSE", "-T", "fields", "-E", "separator=\t",
		"-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range append(base, extra...) {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", file, err, stderr.String())
	}
	var frames []TSharkFrame
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		col := strings.Split(sc.Text(), "\t")
		if len(col) < len(base)+len(extra) {
			t.Fatalf("tshark line %q", sc.Text())
		}
		list := func(i int) []string {
			if col[i] == "" {
				return nil
			}
			return strings.Split(col[i], ",")
		}
		num, _ := strconv.Atoi(col[0])
		f := TSharkFrame{Num: num, Protocols: strings.Split(col[1], ":"), Fields: map[string][]string{}}
		v4s, v4d, v6s, v6d := list(2), list(3), list(4), list(5)
		ts, td, us, ud := list(6), list(7), list(8), list(9)
		for _, p := range f.Protocols {
			switch {
			case p == "ip" && len(v4s) > 0 && len(v4d) > 0:
				f.IPs = append(f.IPs, TSharkIP{4, v4s[0], v4d[0]})
				v4s, v4d = v4s[1:], v4d[1:]
			case p == "ipv6" && len(v6s) > 0 && len(v6d) > 0:
				f.IPs = append(f.IPs, TSharkIP{6, v6s[0], v6d[0]})
				v6s, v6d = v6s[1:], v6d[1:]
			case p == "tcp" && len(ts) > 0 && len(td) > 0:
				f.Ports = append(f.Ports, TSharkPorts{"tcp", ts[0], td[0]})
				ts, td = ts[1:], td[1:]
			case p == "udp" && len(us) > 0 && len(ud) > 0:
				f.Ports = append(f.Ports, TSharkPorts{"udp", us[0], ud[0]})
				us, ud = us[1:], ud[1:]
			}
		}
		for i, name := range extra {
			f.Fields[name] = list(len(base) + i)
		}
		frames = append(frames, f)
	}
	return frames
}

// TunnelsMax is how many tunnels, one inside another, the sensor enters (TUNNEL_MAX).
const TunnelsMax = 3

// Tunnels returns the tunnels the sensor enters, outermost first, as tshark names the protocol
// that opens each (ip, ipv6, gre, vxlan, geneve, gtp), and the index in Protocols where the
// innermost tunnel's packet starts. The sensor's record describes that packet.
func (f TSharkFrame) Tunnels() (tunnels []string, at int) {
	p := f.Protocols
	for i := 0; i+1 < len(p) && len(tunnels) < TunnelsMax; i++ {
		if p[i] != "ip" && p[i] != "ipv6" {
			continue
		}
		j := i + 1
		for j < len(p) && strings.HasPrefix(p[j], "ipv6.") { // extension headers
			j++
		}
		if j < len(p) && p[j] == "ah" {
			j++
		}
		next := func(k int, names ...string) bool { return k < len(p) && slices.Contains(names, p[k]) }
		switch {
		case next(j, "ip", "ipv6"):
			tunnels, at = append(tunnels, p[j]), j
		case next(j, "gre") && next(j+1, "ip", "ipv6", "eth", "erspan", "ppp"):
			tunnels, at = append(tunnels, "gre"), j+1
		case next(j, "udp") && next(j+1, "vxlan", "geneve", "gtp") && next(j+2, "eth", "ip", "ipv6"):
			tunnels, at = append(tunnels, p[j+1]), j+2
		default:
			continue
		}
		i = at - 1
	}
	return tunnels, at
}

// Inner returns the IP header and the transport ports of the packet inside the tunnels the
// sensor enters (the outer packet's when none); ok is false when that packet has no IP header.
func (f TSharkFrame) Inner() (ip TSharkIP, ports *TSharkPorts, ok bool) {
	_, at := f.Tunnels()
	nip, nport := 0, 0
	for i, p := range f.Protocols {
		isIP, isPort := p == "ip" || p == "ipv6", p == "tcp" || p == "udp"
		if i >= at && isIP && nip < len(f.IPs) {
			ip, ok = f.IPs[nip], true
			for _, q := range f.Protocols[i+1:] {
				if q == "ip" || q == "ipv6" {
					break
				}
				if (q == "tcp" || q == "udp") && nport < len(f.Ports) {
					ports = &f.Ports[nport]
					break
				}
			}
			return ip, ports, ok
		}
		if isIP {
			nip++
		}
		if isPort {
			nport++
		}
	}
	return ip, nil, false
}
