package fleet

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// TestSinkLinkedMessages: a packet that completed several heads or hellos (linked by Next, as
// pipelined requests are) gives a record each, in order; a QUIC hello is a tls record whose
// data says its QUIC version, as -o json's quic object does.
func TestSinkLinkedMessages(t *testing.T) {
	log := newFakeLog()
	p := NewPublisher(PublisherConfig{Drain: 5 * time.Second})
	log.h = p
	p.Start(log)
	s := NewSink(p, "h1", []string{KindHTTP, KindTLS})
	pk := &stages.Packet{Time: time.Unix(1700000000, 0), IPVersion: 4, EtherType: stages.EtherTypeIPv4, Proto: stages.ProtoTCP,
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 40000, DstPort: 80,
		HTTP: &stages.HTTPInfo{Request: true, Method: "GET", URI: "/a", Version: "HTTP/1.1", Host: "x",
			Next: &stages.HTTPInfo{Request: true, Method: "GET", URI: "/b", Version: "HTTP/1.1", Host: "x"}}}
	if err := s.Write(pk); err != nil {
		t.Fatal(err)
	}
	q := &stages.Packet{Time: time.Unix(1700000001, 0), IPVersion: 4, EtherType: stages.EtherTypeIPv4, Proto: stages.ProtoUDP,
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 40001, DstPort: 443,
		TLS: &stages.TLSInfo{Hello: stages.TLSClientHello, SNI: "q.example", QUIC: 1}}
	if err := s.Write(q); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.order) != 3 {
		t.Fatalf("%d records stored, want 3 (two heads, one hello): %v", len(log.order), log.order)
	}
	var got []map[string]any
	for _, id := range log.order {
		var env struct {
			Kind string         `json:"kind"`
			Seq  uint64         `json:"seq"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(log.stored[id], &env); err != nil {
			t.Fatalf("%s: %v: %s", id, err, log.stored[id])
		}
		env.Data["kind"], env.Data["seq"] = env.Kind, float64(env.Seq)
		got = append(got, env.Data)
	}
	for i, want := range []map[string]any{
		{"kind": "http", "seq": 1.0, "uri": "/a"},
		{"kind": "http", "seq": 2.0, "uri": "/b"},
		{"kind": "tls", "seq": 3.0, "sni": "q.example", "quic_version": "0x00000001", "hello": "client"},
	} {
		for k, v := range want {
			if got[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v (%v)", i+1, k, got[i][k], v, got[i])
			}
		}
	}
}
