package auditevent

import (
	"encoding/json"
	"strconv"
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

// TestCanonicalAppendCompatible pins the canonical bytes and hash of a record
// written before the compliance fields existed: they must not change, or
// every stored chain would fail verification.
func TestCanonicalAppendCompatible(t *testing.T) {
	e := sample()
	e.Seq, e.PrevHash = 3, "00ff"
	const want = `{"id":"4bf92f3577b34da6a3ce929d0e0e4736-1-intent","seq":3,"phase":"intent","level":"critical","op_type":"FUND_TRANSFER","subject":"spiffe://dc1/ns/default/svc/web","resource":"account/42","timestamp":1700000000000000000,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","dye":"canary","tenant":"","method":"POST","path":"/v1/transfers?x=\u003cy\u003e\u0026z","status":0,"latency":0,"redacted":["authorization","body.card"],"headers":{"x-a":"1\n\"q\"","x-b":"2"},"body_digest":"sha256:00","body_truncated":false,"source":"","prev_hash":"00ff"}`
	if got := string(e.AppendCanonical(nil)); got != want {
		t.Fatalf("canonical form of a pre-compliance record changed:\n got %s\nwant %s", got, want)
	}
	if got := e.ComputeHash(); got != "478fa1a42495e2df23fd063f5d17e702d8107ef9bbaecb579f3493ac6b2307b0" {
		t.Fatalf("hash of a pre-compliance record changed: %s", got)
	}
}

func complianceSample() Event {
	e := sample()
	e.Tags = []string{"pci", "region=eu"}
	e.Fields = map[string]string{"body:card.number": "************1111", "query:account": "hmac-sha256:ab12"}
	e.KeyID = "k2026-11"
	e.PII = []string{"card@body", "email@header:x-contact"}
	e.PIIAction = "flag"
	e.Blocked = "pii:card"
	return e
}

// TestComplianceFieldsChained checks the compliance fields are in the
// canonical form (after prev_hash, fields sorted), survive the JSON round
// trip the collector does, and are covered by the hash.
func TestComplianceFieldsChained(t *testing.T) {
	e := complianceSample()
	c := string(e.AppendCanonical(nil))
	const tail = `,"prev_hash":"","tags":["pci","region=eu"],"fields":{"body:card.number":"************1111","query:account":"hmac-sha256:ab12"},"key_id":"k2026-11","pii":["card@body","email@header:x-contact"],"pii_action":"flag","blocked":"pii:card"}`
	if !strings.HasSuffix(c, tail) {
		t.Fatalf("canonical tail:\n got %s\nwant …%s", c, tail)
	}
	var back Event
	if err := json.Unmarshal([]byte(c), &back); err != nil {
		t.Fatal(err)
	}
	if string(back.AppendCanonical(nil)) != c {
		t.Fatalf("JSON round trip changed the canonical form:\n%s\n%s", back.AppendCanonical(nil), c)
	}
	e.Chain("")
	for name, mut := range map[string]func(*Event){
		"tags":       func(e *Event) { e.Tags = []string{"gdpr"} },
		"tags gone":  func(e *Event) { e.Tags = nil },
		"fields":     func(e *Event) { e.Fields = map[string]string{"body:card.number": "4111111111111111"} },
		"key_id":     func(e *Event) { e.KeyID = "k2026-10" },
		"pii":        func(e *Event) { e.PII = e.PII[:1] },
		"pii_action": func(e *Event) { e.PIIAction = "mask-in-audit" },
		"blocked":    func(e *Event) { e.Blocked = "" },
	} {
		m := e
		m.Fields = map[string]string{}
		for k, v := range e.Fields {
			m.Fields[k] = v
		}
		mut(&m)
		if err := m.VerifyLink(""); err == nil {
			t.Errorf("%s: altering it was not detected", name)
		}
	}
	if err := e.VerifyLink(""); err != nil {
		t.Fatal(err)
	}
}

// TestTemplateChainedIsCanonical: an event encoded ahead of its chain
// position (the collector's request goroutines) and filled in later (its
// single writer) gives exactly the canonical bytes, for every kind of
// event, seq width and prev hash, and ChainedLen predicts their length.
func TestTemplateChainedIsCanonical(t *testing.T) {
	odd := sample()
	odd.ID, odd.Subject, odd.Source = "ü-\u2028-\"q\"", "<svc>&", "spiffe://dc1/ns/x/svc/y"
	odd.Headers = nil
	for name, e := range map[string]Event{"sample": sample(), "compliance": complianceSample(), "empty": {}, "odd": odd} {
		for _, seq := range []uint64{0, 1, 9, 10, 123456789, 1<<64 - 1} {
			for _, prev := range []string{"", strings.Repeat("ab", 32)} {
				_, tmpl := e.AppendTemplate([]byte("junk"))
				got := tmpl.AppendChained([]byte("x"), seq, prev)[1:]
				c := e
				c.Seq, c.PrevHash = seq, prev
				want := c.AppendCanonical(nil)
				if string(got) != string(want) {
					t.Fatalf("%s seq %d prev %q:\n got %s\nwant %s", name, seq, prev, got, want)
				}
				if n := tmpl.ChainedLen(len(strconv.FormatUint(seq, 10)), len(prev)); n != len(want) {
					t.Fatalf("%s seq %d: ChainedLen %d, encoded %d bytes", name, seq, n, len(want))
				}
			}
		}
	}
}
