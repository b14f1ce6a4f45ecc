//go:build !wasip1

package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit"
	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/gateway/wasmhost"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

const hostTransfer = `{"amount":"250.00","currency":"EUR","card":{"number":"4111 1111 1111 1111","expiry":"12/29"},"beneficiary":{"name":"Jane Roe","iban":"DE89370400440532013000"}}`

// TestHostCompliance runs testdata/compliance.json as .wasm in the
// gateway's host: each action and detector, and what goes upstream.
func TestHostCompliance(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		path      string
		headers   []string
		body      string
		wantReply int    // 0: forwarded
		upstream  string // substring of the forwarded body
		check     func(t *testing.T, e auditevent.Event)
		never     []string // in neither the record nor upstream
	}{
		{name: "forward-mask card, hash iban and e-mail, mask query", method: "POST", path: "/v1/transfers?account=ACC-99887766",
			headers: []string{"idempotency-key", "IK-3", "x-customer-email", "jane.roe@example.com"}, body: hostTransfer,
			upstream: `"number":"***************1111"`,
			check: func(t *testing.T, e auditevent.Event) {
				if e.Fields["body:card.number"] != "***************1111" || e.Fields["query:account"] != "**********66" ||
					!strings.HasPrefix(e.Fields["body:beneficiary.iban"], "hmac-sha256:pii-2026-12:") || e.KeyID != "pii-2026-12" ||
					strings.Join(e.Tags, ",") != "pci,gdpr,region=eu" || strings.Join(e.PII, ",") != "card@body,iban@body" || e.PIIAction != "mask-in-audit" {
					t.Errorf("record = %+v", e)
				}
			},
			never: []string{"4111 1111 1111 1111", "4111111111111111", "jane.roe@example.com", "ACC-99887766", "dGVzdC1rZXkt", "test-key-2026"}},
		{name: "block card in a profile", method: "PUT", path: "/v1/customers/C-1/profile", body: `{"card":"5500 0000 0000 0004"}`, wantReply: 422,
			check: func(t *testing.T, e auditevent.Event) {
				if e.Blocked != "pii:card" || e.Status != 422 || strings.Join(e.PII, ",") != "card@body" {
					t.Errorf("record = %+v", e)
				}
			}},
		{name: "block too large to scan", method: "PUT", path: "/v1/customers/C-2/profile", body: `{"bio":"` + strings.Repeat("x", 6000) + `"}`, wantReply: 413,
			check: func(t *testing.T, e auditevent.Event) {
				if e.Blocked != audit.BlockScanLimit || strings.Join(e.PII, ",") != "scan-limit@body" {
					t.Errorf("record = %+v", e)
				}
			}},
		{name: "flag e-mail, phone and iban", method: "POST", path: "/v1/notes", headers: []string{"x-callback", "+44 20 7946 0958"},
			body: `{"text":"contact eve@example.org, refund to FR1420041010050500013M02606"}`, upstream: "eve@example.org",
			check: func(t *testing.T, e auditevent.Event) {
				if strings.Join(e.PII, ",") != "phone@header:x-callback,email@body,iban@body" || e.PIIAction != "flag" || e.Blocked != "" {
					t.Errorf("record = %+v", e)
				}
			}},
		{name: "malformed transfer refused, keyed digest", method: "POST", path: "/v1/transfers", body: `{"card":{"number":"4111111111111111"`, wantReply: 400,
			check: func(t *testing.T, e auditevent.Event) {
				if e.Blocked != audit.BlockBodyNotJSON || !strings.HasPrefix(e.BodyDigest, "hmac-sha256:pii-2026-12:") || len(e.Fields) != 0 {
					t.Errorf("record = %+v", e)
				}
			},
			never: []string{"4111111111111111"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, "change-me")
			s := hostStream(t, testdataConfig(t, "testdata/compliance.json", 0), rcv, wasmhost.StreamInfo{})
			defer s.Close()
			h := wasmhost.NewHeaders(append([]string{":method", tt.method, ":path", tt.path}, tt.headers...)...)
			if res := s.OnRequestHeaders(h, false); res.Action != wasmhost.Buffer {
				t.Fatalf("headers: %v (%v)", res.Action, res.Err)
			}
			res := s.OnRequestBody([]byte(tt.body), true)
			upstream := ""
			if tt.wantReply != 0 {
				if res.Action != wasmhost.Reply || res.Reply.Status != tt.wantReply {
					t.Fatalf("body: %v %+v, want a %d reply", res.Action, res.Reply, tt.wantReply)
				}
			} else {
				if res.Action != wasmhost.Continue || !strings.Contains(string(res.Body), tt.upstream) {
					t.Fatalf("body: %v %s, want it forwarded with %s", res.Action, res.Body, tt.upstream)
				}
				upstream = string(res.Body) + strings.Join(func() []string {
					var v []string
					for _, kv := range h.Pairs {
						v = append(v, kv[0]+": "+kv[1])
					}
					return v
				}(), "\n")
				s.OnResponseHeaders(wasmhost.NewHeaders(":status", "201"), true)
			}
			s.Close()
			e := rcv.waitFor(t, auditevent.PhaseOutcome, 1)[0]
			tt.check(t, e)
			rec := string(e.AppendCanonical(nil))
			for _, v := range tt.never {
				if strings.Contains(rec, v) {
					t.Errorf("record holds %q: %s", v, rec)
				}
				if strings.Contains(upstream, v) && v != "ACC-99887766" && v != "jane.roe@example.com" {
					t.Errorf("upstream holds %q: %s", v, upstream)
				}
			}
		})
	}
}

