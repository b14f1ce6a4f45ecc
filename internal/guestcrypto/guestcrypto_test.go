package guestcrypto_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/meshwarden/meshwarden/internal/guestcrypto"
)

// TestSHA256Vectors checks the FIPS 180-4 example vectors (NIST's
// "abc" and the two-block message) and the empty message.
func TestSHA256Vectors(t *testing.T) {
	for in, want := range map[string]string{
		"":    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq": "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
	} {
		got := guestcrypto.PureSum256([]byte(in))
		if hex.EncodeToString(got[:]) != want {
			t.Errorf("SHA-256(%q) = %x, want %s", in, got, want)
		}
	}
}

// TestHMACVector checks RFC 4231 test case 2.
func TestHMACVector(t *testing.T) {
	m := guestcrypto.NewPureHMAC([]byte("Jefe"))
	m.Write([]byte("what do ya want for nothing?"))
	if got, want := hex.EncodeToString(m.Sum(nil)), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"; got != want {
		t.Errorf("HMAC-SHA-256 = %s, want %s", got, want)
	}
}

func TestRead(t *testing.T) {
	a, b := make([]byte, 32), make([]byte, 32)
	if err := guestcrypto.Read(a); err != nil {
		t.Fatal(err)
	}
	if err := guestcrypto.Read(b); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 32)) {
		t.Errorf("Read returned %x then %x", a, b)
	}
}

// FuzzAgainstStdlib is the differential test: for any key and message,
// written in any split, the package's SHA-256 and HMAC-SHA-256 equal
// crypto/sha256 and crypto/hmac, and Sum leaves the state unchanged.
func FuzzAgainstStdlib(f *testing.F) {
	f.Add([]byte("key"), []byte("message"), uint8(3))
	f.Add(bytes.Repeat([]byte{0xaa}, 131), bytes.Repeat([]byte("x"), 200), uint8(64))
	f.Add([]byte{}, []byte{}, uint8(0))
	f.Add(bytes.Repeat([]byte{1}, 64), bytes.Repeat([]byte{2}, 55), uint8(55))
	f.Add(bytes.Repeat([]byte{1}, 65), bytes.Repeat([]byte{2}, 56), uint8(56))
	f.Fuzz(func(t *testing.T, key, msg []byte, split uint8) {
		cut := min(int(split), len(msg))
		if got, want := guestcrypto.PureSum256(msg), sha256.Sum256(msg); got != want {
			t.Fatalf("Sum256(%x) = %x, want %x", msg, got, want)
		}
		h := guestcrypto.NewPureSHA256()
		h.Write(msg[:cut])
		mid := h.Sum(nil)
		if want := sha256.Sum256(msg[:cut]); !bytes.Equal(mid, want[:]) {
			t.Fatalf("streaming Sum of %x = %x, want %x", msg[:cut], mid, want)
		}
		h.Write(msg[cut:])
		if want := sha256.Sum256(msg); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("streaming SHA-256 split at %d differs", cut)
		}
		m := guestcrypto.NewPureHMAC(key)
		m.Write(msg[:cut])
		m.Write(msg[cut:])
		s := hmac.New(sha256.New, key)
		s.Write(msg)
		want := s.Sum(nil)
		if got := m.Sum(nil); !bytes.Equal(got, want) {
			t.Fatalf("HMAC(%x, %x) = %x, want %x", key, msg, got, want)
		}
		m.Reset()
		m.Write(msg)
		if got := m.Sum(nil); !bytes.Equal(got, want) {
			t.Fatalf("HMAC after Reset = %x, want %x", got, want)
		}
	})
}
