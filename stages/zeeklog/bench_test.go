package zeeklog_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
)

// BenchmarkConnLog: the cost of one conn.log line (a finished TCP flow), written to a file
// rotated every 64 MiB.
func BenchmarkConnLog(b *testing.B) {
	z, err := zeeklog.New(zeeklog.Config{Dir: b.TempDir(), MaxSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	f := &stages.Flow{Proto: stages.ProtoTCP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 40000, DstPort: 443, FirstNs: time.Unix(1700000000, 0).UnixNano(), Packets: [2]uint64{7, 7},
		PayloadBytes: [2]uint64{136, 5007}, IPBytes: [2]uint64{512, 5379}, TCPFlags: [2]uint8{0x1b, 0x1b},
		History: [12]byte{'S', 'h', 'A', 'D', 'a', 'd', 'F', 'f'}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.ID = uint64(i + 1)
		f.LastNs = f.FirstNs + int64(i)*1000
		z.WriteFlow(f)
	}
	if err := z.Close(); err != nil {
		b.Fatal(err)
	}
}
