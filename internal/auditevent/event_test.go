package auditevent

import (
	"encoding/json"
	"strings"
	"testing"
)

func sample() Event {
	return Event{
		ID: "4bf92f3577b34da6a3ce929d0e0e4736-1-intent", Phase: PhaseIntent, Level: LevelCritical,
		OpType: "FUND_TRANSFER", Subject: "spiffe://dc1/ns/default/svc/web", Resource: "account/42",
		Timestamp: 1700000000000000000, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Dye: "canary",
		Method: "POST", Path: "/v1/transfers?x=<y>&z", Redacted: []string{"authorization", "body.card"},
		Headers: map[string]string{"x-b": "2", "x-a": "1\n\"q\""}, BodyDigest: "sha256:00",
	}
}

func TestCanonicalIsValidJSONAndDeterministic(t *testing.T) {
	e := sample()
	a := string(e.AppendCanonical(nil))
	b := string(e.AppendCanonical(nil))
	if a != b {
		t.Fatalf("canonical encoding differs between calls")
	}
	var back Event
	if err := json.Unmarshal([]byte(a), &back); err != nil {
		t.Fatalf("canonical form is not JSON: %v\n%s", err, a)
	}
	if back.Headers["x-a"] != "1\n\"q\"" || back.Path != e.Path || back.OpType != e.OpType {
		t.Fatalf("round trip lost data: %+v", back)
	}
	if strings.Index(a, `"x-a"`) > strings.Index(a, `"x-b"`) {
		t.Fatalf("header keys not sorted: %s", a)
	}
	if strings.Contains(a, `"hash"`) {
		t.Fatalf("canonical form must not include hash: %s", a)
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x01\x1f", "<html>&", "héllo", "bad\xffutf8", "sep\u2028\u2029"} {
		want, _ := json.Marshal(s)
		if got := string(AppendJSONString(nil, s)); got != string(want) {
			t.Errorf("AppendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestChainDetectsTampering(t *testing.T) {
	events := []Event{sample(), sample(), sample()}
	prev := ""
	for i := range events {
		events[i].Seq = uint64(i + 1)
		prev = events[i].Chain(prev)
	}
	prev = ""
	for i := range events {
		if err := events[i].VerifyLink(prev); err != nil {
			t.Fatalf("intact chain failed at %d: %v", i, err)
		}
		prev = events[i].Hash
	}
	// Modification.
	mod := events[1]
	mod.Status = 500
	if err := mod.VerifyLink(events[0].Hash); err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("modified record not detected: %v", err)
	}
	// Deletion / reordering: record 2 no longer follows record 0.
	if err := events[2].VerifyLink(events[0].Hash); err == nil {
		t.Fatalf("deleted record not detected")
	}
}

func TestValidate(t *testing.T) {
	e := sample()
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Event){
		"id":    func(e *Event) { e.ID = "" },
		"phase": func(e *Event) { e.Phase = "x" },
		"op":    func(e *Event) { e.OpType = "" },
		"ts":    func(e *Event) { e.Timestamp = 0 },
	} {
		e := sample()
		mut(&e)
		if err := e.Validate(); err == nil {
			t.Errorf("%s: invalid event accepted", name)
		}
	}
}

func BenchmarkChain(b *testing.B) {
	e := sample()
	prev := ""
	b.ReportAllocs()
	for b.Loop() {
		prev = e.Chain(prev)
	}
}
