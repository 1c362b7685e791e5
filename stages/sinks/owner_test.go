package sinks

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/classify"
)

func withOwner(comm string, o stages.Owner) stages.Packet {
	p := tunnelled(stages.Tunnel{})
	copy(o.Comm[:], comm)
	p.Owner = o
	classify.NewClassifier(nil, nil).Annotate(&p)
	return p
}

// The lines are written by hand from the example, `... [curl 4242]`.
func TestNetWatchOwner(t *testing.T) {
	s := NewNetWatch(nil, Options{UTC: true})
	pair := "2015-09-07 19:08:34 - TCP IP 10.0.0.5(internal) --> 10.0.1.7(internal)"
	for _, c := range []struct {
		comm string
		o    stages.Owner
		want string
	}{
		{"curl", stages.Owner{PID: 4242, CgroupID: 1}, pair + " [curl 4242]"},
		{"", stages.Owner{CgroupID: 9}, pair}, // no process: nothing, never a guess
		{"a\x1b[31mb\xff", stages.Owner{PID: 7}, pair + ` [a\x1b[31mb\xff 7]`},
		{"0123456789abcdef", stages.Owner{PID: 1}, pair + " [0123456789abcdef 1]"}, // 16 bytes, no NUL
	} {
		p := withOwner(c.comm, c.o)
		if got := strings.TrimSuffix(string(s.AppendLine(nil, &p)), "\n"); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

// encoding/json is the oracle: it must read back the owner's fields as set.
func TestJSONOwner(t *testing.T) {
	s := NewJSON(nil, Options{UTC: true})
	type container struct{ Runtime, ID, Pod string }
	type obj struct {
		PID       *uint32    `json:"pid"`
		Comm      *string    `json:"comm"`
		UID       *uint32    `json:"uid"`
		Cgroup    *string    `json:"cgroup"`
		CgroupID  *uint64    `json:"cgroup_id"`
		Container *container `json:"container"`
		Unit      *string    `json:"unit"`
	}
	read := func(p stages.Packet) obj {
		t.Helper()
		var o obj
		line := s.AppendObject(nil, &p)
		if err := json.Unmarshal(line, &o); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return o
	}
	o := read(withOwner("nginx", stages.Owner{PID: 812, UID: 33, CgroupID: 4711, Cgroup: "/system.slice/nginx.service", Unit: "nginx.service"}))
	if o.PID == nil || *o.PID != 812 || *o.Comm != "nginx" || *o.UID != 33 || *o.Cgroup != "/system.slice/nginx.service" ||
		*o.CgroupID != 4711 || o.Unit == nil || *o.Unit != "nginx.service" || o.Container != nil {
		t.Errorf("service owner: %+v", o)
	}
	o = read(withOwner("sleep", stages.Owner{PID: 9, CgroupID: 5, Cgroup: "/docker/x",
		Container: stages.Container{Runtime: "docker", ID: "x", Pod: "p"}, Unit: "ignored"}))
	if o.Container == nil || *o.Container != (container{"docker", "x", "p"}) || o.Unit != nil {
		t.Errorf("container owner: %+v", o)
	}
	o = read(withOwner("", stages.Owner{}))
	if o.PID != nil || o.Comm != nil || o.Cgroup != nil {
		t.Errorf("no process, yet %+v", o)
	}
	o = read(withOwner("x\"\\\n\xff", stages.Owner{PID: 3}))
	if *o.Comm != "x\"\\\n\ufffd" {
		t.Errorf("hostile comm read back as %q", *o.Comm)
	}
}

func TestPacketsOwnerLine(t *testing.T) {
	s := NewPackets(nil, Options{UTC: true})
	p := withOwner("dig", stages.Owner{PID: 77, UID: 0, CgroupID: 12, Cgroup: "/t.scope", Unit: "t.scope"})
	if got := string(s.AppendBlock(nil, &p)); !strings.Contains(got, "Process: [dig 77] uid 0, cgroup /t.scope (unit t.scope)\n") {
		t.Errorf("no Process line in\n%s", got)
	}
	p = withOwner("", stages.Owner{})
	if got := string(s.AppendBlock(nil, &p)); strings.Contains(got, "Process:") {
		t.Errorf("a Process line without a process:\n%s", got)
	}
}

// A capture's comment names the process as net_watch does, with its cgroup; one line.
func TestCommentOwner(t *testing.T) {
	p := withOwner("curl", stages.Owner{PID: 4242, CgroupID: 3, Cgroup: "/a b\n.scope"})
	got := string(AppendComment(nil, &p))
	if !strings.Contains(got, "10.0.1.7:80(internal) [curl 4242] cgroup=/a b\\x0a.scope") || strings.ContainsAny(got, "\n\r") {
		t.Errorf("comment %q", got)
	}
	p = withOwner("", stages.Owner{Cgroup: "/x"})
	if got := string(AppendComment(nil, &p)); strings.Contains(got, "[") || strings.Contains(got, "cgroup=") {
		t.Errorf("no process, yet comment %q", got)
	}
}

// A flow names the process its packets named; encoding/json reads the JSON form back.
func TestFlowsOwner(t *testing.T) {
	var buf bytes.Buffer
	for _, format := range []Format{FormatText, FormatJSON} {
		buf.Reset()
		out := NewOutput(&buf, false)
		s := NewFlows(out, Options{UTC: true, Format: format})
		f := &stages.Flow{Proto: stages.ProtoTCP, Src: netip.MustParseAddr("10.0.0.5"), Dst: netip.MustParseAddr("10.0.1.7"),
			SrcPort: 40000, DstPort: 80, End: stages.FlowIdle}
		copy(f.Owner.Comm[:], "curl")
		f.Owner.PID, f.Owner.Cgroup = 4242, "/t.scope"
		s.WriteFlow(f)
		f.Owner = stages.Owner{}
		s.WriteFlow(f)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d lines: %q", len(lines), buf.String())
		}
		if format == FormatText {
			if !strings.Contains(lines[0], "10.0.1.7:80 [curl 4242] end=") || strings.Contains(lines[1], "[") {
				t.Errorf("text flows:\n%s", buf.String())
			}
			continue
		}
		var o struct {
			PID    *uint32 `json:"pid"`
			Comm   string  `json:"comm"`
			Cgroup string  `json:"cgroup"`
		}
		if err := json.Unmarshal([]byte(lines[0]), &o); err != nil || o.PID == nil || *o.PID != 4242 || o.Comm != "curl" || o.Cgroup != "/t.scope" {
			t.Errorf("JSON flow %s: %+v %v", lines[0], o, err)
		}
		o.PID = nil
		if err := json.Unmarshal([]byte(lines[1]), &o); err != nil || o.PID != nil {
			t.Errorf("JSON flow of no process %s: %+v %v", lines[1], o, err)
		}
	}
}
