package kit

import (
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
	b = append(b, s...)
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
