package kit

import (
	"math/rand/v2"
	"testing"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// TestAppendJSONStringSameBytes checks the fast path against
// auditevent.AppendJSONString: every single byte value at every offset of a
// word, and random strings over a small alphabet rich in special bytes.
func TestAppendJSONStringSameBytes(t *testing.T) {
	check := func(s string) {
		t.Helper()
		if got, want := string(AppendJSONString([]byte("x"), s)), string(auditevent.AppendJSONString([]byte("x"), s)); got != want {
			t.Fatalf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
	base := []byte("spiffe://bank.example/ns/mesh/sa/gw")
	for c := 0; c < 256; c++ {
		for i := 0; i < 17; i++ {
			s := append([]byte(nil), base[:i]...)
			s = append(s, byte(c))
			s = append(s, base[i:]...)
			check(string(s))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	alpha := []byte("aZ09/:.-_ \"\\<>&\x00\x1f\x7f\x80\xe2\x80\xa8\xff")
	for range 20000 {
		s := make([]byte, r.IntN(40))
		for i := range s {
			s[i] = alpha[r.IntN(len(alpha))]
		}
		check(string(s))
	}
	check("")
}
