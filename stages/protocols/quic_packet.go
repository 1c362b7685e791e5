package protocols

// QUIC Initial packets: the long header (RFC 9000 17.2), the Initial keys every observer can
// derive from the client's first Destination Connection ID (RFC 9001 5.2; RFC 9369 3.3 for
// version 2), header protection (RFC 9001 5.4) and AES-128-GCM (5.3), and the frames an
// Initial may carry (RFC 9000 17.2.2: PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE). All of it
// with the standard library.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// QUIC versions whose Initial packets the decoder reads.
const (
	QUICv1 = 0x00000001 // RFC 9000
	QUICv2 = 0x6b3343cf // RFC 9369
)

// quicVersion is what tells the versions' Initial packets apart: the salt of the initial
// secret, the labels of the key derivation and the long-header type of an Initial.
type quicVersion struct {
	salt         []byte
	key, iv, hp  string
	initial      byte // long packet type of an Initial
	retry        byte // and of a Retry, which has no packet number
	versionValue uint32
}

var (
	quicV1 = quicVersion{salt: []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
		0xcc, 0xbb, 0x7f, 0x0a}, key: "quic key", iv: "quic iv", hp: "quic hp", initial: 0, retry: 3, versionValue: QUICv1}
	quicV2 = quicVersion{salt: []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
		0xf9, 0xbd, 0x2e, 0xd9}, key: "quicv2 key", iv: "quicv2 iv", hp: "quicv2 hp", initial: 1, retry: 0, versionValue: QUICv2}
)

func quicVersionOf(v uint32) *quicVersion {
	switch v {
	case QUICv1:
		return &quicV1
	case QUICv2:
		return &quicV2
	}
	return nil
}

// quicLong is a parsed long header.
type quicLong struct {
	v          *quicVersion
	typ        byte   // long packet type
	dcid, scid []byte // connection ids (at most 20 bytes each)
	pnOff      int    // offset of the (protected) packet number: Initial only
	end        int    // offset just past the packet (coalesced packets follow)
}

// parseQUICLong reads the long header at the start of b, of a version the decoder knows. For
// an Initial it checks the token and the Length field against b.
func parseQUICLong(b []byte) (h quicLong, ok bool) {
	if len(b) < 7 || b[0]&0xc0 != 0xc0 {
		return h, false // not a long header with the fixed bit set
	}
	if h.v = quicVersionOf(binary.BigEndian.Uint32(b[1:])); h.v == nil {
		return h, false
	}
	h.typ = b[0] >> 4 & 3
	r := quicReader{b: b, off: 5}
	h.dcid = r.vec8(20)
	h.scid = r.vec8(20)
	if r.bad {
		return h, false
	}
	if h.typ == h.v.retry {
		h.end = len(b) // a Retry runs to the end of the datagram
		return h, true
	}
	if h.typ == h.v.initial {
		r.bytes(int(r.varint())) // token
	}
	n := r.varint() // Length: packet number and payload
	if r.bad || n > uint64(len(b)-r.off) {
		return h, false
	}
	h.pnOff, h.end = r.off, r.off+int(n)
	return h, true
}

// quicKeys protect the Initial packets of one side of a connection.
type quicKeys struct {
	aead cipher.AEAD
	iv   [12]byte
	hp   cipher.Block
}

