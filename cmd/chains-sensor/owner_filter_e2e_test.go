package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
)

var filteredRE = regexp.MustCompile(`^(\d+) packets seen, (\d+) filtered out, (\d+) recorded, (\d+) lost$`)

// TestE2EProcessFilters: attach --pid, --comm and --cgroup keep, in the kernel, exactly the
// packets of the processes asked for: with a ping (known pid), a curl and a dig running in B,
// every line names the process filtered for, each of them has lines, and the others' packets
// are counted as filtered out.
func TestE2EProcessFilters(t *testing.T) {
	tn := newTestNet(t)
	bin := buildSensor(t)
	tn.startServers(t)
	rel, fd := testCgroup(t)

	// A ping that runs while the sensor starts: its pid is the one --pid filters for.
	ping := sensortest.StartProc(t, tn.B.Command(context.Background(), "ping", "-c", "100", "-i", "0.1", "-W", "1", tn.V4A))
	pingPID := uint32(ping.Process.Pid)

	traffic := func(t *testing.T) map[string]uint32 {
		t.Helper()
		pids := map[string]uint32{}
		for _, c := range []struct {
			name string
			cg   bool
			args []string
		}{
			{"curl", false, []string{"-sS", "-m", "3", "http://" + tn.V4A + "/"}},
			{"dig", false, []string{"+short", "+tries=1", "+time=2", "@" + tn.V4A, "www.test.example", "A"}},
			{"curl", true, []string{"-sS", "-m", "3", "-g", "http://[" + tn.V6A + "]/"}},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			cmd := tn.B.Command(ctx, c.name, c.args...)
			if c.cg {
				cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
			}
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("%s: %v\n%s", c.name, err, out)
			}
			key := c.name
			if c.cg {
				key += " in the cgroup"
			}
			pids[key] = uint32(cmd.Process.Pid)
		}
		time.Sleep(300 * time.Millisecond) // a few more pings
		return pids
	}

	for _, c := range []struct {
		flag, value string
		want        func(pids map[string]uint32, pid uint32, comm string) bool
		need        []string // the processes that must have lines
	}{
		{"--pid", strconv.Itoa(int(pingPID)), func(_ map[string]uint32, pid uint32, _ string) bool { return pid == pingPID }, []string{"ping"}},
		{"--comm", "curl", func(p map[string]uint32, pid uint32, comm string) bool {
			return comm == "curl" && (pid == p["curl"] || pid == p["curl in the cgroup"])
		}, []string{"curl", "curl in the cgroup"}},
		{"--cgroup", rel, func(p map[string]uint32, pid uint32, _ string) bool { return pid == p["curl in the cgroup"] }, []string{"curl in the cgroup"}},
	} {
		t.Run(c.flag, func(t *testing.T) {
			sp := tn.startSensorInB(t, bin, "-n", "-o", "json", c.flag, c.value, tn.IfB)
			pids := traffic(t)
			pids["ping"] = pingPID
			if code := sp.stop(t, syscall.SIGINT); code != 0 {
				t.Fatalf("exit status %d\n%s", code, sp.stderrText())
			}
			seen := map[uint32]int{}
			for _, s := range sp.output() {
				var l ownerLine
				if err := json.Unmarshal([]byte(s), &l); err != nil {
					t.Fatalf("%q: %v", s, err)
				}
				if l.PID == nil || !c.want(pids, *l.PID, l.Comm) {
					t.Errorf("%s %s let through: %s", c.flag, c.value, l)
					continue
				}
				seen[*l.PID]++
			}
			for _, n := range c.need {
				if seen[pids[n]] == 0 {
					t.Errorf("%s %s: no line of %s (pid %d); lines by pid %v", c.flag, c.value, n, pids[n], seen)
				}
			}
			m := filteredRE.FindStringSubmatch(lastLine(sp.stderrText()))
			if m == nil {
				t.Fatalf("no counters line with the filtered count:\n%s", sp.stderrText())
			}
			if f, _ := strconv.Atoi(m[2]); f == 0 {
				t.Errorf("nothing filtered out: %s", m[0])
			}
			if r, _ := strconv.Atoi(m[3]); r != len(sp.output()) {
				t.Errorf("%d recorded, %d lines", r, len(sp.output()))
			}
		})
	}
}
