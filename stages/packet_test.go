package stages

import (
	"bytes"
	"testing"
)

// CopyBytes leaves p with its own copies of Payload and Frame, in buf's room.
func TestCopyBytes(t *testing.T) {
	src := []byte("0123456789abcdef")
	p := Packet{Frame: src, Payload: src[10:14]}
	buf := make([]byte, 0, 64)
	buf = p.CopyBytes(buf)
	src[10], src[0] = 'X', 'Y' // the source reuses its buffer
	if string(p.Payload) != "abcd" || string(p.Frame) != "0123456789abcdef" {
		t.Fatalf("after the source changed: payload %q frame %q", p.Payload, p.Frame)
	}
	if &buf[0] != &p.Payload[0] {
		t.Error("the copy is not in buf's room")
	}
	p.Payload = append(p.Payload, 'Z') // capacity ends at the payload: no write into Frame
	if !bytes.Equal(p.Frame, []byte("0123456789abcdef")) {
		t.Errorf("appending to Payload changed Frame: %q", p.Frame)
	}
	q := Packet{Payload: []byte("x")}
	q.CopyBytes(nil)
	if q.Frame != nil {
		t.Error("a packet without a frame got one")
	}
}
