package protocols

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
)

var tlsCaptures = []struct{ pcap, tsv string }{
	{"chains/https.pcap", "tls_https_pcap.tsv"},
	{"protocols/tls12_clienthello_sni.pcap", "tls_tls12_clienthello_sni_pcap.tsv"},
	{"protocols/tls13_clienthello_sni.pcapng", "tls_tls13_clienthello_sni_pcapng.tsv"},
	{"protocols/linktype_sll2_tls13_sni.pcap", "tls_linktype_sll2_tls13_sni_pcap.tsv"},
	{"protocols/tls13_large_clienthello_kyber.pcap", "tls_tls13_large_clienthello_kyber_pcap.tsv"},
	{"protocols/tls13_ech_ipv6.pcapng", "tls_tls13_ech_ipv6_pcapng.tsv"},
}

func hexU16s(vs []uint16, grease bool) string {
	var s []string
	for _, v := range vs {
		if grease || !IsGREASE(v) {
			s = append(s, fmt.Sprintf("0x%04x", v))
		}
	}
	return strings.Join(s, ",")
}

func decU16s(vs []uint16) string {
	var s []string
	for _, v := range vs {
		if !IsGREASE(v) {
			s = append(s, strconv.Itoa(int(v)))
		}
	}
	return strings.Join(s, "-")
}

// TestTLSAgainstTShark: every ClientHello and ServerHello tshark decodes is ours on the same
// frame, with the same SNI, ALPN, supported versions, cipher suites, extensions and groups
// (compared with tshark's ja3_full string) and handshake length; the JA4 we compute equals a
// JA4 computed here, independently, from tshark's fields alone.
func TestTLSAgainstTShark(t *testing.T) {
	for _, snap := range []stagestest.Snap{stagestest.KernelSnap, stagestest.FullSnap} {
		for _, c := range tlsCaptures {
			t.Run(c.pcap, func(t *testing.T) {
				got := runApp(t, c.pcap, snap)
				n := 0
				for _, r := range stagestest.TSV(t, c.tsv) {
					num, _ := strconv.ParseUint(r[0], 10, 64)
					h := got[num].tls
					if h == nil {
						t.Errorf("frame %d: tshark decodes a hello, we do not", num)
						continue
					}
					n++
					checkTLSRow(t, num, r, h)
				}
				ours := 0
				for _, res := range got {
					if res.tls != nil {
						ours++
					}
				}
				if ours != n {
					t.Errorf("we decoded %d hellos, tshark %d", ours, n)
				}
			})
		}
	}
}

func checkTLSRow(t *testing.T, num uint64, r []string, h *stages.TLSInfo) {
	t.Helper()
	eq := func(field, want, got string) {
		if want != got {
			t.Errorf("frame %d %s: tshark %q, we %q", num, field, want, got)
		}
	}
	eq("type", r[1], strconv.Itoa(int(h.Hello)))
	eq("length", r[7], strconv.Itoa(int(h.Length)))
	if h.Partial {
		t.Errorf("frame %d: partial", num)
	}
	if h.Hello == stages.TLSServerHello {
		eq("selected version", r[4], hexU16s(h.Versions, true))
		eq("cipher", r[5], fmt.Sprintf("0x%04x", h.Cipher))
		return
	}
	eq("sni", r[2], h.SNI)
	eq("alpn", r[3], strings.Join(h.ALPN, ","))
	eq("versions", r[4], hexU16s(h.Versions, true))
	eq("ciphers", r[5], hexU16s(h.Ciphers, true))
	ja3 := strings.Split(r[6], ",")
	eq("ja3 version", ja3[0], strconv.Itoa(int(h.LegacyVersion)))
	eq("ja3 ciphers", ja3[1], decU16s(h.Ciphers))
	eq("ja3 extensions", ja3[2], decU16s(h.Extensions))
	eq("ja3 groups", ja3[3], decU16s(h.Groups))
	eq("ja4", independentJA4(t, r), h.JA4)
}

