package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

// unitSettings reads a systemd unit's Key=Value lines (the last of a key wins, as systemd
// reads most of them).
func unitSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestServiceInstall: `make install DESTDIR=...` puts the binary, the unit and its flags file
// in place; the unit runs attach as a user of its own with exactly CAP_BPF, CAP_NET_ADMIN and
// CAP_PERFMON, restarts it and logs to the journal, and systemd-analyze verifies it; `check`
// run as an unprivileged user with exactly those capabilities (as the unit grants them) says
// the sensor can run, in a namespace of the test's.
func TestServiceInstall(t *testing.T) {
	tn := newTestNet(t)
	sensortest.RequireTools(t, "make", "setpriv", "systemd-analyze")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	if out, err := execT(t, 5*time.Minute, "make", "-C", root, "-s", "install", "DESTDIR="+dest); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	bin := filepath.Join(dest, "usr/local/bin/chains-sensor")
	unit := filepath.Join(dest, "etc/systemd/system/chains-sensor.service")
	env := filepath.Join(dest, "etc/default/chains-sensor")
	for _, f := range []string{bin, unit, env} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("make install: %v", err)
		}
	}
	u := unitSettings(t, unit)
	caps := []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		got := strings.Fields(u[k])
		slices.Sort(got)
		if !slices.Equal(got, caps) {
			t.Errorf("%s=%s, want exactly %v", k, u[k], caps)
		}
	}
	for k, want := range map[string]string{"DynamicUser": "yes", "NoNewPrivileges": "yes", "Restart": "on-failure",
		"StandardOutput": "journal", "StandardError": "journal", "EnvironmentFile": "-/etc/default/chains-sensor",
		"ExecStart": "/usr/local/bin/chains-sensor attach $CHAINS_SENSOR_ARGS", "StateDirectory": "chains-sensor"} {
		if u[k] != want {
			t.Errorf("%s=%q, want %q", k, u[k], want)
		}
	}
	// A second install keeps the flags file an administrator edited.
	if err := os.WriteFile(env, []byte("CHAINS_SENSOR_ARGS=\"-i eth9\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := execT(t, 5*time.Minute, "make", "-C", root, "-s", "install", "DESTDIR="+dest); err != nil {
		t.Fatalf("make install again: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(env); !strings.Contains(string(b), "eth9") {
		t.Errorf("make install overwrote %s", env)
	}
	// systemd-analyze checks the unit's settings (and that ExecStart names an executable: the
	// installed one, for this check).
	b, _ := os.ReadFile(unit)
	check := filepath.Join(t.TempDir(), "chains-sensor.service")
	os.WriteFile(check, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/chains-sensor", bin)), 0o644)
	if out, err := execT(t, time.Minute, "systemd-analyze", "verify", check); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// check, as nobody with the unit's capabilities only (the binary readable by others).
	for d := bin; d != "/" && d != filepath.Clean(os.TempDir()); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	asUnit := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+bpf,+net_admin,+perfmon", "--ambient-caps=-all,+bpf,+net_admin,+perfmon",
		"--bounding-set=-all,+bpf,+net_admin,+perfmon", "--no-new-privs"}
	out, err := tn.inA(t, 60*time.Second, append(asUnit, bin, "check", tn.IfA)...)
	if err != nil || !strings.Contains(out, "chains-sensor can run here") {
		t.Fatalf("check with the unit's capabilities: %v\n%s", err, out)
	}
	tn.assertDetached(t)
}
