package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// wireNames is what tshark reads from a capture's DNS responses: address -> the names asked.
func wireNames(t *testing.T, file string) map[string]map[string]bool {
	t.Helper()
	sensortest.RequireTools(t, "tshark")
	out, err := exec.Command("tshark", "-r", file, "-Y", "dns.flags.response==1", "-T", "fields",
		"-e", "dns.qry.name", "-e", "dns.a", "-e", "dns.aaaa").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	m := map[string]map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 || f[0] == "" {
			continue
		}
		for _, addr := range strings.Split(f[1]+","+f[2], ",") {
			if addr == "" {
				continue
			}
			if m[addr] == nil {
				m[addr] = map[string]bool{}
			}
			m[addr][f[0]] = true
		}
	}
	return m
}

// TestNamesFromTheWire: with --names wire, public addresses answered in the capture's DNS
// traffic show the name asked for (as tshark decodes the answers); with --names ptr and a
// DNS server that is not there, none do.
func TestNamesFromTheWire(t *testing.T) {
	file := filepath.Join(sensortest.Pcaps(t), "protocols", "ipv4_http_dns_wikipedia.pcap")
	want := wireNames(t, file)
	if len(want) == 0 {
		t.Fatal("tshark found no DNS answers")
	}
	named := func(args ...string) (n int) {
		out, stderr, code := runCmd(t, append([]string{"read", "-o", "json", "--rdns-wait", "10ms"}, append(args, file)...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var o map[string]any
			if err := json.Unmarshal([]byte(l), &o); err != nil {
				t.Fatal(err)
			}
			for _, side := range []string{"src", "dst"} {
				addr, _ := o[side].(string)
				dom, _ := o[side+"_domain"].(string)
				if names, ok := want[addr]; ok && names[dom] {
					n++
				} else if ok && dom != "public" && dom != "nxdomain" {
					t.Errorf("%s shown as %q; tshark's answers name it %v", addr, dom, names)
				}
			}
		}
		return n
	}
	if n := named("--names", "wire"); n == 0 {
		t.Error("--names wire: no address named from the DNS answers")
	}
	if n := named("--names", "ptr", "--dns-server", "127.0.0.1:9"); n != 0 {
		t.Errorf("--names ptr: %d addresses named from the wire", n)
	}
	if _, stderr, code := runCmd(t, "read", "--names", "dns", file); code == 0 || !strings.Contains(stderr, "wire, ptr or both") {
		t.Errorf("--names dns: exit %d, %s", code, stderr)
	}
}