// independentJA4 computes JA4 from tshark's fields following the specification's text, without
// our TLS parser: the extension list comes from ja3_full, the signature algorithms from
// tls.handshake.sig_hash_alg (the first list when signature_algorithms precedes
// signature_algorithms_cert).
func independentJA4(t *testing.T, r []string) string {
	ja3 := strings.Split(r[6], ",")
	nums := func(s string) []int {
		var out []int
		for _, f := range strings.Split(s, "-") {
			if f != "" {
				v, _ := strconv.Atoi(f)
				out = append(out, v)
			}
		}
		return out
	}
	ciphers, exts := nums(ja3[1]), nums(ja3[2])
	version := "00"
	best := 0
	for _, v := range strings.Split(r[4], ",") {
		x, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 16)
		if err == nil && !IsGREASE(uint16(x)) && int(x) > best {
			best = int(x)
		}
	}
	if best == 0 {
		best, _ = strconv.Atoi(ja3[0])
	}
	version = map[int]string{0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}[best]
	sni := "i"
	if slices.Contains(exts, 0) {
		sni = "d"
	}
	alpn := "00"
	if r[3] != "" {
		first := strings.Split(r[3], ",")[0]
		alpn = first[:1] + first[len(first)-1:]
	}
	a := fmt.Sprintf("t%s%s%02d%02d%s", version, sni, min(len(ciphers), 99), min(len(exts), 99), alpn)
	hx := func(vs []int) string {
		var s []string
		for _, v := range vs {
			s = append(s, fmt.Sprintf("%04x", v))
		}
		return strings.Join(s, ",")
	}
	slices.Sort(ciphers)
	var sorted []int
	for _, e := range exts {
		if e != 0 && e != 16 {
			sorted = append(sorted, e)
		}
	}
	slices.Sort(sorted)
	c := hx(sorted)
	var sig []string
	if r[8] != "" && slices.Contains(exts, 13) {
		// tshark's sig_hash_alg lists every extension that carries signature algorithms
		// (delegated_credentials 34, signature_algorithms 13, signature_algorithms_cert 50) in
		// wire order; sig_hash_alg_len gives each list's length.
		all := strings.Split(r[8], ",")
		lens := strings.Split(r[9], ",")
		k := 0
		for _, e := range exts {
			if e == 13 {
				break
			}
			if e == 34 || e == 50 {
				k++
			}
		}
		for i := 0; i < k; i++ {
			n, _ := strconv.Atoi(lens[i])
			all = all[n/2:]
		}
		n, _ := strconv.Atoi(lens[k])
		for _, s := range all[:n/2] {
			sig = append(sig, strings.TrimPrefix(s, "0x"))
		}
	}
	if len(sig) > 0 {
		c += "_" + strings.Join(sig, ",")
	}
	h := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])[:12]
	}
	return a + "_" + h(hx(ciphers)) + "_" + h(c)
}

// buildClientHello makes a ClientHello record with the given ciphers and extensions in order.
func buildClientHello(ciphers []uint16, exts []uint16, sni string, alpn []string, sigalgs []uint16, versions []uint16) []byte {
	u16 := func(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
	var body []byte
	body = u16(body, 0x0303)
	body = append(body, make([]byte, 32)...)
	body = append(body, 0) // session id
	body = u16(body, 2*len(ciphers))
	for _, c := range ciphers {
		body = u16(body, int(c))
	}
	body = append(body, 1, 0) // compression: null
	var ext []byte
	for _, e := range exts {
		var d []byte
		switch e {
		case tlsExtServerName:
			d = u16(d, len(sni)+3)
			d = append(d, 0)
			d = u16(d, len(sni))
			d = append(d, sni...)
		case tlsExtALPN:
			var l []byte
			for _, p := range alpn {
				l = append(l, byte(len(p)))
				l = append(l, p...)
			}
			d = u16(d, len(l))
			d = append(d, l...)
		case tlsExtSignatureAlgs:
			d = u16(d, 2*len(sigalgs))
			for _, s := range sigalgs {
				d = u16(d, int(s))
			}
		case tlsExtSupportedVersions:
			d = append(d, byte(2*len(versions)))
			for _, v := range versions {
				d = u16(d, int(v))
			}
		}
		ext = u16(ext, int(e))
		ext = u16(ext, len(d))
		ext = append(ext, d...)
	}
	body = u16(body, len(ext))
	body = append(body, ext...)
	hs := []byte{stages.TLSClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	rec := []byte{0x16, 3, 1}
	rec = u16(rec, len(hs))
	return append(rec, hs...)
}

// The example of the JA4 specification (FoxIO-LLC/ja4 technical_details/JA4.md): its cipher,
// extension and signature-algorithm lists in their original order.
var (
	specCiphers = []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}
	specExts    = []uint16{0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015}
	specSigAlgs = []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601}
)

