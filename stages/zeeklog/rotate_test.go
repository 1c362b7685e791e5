package zeeklog_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
)

// request is a packet carrying an HTTP request head, outside the flow table (so that its line
// is written at once).
func request(ts time.Time, uri, host, ua string) *stages.Packet {
	return &stages.Packet{Time: ts, IPVersion: 4, Proto: stages.ProtoTCP, Src: netip.MustParseAddr("10.0.0.1"),
		Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 40000, DstPort: 80,
		HTTP: &stages.HTTPInfo{Request: true, Method: "GET", URI: uri, Version: "HTTP/1.1", Host: host, UserAgent: ua}}
}

var rotatedName = regexp.MustCompile(`^http\.\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d(-\d+)?\.log$`)

// checkComplete reads every http log of dir: each ends with a newline and each line is one
// JSON object. It returns the lines by file name.
func checkComplete(t *testing.T, dir string) map[string][]record {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "http*.log"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]record{}
	for _, f := range files {
		base := filepath.Base(f)
		if base != "http.log" && !rotatedName.MatchString(base) {
			t.Errorf("%s: not Zeek's rotated name", base)
		}
		out[base] = readLog(t, f)
	}
	return out
}

// TestRotateBySize: with a size bound, the log is rotated before a line would take it past the
// bound; every rotated file is complete (checked after each write, as a reader would find it),
// holds at most the bound, and no line is lost or doubled.
func TestRotateBySize(t *testing.T) {
	dir := t.TempDir()
	const maxSize, n = 4096, 400
	z, err := zeeklog.New(zeeklog.Config{Dir: dir, MaxSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range n {
		if err := z.Write(request(t0.Add(time.Duration(i)*time.Millisecond), "/"+strings.Repeat("x", i%50), "h", "ua")); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			for name := range checkComplete(t, dir) {
				if name != "http.log" {
					st, _ := os.Stat(filepath.Join(dir, name))
					if st.Size() > maxSize {
						t.Errorf("%s: %d bytes, over the bound %d", name, st.Size(), maxSize)
					}
				}
			}
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	files := checkComplete(t, dir)
	if len(files) < 5 || z.Rotated() != len(files)-1 {
		t.Fatalf("%d files, %d rotations: want several, one fewer rotations than files", len(files), z.Rotated())
	}
	seen := map[string]bool{}
	total := 0
	for _, recs := range files {
		for _, r := range recs {
			total++
			seen[r.str("uid")] = true
		}
	}
	if total != n || len(seen) != n {
		t.Errorf("%d lines, %d uids: want %d of each", total, len(seen), n)
	}
}

// TestRotateByTime: with an interval of an hour, each file holds the lines of one hour of the
// packets' time, named after its first line's time (UTC), as Zeek's log archive names them.
func TestRotateByTime(t *testing.T) {
	dir := t.TempDir()
	z, err := zeeklog.New(zeeklog.Config{Dir: dir, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC)
	for i := range 30 { // every 10 minutes from 03:05 to 07:55: five hours
		if err := z.Write(request(t0.Add(time.Duration(i)*10*time.Minute), "/", "h", "ua")); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	files := checkComplete(t, dir)
	want := map[string]int{"http.2026-01-02-03-05-00.log": 6, "http.2026-01-02-04-05-00.log": 6, "http.2026-01-02-05-05-00.log": 6,
		"http.2026-01-02-06-05-00.log": 6, "http.log": 6}
	if len(files) != len(want) {
		t.Fatalf("files %v, want %v", keys(files), want)
	}
	for name, n := range want {
		recs := files[name]
		if len(recs) != n {
			t.Errorf("%s: %d lines, want %d", name, len(recs), n)
		}
		for _, r := range recs {
			ts := time.Unix(int64(r.seconds(t, "ts")), 0).UTC()
			if ts.Truncate(time.Hour) != time.Unix(int64(recs[0].seconds(t, "ts")), 0).UTC().Truncate(time.Hour) {
				t.Errorf("%s: a line of %v beside one of another hour", name, ts)
			}
		}
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

// TestHostileStrings: control characters, DEL, bytes that are not UTF-8 and line separators in
// what the wire says (a URI, a Host, a User-Agent) are written as Zeek escapes them, \xNN,
// never raw: the file holds no control byte but the lines' newlines and is valid UTF-8, and
// each field reads back as the escaped text.
func TestHostileStrings(t *testing.T) {
	dir := t.TempDir()
	z, err := zeeklog.New(zeeklog.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 0)
	if err := z.Write(request(ts, "/\x1b[31mred\x00\xff\"\\", "a\nb\rc\x7f", "ua\u2028\u0085é")); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "http.log"))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range bytes.TrimSuffix(b, []byte("\n")) {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("raw control byte %#x at %d: %q", c, i, b)
		}
	}
	if !utf8.Valid(b) || !json.Valid(bytes.TrimSpace(b)) {
		t.Fatalf("not valid UTF-8 JSON: %q", b)
	}
	r := readLog(t, filepath.Join(dir, "http.log"))[0]
	for k, want := range map[string]string{"uri": `/\x1b[31mred\x00\xff"\`, "host": `a\x0ab\x0dc\x7f`,
		"user_agent": `ua\xe2\x80\xa8\xc2\x85é`} {
		if r.str(k) != want {
			t.Errorf("%s = %q, want %q", k, r.str(k), want)
		}
	}
}
