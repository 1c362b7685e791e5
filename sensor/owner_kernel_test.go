package sensor_test

import (
	"errors"
	"testing"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// ownerOf replays frame into xdp_sensor and decodes the owner its record names.
func ownerOf(t *testing.T, rep *sensor.Replayer, frame []byte) stages.Owner {
	t.Helper()
	raw, err := rep.Replay(frame, sensor.Meta{Ifindex: 3, WireLen: uint32(len(frame))})
	if err != nil {
		t.Fatal(err)
	}
	var p stages.Packet
	if err := (sensor.Decoder{}).Decode(raw, &p); err != nil {
		t.Fatal(err)
	}
	if p.Dir != stages.DirIn {
		t.Fatalf("direction %v: the owner flag leaked into it", p.Dir)
	}
	return p.Owner
}

func counter(t *testing.T, objs *sensor.Objects, k gen.SensorCounterKey) uint64 {
	t.Helper()
	c, err := sensor.ReadCounters(objs)
	if err != nil {
		t.Fatal(err)
	}
	return c[k]
}

// TestOwnerIngressLookup fills the tables by hand (the values are the oracle) and replays a
// UDP reply into xdp_sensor: its flow names the owner; a flow whose socket is gone, a port two
// sockets share and a packet of no known flow name none.
func TestOwnerIngressLookup(t *testing.T) {
	sensortest.RequireBPF(t)
	objs, rep := loadWith(t, sensor.Config{IngressOnly: true, Owner: &sensor.OwnerConfig{Netns: 1}})
	// 192.0.2.1:53 answers 192.0.2.2:40000, the local end.
	frame := ser(t, ethL(layers.EthernetTypeIPv4), ip4L("192.0.2.1", "192.0.2.2", layers.IPProtocolUDP), udpL(53, 40000))
	if o := ownerOf(t, rep, frame); o.Known() || o != (stages.Owner{}) {
		t.Fatalf("empty tables, yet owner %+v", o)
	}

	var flow gen.SensorOwnerFlowKey
	copy(flow.Local[:], []byte{192, 0, 2, 2})
	copy(flow.Remote[:], []byte{192, 0, 2, 1})
	flow.Lport, flow.Rport, flow.Proto, flow.Version = 40000, 53, 17, 4
	var so gen.SensorSockOwner
	so.O.Pid, so.O.Uid, so.O.CgroupId = 4242, 1000, 9
	for i, c := range "curl" {
		so.O.Comm[i] = int8(c)
	}
	so.Match = 1
	cookie := uint64(77)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(objs.OwnerSock.Put(cookie, so))
	must(objs.OwnerFlow.Put(flow, cookie))
	o := ownerOf(t, rep, frame)
	if o.PID != 4242 || o.UID != 1000 || o.CgroupID != 9 || string(o.CommBytes()) != "curl" {
		t.Fatalf("owner %+v, want curl 4242 uid 1000 cgroup 9", o)
	}

	// The socket closed (its entry gone, the flow's left behind): no process, counted stale.
	must(objs.OwnerSock.Delete(cookie))
	stale := counter(t, objs, gen.SensorCounterKeyCNT_OWNER_STALE)
	if o := ownerOf(t, rep, frame); o.Known() {
		t.Fatalf("a closed socket named: %+v", o)
	}
	if n := counter(t, objs, gen.SensorCounterKeyCNT_OWNER_STALE); n != stale+1 {
		t.Fatalf("stale counter %d, want %d", n, stale+1)
	}
	must(objs.OwnerFlow.Delete(flow))

	// A bound port (any address) leads to its one socket.
	bk := gen.SensorOwnerBoundKey{Port: 40000, Proto: 17, Version: 4}
	so.O.Pid = 99
	must(objs.OwnerSock.Put(uint64(78), so))
	must(objs.OwnerBound.Put(bk, gen.SensorOwnerBound{Cookie: 78, N: 1}))
	if o := ownerOf(t, rep, frame); o.PID != 99 {
		t.Fatalf("bound port: owner %+v, want pid 99", o)
	}
	// Two sockets on it: which one gets the datagram is not known, so none is named.
	must(objs.OwnerBound.Put(bk, gen.SensorOwnerBound{Cookie: 0, N: 2}))
	amb := counter(t, objs, gen.SensorCounterKeyCNT_OWNER_AMBIGUOUS)
	if o := ownerOf(t, rep, frame); o.Known() {
		t.Fatalf("a shared port named: %+v", o)
	}
	if n := counter(t, objs, gen.SensorCounterKeyCNT_OWNER_AMBIGUOUS); n != amb+1 {
		t.Fatalf("ambiguous counter %d, want %d", n, amb+1)
	}
	// Another port: nothing.
	other := ser(t, ethL(layers.EthernetTypeIPv4), ip4L("192.0.2.1", "192.0.2.2", layers.IPProtocolUDP), udpL(53, 40001))
	if o := ownerOf(t, rep, other); o.Known() {
		t.Fatalf("an unknown port named: %+v", o)
	}
}

// TestOwnerTablesBounded attaches the hooks for real, with tables of 8 sockets and 4 bound
// ports, and makes 32 UDP sockets in a network namespace of the test's own (nothing else
// makes sockets there): 32 are added, at most 8 and 4 kept, the rest counted evicted; closing
// them removes every one still kept, and the socket table ends empty.
func TestOwnerTablesBounded(t *testing.T) {
	sensortest.RequireBPF(t)
	ns := sensortest.NewNetns(t)
	var cookie uint64
	if err := ns.Do(func() (err error) { cookie, err = sensor.NetnsCookie(); return err }); err != nil {
		t.Fatal(err)
	}
	objs, err := sensor.Load(sensor.Config{Owner: &sensor.OwnerConfig{Netns: cookie, MaxSockets: 8, MaxBound: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	links, err := sensor.AttachOwner(objs)
	if err != nil {
		t.Fatal(err)
	}
	defer links.Close()

	const n = 32
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if err := ns.Do(func() error {
		for i := 0; i < n; i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{}); err != nil { // any address, a port of the kernel's choice
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before, err := sensor.ReadOwnerCounts(objs)
	if err != nil {
		t.Fatal(err)
	}
	socks, bound := before.Tables[0], before.Tables[2]
	t.Logf("made %d: %+v; %+v", n, socks, bound)
	if socks.Added != n || bound.Added != n {
		t.Fatalf("added %d sockets and %d bound ports, want %d each", socks.Added, bound.Added, n)
	}
	if socks.Present > 8 || bound.Present > 4 || socks.Present == 0 {
		t.Fatalf("%d sockets (max 8) and %d bound ports (max 4) kept", socks.Present, bound.Present)
	}
	if socks.Evicted != n-socks.Present || socks.Removed != 0 {
		t.Fatalf("sockets: %d evicted and %d removed, want %d and 0", socks.Evicted, socks.Removed, n-socks.Present)
	}
	if m := objs.OwnerSock.MaxEntries(); m != 8 || objs.OwnerBound.MaxEntries() != 4 {
		t.Fatalf("table sizes %d and %d, want 8 and 4", m, objs.OwnerBound.MaxEntries())
	}

	for _, fd := range fds {
		unix.Close(fd)
	}
	fds = nil
	after, err := sensor.ReadOwnerCounts(objs)
	if err != nil {
		t.Fatal(err)
	}
	socks2 := after.Tables[0]
	t.Logf("closed: %+v; %+v", socks2, after.Tables[2])
	if socks2.Present != 0 || socks2.Removed != socks.Present || socks2.Added != n {
		t.Fatalf("after closing: %d kept, %d removed (want 0 and the %d kept before), %d added", socks2.Present, socks2.Removed, socks.Present, socks2.Added)
	}
	if after.Tables[2].Present > 4 {
		t.Fatalf("%d bound ports kept, max 4", after.Tables[2].Present)
	}
	var k uint64
	if err := objs.OwnerSock.NextKey(nil, &k); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("the socket table is not empty: %v", err)
	}
}
