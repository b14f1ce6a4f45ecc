package v8host_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/internal/v8host"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// TestAuditCleartextStory runs the audit filter's cleartext check under V8
// with Envoy's property surface: connection.mtls is the one byte Envoy
// serialises a bool to. A card on a plaintext hop is refused with 426;
// the same request over mTLS is forwarded with the card masked; a host
// that does not answer the property counts as plaintext.
func TestAuditCleartextStory(t *testing.T) {
	mods := modules(t)
	cfg, err := auditconfig.ParseConfig([]byte(readFile(t, "../../audit/testdata/cleartext.json")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Batch.FlushIntervalMs = 20
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const body = `{"card":{"number":"4111 1111 1111 1111"},"amount":"12.00"}`
	req := func(props map[string]string) v8host.Request {
		return v8host.Request{Properties: props,
			RequestHeaders:  hdrs(":method", "POST", ":path", "/v1/transfers", "content-type", "application/json"),
			RequestBody:     []string{body},
			ResponseHeaders: hdrs(":status", "200"),
			TicksAfter:      2,
		}
	}
	out := run(t, v8host.Input{
		VMs:      []v8host.VM{{Name: "audit", Wasm: mods["audit"], PluginConfig: string(raw)}},
		Clusters: map[string]v8host.Cluster{"mw-audit": {Status: 200, Body: `{"accepted":1}`}},
		Requests: []v8host.Request{
			req(map[string]string{"connection.mtls": "\x00"}),
			req(map[string]string{"connection.mtls": "\x01", "connection.uri_san_peer_certificate": "spiffe://bank.example/ns/default/dc/dc1/svc/web"}),
			req(nil),
		},
	})
	for i, want := range []int{426, 0, 426} {
		r := out.Requests[i]
		switch {
		case want == 0 && (r.Action != "continue" || strings.Contains(string(r.UpstreamBody), "4111 1111") || !strings.Contains(string(r.UpstreamBody), "1111")):
			t.Errorf("request %d: %s, upstream %q; want it forwarded with the card masked", i, r.Action, r.UpstreamBody)
		case want != 0 && (r.Action != "reply" || r.LocalReply == nil || r.LocalReply.Status != want || !strings.Contains(string(r.LocalReply.Body), "cleartext-pii:card")):
			t.Errorf("request %d: %s %+v; want a %d naming cleartext-pii:card", i, r.Action, r.LocalReply, want)
		}
	}
	blocked := 0
	for _, e := range byPhase(auditEvents(t, out), auditevent.PhaseOutcome) {
		if e.Blocked == "cleartext-pii:card" {
			blocked++
		}
	}
	if blocked != 2 {
		t.Errorf("%d outcome records blocked cleartext-pii:card, want 2", blocked)
	}
}