func TestJA4SpecExample(t *testing.T) {
	// GREASE values sprinkled in must not change anything.
	ciphers := append([]uint16{0x0a0a}, specCiphers...)
	exts := append([]uint16{0x1a1a}, specExts...)
	exts = append(exts, 0x2a2a)
	rec := buildClientHello(ciphers, exts, "example.com", []string{"h2", "http/1.1"}, specSigAlgs, []uint16{0x3a3a, 0x0304, 0x0303})
	msg, _, _, complete, ok, _ := tlsHandshake(rec, nil)
	if !ok || !complete {
		t.Fatal("record not recognised")
	}
	h := ParseTLSHello(msg)
	if h == nil || h.Partial {
		t.Fatalf("parse: %+v", h)
	}
	const wantRaw = "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
	if got := JA4Raw('t', h); got != wantRaw {
		t.Errorf("JA4_r\n got %s\nwant %s", got, wantRaw)
	}
	if got, want := h.JA4, "t13d1516h2_8daaf6152771_e5627efa2ab1"; got != want {
		t.Errorf("JA4 %s, want %s", got, want)
	}
	// Without signature algorithms the extension list is hashed alone: 6d807ffa2a79.
	noSig := slices.DeleteFunc(slices.Clone(exts), func(e uint16) bool { return e == tlsExtSignatureAlgs })
	rec = buildClientHello(ciphers, noSig, "example.com", []string{"h2"}, nil, []uint16{0x0304})
	msg, _, _, _, _, _ = tlsHandshake(rec, nil)
	h = ParseTLSHello(msg)
	// The specification's example list keeps 000d in the sorted extensions; ours dropped the
	// extension itself, so compare the hash of the specification's string directly too.
	if got := ja4Hash("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"); got != "6d807ffa2a79" {
		t.Errorf("extension hash without signatures %s", got)
	}
	if !strings.HasPrefix(h.JA4, "t13d1515h2_8daaf6152771_") {
		t.Errorf("JA4 without signature algorithms: %s", h.JA4)
	}
	// ALPN rules of the specification.
	for in, want := range map[string]string{"": "00", "h2": "h2", "http/1.1": "h1", "x": "xx", "\xab": "ab", "\xab\xcd": "ad", "0\xab": "3b", "01\xab\xcd": "3d", "0\xab\xcd1": "01"} {
		var alpn []string
		if in != "" {
			alpn = []string{in}
		}
		if got := ja4ALPN(alpn); got != want {
			t.Errorf("ALPN %q: %s, want %s", in, got, want)
		}
	}
	if got := ja4Hash(""); got != "000000000000" {
		t.Errorf("empty hash %s", got)
	}
}

// TestTLSClientHelloAcrossSegments: the kyber ClientHello cut into 500-byte segments and
// delivered out of order gives the same SNI and JA4 as in one piece, on the last segment.
func TestTLSClientHelloAcrossSegments(t *testing.T) {
	whole := runApp(t, "protocols/tls13_large_clienthello_kyber.pcap", stagestest.FullSnap)[4].tls
	if whole == nil || whole.SNI != "lh3.google.com" {
		t.Fatalf("whole hello: %+v", whole)
	}
	setup, segs := stagestest.Split(t, "protocols/tls13_large_clienthello_kyber.pcap", 4, 500)
	if len(segs) != 4 {
		t.Fatalf("%d segments", len(segs))
	}
	ft := flows.New(flows.Config{Handlers: []flows.Handler{&TLSHandler{}}})
	for _, p := range setup {
		ft.Process(p)
	}
	var got []*stages.TLSInfo
	for _, i := range []int{1, 0, 3, 2} {
		p := segs[i]
		ft.Process(p)
		if p.TLS != nil {
			got = append(got, p.TLS)
			if i != 2 {
				t.Errorf("reported on segment %d, not on the one completing the hello", i)
			}
		}
	}
	if len(got) != 1 {
		t.Fatalf("reported %d times", len(got))
	}
	h := got[0]
	if h.SNI != whole.SNI || h.JA4 != whole.JA4 || h.Partial || h.Segments != 4 {
		t.Errorf("split hello: SNI %q JA4 %s partial %v segments %d; whole: %q %s", h.SNI, h.JA4, h.Partial, h.Segments, whole.SNI, whole.JA4)
	}
}

