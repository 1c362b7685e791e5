// Package sensortest holds what the tests of every package share: the gate for tests that need
// BPF and root, and the way to the test captures in testdata/pcaps.
package sensortest

import (
	"os"
	"path/filepath"
	"testing"
)

// RequireBPF skips t when the process is not root, or fails it instead when the environment
// says CHAINS_REQUIRE_BPF=1 (as CI does), so that a privileged run can never pass by skipping.
func RequireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root (loads BPF programs, makes network namespaces); run as root to include it"
	if os.Getenv("CHAINS_REQUIRE_BPF") == "1" {
		t.Fatal("CHAINS_REQUIRE_BPF=1 but " + msg)
	}
	t.Skip(msg)
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
