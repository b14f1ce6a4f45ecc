package tracectx

import "testing"

// TestLowerHexValTable pins decodeHex's table to lowerHex, byte by byte.
func TestLowerHexValTable(t *testing.T) {
	if len(lowerHexVal) != 256 {
		t.Fatalf("lowerHexVal has %d entries, want 256", len(lowerHexVal))
	}
	for c := range 256 {
		v, ok := lowerHex(byte(c))
		if ok != (lowerHexVal[c] < 0x10) || (ok && v != lowerHexVal[c]) {
			t.Errorf("byte %#x: table %#x, lowerHex (%#x, %v)", c, lowerHexVal[c], v, ok)
		}
	}
}
