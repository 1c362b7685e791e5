package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// TestReadLogDir: read --log-dir writes the Zeek logs beside the view: conn.log has a line per
// TCP connection tshark sees in the capture (one: tcp.stream 0), http.log the request with its
// connection's uid and tshark's http.host (bro.org); --log-rotate-size rotates into complete
// files; a directory that cannot be made is an error, bad values are bad usage.
func TestReadLogDir(t *testing.T) {
	pcap := filepath.Join(sensortest.Pcaps(t), "protocols", "ipv4_tcp_http_get.pcap")
	dir := t.TempDir()
	_, stderr, code := runCmd(t, "read", "-q", "--log-dir", dir, pcap)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	conns := jsonLines(t, filepath.Join(dir, "conn.log"))
	https := jsonLines(t, filepath.Join(dir, "http.log"))
	if len(conns) != 1 || len(https) != 1 {
		t.Fatalf("%d conn.log and %d http.log lines, want 1 and 1", len(conns), len(https))
	}
	if conns[0]["uid"] != https[0]["uid"] || conns[0]["service"] != "http" || https[0]["host"] != "bro.org" {
		t.Errorf("conn %v\nhttp %v", conns[0], https[0])
	}

	dir = t.TempDir()
	pcap = filepath.Join(sensortest.Pcaps(t), "protocols", "dns_udp_a_aaaa_ptr_mx_nxdomain.pcap")
	if _, stderr, code := runCmd(t, "read", "-q", "--log-dir", dir, "--log-rotate-size", "600", pcap); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rotated, _ := filepath.Glob(filepath.Join(dir, "dns.*-*-*-*-*-*.log"))
	if len(rotated) < 2 {
		t.Errorf("%d rotated dns logs, want several", len(rotated))
	}
	for _, f := range rotated {
		jsonLines(t, f)
	}

	// A directory that cannot be made is an error (exit 1), named.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCmd(t, "read", "-q", "-n", "--log-dir", file, pcap); code != 1 || !strings.Contains(stderr, "--log-dir") {
		t.Errorf("--log-dir on a file: exit %d, want 1 naming --log-dir:\n%s", code, stderr)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"read", "--log-dir", dir, "--log-rotate-size", "-1", pcap}, "--log-rotate-size"},
		{[]string{"read", "--log-dir", dir, "--log-rotate-interval", "-1s", pcap}, "--log-rotate-interval"},
		{[]string{"read", "--log-rotate-size", "100", pcap}, "--log-dir"},
	} {
		_, stderr, code := runCmd(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, want 2 naming %s:\n%s", c.args, code, c.want, stderr)
		}
	}
}

// jsonLines reads a file of JSON objects, one a line, every line complete.
func jsonLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v: %q", path, err, sc.Text())
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
