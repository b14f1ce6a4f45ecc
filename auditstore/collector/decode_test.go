package collector

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// TestDecodeBatchAsEncodingJSONDid: the v2 decoder reads every batch the
// collector accepted before exactly as encoding/json did — the audit
// filter's wire format (canonical records in AppendBatch) with every field,
// escapes, non-ASCII, names in another case, nulls, invalid UTF-8 — and the
// decoded events re-encode to the bytes the filter sent.
func TestDecodeBatchAsEncodingJSONDid(t *testing.T) {
	full := auditevent.Event{
		ID: "4bf92f3577b34da6a3ce929d0e0e4736-1-intent", Phase: auditevent.PhaseIntent, Level: auditevent.LevelCritical,
		OpType: "FUND_TRANSFER", Subject: "spiffe://dc1/ns/default/svc/web", Resource: "account/42 ü €",
		Timestamp: 1700000000000000000, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Dye: "canary", Tenant: "t1",
		Method: "POST", Path: "/v1/transfers?x=<y>&z=\"q\"\u2028", Status: 201, LatencyNS: 12345,
		Redacted: []string{"authorization", "body.card"}, Headers: map[string]string{"x-b": "2", "x-a": "1\n\t"},
		BodyDigest: "sha256:00", BodyTruncated: true, Source: "spiffe://dc1/ns/default/svc/gateway",
		Tags: []string{"pci", "region=eu"}, Fields: map[string]string{"body:card.number": "************1111"},
		KeyID: "k1", PII: []string{"card@body"}, PIIAction: "flag", Blocked: "pii:card",
	}
	minimal := auditevent.Event{ID: "m-1-outcome", Phase: auditevent.PhaseOutcome, OpType: "READ", Timestamp: 1}
	var recs [][]byte
	for _, e := range []auditevent.Event{full, minimal} {
		recs = append(recs, e.AppendCanonical(nil))
	}
	bodies := map[string][]byte{
		"audit filter wire format": audit.AppendBatch(nil, "node-1", recs),
		"other case, nulls, escapes": []byte(`{"Sender":"n","EVENTS":[{"Id":"a\u00fc-1-intent","phase":"intent","op_type":"X","timestamp":7,` +
			`"headers":null,"redacted":null,"subject":"\ud83d\ude00 \"s\"","status":0}]}`),
		"invalid UTF-8":   []byte("{\"events\":[{\"id\":\"b\xff\xfe-1-intent\",\"phase\":\"intent\",\"op_type\":\"X\xc3\",\"timestamp\":7}]}"),
		"unknown members": []byte(`{"events":[{"id":"c","phase":"intent","op_type":"X","timestamp":7,"future":{"a":[1,2]}}],"more":true}`),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			var v1, v2 auditevent.Batch
			if err := json.Unmarshal(body, &v1); err != nil {
				t.Fatalf("encoding/json: %v", err)
			}
			if err := decodeBatch(body, &v2); err != nil {
				t.Fatalf("decodeBatch: %v", err)
			}
			if !reflect.DeepEqual(v1, v2) {
				t.Fatalf("decoded differently:\nencoding/json %+v\ndecodeBatch   %+v", v1, v2)
			}
			if len(v2.Events) == 0 {
				t.Fatal("no events decoded")
			}
		})
	}
	var b auditevent.Batch
	if err := decodeBatch(bodies["audit filter wire format"], &b); err != nil {
		t.Fatal(err)
	}
	for i := range b.Events {
		if got := b.Events[i].AppendCanonical(nil); string(got) != string(recs[i]) {
			t.Fatalf("event %d re-encodes differently:\n got %s\nwant %s", i, got, recs[i])
		}
	}
	if !strings.Contains(string(bodies["invalid UTF-8"]), "\xff") {
		t.Fatal("the invalid UTF-8 case lost its bytes")
	}
}
