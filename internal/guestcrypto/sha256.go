package guestcrypto

import (
	"encoding/binary"
	"math/bits"
)

// digest is SHA-256 as FIPS 180-4 section 6.2 defines it.
type digest struct {
	h   [8]uint32
	x   [BlockSize]byte
	nx  int
	len uint64
}

// initial hash value, FIPS 180-4 section 5.3.3.
var iv = [8]uint32{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}

// round constants, FIPS 180-4 section 4.2.2.
var k = [64]uint32{
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

func newDigest() *digest {
	d := new(digest)
	d.Reset()
	return d
}

func (d *digest) Reset() {
	d.h = iv
	d.nx = 0
	d.len = 0
}

func (d *digest) Size() int      { return Size }
func (d *digest) BlockSize() int { return BlockSize }

func (d *digest) Write(p []byte) (int, error) {
	n := len(p)
	d.len += uint64(n)
	if d.nx > 0 {
		c := copy(d.x[d.nx:], p)
		d.nx += c
		p = p[c:]
		if d.nx == BlockSize {
			d.block(d.x[:])
			d.nx = 0
		}
	}
	for len(p) >= BlockSize {
		d.block(p[:BlockSize])
		p = p[BlockSize:]
	}
	if len(p) > 0 {
		d.nx = copy(d.x[:], p)
	}
	return n, nil
}

// Sum appends the digest of what was written to b, leaving d as it was.
func (d *digest) Sum(b []byte) []byte {
	c := *d
	sum := c.checkSum()
	return append(b, sum[:]...)
}

// checkSum pads the message (FIPS 180-4 section 5.1.1) and returns the
// final hash value.
func (d *digest) checkSum() [Size]byte {
	l := d.len
	var pad [BlockSize + 8]byte
	pad[0] = 0x80
	n := 1 + (55-int(l%64)+64)%64
	binary.BigEndian.PutUint64(pad[n:], l<<3)
	_, _ = d.Write(pad[:n+8])
	var out [Size]byte
	for i, v := range d.h {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	return out
}

// block runs the compression function on one 64-byte block (section 6.2.2).
func (d *digest) block(p []byte) {
	var w [64]uint32
	for t := 0; t < 16; t++ {
		w[t] = binary.BigEndian.Uint32(p[4*t:])
	}
	for t := 16; t < 64; t++ {
		s0 := bits.RotateLeft32(w[t-15], -7) ^ bits.RotateLeft32(w[t-15], -18) ^ (w[t-15] >> 3)
		s1 := bits.RotateLeft32(w[t-2], -17) ^ bits.RotateLeft32(w[t-2], -19) ^ (w[t-2] >> 10)
		w[t] = s1 + w[t-7] + s0 + w[t-16]
	}
	a, b, c, dd, e, f, g, h := d.h[0], d.h[1], d.h[2], d.h[3], d.h[4], d.h[5], d.h[6], d.h[7]
	for t := 0; t < 64; t++ {
		t1 := h + (bits.RotateLeft32(e, -6) ^ bits.RotateLeft32(e, -11) ^ bits.RotateLeft32(e, -25)) + ((e & f) ^ (^e & g)) + k[t] + w[t]
		t2 := (bits.RotateLeft32(a, -2) ^ bits.RotateLeft32(a, -13) ^ bits.RotateLeft32(a, -22)) + ((a & b) ^ (a & c) ^ (b & c))
		h, g, f, e, dd, c, b, a = g, f, e, dd+t1, c, b, a, t1+t2
	}
	d.h[0] += a
	d.h[1] += b
	d.h[2] += c
	d.h[3] += dd
	d.h[4] += e
	d.h[5] += f
	d.h[6] += g
	d.h[7] += h
}

// pureSum256 is Sum256 with this package's SHA-256.
func pureSum256(b []byte) [Size]byte {
	d := newDigest()
	_, _ = d.Write(b)
	return d.checkSum()
}

// hmacSHA256 is HMAC (RFC 2104) over this package's SHA-256.
type hmacSHA256 struct {
	inner, outer *digest
	ipad, opad   [BlockSize]byte
}

func newPureHMAC(key []byte) *hmacSHA256 {
	m := &hmacSHA256{inner: newDigest(), outer: newDigest()}
	if len(key) > BlockSize {
		s := pureSum256(key)
		key = s[:]
	}
	copy(m.ipad[:], key)
	copy(m.opad[:], key)
	for i := range m.ipad {
		m.ipad[i] ^= 0x36
		m.opad[i] ^= 0x5c
	}
	_, _ = m.inner.Write(m.ipad[:])
	return m
}

func (m *hmacSHA256) Size() int      { return Size }
func (m *hmacSHA256) BlockSize() int { return BlockSize }

func (m *hmacSHA256) Reset() {
	m.inner.Reset()
	_, _ = m.inner.Write(m.ipad[:])
}

func (m *hmacSHA256) Write(p []byte) (int, error) { return m.inner.Write(p) }

func (m *hmacSHA256) Sum(b []byte) []byte {
	in := m.inner.Sum(nil)
	m.outer.Reset()
	_, _ = m.outer.Write(m.opad[:])
	_, _ = m.outer.Write(in)
	return m.outer.Sum(b)
}
