//go:build !wasip1

package audit_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// TestHostCleartext runs testdata/cleartext.json as .wasm in the gateway
// host, with connection.mtls answered from StreamInfo.MTLS as the gateway
// fills it from the real connection.
func TestHostCleartext(t *testing.T) {
	raw := testdataConfig(t, "testdata/cleartext.json", 0)
	for _, tt := range audit.CleartextCases {
		t.Run(tt.Name, func(t *testing.T) {
			rcv := newReceiver(t, "change-me")
			info := wasmhost.StreamInfo{MTLS: tt.MTLS}
			if tt.MTLS {
				info.TLSVersion, info.PeerURISAN = "TLSv1.3", "spiffe://bank.example/ns/default/dc/dc1/svc/web"
			}
			s := hostStream(t, raw, rcv, info)
			defer s.Close()
			s.OnRequestHeaders(wasmhost.NewHeaders(":method", "POST", ":path", tt.Path), false)
			res := s.OnRequestBody([]byte(tt.Body), true)
			if tt.Status != 0 {
				if res.Action != wasmhost.Reply || res.Reply.Status != tt.Status || !strings.Contains(string(res.Reply.Body), tt.Blocked) {
					t.Fatalf("body: %v %+v, want a %d reply naming %s", res.Action, res.Reply, tt.Status, tt.Blocked)
				}
			} else {
				if res.Action != wasmhost.Continue {
					t.Fatalf("body: %v %+v, want it forwarded", res.Action, res.Reply)
				}
				s.OnResponseHeaders(wasmhost.NewHeaders(":status", "200"), true)
			}
			s.Close()
			e := rcv.waitFor(t, auditevent.PhaseOutcome, 1)[0]
			if e.Blocked != tt.Blocked || strings.Contains(strings.Join(e.PII, ","), "cleartext@connection") != tt.Flagged {
				t.Errorf("record blocked %q pii %v; want blocked %q, cleartext flagged %v", e.Blocked, e.PII, tt.Blocked, tt.Flagged)
			}
			if rec := string(e.AppendCanonical(nil)); strings.Contains(rec, "4111 1111 1111 1111") {
				t.Errorf("card in clear in the record: %s", rec)
			}
		})
	}
}

// BenchmarkHostCleartext is the cleartext check's cost per request as
// .wasm: the notes rule (flag, 1 KiB body with an e-mail) without a
// cleartext setting, then with cleartext: flag over mTLS and over a
// plaintext hop (one connection.mtls read, and the flag).
func BenchmarkHostCleartext(b *testing.B) {
	body := []byte(`{"memo":"` + strings.Repeat("Invoice 2026-11 for consulting, ref 88213, paid in full. ", 16) + `","text":"contact eve@example.org"}`)
	for _, tc := range []struct {
		name      string
		cleartext string
		mtls      bool
	}{{"off", "", false}, {"flag/mtls", "flag", true}, {"flag/plaintext", "flag", false}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg, _ := auditconfig.ParseConfig(kittest.ReadFile(b, "testdata/cleartext.json"))
			cfg.Rules[1].PII.Cleartext = tc.cleartext
			raw, _ := json.Marshal(cfg)
			rcv := newReceiver(b, "change-me")
			p, err := benchPlugin(b, raw, rcv)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				s, _ := p.NewStream(context.Background(), wasmhost.StreamInfo{MTLS: tc.mtls})
				s.OnRequestHeaders(wasmhost.NewHeaders(":method", "POST", ":path", "/v1/notes"), false)
				if r := s.OnRequestBody(body, true); r.Action != wasmhost.Continue {
					b.Fatal(r.Action)
				}
				s.OnResponseHeaders(wasmhost.NewHeaders(":status", "201"), true)
				s.Close()
			}
		})
	}
}
