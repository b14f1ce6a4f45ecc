//go:build !wasip1

package audit

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

// panForms are the ways a card number could leak: as sent, and spaced.
var panForms = []string{"4111111111111111", "4111 1111 1111 1111", "411111111111"}

func complianceNative(t *testing.T) (*proxytest.HostEmulator, func()) {
	t.Helper()
	b, err := os.ReadFile("testdata/compliance.json")
	if err != nil {
		t.Fatal(err)
	}
	return startNative(t, string(b))
}

// flushed completes the stream, ticks and returns every record sent.
func flushed(t *testing.T, host *proxytest.HostEmulator, id uint32) ([]auditevent.Event, string) {
	t.Helper()
	host.CompleteHttpContext(id)
	host.Tick()
	var evs []auditevent.Event
	var raw strings.Builder
	for _, c := range host.GetCallouts() {
		raw.Write(c.Body)
		var b auditevent.Batch
		if err := json.Unmarshal(c.Body, &b); err != nil {
			t.Fatalf("callout body: %v", err)
		}
		evs = append(evs, b.Events...)
	}
	return evs, raw.String()
}

// TestPluginNativeCardNeverInClear: a card number in a transfer body under
// forward-mask is masked upstream, and appears in no form in the record.
func TestPluginNativeCardNeverInClear(t *testing.T) {
	host, reset := complianceNative(t)
	defer reset()
	id := host.InitializeHttpContext()
	hdr := [][2]string{{":method", "POST"}, {":path", "/v1/transfers?account=ACC-99887766"}, {"content-length", "170"},
		{"idempotency-key", "IK-1"}, {"x-customer-email", "jane.roe@example.com"}}
	if a := host.CallOnRequestHeaders(id, hdr, false); a != proxywasm.ActionPause {
		t.Fatalf("headers: %v, want them held until the body is masked", a)
	}
	if a := host.CallOnRequestBody(id, []byte(transfer[:40]), false); a != proxywasm.ActionPause {
		t.Fatalf("first chunk: %v", a)
	}
	if a := host.CallOnRequestBody(id, []byte(transfer[40:]), true); a != proxywasm.ActionContinue {
		t.Fatalf("last chunk: %v", a)
	}
	up := string(host.GetCurrentRequestBody(id))
	for _, h := range host.GetCurrentRequestHeaders(id) {
		if h[0] == "content-length" {
			t.Errorf("content-length %s kept though the body was rewritten", h[1])
		}
	}
	host.CallOnResponseHeaders(id, [][2]string{{":status", "201"}}, true)
	evs, raw := flushed(t, host, id)
	for _, pan := range panForms {
		if strings.Contains(up, pan) {
			t.Errorf("upstream body has %q: %s", pan, up)
		}
		if strings.Contains(raw, pan) {
			t.Errorf("audit batch has %q: %s", pan, raw)
		}
	}
	if !strings.Contains(up, `"number":"************1111"`) || !strings.Contains(up, `"iban":"DE89370400440532013000"`) {
		t.Errorf("upstream body = %s (card masked, iban hashed only in the record)", up)
	}
	if len(evs) != 1 || evs[0].Fields["body:card.number"] != "************1111" || evs[0].Status != 201 || strings.Join(evs[0].Tags, ",") != "pci,gdpr,region=eu" {
		t.Fatalf("records = %+v", evs)
	}
	if n, _ := host.GetCounterMetric(MetricPIIDetected); n != 1 {
		t.Errorf("%s = %d", MetricPIIDetected, n)
	}
}

func TestPluginNativeBlock(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		status int
		reason string
	}{
		{"card in a profile", `{"name":"Jane Roe","card":"5500-0000-0000-0004"}`, 422, "pii:card"},
		{"national id", `{"ssn":"078-05-1120"}`, 422, "pii:national-id"},
		{"too large to scan", `{"bio":"` + strings.Repeat("a", 5000) + `"}`, 413, BlockScanLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, reset := complianceNative(t)
			defer reset()
			id := host.InitializeHttpContext()
			hdr := [][2]string{{":method", "PUT"}, {":path", "/v1/customers/C-1/profile"}}
			if a := host.CallOnRequestHeaders(id, hdr, false); a != proxywasm.ActionPause {
				t.Fatalf("headers: %v", a)
			}
			if a := host.CallOnRequestBody(id, []byte(tt.body), true); a != proxywasm.ActionPause {
				t.Fatalf("body: %v, want held (refused)", a)
			}
			r := host.GetSentLocalResponse(id)
			if r == nil || int(r.StatusCode) != tt.status {
				t.Fatalf("local reply = %+v, want %d", r, tt.status)
			}
			var body map[string]string
			if err := json.Unmarshal(r.Data, &body); err != nil || body["error"] != "compliance_blocked" || body["reason"] != tt.reason || body["audit_id"] == "" {
				t.Errorf("reply body = %s", r.Data)
			}
			if strings.Contains(string(r.Data), "0004") || strings.Contains(string(r.Data), "1120") {
				t.Errorf("reply echoes the value: %s", r.Data)
			}
			evs, _ := flushed(t, host, id)
			if len(evs) != 1 || evs[0].Blocked != tt.reason || evs[0].Status != tt.status || evs[0].PIIAction != "block" || strings.Join(evs[0].Tags, ",") != "gdpr" {
				t.Fatalf("records = %+v", evs)
			}
			if n, _ := host.GetCounterMetric(MetricPIIBlocked); n != 1 {
				t.Errorf("%s = %d", MetricPIIBlocked, n)
			}
		})
	}
}

// TestPluginNativeMalformedForwardRefused: a transfer body that is not
// JSON cannot be masked, so it is refused, never forwarded half-masked.
func TestPluginNativeMalformedForwardRefused(t *testing.T) {
	host, reset := complianceNative(t)
	defer reset()
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{":method", "POST"}, {":path", "/v1/transfers"}}, false)
	body := `{"card":{"number":"4111111111111111"}`
	if a := host.CallOnRequestBody(id, []byte(body), true); a != proxywasm.ActionPause {
		t.Fatalf("body: %v", a)
	}
	if r := host.GetSentLocalResponse(id); r == nil || r.StatusCode != 400 {
		t.Fatalf("reply = %+v", r)
	}
	evs, raw := flushed(t, host, id)
	if strings.Contains(raw, "4111111111111111") || len(evs) != 1 || evs[0].Blocked != BlockBodyNotJSON || !strings.HasPrefix(evs[0].BodyDigest, HashPrefix+"pii-2026-12:") {
		t.Fatalf("records = %s", raw)
	}
}
