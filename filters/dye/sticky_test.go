package dye

import (
	"hash/fnv"
	"testing"
)

// TestStickyBucketIsFNV1a pins the inlined hash to hash/fnv's FNV-1a of
// "<rule>\x00<key>": buckets must not move between releases.
func TestStickyBucketIsFNV1a(t *testing.T) {
	for _, c := range [][2]string{{"", ""}, {"split", "user-1"}, {"canary-10pct", "u-42"}, {"r", "é\x00x"}} {
		h := fnv.New32a()
		h.Write([]byte(c[0]))
		h.Write([]byte{0})
		h.Write([]byte(c[1]))
		if got, want := StickyBucket(c[0], c[1]), h.Sum32()%100; got != want {
			t.Errorf("StickyBucket(%q, %q) = %d, want %d", c[0], c[1], got, want)
		}
	}
}
