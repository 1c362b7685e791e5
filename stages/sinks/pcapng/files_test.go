package pcapng

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/gopacket/gopacket/pcapgo"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// packet returns packet i: 100 bytes of frame whose first four bytes are i.
func packet(i int, ts time.Time) *EPB {
	data := make([]byte, 100)
	data[0], data[1], data[2], data[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return &EPB{TS: ts.UnixNano(), WireLen: 100, Flags: FlagInbound, Data: data, Comment: []byte("packet " + strconv.Itoa(i))}
}

// readFile returns the packet numbers tshark reads in file, and fails t on anything tshark
// says is wrong with it (a cut-short block included).
func readFile(t *testing.T, file string) []int {
	t.Helper()
	var nums []int
	for _, l := range tshark(t, file, "frame.comment") {
		n, err := strconv.Atoi(strings.TrimPrefix(l, "packet "))
		if err != nil {
			t.Fatalf("%s: comment %q", file, l)
		}
		nums = append(nums, n)
	}
	return nums
}

// readFileGo is readFile with gopacket's reader (faster than a tshark per file).
func readFileGo(t *testing.T, file string) []int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var nums []int
	for {
		_, _, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			return nums
		}
		if err != nil || len(opts.Comments) != 1 {
			t.Fatalf("%s: %v %v", file, err, opts.Comments)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(opts.Comments[0], "packet "))
		if err != nil {
			t.Fatalf("%s: comment %q", file, opts.Comments[0])
		}
		nums = append(nums, n)
	}
}

