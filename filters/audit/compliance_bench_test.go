package audit

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// benchBody is JSON of about n bytes of realistic free text with one card
// number, one IBAN and one e-mail near the end (the scan reads it all).
func benchBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"memo":"`)
	for b.Len() < n-160 {
		b.WriteString("Invoice 2026-11 for consulting, ref 88213, paid in full. ")
	}
	b.WriteString(`","card":"4111 1111 1111 1111","iban":"DE89370400440532013000","email":"jane.roe@example.com"}`)
	return []byte(b.String())
}

// BenchmarkDetectPerKiB is the cost of the built-in detectors (and one RE2
// pattern) per KiB scanned: ns/op over a 1 KiB and a 64 KiB body; MB/s
// gives the rate.
func BenchmarkDetectPerKiB(b *testing.B) {
	for _, tc := range []struct {
		name string
		pii  auditconfig.PII
	}{
		{"builtin", auditconfig.PII{Detectors: auditconfig.BuiltinDetectors}},
		{"builtin+regex", auditconfig.PII{Detectors: auditconfig.BuiltinDetectors, Patterns: []auditconfig.Pattern{{Name: "customer-id", Regex: `CUST-[0-9]{8}`}}}},
	} {
		for _, size := range []int{1 << 10, 64 << 10} {
			body := benchBody(size)
			d := NewDetector(&tc.pii)
			b.Run(tc.name+"/"+map[int]string{1 << 10: "1KiB", 64 << 10: "64KiB"}[size], func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				var buf [16]Detection
				for b.Loop() {
					if len(d.Scan(buf[:0], body)) != 3 {
						b.Fatal("detections")
					}
				}
			})
		}
	}
}

// BenchmarkComplianceRequest is the engine's added work per audited
// transfer (1 KiB body): record + digest without compliance, then with
// testdata/compliance.json's transfer rule (tags, four field actions, a
// forwarded body rewrite, PII scan with mask-in-audit).
func BenchmarkComplianceRequest(b *testing.B) {
	body := benchBody(1 << 10)
	body = []byte(strings.Replace(string(body), `"card":"4111 1111 1111 1111"`, `"card":{"number":"4111111111111111"},"beneficiary":{"iban":"DE89370400440532013000"}`, 1))
	hs := map[string]string{"idempotency-key": "IK-7", "x-customer-email": "jane.roe@example.com", "user-agent": "bank-app/5"}
	path := "/v1/transfers?account=ACC-99887766"
	ri := &RequestInfo{Method: "POST", Path: path, Header: func(n string) string { return hs[n] }}
	plain := complianceEngine(b, func(c *auditconfig.Config) {
		c.Rules[0].Fields, c.Rules[0].PII, c.Rules[0].Tags = nil, nil, nil
	})
	full := complianceEngine(b, nil)
	for _, tc := range []struct {
		name string
		e    *Engine
	}{{"without", plain}, {"with", full}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ev := tc.e.NewEvent(0, ri)
				tc.e.ScanRequest(0, &ev, path, nil)
				out := tc.e.ProcessBody(0, &ev, body, true)
				_ = appendCanonical(nil, &ev)
				if out.Block != "" {
					b.Fatal(out.Block)
				}
			}
		})
	}
	_ = auditevent.Event{}
}

// BenchmarkCleartextCheck is the engine's cleartext check per request
// (natively), on a record with detections, over mTLS and over plaintext.
func BenchmarkCleartextCheck(b *testing.B) {
	cfg, err := auditconfig.ParseConfig([]byte(`{"rules":[{"opType":"X","path":{"prefix":"/"},"pii":{"action":"flag","cleartext":"flag"}}]}`))
	if err != nil {
		b.Fatal(err)
	}
	e := NewEngine(cfg)
	for _, mtls := range []bool{true, false} {
		b.Run(map[bool]string{true: "mtls", false: "plaintext"}[mtls], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ev := auditevent.Event{PII: []string{"card@body", "email@body"}}
				if r, _ := e.CheckCleartext(0, &ev, mtls); r != "" {
					b.Fatal(r)
				}
			}
		})
	}
}
