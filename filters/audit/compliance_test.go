package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// Test keys of testdata/compliance.json (never used anywhere else).
const (
	keyDec = "test-key-2026-12-do-not-use-0001"
	keyNov = "test-key-2026-11-do-not-use-0002"
)

// reHash is what an auditor computes with the key to re-derive a hash.
func reHash(key, id, v string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(v))
	return HashPrefix + id + ":" + hex.EncodeToString(m.Sum(nil))
}

func complianceEngine(t testing.TB, mut func(*auditconfig.Config)) *Engine {
	t.Helper()
	b, err := os.ReadFile("testdata/compliance.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := auditconfig.ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if mut != nil {
		mut(cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	return NewEngine(cfg)
}

func TestDetectors(t *testing.T) {
	all := NewDetector(&auditconfig.PII{Detectors: auditconfig.BuiltinDetectors,
		Patterns: []auditconfig.Pattern{{Name: "customer-id", Regex: `CUST-[0-9]{8}`}}})
	tests := []struct {
		name, in string
		want     []string // detector:text
	}{
		{"visa", `{"pan":"4111111111111111"}`, []string{"card:4111111111111111"}},
		{"visa spaced", `card 4111 1111 1111 1111 exp 12/29`, []string{"card:4111 1111 1111 1111"}},
		{"mastercard dashed", `5500-0000-0000-0004`, []string{"card:5500-0000-0000-0004"}},
		{"amex 15", `"378282246310005"`, []string{"card:378282246310005"}},
		{"visa 13", `n=4222222222222;`, []string{"card:4222222222222"}},
		{"json number", `{"pan":4012888888881881}`, []string{"card:4012888888881881"}},
		{"luhn fails", `{"pan":"4111111111111112"}`, nil},
		{"too long", `12345678901234567890123`, nil},
		{"glued to letters", `ID4111111111111111`, nil},
		{"order id", `{"order":1234567890123}`, nil},
		{"iban de", `{"iban":"DE89370400440532013000"}`, []string{"iban:DE89370400440532013000"}},
		{"iban gb grouped", `pay GB82 WEST 1234 5698 7654 32 now`, []string{"iban:GB82 WEST 1234 5698 7654 32"}},
		{"iban fr", `FR1420041010050500013M02606`, []string{"iban:FR1420041010050500013M02606"}},
		{"iban bad checksum", `DE89370400440532013001`, nil},
		{"email", `{"to":"alice.smith@example.com"}`, []string{"email:alice.smith@example.com"}},
		{"email end of sentence", `write to bob@bank.co.uk.`, []string{"email:bob@bank.co.uk"}},
		{"not an email", `user@localhost and @example.com`, nil},
		{"phone uk", `call +44 20 7946 0958 today`, []string{"phone:+44 20 7946 0958"}},
		{"phone us", `+1-202-555-0143`, []string{"phone:+1-202-555-0143"}},
		{"phone de", `{"mobile":"+4915112345678"}`, []string{"phone:+4915112345678"}},
		{"version not phone", `v+1.2.3 +12`, nil},
		{"pattern", `{"customer":"CUST-00421337"}`, []string{"customer-id:CUST-00421337"}},
		{"several", `{"email":"eve@example.org","pan":"5500 0000 0000 0004","iban":"DE89370400440532013000"}`,
			[]string{"email:eve@example.org", "card:5500 0000 0000 0004", "iban:DE89370400440532013000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range all.Scan(nil, []byte(tt.in)) {
				got = append(got, d.Name+":"+tt.in[d.Start:d.End])
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Scan(%s) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestDetectionsBounded: a body full of card numbers costs at most
// maxDetections matches.
func TestDetectionsBounded(t *testing.T) {
	d := NewDetector(&auditconfig.PII{Detectors: []string{"card"}})
	body := strings.Repeat("4111111111111111,", 1000)
	if n := len(d.Scan(nil, []byte(body))); n != maxDetections {
		t.Fatalf("%d detections, want the bound %d", n, maxDetections)
	}
}

const transfer = `{"amount":"250.00","currency":"EUR","card":{"number":"4111111111111111","expiry":"12/29"},"beneficiary":{"name":"Jane Roe","iban":"DE89370400440532013000"}}`

func transferEvent(t *testing.T, e *Engine, path string) auditevent.Event {
	t.Helper()
	hs := map[string]string{"idempotency-key": "IK-7", "x-customer-email": "jane.roe@example.com", "user-agent": "bank-app/5"}
	ri := &RequestInfo{Method: "POST", Path: path, Header: func(n string) string { return hs[n] }}
	i := e.Match("POST", path)
	if i != 0 {
		t.Fatalf("match = %d", i)
	}
	ev := e.NewEvent(i, ri)
	if r := e.ScanRequest(i, &ev, path, nil); r != "" {
		t.Fatalf("blocked at headers: %s", r)
	}
	return ev
}

func TestFieldActions(t *testing.T) {
	e := complianceEngine(t, nil)
	ev := transferEvent(t, e, "/v1/transfers?account=ACC-99887766&x=1")
	out := e.ProcessBody(0, &ev, []byte(transfer), true)
	if out.Block != "" {
		t.Fatalf("blocked: %+v", out)
	}
	want := map[string]string{
		"body:card.number":        "************1111",
		"body:beneficiary.iban":   reHash(keyDec, "pii-2026-12", "DE89370400440532013000"),
		"header:x-customer-email": reHash(keyDec, "pii-2026-12", "jane.roe@example.com"),
		"query:account":           "**********66",
	}
	for k, v := range want {
		if ev.Fields[k] != v {
			t.Errorf("fields[%s] = %q, want %q", k, ev.Fields[k], v)
		}
	}
	if len(ev.Fields) != len(want) || ev.KeyID != "pii-2026-12" {
		t.Errorf("fields %v key %q", ev.Fields, ev.KeyID)
	}
	if _, ok := ev.Headers["x-customer-email"]; ok || ev.Headers["user-agent"] != "bank-app/5" {
		t.Errorf("headers = %v: a hashed header must not be captured in clear", ev.Headers)
	}
	if fmt.Sprint(ev.Tags) != "[pci gdpr region=eu]" || ev.PIIAction != "mask-in-audit" || fmt.Sprint(ev.PII) != "[card@body iban@body]" {
		t.Errorf("tags %v action %q pii %v", ev.Tags, ev.PIIAction, ev.PII)
	}
	// The digest is over the record's view: field actions applied.
	rec := strings.NewReplacer(`"4111111111111111"`, `"************1111"`,
		`"DE89370400440532013000"`, `"`+reHash(keyDec, "pii-2026-12", "DE89370400440532013000")+`"`).Replace(transfer)
	sum := sha256.Sum256([]byte(rec))
	if ev.BodyDigest != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("digest %s is not over the masked body", ev.BodyDigest)
	}
	// Forwarded: only the forward action (card masked), the rest as sent.
	if want := strings.Replace(transfer, "4111111111111111", "************1111", 1); string(out.Forward) != want {
		t.Errorf("forward body = %s\nwant %s", out.Forward, want)
	}
	c := string(ev.AppendCanonical(nil))
	for _, clear := range []string{"4111111111111111", "DE89370400440532013000", "jane.roe@example.com", "ACC-99887766", keyDec, "dGVzdC1rZXkt"} {
		if strings.Contains(c, clear) {
			t.Errorf("record holds %q in clear: %s", clear, c)
		}
	}
}

func TestForwardRewrite(t *testing.T) {
	e := complianceEngine(t, func(c *auditconfig.Config) {
		c.Rules[0].Fields = append(c.Rules[0].Fields,
			auditconfig.FieldAction{Header: "x-national-id", Action: "redact", Forward: true},
			auditconfig.FieldAction{Header: "x-iban", Action: "hash", Forward: true},
			auditconfig.FieldAction{Query: "pan", Action: "mask", Forward: true},
			auditconfig.FieldAction{Query: "ssn", Action: "redact", Forward: true})
	})
	hs := map[string]string{":path": "/v1/transfers?pan=4111111111111111&x=1&ssn=078-05-1120&account=ACC-1", "x-national-id": "078-05-1120", "x-iban": "DE89370400440532013000"}
	set, remove, path := e.ForwardRewrite(0, func(n string) string { return hs[n] })
	if fmt.Sprint(set) != fmt.Sprint([][2]string{{"x-iban", reHash(keyDec, "pii-2026-12", "DE89370400440532013000")}}) || fmt.Sprint(remove) != "[x-national-id]" {
		t.Errorf("set %v remove %v", set, remove)
	}
	if path != "/v1/transfers?pan=%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A%2A1111&x=1&account=ACC-1" {
		t.Errorf("path = %s (account has no forward action: unchanged)", path)
	}
}

func TestKeyRotation(t *testing.T) {
	nov := complianceEngine(t, func(c *auditconfig.Config) { c.HashKeys = c.HashKeys[1:] })
	dec := complianceEngine(t, nil) // December first, November kept
	evNov := transferEvent(t, nov, "/v1/transfers")
	evDec := transferEvent(t, dec, "/v1/transfers")
	const email = "jane.roe@example.com"
	if evNov.KeyID != "pii-2026-11" || evNov.Fields["header:x-customer-email"] != reHash(keyNov, "pii-2026-11", email) {
		t.Errorf("before rotation: key %s, %s", evNov.KeyID, evNov.Fields["header:x-customer-email"])
	}
	if evDec.KeyID != "pii-2026-12" || evDec.Fields["header:x-customer-email"] != reHash(keyDec, "pii-2026-12", email) {
		t.Errorf("after rotation: key %s, %s", evDec.KeyID, evDec.Fields["header:x-customer-email"])
	}
	if evNov.Fields["header:x-customer-email"] == evDec.Fields["header:x-customer-email"] {
		t.Error("two keys gave the same hash")
	}
	for _, ev := range []auditevent.Event{evNov, evDec} {
		c := string(ev.AppendCanonical(nil))
		if strings.Contains(c, keyNov) || strings.Contains(c, keyDec) || strings.Contains(c, "dGVzdC1rZXkt") {
			t.Errorf("a key is in the record: %s", c)
		}
	}
}

func TestMalformedJSONDigest(t *testing.T) {
	bodies := map[string]string{
		"truncated object": `{"card":{"number":"4111111111111111"`,
		"not json":         `card=4111111111111111&amount=10`,
		"trailing garbage": `{"card":{"number":"4111111111111111"}} x`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			e := complianceEngine(t, nil)
			ev := transferEvent(t, e, "/v1/transfers")
			out := e.ProcessBody(0, &ev, []byte(body), true)
			if out.Block != BlockBodyNotJSON || out.Status != 400 || out.Forward != nil {
				t.Errorf("outcome %+v: a forward mask on a body that is not JSON must refuse it", out)
			}
			if ev.BodyDigest != reHash(keyDec, "pii-2026-12", body) || ev.KeyID != "pii-2026-12" {
				t.Errorf("digest %q key %q, want the keyed digest of the whole body", ev.BodyDigest, ev.KeyID)
			}
			for k := range ev.Fields {
				if strings.HasPrefix(k, "body:") {
					t.Errorf("half-masked: %s = %s", k, ev.Fields[k])
				}
			}
			if !containsStr(ev.Redacted, "body") {
				t.Errorf("redacted = %v, want body", ev.Redacted)
			}
		})
	}
	// Without a key nor forward: no digest at all (a plain one could be
	// brute-forced), the request goes on.
	e := complianceEngine(t, func(c *auditconfig.Config) {
		c.HashKeys = nil
		c.Rules[0].Fields = []auditconfig.FieldAction{{Body: "card.number", Action: "mask"}}
	})
	ev := transferEvent(t, e, "/v1/transfers")
	if out := e.ProcessBody(0, &ev, []byte(bodies["not json"]), true); out.Block != "" || ev.BodyDigest != "" || ev.KeyID != "" {
		t.Errorf("without a key: %+v digest %q", out, ev.BodyDigest)
	}
}

func TestBoundedScan(t *testing.T) {
	e := complianceEngine(t, nil)
	i := e.Match("PUT", "/v1/customers/C1/profile")
	pad := strings.Repeat(" ", 5000)
	tests := []struct {
		name, body string
		block      string
		pii        string
	}{
		{"card within the bound", `{"note":"card 4111111111111111"}`, "pii:card", "[card@body]"},
		{"pattern within the bound", `{"ssn":"078-05-1120"}`, "pii:national-id", "[national-id@body]"},
		{"clean", `{"name":"Jane Roe","city":"Lyon"}`, "", "[]"},
		{"card past the bound", `{"note":"` + pad + `4111111111111111"}`, BlockScanLimit, "[scan-limit@body]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev auditevent.Event
			out := e.ProcessBody(i, &ev, []byte(tt.body), true)
			if out.Block != tt.block || fmt.Sprint(ev.PII) != tt.pii && !(tt.pii == "[]" && ev.PII == nil) {
				t.Errorf("block %q pii %v, want %q %s", out.Block, ev.PII, tt.block, tt.pii)
			}
			if tt.block == BlockScanLimit && out.Status != 413 || strings.HasPrefix(tt.block, "pii:") && out.Status != 422 {
				t.Errorf("status %d", out.Status)
			}
		})
	}
	// tooLarge: flag records the limit and lets the request go on.
	e = complianceEngine(t, func(c *auditconfig.Config) { c.Rules[1].PII.TooLarge = "flag" })
	var ev auditevent.Event
	if out := e.ProcessBody(i, &ev, []byte(`{"note":"`+pad+`4111111111111111"}`), true); out.Block != "" || fmt.Sprint(ev.PII) != "[scan-limit@body]" {
		t.Errorf("flag: %+v %v", out, ev.PII)
	}
}

func TestPIIActions(t *testing.T) {
	body := `{"text":"refund to 5500 0000 0000 0004, contact eve@example.org or +44 20 7946 0958"}`
	tests := []struct {
		name, action string
		block        bool
		clearInRec   bool
	}{
		{"flag", "flag", false, true},
		{"mask-in-audit", "mask-in-audit", false, false},
		{"block", "block", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := complianceEngine(t, func(c *auditconfig.Config) {
				c.Rules[2].PII.Action = tt.action
				c.CaptureHeaders = append(c.CaptureHeaders, "x-note")
			})
			path := "/v1/notes/eve@example.org"
			hs := map[string]string{"x-note": "call +4915112345678"}
			i := e.Match("POST", path)
			ev := e.NewEvent(i, &RequestInfo{Method: "POST", Path: path, Header: func(n string) string { return hs[n] }})
			r := e.ScanRequest(i, &ev, path, [][2]string{{":path", path}, {"x-note", hs["x-note"]}})
			if tt.block != (r == "pii:phone") {
				t.Errorf("headers: block %q", r)
			}
			out := e.ProcessBody(i, &ev, []byte(body), true)
			if tt.block != (out.Block == "pii:card,email,phone") {
				t.Errorf("body: block %q", out.Block)
			}
			if fmt.Sprint(ev.PII) != "[phone@header:x-note card@body email@body phone@body]" || ev.PIIAction != tt.action {
				t.Errorf("pii %v action %q", ev.PII, ev.PIIAction)
			}
			sum := sha256.Sum256([]byte(body))
			clearDigest := ev.BodyDigest == "sha256:"+hex.EncodeToString(sum[:])
			rec := string(ev.AppendCanonical(nil))
			clear := strings.Contains(rec, "eve@example.org") || strings.Contains(rec, "+4915112345678")
			if clear != tt.clearInRec || clearDigest != tt.clearInRec {
				t.Errorf("clear values in record: %t, digest of the clear body: %t, want %t\n%s", clear, clearDigest, tt.clearInRec, rec)
			}
			if !tt.clearInRec && (!strings.Contains(rec, `"path":"/v1/notes/***********.org"`) || !strings.Contains(rec, `"x-note":"call **********5678"`)) {
				t.Errorf("mask-in-audit record: %s", rec)
			}
		})
	}
}

// TestComplianceRecordJSON: the record the filter writes decodes with the
// collector's type and keeps every compliance field.
func TestComplianceRecordJSON(t *testing.T) {
	e := complianceEngine(t, nil)
	ev := transferEvent(t, e, "/v1/transfers?account=ACC-99887766")
	e.ProcessBody(0, &ev, []byte(transfer), true)
	ev.ID, ev.Phase, ev.Timestamp = "x", auditevent.PhaseOutcome, 1
	var back auditevent.Event
	if err := json.Unmarshal(appendCanonical(nil, &ev), &back); err != nil {
		t.Fatal(err)
	}
	if string(back.AppendCanonical(nil)) != string(ev.AppendCanonical(nil)) || back.KeyID != "pii-2026-12" || len(back.Fields) != 4 {
		t.Errorf("round trip: %+v", back)
	}
}
