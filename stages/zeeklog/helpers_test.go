package zeeklog_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/chains-sensor/chains-sensor/stages/zeeklog"
)

// capture returns the path of a capture of the repository (testdata/pcaps/NAME).
func capture(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(sensortest.Pcaps(t), name)
}

// logsOf reads the capture through the sensor's read path (capture reader, Go twin parser)
// and the views' chain with a zeeklog sink beside a quiet view, as `chains-sensor read
// --log-dir` does, and returns the directory of the logs.
func logsOf(t *testing.T, pcap string, cfg zeeklog.Config) string {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	z, err := zeeklog.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := sensor.OpenCapture(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", pcap, err)
	}
	p, err := views.Build(&views.Config{NoDNS: true, UTC: true, Quiet: true, Outputs: []views.Output{z}}, sinks.NewOutput(io.Discard, false))
	if err != nil {
		t.Fatal(err)
	}
	src := sensor.NewFileSource(c, sensor.NewTwin(sensor.Config{}), nil)
	if _, err := p.Run(src.Packets()); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg.Dir
}

// record is one log line, its numbers kept as written (json.Number) to check their types.
type record map[string]any

// readLog reads DIR/KIND.log (nothing when it is not there); every line must be one JSON
// object.
func readLog(t *testing.T, path string) []record {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var out []record
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s: the last line is not complete", path)
	}
	for i, ln := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(ln) == 0 {
			continue
		}
		d := json.NewDecoder(bytes.NewReader(ln))
		d.UseNumber()
		var r record
		if err := d.Decode(&r); err != nil {
			t.Fatalf("%s line %d: %v: %q", path, i+1, err, ln)
		}
		if d.More() {
			t.Fatalf("%s line %d: more than one object: %q", path, i+1, ln)
		}
		out = append(out, r)
	}
	return out
}

func (r record) str(k string) string {
	s, _ := r[k].(string)
	return s
}

// count returns an integer field, failing when it is not a JSON integer (Zeek's count).
func (r record) count(t *testing.T, k string) uint64 {
	t.Helper()
	n, ok := r[k].(json.Number)
	if !ok || strings.ContainsAny(string(n), ".eE-") {
		t.Fatalf("%s = %v (%T): want a count, an integer", k, r[k], r[k])
	}
	var v uint64
	for _, c := range string(n) {
		v = v*10 + uint64(c-'0')
	}
	return v
}

// seconds returns a time or interval field, failing when it is not a number of seconds with
// a fraction (six decimals, Zeek's microseconds).
func (r record) seconds(t *testing.T, k string) float64 {
	t.Helper()
	n, ok := r[k].(json.Number)
	dot := strings.IndexByte(string(n), '.')
	if !ok || dot < 0 || len(n)-dot-1 != 6 {
		t.Fatalf("%s = %v (%T): want seconds with six decimals", k, r[k], r[k])
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tshark runs tshark over a capture and returns a line of fields per frame the filter takes; the test is
// skipped when tshark is not installed (scripts/provision.sh installs it).
func tshark(t *testing.T, pcap, filter string, fields ...string) [][]string {
	t.Helper()
	bin, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed")
	}
	args := []string{"-n", "-r", pcap, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	// frame.number first, so that a line of empty fields is still a line.
	for _, f := range append([]string{"frame.number"}, fields...) {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	var rows [][]string
	for _, ln := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if ln != "" {
			f := strings.Split(ln, "\t")[1:]
			for len(f) < len(fields) {
				f = append(f, "")
			}
			rows = append(rows, f)
		}
	}
	return rows
}
