package protocols

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

// rfcHex reads a test vector of testdata/quic: the hex of RFC 9001's and RFC 9369's Appendix A
// (the protected client and server Initial packets, and the plaintext frames they carry).
func rfcHex(t *testing.T, name string) []byte {
	t.Helper()
	s, err := os.ReadFile(filepath.Join("testdata", "quic", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(s)), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rfcDCID is the Destination Connection ID of the client's first Initial in both appendices.
var rfcDCID = []byte{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08}

// TestQUICInitialKeysRFC9001: the Initial secrets and keys of RFC 9001 A.1.
func TestQUICInitialKeysRFC9001(t *testing.T) {
	k, err := newQUICKeys(&quicV1, rfcDCID, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(k.iv[:]); got != "fa044b2f42a3fd3b46fb255c" {
		t.Errorf("client iv %s", got)
	}
	var mask [16]byte
	k.hp.Encrypt(mask[:], []byte{0xd1, 0xb1, 0xc9, 0x8d, 0xd7, 0x68, 0x9f, 0xb8, 0xec, 0x11, 0xd2, 0x42, 0xb1, 0x23, 0xdc, 0x9b})
	if got := hex.EncodeToString(mask[:5]); got != "437b9aec36" { // A.2: sample and mask
		t.Errorf("header protection mask %s", got)
	}
}

// TestQUICInitialRFC9001And9369: the client and server Initials of both appendices decrypt
// to the frames the RFCs show: the client's CRYPTO frame with its ClientHello (then PADDING to
// 1200 bytes), the server's ACK and CRYPTO frames with its ServerHello. RFC 9369's examples
// protect the same frames as RFC 9001's with version 2's salt and labels.
func TestQUICInitialRFC9001And9369(t *testing.T) {
	wantClient := rfcHex(t, "rfc9001_a2_crypto_frame.hex")
	wantServer := rfcHex(t, "rfc9001_a3_server_frames.hex")
	for _, c := range []struct {
		file    string
		version uint32
		server  bool
		want    []byte
	}{
		{"rfc9001_a2_client_initial.hex", QUICv1, false, wantClient},
		{"rfc9001_a3_server_initial.hex", QUICv1, true, wantServer},
		{"rfc9369_a2_client_initial.hex", QUICv2, false, wantClient},
		{"rfc9369_a3_server_initial.hex", QUICv2, true, wantServer},
	} {
		pkt := rfcHex(t, c.file)
		hd, ok := parseQUICLong(pkt)
		if !ok || hd.v.versionValue != c.version || hd.typ != hd.v.initial || hd.end != len(pkt) {
			t.Fatalf("%s: header %+v %v", c.file, hd, ok)
		}
		k, err := newQUICKeys(hd.v, rfcDCID, c.server)
		if err != nil {
			t.Fatal(err)
		}
		orig := bytes.Clone(pkt)
		plain, err := k.open(nil, pkt, hd)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if !bytes.Equal(pkt, orig) {
			t.Errorf("%s: the packet was changed", c.file)
		}
		if !bytes.HasPrefix(plain, c.want) || len(bytes.Trim(plain[len(c.want):], "\x00")) != 0 {
			t.Errorf("%s: plaintext\n%x\nwant\n%x", c.file, plain, c.want)
		}
	}
}

// rfcDatagram is a UDP packet from the RFCs' client (or server) carrying payload.
func rfcDatagram(t *testing.T, payload []byte, server bool, at time.Time) *stages.Packet {
	p := &stages.Packet{Time: at, IPVersion: 4, Proto: stages.ProtoUDP, Src: stagestest.Addr(t, "192.0.2.10"), Dst: stagestest.Addr(t, "198.51.100.44"),
		SrcPort: 50123, DstPort: 4433, L4HdrLen: 8, Payload: payload, PayloadLen: uint16(len(payload))}
	if server {
		p.Src, p.Dst, p.SrcPort, p.DstPort = p.Dst, p.Src, p.DstPort, p.SrcPort
	}
	return p
}

// TestQUICHandlerRFC: through the handler, on a port that is not 443, the client Initial of
// each appendix gives the ClientHello RFC 9001 A.2 shows (SNI example.com, ALPN "alpn", the
// two TLS 1.3 suites 0x1301 and 0x1302, TLS 1.3 only, eleven extensions) with a QUIC JA4, q13d0211an_...; the server's Initial that follows, its
// ServerHello (TLS_AES_128_GCM_SHA256).
func TestQUICHandlerRFC(t *testing.T) {
	for _, v := range []struct {
		prefix  string
		version uint32
	}{{"rfc9001", QUICv1}, {"rfc9369", QUICv2}} {
		h := NewQUICHandler(QUICConfig{})
		at := time.Unix(1700000000, 0)
		p := rfcDatagram(t, rfcHex(t, v.prefix+"_a2_client_initial.hex"), false, at)
		h.Packet(p)
		ch := p.TLS
		if ch == nil || ch.Hello != stages.TLSClientHello || ch.QUIC != v.version || ch.SNI != "example.com" ||
			strings.Join(ch.ALPN, ",") != "alpn" || hexU16s(ch.Ciphers, true) != "0x1301,0x1302" ||
			hexU16s(ch.Versions, true) != "0x0304" || ch.Partial || !strings.HasPrefix(ch.JA4, "q13d0211an_") {
			t.Fatalf("%s ClientHello %+v", v.prefix, ch)
		}
		if want := JA4('q', ch); ch.JA4 != want || strings.Replace(JA4('t', ch), "t", "q", 1) != want {
			t.Errorf("%s JA4 %s", v.prefix, ch.JA4)
		}
		s := rfcDatagram(t, rfcHex(t, v.prefix+"_a3_server_initial.hex"), true, at.Add(time.Millisecond))
		h.Packet(s)
		if sh := s.TLS; sh == nil || sh.Hello != stages.TLSServerHello || sh.Cipher != 0x1301 || sh.QUIC != v.version ||
			!strings.HasPrefix(sh.JA4, "q130200_1301_") {
			t.Errorf("%s ServerHello %+v", v.prefix, s.TLS)
		}
		if st := h.Stats(); st.Initials != 2 || st.Hellos != 2 || st.Undecrypted != 0 || st.Conns != 1 {
			t.Errorf("%s stats %+v", v.prefix, st)
		}
		// The same client Initial again (a retransmission) reports nothing new.
		again := rfcDatagram(t, rfcHex(t, v.prefix+"_a2_client_initial.hex"), false, at.Add(2*time.Millisecond))
		h.Packet(again)
		if again.TLS != nil {
			t.Errorf("%s: retransmission reported", v.prefix)
		}
	}
}

// TestQUICDamaged: a client Initial with one byte of its payload flipped does not decrypt
// (AES-GCM's tag), and one cut short is not read: no hello, no panic, counted.
func TestQUICDamaged(t *testing.T) {
	pkt := rfcHex(t, "rfc9001_a2_client_initial.hex")
	h := NewQUICHandler(QUICConfig{})
	at := time.Unix(1700000000, 0)
	flipped := bytes.Clone(pkt)
	flipped[600] ^= 1
	p := rfcDatagram(t, flipped, false, at)
	h.Packet(p)
	for n := range len(pkt) {
		q := rfcDatagram(t, pkt[:n], false, at)
		h.Packet(q)
		if q.TLS != nil {
			t.Fatalf("%d bytes of 1200: a hello", n)
		}
	}
	if p.TLS != nil || h.Stats().Undecrypted != 1 || h.Stats().Initials != 0 {
		t.Errorf("flipped byte: %+v, stats %+v", p.TLS, h.Stats())
	}
}

var quicCaptures = []string{"quic_ja4_chrome.pcap", "quic_v2_echo.pcap", "quic_crypto_across_initials.pcap",
	"quic_crypto_unordered_rawip.pcap", "quic_port_4433.pcap", "tls_quic_ja4_cloudflare.pcap"}

// runQUIC runs a capture through a flow table with every handler, QUIC's included, and returns
// the hellos by frame.
func runQUIC(t *testing.T, pcap string, snap stagestest.Snap) map[uint64]*stages.TLSInfo {
	ft := flows.New(flows.Config{Handlers: []flows.Handler{NewDNSTracker(DNSConfig{}), HTTPHandler{}, &TLSHandler{}, NewQUICHandler(QUICConfig{})}})
	out := map[uint64]*stages.TLSInfo{}
	for p := range ft.Stage()(stagestest.Capture(t, stagestest.PcapPath(t, pcap), snap)) {
		if p.TLS != nil {
			out[p.Num] = p.TLS
		}
	}
	return out
}

// TestQUICAgainstTShark: every hello tshark decrypts from the QUIC captures (v1 and v2, a
// ClientHello across three Initials, CRYPTO frames out of order, port 4433) is ours, on the
// same frame, with the same SNI, ALPN, versions, suites, extensions, groups and length, and the
// QUIC version; the JA4 equals one computed from tshark's fields alone (with q for QUIC).
// FoxIO's ja4 tool gives q13d0310h3_55b375c5d22e_cd85d2d88918 for Chrome's eleven hellos and
// Cloudflare's (suricata-verify's ja4-quic and ja4-tls-quic), and t13d1516h2_8daaf6152771_e5627efa2ab1
// for the TLS one of the latter: so do we.
func TestQUICAgainstTShark(t *testing.T) {
	for _, pcap := range quicCaptures {
		t.Run(pcap, func(t *testing.T) {
			got := runQUIC(t, "protocols/"+pcap, stagestest.FullSnap)
			rows := stagestest.TSV(t, "quic_"+strings.ReplaceAll(pcap, ".", "_")+".tsv")
			quic := 0
			for _, r := range rows {
				num, _ := strconv.ParseUint(r[0], 10, 64)
				h := got[num]
				if h == nil || h.QUIC == 0 {
					t.Errorf("frame %d: tshark decrypts a hello, we have %+v", num, h)
					continue
				}
				quic++
				if want := strings.Split(r[11], ",")[0]; want != fmt.Sprintf("0x%08x", h.QUIC) {
					t.Errorf("frame %d: version %s, we 0x%08x", num, want, h.QUIC)
				}
				// checkTLSRow's JA4 is TLS's: compare ours with its q.
				tcp := *h
				if h.Hello == stages.TLSClientHello {
					tcp.JA4 = "t" + h.JA4[1:]
				}
				checkTLSRow(t, num, r, &tcp)
				if h.Hello == stages.TLSClientHello && strings.HasPrefix(pcap, "quic_ja4_chrome") || strings.HasPrefix(pcap, "tls_quic") && h.Hello == stages.TLSClientHello {
					if h.JA4 != "q13d0310h3_55b375c5d22e_cd85d2d88918" {
						t.Errorf("frame %d: JA4 %s, FoxIO's q13d0310h3_55b375c5d22e_cd85d2d88918", num, h.JA4)
					}
				}
			}
			ours := 0
			for num, h := range got {
				if h.QUIC != 0 {
					ours++
				} else if pcap == "tls_quic_ja4_cloudflare.pcap" && h.Hello == stages.TLSClientHello && h.JA4 != "t13d1516h2_8daaf6152771_e5627efa2ab1" {
					t.Errorf("frame %d: TLS JA4 %s, FoxIO's t13d1516h2_8daaf6152771_e5627efa2ab1", num, h.JA4)
				}
			}
			if ours != quic {
				t.Errorf("we report %d QUIC hellos, tshark %d", ours, quic)
			}
		})
	}
}

// sealInitial builds a client Initial of version 1 for dcid carrying frames, padded to 1200
// bytes: the test's own packet protection (RFC 9001 5.3, 5.4), for tests of bounds only; the
// decryption itself is checked against the RFCs' packets above.
func sealInitial(t *testing.T, dcid []byte, frames []byte) []byte {
	k, err := newQUICKeys(&quicV1, dcid, false)
	if err != nil {
		t.Fatal(err)
	}
	hdr := []byte{0xc3, 0, 0, 0, 1, byte(len(dcid))}
	hdr = append(hdr, dcid...)
	hdr = append(hdr, 0, 0) // no source id, no token
	plen := 1200 - len(hdr) - 2 - 4 - 16
	frames = append(frames, make([]byte, plen-len(frames))...)
	n := 4 + len(frames) + 16
	hdr = append(hdr, 0x40|byte(n>>8), byte(n))
	pnOff := len(hdr)
	hdr = append(hdr, 0, 0, 0, 7) // packet number 7
	nonce := k.iv
	nonce[11] ^= 7
	pkt := k.aead.Seal(hdr, nonce[:], frames, hdr)
	var mask [16]byte
	k.hp.Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
	pkt[0] ^= mask[0] & 0x0f
	for i := range 4 {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt
}

// TestQUICBounded: handshakes that never finish their hello fill neither the table nor the
// buffers past their bounds; evictions are counted and the buffers given back.
func TestQUICBounded(t *testing.T) {
	h := NewQUICHandler(QUICConfig{MaxConns: 16, Budget: 64 << 10})
	at := time.Unix(1700000000, 0)
	crypto := []byte{0x06, 0x44, 0x00, 0x40, 0x80} // CRYPTO at offset 1024, 128 bytes: a hole before it
	crypto = append(crypto, make([]byte, 128)...)
	for i := range 100 {
		p := rfcDatagram(t, sealInitial(t, []byte{1, 2, 3, 4, 5, 6, 7, byte(i)}, bytes.Clone(crypto)), false, at)
		p.SrcPort = uint16(40000 + i)
		h.Packet(p)
		if st := h.Stats(); st.Conns > 16 || st.Bytes > 64<<10 {
			t.Fatalf("after %d: %+v", i+1, st)
		}
	}
	if st := h.Stats(); st.Initials != 100 || st.Evicted != 84 || st.Conns != 16 || st.Hellos != 0 {
		t.Errorf("stats %+v", st)
	}
	h.expire(at.Add(time.Hour))
	if st := h.Stats(); st.Conns != 0 || st.Bytes != 0 || st.Expired != 16 {
		t.Errorf("after expiry: %+v", st)
	}
}