func newWriter(t *testing.T, opt Options) *Writer {
	t.Helper()
	w, err := Create(opt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(Interface{Name: "eth0", LinkType: 1, SnapLen: 262144}); err != nil {
		t.Fatal(err)
	}
	return w
}

// -C: a new file once the current one holds more than FileSize bytes, named PATH, PATH1,
// PATH2, ... as tcpdump names them; each complete, with the section header, the interface and
// its statistics, and every packet in exactly one file, in order.
func TestRotateBySize(t *testing.T) {
	sensortest.RequireTools(t, "tshark", "capinfos")
	dir := t.TempDir()
	path := filepath.Join(dir, "cap.pcapng")
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	w := newWriter(t, Options{Path: path, FileSize: 2000, Now: clk.now,
		Stats: func() []Stats { return []Stats{{Has: HasReceived, Received: 1}} }})
	const n = 50
	for i := 1; i <= n; i++ {
		if err := w.WritePacket(packet(i, clk.now())); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := w.Files()
	if len(files) < 3 {
		t.Fatalf("%d files: %v", len(files), files)
	}
	next := 1
	for i, f := range files {
		want := path
		if i > 0 {
			want += strconv.Itoa(i)
		}
		if f != want {
			t.Errorf("file %d is %s, want %s", i, f, want)
		}
		nums := readFile(t, f)
		for _, x := range nums {
			if x != next {
				t.Fatalf("%s holds packet %d where %d was next", f, x, next)
			}
			next++
		}
		st, _ := os.Stat(f)
		// Like tcpdump: a packet goes to a new file when the current one is already past the size.
		if i < len(files)-1 && (st.Size() <= 2000 || st.Size() > 2000+2*200) {
			t.Errorf("%s: %d bytes for a limit of 2000", f, st.Size())
		}
		if info := capinfos(t, "-I", f); !strings.Contains(info, "Number of stat entries = 1") || !strings.Contains(info, "Name = eth0") {
			t.Errorf("%s lacks its interface or statistics:\n%s", f, info)
		}
	}
	if next != n+1 {
		t.Errorf("the files hold packets 1 to %d, want %d", next-1, n)
	}
}

// -C with -W: a ring of W files, PATH0 ... PATH<W-1>, overwritten in turn; what is left is the
// newest packets.
func TestRotateRing(t *testing.T) {
	sensortest.RequireTools(t, "tshark")
	dir := t.TempDir()
	path := filepath.Join(dir, "ring")
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	w := newWriter(t, Options{Path: path, FileSize: 1000, Count: 11, Now: clk.now})
	const n = 200
	for i := 1; i <= n; i++ {
		if err := w.WritePacket(packet(i, clk.now())); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := "ring00 ring01 ring02 ring03 ring04 ring05 ring06 ring07 ring08 ring09 ring10"
	if strings.Join(names, " ") != want {
		t.Fatalf("files %v, want %s", names, want)
	}
	files := w.Files()
	if len(files) <= 11 {
		t.Fatalf("only %d files opened: the ring never turned", len(files))
	}
	// The last 11 files opened are the ring's content, oldest first.
	next := 0
	for i, f := range files[len(files)-11:] {
		read := readFileGo
		if i == 0 {
			read = readFile
		}
		for _, x := range read(t, f) {
			if next != 0 && x != next {
				t.Fatalf("%s holds packet %d where %d was next", f, x, next)
			}
			next = x + 1
		}
	}
	if next != n+1 {
		t.Errorf("the ring ends with packet %d, want %d", next-1, n)
	}
}

// -G: a new file when a packet comes Rotate after the current file was opened, its name the
// pattern expanded (strftime) at that time; with -W alone, the run ends after W files.
func TestRotateByTime(t *testing.T) {
	sensortest.RequireTools(t, "tshark", "date")
	dir := t.TempDir()
	pattern := filepath.Join(dir, "cap-%Y%m%d-%H%M%S-%s.pcapng")
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	w := newWriter(t, Options{Path: pattern, Rotate: 10 * time.Second, Count: 3, Now: clk.now})
	var opened []time.Time
	opened = append(opened, clk.now())
	steps := []time.Duration{0, 5 * time.Second, 5 * time.Second /* rotates */, 3 * time.Second, 20 * time.Second /* rotates */, time.Second}
	for i, d := range steps {
		clk.add(d)
		if i == 2 || i == 4 {
			opened = append(opened, clk.now())
		}
		if err := w.WritePacket(packet(i+1, clk.now())); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(10 * time.Second) // the third file is done: -W 3 ends the run
	if err := w.WritePacket(packet(99, clk.now())); !errors.Is(err, ErrFileLimit) {
		t.Fatalf("after the third file: %v, want ErrFileLimit", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := w.Files()
	if len(files) != 3 {
		t.Fatalf("files %v, want 3", files)
	}
	wantNums := [][]int{{1, 2}, {3, 4}, {5, 6}}
	for i, f := range files {
		// GNU date's strftime names the file the writer should have made.
		out, err := exec.Command("date", "-d", fmt.Sprintf("@%d", opened[i].Unix()), "+"+filepath.Base(pattern)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(dir, strings.TrimSpace(string(out))); f != want {
			t.Errorf("file %d is %s, want %s", i, f, want)
		}
		if got := readFile(t, f); fmt.Sprint(got) != fmt.Sprint(wantNums[i]) {
			t.Errorf("%s holds packets %v, want %v", f, got, wantNums[i])
		}
	}
}

// A live writer flushes on a timer, and rotates by time even when no packet comes.
func TestLiveFlushAndIdleRotation(t *testing.T) {
	sensortest.RequireTools(t, "tshark")
	dir := t.TempDir()
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	w := newWriter(t, Options{Path: filepath.Join(dir, "live-%s"), Rotate: time.Minute, Live: true, Now: clk.now})
	defer w.Close()
	if err := w.WritePacket(packet(1, clk.now())); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(dir, "live-1700000000")
	waitUntil(t, "the packet in the file", func() bool { st, err := os.Stat(first); return err == nil && st.Size() > 200 })
	if got := readFile(t, first); fmt.Sprint(got) != "[1]" {
		t.Errorf("the live file holds %v", got)
	}
	clk.add(time.Minute)
	second := filepath.Join(dir, "live-1700000060")
	waitUntil(t, "the idle rotation", func() bool { _, err := os.Stat(second); return err == nil })
	if info := capinfos(t, "-I", first); !strings.Contains(info, "Number of stat entries = 1") {
		t.Errorf("the file rotated away has no statistics:\n%s", info)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Standard output gets the same blocks (tshark reads them from a pipe).
func TestStdout(t *testing.T) {
	sensortest.RequireTools(t, "tshark")
	var out bytes.Buffer
	w := newWriter(t, Options{Path: "-", Stdout: &out})
	for i := 1; i <= 3; i++ {
		if err := w.WritePacket(packet(i, time.Unix(1700000000, int64(i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tshark", "-r", "-", "-T", "fields", "-e", "frame.comment")
	cmd.Stdin = &out
	got, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != "packet 1\npacket 2\npacket 3" {
		t.Errorf("tshark -r - reads %q", got)
	}
	if _, err := Create(Options{Path: "-", Stdout: &out, FileSize: 10}); err == nil {
		t.Error("-C with standard output was accepted")
	}
	if _, err := Create(Options{Path: "x", Count: 2}); err == nil {
		t.Error("-W without -C or -G was accepted")
	}
	if _, err := Create(Options{Path: filepath.Join(t.TempDir(), "%Q"), Rotate: time.Second}); err == nil {
		t.Error("a pattern with an unknown conversion was accepted")
	}
}

// fullFile takes room more bytes, then fails as a full disk does: a short write and ENOSPC.
type fullFile struct {
	*os.File
	room int
}

func (f *fullFile) Write(b []byte) (int, error) {
	if len(b) <= f.room {
		f.room -= len(b)
		return f.File.Write(b)
	}
	n, _ := f.File.Write(b[:f.room])
	f.room = 0
	return n, syscall.ENOSPC
}

// A full disk: the write fails part way, the error says so, and the file is cut back to its
// last complete block, which tshark reads without complaint.
func TestFullDisk(t *testing.T) {
	sensortest.RequireTools(t, "tshark")
	path := filepath.Join(t.TempDir(), "full.pcapng")
	defer func(o func(string) (file, error)) { openFile = o }(openFile)
	openFile = func(name string) (file, error) {
		f, err := os.Create(name)
		return &fullFile{File: f, room: 300<<10 + 77}, err
	}
	w := newWriter(t, Options{Path: path})
	var err error
	written := 0
	for i := 1; i <= 100000 && err == nil; i++ {
		if err = w.WritePacket(packet(i, time.Unix(1700000000, 0))); err == nil {
			written = i
		}
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "last complete block") {
		t.Fatalf("error %v, want ENOSPC and what became of the file", err)
	}
	if err := w.WritePacket(packet(1, time.Unix(1700000000, 0))); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("a write after the failure: %v", err)
	}
	if cerr := w.Close(); cerr != nil {
		t.Errorf("Close repeats the error: %v", cerr)
	}
	nums := readFile(t, path)
	if len(nums) == 0 || nums[len(nums)-1] != len(nums) || len(nums) > written {
		t.Fatalf("tshark reads %d packets (last %v), %d were accepted", len(nums), nums[len(nums)-1:], written)
	}
	st, _ := os.Stat(path)
	if st.Size() > 300<<10+77 {
		t.Errorf("the file has %d bytes, more than the disk had", st.Size())
	}
}