// TestHostKeyRotation: a configuration revision with a new current key
// hashes with it and records its id; the older plugin's records name the
// older key. No key appears in the logs.
func TestHostKeyRotation(t *testing.T) {
	ids := []string{}
	for n, keys := range [][]auditconfig.HashKey{nil, {{ID: "pii-2027-01", Secret: "dGVzdC1rZXktMjAyNy0wMS1kby1ub3QtdXNlLTAwMDM="}}} {
		t.Run(fmt.Sprint("revision ", n+1), func(t *testing.T) {
			rcv := newReceiver(t, "change-me")
			cfg, _ := auditconfig.ParseConfig(kittest.ReadFile(t, "testdata/compliance.json"))
			cfg.Batch.FlushIntervalMs = 20
			if keys != nil {
				cfg.HashKeys = append(keys, cfg.HashKeys[0])
			}
			b, _ := json.Marshal(cfg)
			logs := &kittest.LogSink{}
			p, err := hostPlugin(t, b, rcv, logs)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := p.NewStream(context.Background(), wasmhost.StreamInfo{})
			s.OnRequestHeaders(wasmhost.NewHeaders(":method", "POST", ":path", "/v1/transfers", "x-customer-email", "jane.roe@example.com"), false)
			s.OnRequestBody([]byte(hostTransfer), true)
			s.OnResponseHeaders(wasmhost.NewHeaders(":status", "200"), true)
			s.Close()
			e := rcv.waitFor(t, auditevent.PhaseOutcome, 1)[0]
			ids = append(ids, e.KeyID+" "+e.Fields["header:x-customer-email"][:len("hmac-sha256:pii-2027-01:")])
			if l := logs.All(); strings.Contains(l, "dGVzdC1rZXkt") || strings.Contains(l, "test-key-") {
				t.Errorf("a key is in the logs: %s", l)
			}
		})
	}
	if ids[0] != "pii-2026-12 hmac-sha256:pii-2026-12:" || ids[1] != "pii-2027-01 hmac-sha256:pii-2027-01:" {
		t.Errorf("key ids across the rotation: %q", ids)
	}
}

// BenchmarkHostCompliance is the transfer rule's cost per request as .wasm
// in the gateway's host (1 KiB body), with and without the compliance
// settings; the outcome records go to a test collector.
func BenchmarkHostCompliance(b *testing.B) {
	body := []byte(`{"memo":"` + strings.Repeat("Invoice 2026-11 for consulting, ref 88213, paid in full. ", 15) + `",` + hostTransfer[1:])
	for _, tc := range []struct {
		name  string
		strip bool
	}{{"without", true}, {"with", false}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg, _ := auditconfig.ParseConfig(kittest.ReadFile(b, "testdata/compliance.json"))
			if tc.strip {
				cfg.Rules[0].Fields, cfg.Rules[0].PII, cfg.Rules[0].Tags = nil, nil, nil
			}
			raw, _ := json.Marshal(cfg)
			rcv := newReceiver(b, "change-me")
			p, err := benchPlugin(b, raw, rcv)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				s, _ := p.NewStream(context.Background(), wasmhost.StreamInfo{})
				s.OnRequestHeaders(wasmhost.NewHeaders(":method", "POST", ":path", "/v1/transfers?account=ACC-99887766", "x-customer-email", "jane.roe@example.com"), false)
				if r := s.OnRequestBody(body, true); r.Action != wasmhost.Continue {
					b.Fatal(r.Action)
				}
				s.OnResponseHeaders(wasmhost.NewHeaders(":status", "201"), true)
				s.Close()
			}
		})
	}
}

// BenchmarkHostDetectPerKiB is the PII scan's cost per KiB as .wasm: a
// flag rule scanning a 64 KiB body, minus the same request unscanned.
func BenchmarkHostDetectPerKiB(b *testing.B) {
	memo := strings.Repeat("Invoice 2026-11 for consulting, ref 88213, paid in full. ", 64<<10/58)
	body := []byte(`{"memo":"` + memo + `","text":"contact eve@example.org"}`)
	for _, tc := range []struct {
		name string
		pii  bool
	}{{"unscanned", false}, {"scanned", true}} {
		b.Run(tc.name+"/64KiB", func(b *testing.B) {
			cfg, _ := auditconfig.ParseConfig(kittest.ReadFile(b, "testdata/compliance.json"))
			cfg.MaxBodyBytes = 128 << 10
			if tc.pii {
				cfg.Rules[2].PII.MaxScanBytes = 128 << 10
			} else {
				cfg.Rules[2].PII = nil
			}
			raw, _ := json.Marshal(cfg)
			rcv := newReceiver(b, "change-me")
			p, err := benchPlugin(b, raw, rcv)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				s, _ := p.NewStream(context.Background(), wasmhost.StreamInfo{})
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

// benchPlugin is hostPlugin in a runtime without per-call deadlines, as the
// gateway's benchmarks run (docs/BENCHMARKS.md: deadlines cost 2–4×).
func benchPlugin(b *testing.B, config []byte, rcv *receiver) (*wasmhost.Plugin, error) {
	rt, mod := guests.CompiledFast(b, "./wasm")
	cfg := wasmhost.PluginConfig{Name: "audit", Configuration: config,
		Properties: map[string][]byte{"node.id": []byte("gw-bench")},
		HTTPCaller: &wasmhost.NetHTTPCaller{Clusters: map[string]string{"mw-audit": rcv.srv.URL}}}
	return kittest.Start(b, rt, mod, cfg, nil)
}