// TestTLSClientHelloCutShort: with the kernel's payload policy, a continuation segment carries
// only its first 64 bytes. The hello is then reported Partial, with what precedes the hole,
// and no JA4 (which needs every extension).
func TestTLSClientHelloCutShort(t *testing.T) {
	setup, segs := stagestest.Split(t, "protocols/tls13_large_clienthello_kyber.pcap", 4, 1200)
	ft := flows.New(flows.Config{Handlers: []flows.Handler{&TLSHandler{}}})
	for _, p := range setup {
		ft.Process(p)
	}
	var got *stages.TLSInfo
	for i, p := range segs {
		if i > 0 {
			p.Payload = p.Payload[:64]
		}
		ft.Process(p)
		if p.TLS != nil {
			got = p.TLS
		}
	}
	if got == nil || !got.Partial || got.JA4 != "" || len(got.Ciphers) == 0 {
		t.Fatalf("cut-short hello: %+v", got)
	}
}

// TestJA4PublishedFingerprints: captures of browsers give the fingerprints FoxIO publishes for
// them (FoxIO-LLC/ja4 ja4plus-mapping.csv: "Chromium Browser,,,,t13d1516h2_8daaf6152771_02713d6af862").
func TestJA4PublishedFingerprints(t *testing.T) {
	for pcap, want := range map[string]string{
		"protocols/tls13_ech_ipv6.pcapng": "t13d1516h2_8daaf6152771_02713d6af862", // Chrome with ECH
	} {
		var got []string
		for _, r := range runApp(t, pcap, stagestest.KernelSnap) {
			if r.tls != nil && r.tls.Hello == stages.TLSClientHello {
				got = append(got, r.tls.JA4)
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: JA4 %v, want %s", pcap, got, want)
		}
	}
	// The same file publishes JA4S t130200_1301_a56c5b993250 for a server answering TLS 1.3
	// with supported_versions then key_share; zeek.org's server does so with cipher 1302.
	for _, r := range runApp(t, "protocols/linktype_sll2_tls13_sni.pcap", stagestest.KernelSnap) {
		if r.tls != nil && r.tls.Hello == stages.TLSServerHello && r.tls.JA4 != "t130200_1302_a56c5b993250" {
			t.Errorf("JA4S %s", r.tls.JA4)
		}
	}
}

// TestJA4SSpecExample: the JA4S specification's example (technical_details/JA4S.md): TLS 1.2,
// cipher c030, extensions 0005,0017,ff01,0000 in that order, no ALPN.
func TestJA4SSpecExample(t *testing.T) {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, 0x0303)
	body = append(body, make([]byte, 32)...)
	body = append(body, 0)                             // session id
	body = binary.BigEndian.AppendUint16(body, 0xc030) // cipher
	body = append(body, 0)                             // compression
	exts := []byte{0, 5, 0, 0, 0, 0x17, 0, 0, 0xff, 1, 0, 1, 0, 0, 0, 0, 0}
	body = binary.BigEndian.AppendUint16(body, uint16(len(exts)))
	body = append(body, exts...)
	msg := append([]byte{stages.TLSServerHello, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	h := ParseTLSHello(msg)
	if h == nil || h.Partial {
		t.Fatalf("%+v", h)
	}
	if got := JA4SRaw('t', h); got != "t120400_c030_0005,0017,ff01,0000" {
		t.Errorf("JA4S_r %s", got)
	}
	if h.JA4 != "t120400_c030_4e8089b08790" {
		t.Errorf("JA4S %s", h.JA4)
	}
}

// TestJA4SAgainstTShark: each ServerHello's JA4S equals one computed here from tshark's fields
// (supported_versions, alpn, ciphersuite, extension types in order).
func TestJA4SAgainstTShark(t *testing.T) {
	for _, c := range tlsCaptures {
		got := runApp(t, c.pcap, stagestest.KernelSnap)
		for _, r := range stagestest.TSV(t, c.tsv) {
			if r[1] != "2" {
				continue
			}
			num, _ := strconv.ParseUint(r[0], 10, 64)
			h := got[num].tls
			if h == nil {
				t.Fatalf("%s frame %d: no ServerHello", c.pcap, num)
			}
			version := "12"
			if r[4] == "0x0304" {
				version = "13"
			}
			exts := strings.Split(r[10], ",")
			alpn := "00"
			if r[3] != "" {
				alpn = r[3][:1] + r[3][len(r[3])-1:]
			}
			var hx []string
			for _, e := range exts {
				n, _ := strconv.Atoi(e)
				hx = append(hx, fmt.Sprintf("%04x", n))
			}
			sum := sha256.Sum256([]byte(strings.Join(hx, ",")))
			want := fmt.Sprintf("t%s%02d%s_%s_%s", version, len(exts), alpn, strings.TrimPrefix(r[5], "0x"), hex.EncodeToString(sum[:])[:12])
			if h.JA4 != want {
				t.Errorf("%s frame %d: JA4S %s, from tshark's fields %s", c.pcap, num, h.JA4, want)
			}
		}
	}
}

// TestTLSHelloRetryRequest: zeek's hrr trace. tshark (reassembling out-of-order segments)
// decodes a ClientHello in frame 4, a ServerHello whose random is the HelloRetryRequest value
// in frame 6 (with a change_cipher_spec record behind it), in frame 8, behind the client's
// change_cipher_spec record, the second ClientHello, and in frame 11, which fills the hole
// before frame 9, the ServerHello. We report the four with tshark's values, and mark the retry.
func TestTLSHelloRetryRequest(t *testing.T) {
	for _, snap := range []stagestest.Snap{stagestest.FullSnap} {
		got := runApp(t, "protocols/tls13_hello_retry_request.pcap", snap)
		rows := stagestest.TSV(t, "tls_tls13_hello_retry_request_pcap.tsv")
		if len(rows) != 4 {
			t.Fatalf("tshark: %d hellos", len(rows))
		}
		for _, r := range rows {
			num, _ := strconv.ParseUint(r[0], 10, 64)
			h := got[num].tls
			if h == nil {
				t.Errorf("frame %d: tshark decodes a hello, we do not", num)
				continue
			}
			checkTLSRow(t, num, r, h)
			if h.HelloRetry != (num == 6) || h.Next != nil {
				t.Errorf("frame %d: retry %v next %v", num, h.HelloRetry, h.Next)
			}
		}
		n := 0
		for _, res := range got {
			if res.tls != nil {
				n++
			}
		}
		if n != 4 {
			t.Errorf("%d hellos reported", n)
		}
	}
}

// TestJA4WithoutExtensions: a ClientHello may end after its compression methods (RFC 8446
// 4.1.2: the extensions block is optional before TLS 1.3). Its JA4 is t12i010000: TLS 1.2, no
// SNI, one cipher, no extension, no ALPN; the cipher hash is SHA-256("002f") cut to 12 hex
// digits; the extension part is the specification's empty hash, twelve zeros.
func TestJA4WithoutExtensions(t *testing.T) {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, 0x0303)
	body = append(body, make([]byte, 32)...)
	body = append(body, 0, 0, 2, 0x00, 0x2f, 1, 0) // no session id; TLS_RSA_WITH_AES_128_CBC_SHA; null compression
	msg := append([]byte{stages.TLSClientHello, 0, 0, byte(len(body))}, body...)
	h := ParseTLSHello(msg)
	sum := sha256.Sum256([]byte("002f"))
	want := "t12i010000_" + hex.EncodeToString(sum[:])[:12] + "_000000000000"
	if h == nil || h.Partial || h.JA4 != want {
		t.Fatalf("hello %+v, want JA4 %s", h, want)
	}
	// Through the flow table, as a server would see it on the wire.
	rec := append([]byte{0x16, 3, 1, 0, byte(len(msg))}, msg...)
	c := newConn(t, 40020, 443)
	ft := flows.New(flows.Config{Handlers: []flows.Handler{&TLSHandler{}}})
	c.open(ft)
	p := c.send(ft, 0, rec)
	if p.TLS == nil || p.TLS.JA4 != want {
		t.Errorf("through the flow table: %+v", p.TLS)
	}
}
