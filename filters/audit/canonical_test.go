package audit

import (
	"testing"

	"github.com/meshwarden/meshwarden/internal/auditevent"
)

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
		{ID: "y", Phase: auditevent.PhaseOutcome, Timestamp: 1, Tags: []string{"pci", "region=eu"},
			Fields: map[string]string{"query:iban": "hmac-sha256:00", "body:card.number": "************1111"}, KeyID: "k1",
			PII: []string{"card@body"}, PIIAction: "block", Blocked: "pii:card"},
	}
	for i := range evs {
		if got, want := string(appendCanonical([]byte("p"), &evs[i])), string(evs[i].AppendCanonical([]byte("p"))); got != want {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
