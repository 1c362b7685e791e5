package sensortest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// helperEnv makes the test binary, run again by these tests, play a test run that fails or is
// killed with a namespace made.
const helperEnv = "SENSORTEST_HELPER"

func exists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

// TestNetnsHelperProcess is not a test: it is the run the other tests start and watch.
func TestNetnsHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for the namespace tests")
	}
	n := NewNetns(t)
	fmt.Println(n.Name)
	switch mode {
	case "fail":
		t.Fatal("failing on purpose with a namespace made")
	case "hang":
		time.Sleep(time.Minute) // until the parent kills it
	}
}

// helper starts the test binary as a test run in mode and returns it with the name of the
// namespace it made.
func helper(t *testing.T, mode string) (*exec.Cmd, string, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestNetnsHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			cmd.Wait()
			t.Fatalf("the helper run made no namespace: %v", err)
		}
		if name := strings.TrimSpace(line); strings.HasPrefix(name, netnsPrefix) {
			return cmd, name, r
		}
	}
}

func TestNetnsNamesAndDo(t *testing.T) {
	a, b := NewNetns(t), NewNetns(t)
	if a.Name == b.Name || !strings.HasPrefix(a.Name, fmt.Sprintf("%s%d-", netnsPrefix, os.Getpid())) {
		t.Fatalf("names %q and %q: want distinct, with this process's pid", a.Name, b.Name)
	}
	if !exists(a.Name) || !exists(b.Name) {
		t.Fatal("ip netns does not list the namespaces")
	}
	// Do runs in the namespace and leaves the caller where it was.
	outside, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	err = a.Do(func() error {
		here, err := netns.Get()
		if err != nil {
			return err
		}
		defer here.Close()
		if !here.Equal(a.h) {
			return errors.New("Do's function does not run in the namespace")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out := a.MustRun(t, "ip", "-o", "link", "show", "lo"); !strings.Contains(out, "UP") {
		t.Errorf("loopback not up in %s: %s", a.Name, out)
	}
	a.AddVeth(t, IfName(t, "x"), IfName(t, "y"), nil)
	if out := a.MustRun(t, "ip", "-o", "link", "show", "type", "veth"); strings.Count(out, "\n") != 2 {
		t.Errorf("want both ends of the veth in %s:\n%s", a.Name, out)
	}
	if out := b.MustRun(t, "ip", "-o", "link", "show", "type", "veth"); out != "" {
		t.Errorf("%s has links it should not:\n%s", b.Name, out)
	}
}

func TestNetnsEnter(t *testing.T) {
	n := NewNetns(t)
	t.Run("inside", func(t *testing.T) {
		n.Enter(t)
		here, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer here.Close()
		if !here.Equal(n.h) {
			t.Fatal("Enter did not move the test into the namespace")
		}
	})
}

// TestNetnsCleanedOnFailure: a test that fails still removes its namespace.
func TestNetnsCleanedOnFailure(t *testing.T) {
	RequireEndToEnd(t)
	cmd, name, _ := helper(t, "fail")
	if err := cmd.Wait(); err == nil {
		t.Fatal("the failing helper run passed")
	}
	if exists(name) {
		exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("the failed run left %s behind", name)
	}
}

// TestNetnsStaleRemoved: a run killed outright leaves its namespace, and a process in it; the
// next run removes both once the owner is gone, and leaves the namespaces of live owners and
// foreign names alone.
func TestNetnsStaleRemoved(t *testing.T) {
	RequireEndToEnd(t)
	RequireTools(t, "sleep")
	cmd, name, _ := helper(t, "hang")
	// A process of the killed run's, still in the namespace.
	sleeper := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	if ownerGone(name) {
		t.Fatalf("%s: owner %d still runs, yet ownerGone says it is gone", name, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !exists(name) {
		t.Fatalf("a killed run should leave %s behind (that is what this test is about)", name)
	}
	if !ownerGone(name) {
		t.Fatalf("%s: the owner is dead but ownerGone says no", name)
	}
	// A leftover under this process's own pid (an earlier run's, the pid reused) is stale too;
	// one this process made is not.
	reused := fmt.Sprintf("%s%d-999999", netnsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", reused).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", reused, err, out)
	}
	defer exec.Command("ip", "netns", "del", reused).Run()
	mine := NewNetns(t)
	// Names the helpers must never touch: a live owner's (pid 1), another tool's, our own.
	keep := []string{netnsPrefix + "1-1", "cstest-other"}
	for _, k := range keep {
		if exists(k) {
			t.Fatalf("%s exists already", k)
		}
		if out, err := exec.Command("ip", "netns", "add", k).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v %s", k, err, out)
		}
		defer exec.Command("ip", "netns", "del", k).Run()
	}
	removeStaleNetns(t)
	if exists(name) {
		exec.Command("ip", "netns", "del", name).Run()
		t.Errorf("%s of the killed run is still there", name)
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("the killed run's process in its namespace still runs")
	}
	if exists(reused) {
		t.Errorf("%s, under this pid but not made by this process, is still there", reused)
	}
	keep = append(keep, mine.Name)
	for _, k := range keep {
		if !exists(k) {
			t.Errorf("%s was removed: it is not a stale namespace of these helpers", k)
		}
	}
}

func TestIfName(t *testing.T) {
	a, b := IfName(t, "a"), IfName(t, "a")
	if a == b || len(a) > 15 {
		t.Fatalf("%q %q", a, b)
	}
}

func TestPair(t *testing.T) {
	p := NewPair(t)
	for _, c := range []struct {
		from *Netns
		args []string
	}{
		{p.B, []string{"ping", "-c1", "-W2", p.V4A}},
		{p.A, []string{"ping", "-c1", "-W2", p.V4B}},
		{p.B, []string{"ping", "-6", "-c1", "-W2", p.V6A}},
		{p.A, []string{"ping", "-6", "-c1", "-W2", p.V6B}},
	} {
		if out, err := c.from.Run(t, 10*time.Second, c.args[0], c.args[1:]...); err != nil {
			t.Errorf("%s in %s: %v\n%s", strings.Join(c.args, " "), c.from.Name, err, out)
		}
	}
	if out := p.B.MustRun(t, "ip", "route", "show", "table", "all", "224.0.0.0/4"); !strings.Contains(out, p.IfB) {
		t.Errorf("no multicast route through %s in B:\n%s", p.IfB, out)
	}
}
