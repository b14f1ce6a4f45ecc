package audit

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
		if got, want := string(appendJSONString([]byte("x"), s)), string(auditevent.AppendJSONString([]byte("x"), s)); got != want {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
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

// TestAppendCanonicalSameBytes pins appendCanonical to
// auditevent.Event.AppendCanonical (the hash chain is over those bytes).
func TestAppendCanonicalSameBytes(t *testing.T) {
	evs := []auditevent.Event{
		{},
		{ID: "4bf92f3577b34da6a3ce929d0e0e4736-0123456789abcdef-outcome", Seq: 7, Phase: auditevent.PhaseOutcome, Level: "info", OpType: "LIMIT_CHANGE",
			Subject: "spiffe://bank.example/ns/mesh/sa/gw", Resource: "account/ACC-1", Timestamp: 1764059000123456789,
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Dye: "stable", Tenant: "retail", Method: "PUT", Path: "/v1/accounts/ACC-1/limits",
			Status: 200, LatencyNS: 123456, Source: "gw-test-1", PrevHash: "abc", Hash: "ignored"},
		{ID: "x", Phase: auditevent.PhaseIntent, Subject: "a\"b\\c<d>&e\n\u2028é\xff", Timestamp: -5, Status: -1, LatencyNS: -2,
			Redacted: []string{"header:authorization", "body:card.pin"}, Headers: map[string]string{"x-b": "2", "x-a": "1<", "x-c": ""},
			BodyDigest: "sha256:00", BodyTruncated: true},
	}
	for i := range evs {
		if got, want := string(appendCanonical([]byte("p"), &evs[i])), string(evs[i].AppendCanonical([]byte("p"))); got != want {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
