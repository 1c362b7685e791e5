package sensor_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestDamagedFiles reads every damaged capture file: the packets it holds and the error that
// stops it, as MANIFEST.tsv and tcpdump describe each file.
func TestDamagedFiles(t *testing.T) {
	cases := []struct {
		file    string
		packets int
		err     string // "" for a clean end of file
	}{
		{"empty.pcap", 0, ""},
		{"empty.pcapng", 0, ""},
		{"pcap_bad_version.pcap", 0, "minor version 5"},                   // tcpdump: unsupported version 2.5
		{"pcap_linktype_reserved_bits.pcap", 0, "reserved bits"},          // tcpdump: unknown DLT 3145728
		{"pcap_truncated_record_header.pcap", 0, "packet 1: "},            // tcpdump: truncated dump file
		{"pcapng_bad_version.pcapng", 0, "Version"},                       // tcpdump: unsupported version 0.1
		{"pcapng_no_idb.pcapng", 0, "no interface description block"},     // tcpdump: no IDBs
		{"pcapng_shb_option_too_long.pcapng", 0, "not a readable pcapng"}, // tcpdump: block lengths differ
		{"pcap_caplen_too_large.pcap", 1, ""},                             // 48 bytes captured of a 4 GB "original"
	}
	dir := filepath.Join(sensortest.Pcaps(t), "malformed")
	for _, c := range cases {
		fh, err := os.Open(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		capt, err := sensor.OpenCapture(fh)
		for err == nil {
			_, err = capt.Next()
			if err == nil {
				n++
			}
		}
		fh.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
		switch {
		case n != c.packets:
			t.Errorf("%s: %d packets, want %d", c.file, n, c.packets)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.file, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one saying %q", c.file, err, c.err)
		}
	}
}

// TestLinkTypes reads the captures of other link types: raw IPv4, Linux cooked v1 (with
// nanosecond times) and v2, BSD loopback in pcapng; each frame comes out as Ethernet carrying IP.
func TestLinkTypes(t *testing.T) {
	root := sensortest.Pcaps(t)
	for _, file := range []string{"protocols/linktype_raw_ipv4_dns.pcap", "protocols/linktype_sll_nsec_tcp.pcap",
		"protocols/linktype_sll2_tls13_sni.pcap", "protocols/pcapng_mixed_linktypes.pcapng", "malformed/ipv6_hbh_oob_rawip6.pcap"} {
		fh, err := os.Open(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		capt, err := sensor.OpenCapture(fh)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		n := 0
		for {
			f, err := capt.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			n++
			etype := uint16(f.Data[12])<<8 | uint16(f.Data[13])
			if etype != 0x0800 && etype != 0x86dd {
				t.Errorf("%s #%d: ethertype %#x", file, f.Num, etype)
			}
			if v := f.Data[14] >> 4; (v == 4) != (etype == 0x0800) {
				t.Errorf("%s #%d: IP version %d behind ethertype %#x", file, f.Num, v, etype)
			}
			if int(f.WireLen) < len(f.Data) {
				t.Errorf("%s #%d: wire length %d < %d captured", file, f.Num, f.WireLen, len(f.Data))
			}
		}
		fh.Close()
		if n == 0 {
			t.Errorf("%s: no packets", file)
		}
	}
}