// newQUICKeys derives the Initial keys of the client (or the server) from the client's first
// Destination Connection ID.
func newQUICKeys(v *quicVersion, dcid []byte, server bool) (*quicKeys, error) {
	initial, err := hkdf.Extract(sha256.New, dcid, v.salt)
	if err != nil {
		return nil, err
	}
	side := "client in"
	if server {
		side = "server in"
	}
	secret, err := expandLabel(initial, side, sha256.Size)
	if err != nil {
		return nil, err
	}
	key, err := expandLabel(secret, v.key, 16)
	if err != nil {
		return nil, err
	}
	iv, err := expandLabel(secret, v.iv, 12)
	if err != nil {
		return nil, err
	}
	hp, err := expandLabel(secret, v.hp, 16)
	if err != nil {
		return nil, err
	}
	k := &quicKeys{}
	copy(k.iv[:], iv)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	if k.hp, err = aes.NewCipher(hp); err != nil {
		return nil, err
	}
	return k, nil
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context (RFC 8446 7.1).
func expandLabel(secret []byte, label string, n int) ([]byte, error) {
	info := make([]byte, 0, 4+6+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	return hkdf.Expand(sha256.New, secret, string(info), n)
}

var errQUICShort = errors.New("quic: packet too short for its header protection sample")

// open removes the header protection of the Initial packet pkt (its long header h), decrypts
// its payload into dst and returns the plaintext frames. pkt is not changed.
func (k *quicKeys) open(dst []byte, pkt []byte, h quicLong) ([]byte, error) {
	if h.pnOff+4+16 > h.end {
		return nil, errQUICShort
	}
	var mask [16]byte
	k.hp.Encrypt(mask[:], pkt[h.pnOff+4:h.pnOff+4+16])
	first := pkt[0] ^ mask[0]&0x0f
	pnLen := int(first&3) + 1
	// The header, unmasked, is the additional data; the plaintext goes after it in dst.
	hdrLen := h.pnOff + pnLen
	dst = append(dst[:0], pkt[:hdrLen]...)
	dst[0] = first
	var pn uint64
	for i := range pnLen {
		dst[h.pnOff+i] ^= mask[1+i]
		pn = pn<<8 | uint64(dst[h.pnOff+i])
	}
	// The full packet number would be recovered from the largest one seen (RFC 9000 A.3);
	// an observer starts with none, and an Initial's numbers are small.
	nonce := k.iv
	for i := range 8 {
		nonce[11-i] ^= byte(pn >> (8 * i))
	}
	out, err := k.aead.Open(dst[hdrLen:hdrLen], nonce[:], pkt[hdrLen:h.end], dst[:hdrLen])
	if err != nil {
		return nil, err
	}
	return out, nil
}

// quicFrames walks the frames of an Initial's plaintext and calls crypto for each CRYPTO
// frame. It reports false at a frame an Initial may not carry, or one cut short.
func quicFrames(b []byte, crypto func(off uint64, data []byte)) bool {
	r := quicReader{b: b}
	for !r.bad && r.off < len(b) {
		switch typ := r.varint(); typ {
		case 0x00, 0x01: // PADDING, PING
		case 0x02, 0x03: // ACK
			r.varint() // largest acknowledged
			r.varint() // delay
			n := r.varint()
			r.varint() // first range
			for i := uint64(0); i < n && !r.bad; i++ {
				r.varint() // gap
				r.varint() // range length
			}
			if typ == 0x03 {
				r.varint() // ECN counts
				r.varint()
				r.varint()
			}
		case 0x06: // CRYPTO
			off := r.varint()
			data := r.bytes(int(min(r.varint(), 1<<20)))
			if !r.bad {
				crypto(off, data)
			}
		case 0x1c, 0x1d: // CONNECTION_CLOSE
			r.varint() // error code
			if typ == 0x1c {
				r.varint() // frame type
			}
			r.bytes(int(min(r.varint(), 1<<20))) // reason
		default:
			return false
		}
	}
	return !r.bad
}

// quicReader reads QUIC's fields; reading past the end sets bad.
type quicReader struct {
	b   []byte
	off int
	bad bool
}

// varint reads a variable-length integer (RFC 9000 16).
func (r *quicReader) varint() uint64 {
	if r.bad || r.off >= len(r.b) {
		r.bad = true
		return 0
	}
	n := 1 << (r.b[r.off] >> 6)
	if r.off+n > len(r.b) {
		r.bad = true
		return 0
	}
	v := uint64(r.b[r.off] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(r.b[r.off+i])
	}
	r.off += n
	return v
}

func (r *quicReader) bytes(n int) []byte {
	if r.bad || n < 0 || n > len(r.b)-r.off {
		r.bad = true
		return nil
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}

// vec8 reads a vector with a one-byte length of at most max bytes.
func (r *quicReader) vec8(max int) []byte {
	if r.bad || r.off >= len(r.b) {
		r.bad = true
		return nil
	}
	n := int(r.b[r.off])
	r.off++
	if n > max {
		r.bad = true
		return nil
	}
	return r.bytes(n)
}
