// Package sm3 implements the SM3 hash (GB/T 32905-2016), which Hygon CSV
// event logs use as TPM_ALG_SM3_256. It is written here because the standard
// library lacks SM3 and ccmr needs only this one primitive, not a whole
// Chinese-crypto suite.
package sm3

import (
	"encoding/binary"
	"hash"
	"math/bits"
)

// Size is the SM3 digest size in bytes.
const Size = 32

// BlockSize is the SM3 block size in bytes.
const BlockSize = 64

var iv = [8]uint32{0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e}

type digest struct {
	h   [8]uint32
	x   [BlockSize]byte
	nx  int
	len uint64
}

// New returns a new SM3 hash.Hash.
func New() hash.Hash { d := new(digest); d.Reset(); return d }

// Sum returns the SM3 digest of data.
func Sum(data []byte) [Size]byte {
	d := new(digest)
	d.Reset()
	d.Write(data)
	var out [Size]byte
	copy(out[:], d.Sum(nil))
	return out
}

func (d *digest) Reset()         { d.h = iv; d.nx = 0; d.len = 0 }
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

func (d *digest) Sum(in []byte) []byte {
	c := *d
	var pad [BlockSize + 8]byte
	pad[0] = 0x80
	bitLen := c.len << 3
	padLen := 56 - int(c.len%64)
	if padLen <= 0 {
		padLen += 64
	}
	c.Write(pad[:padLen])
	binary.BigEndian.PutUint64(pad[:8], bitLen)
	c.Write(pad[:8])
	var out [Size]byte
	for i, v := range c.h {
		binary.BigEndian.PutUint32(out[4*i:], v)
	}
	return append(in, out[:]...)
}

func p0(x uint32) uint32 { return x ^ bits.RotateLeft32(x, 9) ^ bits.RotateLeft32(x, 17) }
func p1(x uint32) uint32 { return x ^ bits.RotateLeft32(x, 15) ^ bits.RotateLeft32(x, 23) }

func (d *digest) block(b []byte) {
	var w [68]uint32
	for i := 0; i < 16; i++ {
		w[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	for i := 16; i < 68; i++ {
		w[i] = p1(w[i-16]^w[i-9]^bits.RotateLeft32(w[i-3], 15)) ^ bits.RotateLeft32(w[i-13], 7) ^ w[i-6]
	}
	a, bb, c, dd, e, f, g, h := d.h[0], d.h[1], d.h[2], d.h[3], d.h[4], d.h[5], d.h[6], d.h[7]
	for j := 0; j < 64; j++ {
		var t uint32 = 0x79cc4519
		if j >= 16 {
			t = 0x7a879d8a
		}
		ss1 := bits.RotateLeft32(bits.RotateLeft32(a, 12)+e+bits.RotateLeft32(t, j%32), 7)
		ss2 := ss1 ^ bits.RotateLeft32(a, 12)
		w1 := w[j] ^ w[j+4]
		var ff, gg uint32
		if j < 16 {
			ff = a ^ bb ^ c
			gg = e ^ f ^ g
		} else {
			ff = (a & bb) | (a & c) | (bb & c)
			gg = (e & f) | (^e & g)
		}
		tt1 := ff + dd + ss2 + w1
		tt2 := gg + h + ss1 + w[j]
		dd = c
		c = bits.RotateLeft32(bb, 9)
		bb = a
		a = tt1
		h = g
		g = bits.RotateLeft32(f, 19)
		f = e
		e = p0(tt2)
	}
	d.h[0] ^= a
	d.h[1] ^= bb
	d.h[2] ^= c
	d.h[3] ^= dd
	d.h[4] ^= e
	d.h[5] ^= f
	d.h[6] ^= g
	d.h[7] ^= h
}
