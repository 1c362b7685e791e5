// Package sensortest holds what the tests of every package share: the gates for tests that
// need root, BPF, commands or time (RequireBPF, HaveBPF, RequireEndToEnd, RequireTools), the
// network namespaces end-to-end tests run in (NewNetns, NewPair), and the way to the test
// captures in testdata/pcaps.
package sensortest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// requireEnv is the environment variable that turns every skip for want of root or of a
// command into a failure, so that a privileged run (CI) can never pass by skipping.
const requireEnv = "CHAINS_REQUIRE_BPF"

// unavailable skips t for why, or fails it when CHAINS_REQUIRE_BPF=1.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" {
		t.Fatal(requireEnv + "=1 but " + why)
	}
	t.Skip(why)
}

const needsRoot = "needs root (loads BPF programs, makes network namespaces); run as root to include it"

// RequireBPF is the root gate: it skips t when the process is not root, or fails it instead
// when the environment says CHAINS_REQUIRE_BPF=1 (as CI does).
func RequireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, needsRoot)
	}
}

// HaveBPF is the root gate for tests with an optional kernel half (the Go twin runs
// everywhere, the kernel program as root): it reports whether that half can run. Without root
// it returns false, or fails t when CHAINS_REQUIRE_BPF=1.
func HaveBPF(t testing.TB) bool {
	t.Helper()
	if os.Geteuid() == 0 {
		return true
	}
	if os.Getenv(requireEnv) == "1" {
		t.Fatal(requireEnv + "=1 but " + needsRoot)
	}
	return false
}

// RequireEndToEnd gates a test that makes network namespaces, starts servers or attaches for
// real: skipped under -short (go test -short runs without root and without namespaces), then
// gated as RequireBPF.
func RequireEndToEnd(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped under -short")
	}
	RequireBPF(t)
}

// RequireTools skips t when one of the commands is not installed (scripts/provision.sh
// installs them all), or fails it when CHAINS_REQUIRE_BPF=1.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, tool+" not found: install it (scripts/provision.sh does)")
		}
	}
}

// TimingEnv is the environment variable that lets tests with a wall-clock bound run
// (CHAINS_TIMING=1): on shared or loaded machines such bounds fail for reasons of their own,
// so they are not part of the default suite.
const TimingEnv = "CHAINS_TIMING"

// RequireTiming skips t unless CHAINS_TIMING=1.
func RequireTiming(t testing.TB) {
	t.Helper()
	if os.Getenv(TimingEnv) != "1" {
		t.Skip("wall-clock bound: runs with " + TimingEnv + "=1 (make test-timing)")
	}
}

// Pcaps returns the directory of the test captures, testdata/pcaps at the module root (found
// from the working directory upwards, by its go.mod). It fails t when there is none.
func Pcaps(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			pcaps := filepath.Join(dir, "testdata", "pcaps")
			if st, err := os.Stat(pcaps); err != nil || !st.IsDir() {
				t.Fatalf("%s missing: the test captures are part of the repository", pcaps)
			}
			return pcaps
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory: run the tests inside the repository")
		}
		dir = parent
	}
}

// PcapFiles returns every capture under the test captures directory (chains/, protocols/,
// malformed/), as paths.
func PcapFiles(t testing.TB) []string {
	t.Helper()
	root := Pcaps(t)
	var files []string
	for _, sub := range []string{"chains", "protocols", "malformed"} {
		m, err := filepath.Glob(filepath.Join(root, sub, "*.pcap*"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no captures in " + root)
	}
	return files
}
