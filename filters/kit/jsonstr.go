package kit

import (
	"slices"
	"unsafe"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// AppendJSONString is auditevent.AppendJSONString with a fast path for the
// common string that needs no escaping: it is checked 8 bytes at a time and
// copied whole. In the wasm guest a byte-at-a-time loop costs ≈ 6–15 ns per
// byte (≈ 1 µs for a 70-byte SPIFFE id), the word check ≈ 2 ns per byte
// (docs/bench/filters.md). Any string with a byte that needs escaping (or
// any non-ASCII byte) goes to auditevent.AppendJSONString, so the output is
// byte for byte the same.
func AppendJSONString(b []byte, s string) []byte {
	if !jsonClean(s) {
		return auditevent.AppendJSONString(b, s)
	}
	b = append(b, '"')
	b = AppendStr(b, s)
	return append(b, '"')
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// jsonClean reports whether every byte of s is printable ASCII other than
// '"', '\\', '<', '>' and '&' (the bytes AppendJSONString copies as is).
func jsonClean(s string) bool {
	i := 0
	if len(s) >= 8 {
		p := unsafe.Pointer(unsafe.StringData(s))
		for ; i+8 <= len(s); i += 8 {
			if !clean8(*(*uint64)(unsafe.Add(p, i))) { // little-endian; alignment is free on wasm
				return false
			}
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// clean8 is jsonClean for the 8 bytes of x (SWAR: a byte's high bit in bad
// is set when that byte is < 0x20, >= 0x80 or one of the five).
func clean8(x uint64) bool {
	y1 := x ^ ('"' * lsb)
	y2 := x ^ ('\\' * lsb)
	y3 := x ^ ('<' * lsb)
	y4 := x ^ ('>' * lsb)
	y5 := x ^ ('&' * lsb)
	bad := ((x - 0x20*lsb) & ^x) | x |
		((y1 - lsb) & ^y1) | ((y2 - lsb) & ^y2) | ((y3 - lsb) & ^y3) | ((y4 - lsb) & ^y4) | ((y5 - lsb) & ^y5)
	return bad&msb == 0
}

// AppendStr is append(b, s...) for the record encoders: a string of up to
// 64 bytes is copied with 8-byte moves in the guest's own code instead of
// a call of memmove, which in the wasm guest costs more than such a copy
// (every append of a literal is one: the encoders make dozens per record).
func AppendStr(b []byte, s string) []byte {
	n := len(s)
	if n > 64 {
		return append(b, s...)
	}
	l := len(b)
	b = slices.Grow(b, n)[:l+n]
	if n == 0 {
		return b
	}
	dst, src := unsafe.Pointer(&b[l]), unsafe.Pointer(unsafe.StringData(s))
	switch {
	case n >= 8:
		for i := 0; i+8 <= n; i += 8 {
			*(*uint64)(unsafe.Add(dst, i)) = *(*uint64)(unsafe.Add(src, i))
		}
		if n%8 != 0 { // the last 8 bytes, overlapping what is copied
			*(*uint64)(unsafe.Add(dst, n-8)) = *(*uint64)(unsafe.Add(src, n-8))
		}
	case n >= 4:
		*(*uint32)(dst) = *(*uint32)(src)
		*(*uint32)(unsafe.Add(dst, n-4)) = *(*uint32)(unsafe.Add(src, n-4))
	default:
		for i := range n {
			b[l+i] = s[i]
		}
	}
	return b
}

// AppendInt is strconv.AppendInt(b, v, 10) with the digits copied by
// AppendStr.
func AppendInt(b []byte, v int64) []byte {
	var buf [20]byte
	i := len(buf)
	u := uint64(v)
	if v < 0 {
		u = -u
	}
	for u >= 10 {
		i--
		q := u / 10
		buf[i] = byte('0' + u - q*10)
		u = q
	}
	i--
	buf[i] = byte('0' + u)
	if v < 0 {
		i--
		buf[i] = '-'
	}
	return AppendStr(b, unsafe.String(&buf[i], len(buf)-i))
}
