package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

const testConfig = `{
  "rules": [
    {"name": "transfer", "methods": ["POST"], "path": {"prefix": "/v1/transfers"}, "opType": "FUND_TRANSFER", "level": "critical", "resource": "transfer/{header.x-idempotency-key}", "failClosed": true},
    {"name": "account", "methods": ["PUT", "DELETE"], "path": {"pattern": "/v1/accounts/*/limits"}, "opType": "LIMIT_CHANGE", "level": "notice", "resource": "account/{path.3}"},
    {"name": "admin", "path": {"pattern": "/admin/**"}, "opType": "ADMIN", "resource": "{method}:{query.target}"},
    {"name": "login", "path": {"exact": "/login"}, "opType": "LOGIN"}
  ],
  "subject": {"header": "x-mw-subject", "trustedPeers": ["spiffe://bank.example/ns/edge/*"]},
  "redact": {"headers": ["x-api-key"], "bodyFields": ["card.number", "pin"]},
  "captureHeaders": ["user-agent", "x-api-key", "authorization"],
  "collector": {"token": "s3cret"},
  "source": "node-1"
}`

func mustEngine(t testing.TB) *Engine {
	t.Helper()
	cfg, err := auditconfig.ParseConfig([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(cfg)
}

func TestMatch(t *testing.T) {
	e := mustEngine(t)
	tests := []struct {
		method, path string
		want         string
	}{
		{"POST", "/v1/transfers", "transfer"},
		{"POST", "/v1/transfers/42?x=1", "transfer"},
		{"GET", "/v1/transfers", ""},
		{"PUT", "/v1/accounts/ACC-7/limits", "account"},
		{"PUT", "/v1/accounts/ACC-7/limits/extra", ""},
		{"PUT", "/v1/accounts//limits", ""},
		{"DELETE", "/v1/accounts/x/limits?y", "account"},
		{"GET", "/admin/users/9", "admin"},
		{"GET", "/admin", ""},
		{"GET", "/login", "login"},
		{"GET", "/login/x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got := ""
			if i := e.Match(tt.method, tt.path); i >= 0 {
				got = e.Rule(i).Name
			}
			if got != tt.want {
				t.Errorf("Match = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewEvent(t *testing.T) {
	e := mustEngine(t)
	hdrs := map[string]string{"x-mw-subject": "alice", "user-agent": "curl", "x-api-key": "k", "authorization": "Bearer x", "x-idempotency-key": "IK-1"}
	get := func(n string) string { return hdrs[n] }
	tests := []struct {
		name, method, path, peer string
		subject, resource, level string
	}{
		{"trusted subject header", "POST", "/v1/transfers", "spiffe://bank.example/ns/edge/sa/gw", "alice", "transfer/IK-1", "critical"},
		{"untrusted header falls back to peer", "POST", "/v1/transfers", "spiffe://bank.example/ns/other/sa/x", "spiffe://bank.example/ns/other/sa/x", "transfer/IK-1", "critical"},
		{"no peer, untrusted header", "POST", "/v1/transfers", "", "anonymous", "transfer/IK-1", "critical"},
		{"path template", "PUT", "/v1/accounts/ACC-7/limits", "", "anonymous", "account/ACC-7", "notice"},
		{"method and query template", "GET", "/admin/x?target=db&y=1", "", "anonymous", "GET:db", "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := e.Match(tt.method, tt.path)
			ev := e.NewEvent(i, &RequestInfo{Method: tt.method, Path: tt.path, Header: get, PeerIdentity: tt.peer, TraceID: "t1", Dye: "canary"})
			if ev.Subject != tt.subject || ev.Resource != tt.resource || string(ev.Level) != tt.level {
				t.Errorf("subject %q resource %q level %q; want %q %q %q", ev.Subject, ev.Resource, ev.Level, tt.subject, tt.resource, tt.level)
			}
			if ev.Headers["user-agent"] != "curl" || ev.Headers["x-api-key"] != "" || ev.Headers["authorization"] != "" {
				t.Errorf("captured headers = %v: want user-agent only", ev.Headers)
			}
			if strings.Join(ev.Redacted, ",") != "header:x-api-key,header:authorization" {
				t.Errorf("Redacted = %v", ev.Redacted)
			}
			if strings.Contains(ev.Path, "?") || ev.Dye != "canary" || ev.Source != "node-1" {
				t.Errorf("path %q dye %q source %q", ev.Path, ev.Dye, ev.Source)
			}
		})
	}
}

func TestRedactJSON(t *testing.T) {
	paths := [][]string{{"card", "number"}, {"pin"}, {"items", "secret"}}
	tests := []struct {
		name, in, want string
		fields         []string
		ok             bool
	}{
		{"nested and top level", `{"amount": 10, "card": {"number": "4111 1111", "exp": "12/30"}, "pin":"1234"}`,
			`{"amount": 10, "card": {"number": "[REDACTED]", "exp": "12/30"}, "pin":"[REDACTED]"}`, []string{"card.number", "pin"}, true},
		{"object value", `{"card":{"number":{"a":[1,2]},"x":1}}`, `{"card":{"number":"[REDACTED]","x":1}}`, []string{"card.number"}, true},
		{"inside arrays", `{"items":[{"secret":1},{"secret":[true]},{"other":2}]}`, `{"items":[{"secret":"[REDACTED]"},{"secret":"[REDACTED]"},{"other":2}]}`, []string{"items.secret"}, true},
		{"same key elsewhere untouched", `{"x":{"pin":"1"},"pin":2}`, `{"x":{"pin":"1"},"pin":"[REDACTED]"}`, []string{"pin"}, true},
		{"nothing to redact", `{"a":1}`, `{"a":1}`, nil, true},
		{"not json", `pin=1234`, "", nil, false},
		{"truncated json", `{"pin": "12`, "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, fields, ok := RedactJSON([]byte(tt.in), paths)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if string(out) != tt.want || strings.Join(fields, ",") != strings.Join(tt.fields, ",") {
				t.Errorf("RedactJSON = %s %v, want %s %v", out, fields, tt.want, tt.fields)
			}
			if !json.Valid(out) {
				t.Errorf("output is not valid JSON: %s", out)
			}
		})
	}
}

func TestDigestBody(t *testing.T) {
	e := mustEngine(t)
	body := []byte(`{"pin":"1234","amount":5}`)
	var ev auditevent.Event
	e.DigestBody(&ev, body, true)
	sum := sha256.Sum256([]byte(`{"pin":"[REDACTED]","amount":5}`))
	if ev.BodyDigest != "sha256:"+hex.EncodeToString(sum[:]) || ev.BodyTruncated {
		t.Errorf("digest = %q truncated %v; want the digest of the redacted body", ev.BodyDigest, ev.BodyTruncated)
	}
	if strings.Join(ev.Redacted, ",") != "body:pin" {
		t.Errorf("Redacted = %v", ev.Redacted)
	}
	var tr auditevent.Event
	e.DigestBody(&tr, body[:10], false)
	if tr.BodyDigest != "" || !tr.BodyTruncated || strings.Join(tr.Redacted, ",") != "body" {
		t.Errorf("truncated body with field redaction: %+v; want no digest, truncated, redacted body", tr)
	}
	plain := NewEngine(&auditconfig.Config{Rules: []auditconfig.Rule{{OpType: "X", Path: auditconfig.PathMatch{Prefix: "/"}}}})
	var pe auditevent.Event
	plain.DigestBody(&pe, []byte("abc"), false)
	sum = sha256.Sum256([]byte("abc"))
	if pe.BodyDigest != "sha256:"+hex.EncodeToString(sum[:]) || !pe.BodyTruncated {
		t.Errorf("plain truncated digest = %+v", pe)
	}
}

func TestAppendBatchDecodes(t *testing.T) {
	evs := []auditevent.Event{
		{ID: "a-1-intent", Phase: auditevent.PhaseIntent, OpType: "X", Timestamp: 1, Headers: map[string]string{"k": "v<>"}},
		{ID: "a-1-outcome", Phase: auditevent.PhaseOutcome, OpType: "X", Timestamp: 2, Status: 201, LatencyNS: 7, Redacted: []string{"body:pin"}},
	}
	var enc [][]byte
	for i := range evs {
		enc = append(enc, evs[i].AppendCanonical(nil))
	}
	var got auditevent.Batch
	if err := json.Unmarshal(AppendBatch(nil, "node\"1", enc), &got); err != nil {
		t.Fatal(err)
	}
	if got.Sender != "node\"1" || len(got.Events) != 2 || got.Events[1].Status != 201 || got.Events[0].Headers["k"] != "v<>" || got.Events[1].Redacted[0] != "body:pin" {
		t.Errorf("decoded batch = %+v", got)
	}
}

func FuzzRedactJSON(f *testing.F) {
	f.Add(`{"card":{"number":"1"},"pin":2,"a":[{"pin":3}]}`)
	f.Add(`[1,{"pin":{}}]`)
	f.Fuzz(func(t *testing.T, s string) {
		out, _, ok := RedactJSON([]byte(s), [][]string{{"pin"}, {"card", "number"}})
		if ok && json.Valid([]byte(s)) && !json.Valid(out) {
			t.Fatalf("redacting valid JSON %q produced invalid %q", s, out)
		}
	})
}

func BenchmarkRecord(b *testing.B) {
	e := mustEngine(b)
	hdrs := map[string]string{"x-mw-subject": "alice", "user-agent": "curl", "x-idempotency-key": "IK-1"}
	get := func(n string) string { return hdrs[n] }
	b.ReportAllocs()
	for b.Loop() {
		i := e.Match("PUT", "/v1/accounts/ACC-7/limits")
		ev := e.NewEvent(i, &RequestInfo{Method: "PUT", Path: "/v1/accounts/ACC-7/limits", Header: get, PeerIdentity: "spiffe://bank.example/ns/edge/sa/gw", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"})
		ev.Phase, ev.ID, ev.Timestamp, ev.Status, ev.LatencyNS = auditevent.PhaseOutcome, "4bf92f3577b34da6a3ce929d0e0e4736-0011223344556677-outcome", 1, 200, 5
		_ = ev.AppendCanonical(make([]byte, 0, 1024))
	}
}
