package protocols

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"

	"github.com/chains-sensor/chains-sensor/stages"
)

// JA4 returns the JA4 fingerprint of a ClientHello (FoxIO JA4 specification,
// technical_details/JA4.md): transport ('t' TLS over TCP, 'q' QUIC, 'd' DTLS), version, SNI or
// not, cipher and extension counts, ALPN's first and last character; then the truncated SHA-256
// of the sorted ciphers; then of the sorted extensions (without SNI and ALPN) and the signature
// algorithms in order. GREASE values are ignored throughout.
func JA4(transport byte, h *stages.TLSInfo) string {
	a, ciphers, exts := ja4Parts(transport, h)
	return a + "_" + ja4Hash(ciphers) + "_" + ja4Hash(exts)
}

// JA4Raw returns JA4_r, the fingerprint before hashing (sorted lists), as the specification
// prints it for checking.
func JA4Raw(transport byte, h *stages.TLSInfo) string {
	a, ciphers, exts := ja4Parts(transport, h)
	return a + "_" + ciphers + "_" + exts
}

func ja4Parts(transport byte, h *stages.TLSInfo) (a, ciphers, exts string) {
	var sb strings.Builder
	sb.WriteByte(transport)
	sb.WriteString(ja4Version(h))
	sni := slices.Contains(h.Extensions, tlsExtServerName)
	if sni {
		sb.WriteByte('d')
	} else {
		sb.WriteByte('i')
	}
	cs := nonGREASE(h.Ciphers)
	es := nonGREASE(h.Extensions)
	sb.WriteString(ja4Count(len(cs)))
	sb.WriteString(ja4Count(len(es)))
	sb.WriteString(ja4ALPN(h.ALPN))

	slices.Sort(cs)
	ciphers = hexList(cs)

	sorted := es[:0:0]
	for _, e := range es {
		if e != tlsExtServerName && e != tlsExtALPN {
			sorted = append(sorted, e)
		}
	}
	slices.Sort(sorted)
	exts = hexList(sorted)
	if sa := nonGREASE(h.SigAlgs); len(sa) > 0 && len(sorted) > 0 {
		exts += "_" + hexList(sa)
	}
	return sb.String(), ciphers, exts
}

// ja4Version is the highest non-GREASE supported_versions entry, else the legacy version.
func ja4Version(h *stages.TLSInfo) string {
	v := uint16(0)
	for _, x := range h.Versions {
		if !IsGREASE(x) && x > v {
			v = x
		}
	}
	if v == 0 {
		v = h.LegacyVersion
	}
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

func ja4Count(n int) string {
	if n > 99 {
		n = 99
	}
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// ja4ALPN is the first and last character of the first ALPN value, "00" without one; when
// either is not alphanumeric, the first and last hex digit of the value instead.
func ja4ALPN(alpn []string) string {
	if len(alpn) == 0 || alpn[0] == "" {
		return "00"
	}
	v := alpn[0]
	first, last := v[0], v[len(v)-1]
	if isAlnum(first) && isAlnum(last) {
		return string([]byte{first, last})
	}
	x := hex.EncodeToString([]byte(v))
	return string([]byte{x[0], x[len(x)-1]})
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func nonGREASE(vs []uint16) []uint16 {
	out := make([]uint16, 0, len(vs))
	for _, v := range vs {
		if !IsGREASE(v) {
			out = append(out, v)
		}
	}
	return out
}

func hexList(vs []uint16) string {
	var sb strings.Builder
	for i, v := range vs {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(hex16(v))
	}
	return sb.String()
}

// ja4Hash is the first 12 hex digits of SHA-256 of s, or twelve zeros for an empty list.
func ja4Hash(s string) string {
	if s == "" {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// JA4S returns the JA4S fingerprint of a ServerHello (FoxIO JA4S specification,
// technical_details/JA4S.md): transport, the chosen version, the extension count and the chosen
// ALPN's first and last character; then the chosen cipher in hex; then the truncated SHA-256 of
// the extensions in the order they appear. GREASE values are ignored.
func JA4S(transport byte, h *stages.TLSInfo) string {
	a, exts := ja4sParts(transport, h)
	return a + "_" + hex16(h.Cipher) + "_" + ja4Hash(exts)
}

// JA4SRaw returns JA4S_r, the fingerprint before hashing.
func JA4SRaw(transport byte, h *stages.TLSInfo) string {
	a, exts := ja4sParts(transport, h)
	return a + "_" + hex16(h.Cipher) + "_" + exts
}

func ja4sParts(transport byte, h *stages.TLSInfo) (a, exts string) {
	es := nonGREASE(h.Extensions)
	return string(transport) + ja4Version(h) + ja4Count(len(es)) + ja4ALPN(h.ALPN), hexList(es)
}
