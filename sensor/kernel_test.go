package sensor_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
)

// loadObjects loads the sensor programs for a test, or skips/fails per sensortest.RequireBPF.
func loadObjects(t testing.TB) (*sensor.Objects, *sensor.Replayer) {
	t.Helper()
	return loadWith(t, sensor.Config{})
}

// loadWith loads the sensor programs with cfg and a replayer of them, released when the test
// ends, or skips/fails per sensortest.RequireBPF.
func loadWith(t testing.TB, cfg sensor.Config) (*sensor.Objects, *sensor.Replayer) {
	t.Helper()
	sensortest.RequireBPF(t)
	objs, err := sensor.Load(cfg)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	rep, err := sensor.NewReplayer(objs)
	if err != nil {
		objs.Close()
		t.Fatalf("replayer: %v", err)
	}
	t.Cleanup(func() {
		rep.Close()
		objs.Close()
	})
	return objs, rep
}

// eachFrame calls fn for every frame of every test capture that opens.
func eachFrame(t *testing.T, fn func(name string, f *sensor.Frame)) {
	for _, path := range sensortest.PcapFiles(t) {
		name := filepath.Base(filepath.Dir(path)) + "/" + filepath.Base(path)
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := sensor.OpenCapture(fh)
		if err != nil {
			fh.Close()
			continue // damaged files are the reader's tests' subject
		}
		for {
			f, err := c.Next()
			if err != nil {
				break
			}
			fn(name, f)
		}
		fh.Close()
	}
}

// TestKernelMatchesTwin runs every frame of every test capture through xdp_sensor and
// tc_sensor and demands the Go twin's bytes.
func TestKernelMatchesTwin(t *testing.T) {
	_, rep := loadObjects(t)
	twin := sensor.NewTwin(sensor.Config{})
	var compared, tooBig, refused int
	eachFrame(t, func(name string, f *sensor.Frame) {
		for dir := uint8(0); dir < 2; dir++ {
			m := sensor.Meta{TS: f.Time.UnixNano(), Ifindex: 7, WireLen: f.WireLen, Dir: dir}
			got, err := rep.Replay(f.Data, m)
			if errors.Is(err, sensor.ErrFrameSize) {
				tooBig++
				continue
			}
			if dir == 1 && errors.Is(err, sensor.ErrSkbRefused) {
				refused++
				continue
			}
			if err != nil {
				t.Fatalf("%s #%d dir %d: %v", name, f.Num, dir, err)
			}
			want := twin.Parse(nil, f.Data, m)
			if !bytes.Equal(got, want) {
				t.Errorf("%s #%d dir %d: kernel and twin differ\nkernel %s\ntwin   %s", name, f.Num, dir, hex.EncodeToString(got), hex.EncodeToString(want))
			}
			compared++
		}
	})
	t.Logf("%d records compared; %d frames outside BPF_PROG_TEST_RUN's size range, %d refused as skbs", compared, tooBig, refused)
	if compared < 1000 {
		t.Fatalf("only %d records compared: are the test captures there?", compared)
	}
}

// TestMalformedStatus checks the status of every malformed capture against what its damage is
// (MANIFEST.tsv, and tcpdump's complaint about it), through the twin and the kernel.
func TestMalformedStatus(t *testing.T) {
	type want struct {
		num    uint64
		status stages.Status
		layer  stages.Layer
	}
	cases := map[string]want{
		"ipv4_bad_ihl.pcap":                       {1, stages.StatusMalformed, stages.LayerIPv4},  // IHL 16 bytes
		"ipv4_total_length_exceeds_caplen.pcap":   {1, stages.StatusTruncated, stages.LayerIPv4},  // truncated-ip
		"ipv4_truncated_header.pcap":              {1, stages.StatusTruncated, stages.LayerIPv4},  // [|ip]
		"ipv4_tiny_fragment_syn.pcap":             {1, stages.StatusTruncated, stages.LayerTCP},   // TCP header split over fragments
		"ipv6_truncated_header.pcap":              {1, stages.StatusTruncated, stages.LayerIPv6},  // [|ip6]
		"ipv6_payload_length_exceeds_caplen.pcap": {1, stages.StatusTruncated, stages.LayerIPv6},  // truncated-ip6
		"ipv6_bad_version.pcap":                   {2, stages.StatusMalformed, stages.LayerIPv6},  // version 0
		"ipv6_jumbo_missing_option.pcap":          {1, stages.StatusMalformed, stages.LayerIPv6},  // payload length 0, no jumbo option
		"icmpv6_zero_length.pcapng":               {1, stages.StatusMalformed, stages.LayerIPv6},  // payload length 0
		"icmp_ip_len_zero.pcapng":                 {1, stages.StatusMalformed, stages.LayerIPv4},  // total length 0
		"ipv6_hbh_truncated.pcap":                 {1, stages.StatusTruncated, stages.LayerIPv6},  // capture ends in the HBH header
		"arp_bogus_hw_len.pcap":                   {1, stages.StatusUnsupported, stages.LayerARP}, // 14-byte hardware addresses
		"tcp_data_offset_overflow.pcap":           {1, stages.StatusTruncated, stages.LayerIPv4},  // [|tcp] after truncated-ip
		"udp_length_overflow.pcap":                {1, stages.StatusTruncated, stages.LayerIPv4},  // [|udp]
		"tcp_header_snaplen_truncated.pcap":       {1, stages.StatusTruncated, stages.LayerIPv4},  // snaplen cut
		"tcp_all_flags_set.pcap":                  {1, stages.StatusOK, stages.LayerNone},         // odd, not malformed
		"icmp_unknown_type.pcap":                  {1, stages.StatusOK, stages.LayerNone},         // type 165 parses
		"ipv6_frag_negative_len.pcap":             {1, stages.StatusMalformed, stages.LayerIPv6},  // payload length 0
		"ipv6_frag_bogus.pcap":                    {1, stages.StatusTruncated, stages.LayerIPv6},  // payload length past the capture
	}
	var rep *sensor.Replayer
	if sensortest.HaveBPF(t) {
		_, rep = loadObjects(t)
	}
	twin := sensor.NewTwin(sensor.Config{})
	dir := filepath.Join(sensortest.Pcaps(t), "malformed")
	for file, w := range cases {
		fh, err := os.Open(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		c, err := sensor.OpenCapture(fh)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		found := false
		for {
			f, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if f.Num != w.num {
				continue
			}
			found = true
			m := sensor.Meta{TS: f.Time.UnixNano(), WireLen: f.WireLen}
			raws := map[string][]byte{"twin": twin.Parse(nil, f.Data, m)}
			if rep != nil {
				k, err := rep.Replay(f.Data, m)
				if err != nil {
					t.Fatalf("%s: replay: %v", file, err)
				}
				raws["kernel"] = bytes.Clone(k)
			}
			for who, raw := range raws {
				var p stages.Packet
				if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
					t.Fatalf("%s %s: %v", file, who, err)
				}
				if p.Status != w.status || p.BadLayer != w.layer {
					t.Errorf("%s #%d (%s): status %v/%v, want %v/%v", file, f.Num, who, p.Status, p.BadLayer, w.status, w.layer)
				}
			}
		}
		fh.Close()
		if !found {
			t.Errorf("%s: no packet %d", file, w.num)
		}
	}
}
