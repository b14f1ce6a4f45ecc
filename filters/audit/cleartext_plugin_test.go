//go:build !wasip1

package audit

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
)

// CleartextCases (exported for the audit_test package) are shared by the native test and the .wasm test in the
// gateway host (host_cleartext_test.go): pii.cleartext block on transfers,
// flag on notes, over mTLS and over a plaintext hop.
var CleartextCases = []struct {
	Name    string
	Path    string
	Body    string
	MTLS    bool
	Status  int    // local reply status; 0: forwarded
	Blocked string // record's blocked
	Flagged bool   // record lists cleartext@connection
}{
	{"card over plaintext blocked", "/v1/transfers", `{"card":{"number":"4111 1111 1111 1111"},"amount":"12.00"}`, false, 426, "cleartext-pii:card", true},
	{"card in the query over plaintext blocked", "/v1/transfers?iban=DE89370400440532013000", `{"amount":"1"}`, false, 426, "cleartext-pii:iban", true},
	{"card over mTLS forwarded", "/v1/transfers", `{"card":{"number":"4111 1111 1111 1111"},"amount":"12.00"}`, true, 0, "", false},
	{"no PII over plaintext forwarded", "/v1/transfers", `{"amount":"12.00","currency":"EUR"}`, false, 0, "", false},
	{"e-mail over plaintext flagged", "/v1/notes", `{"text":"write to jane.roe@example.com"}`, false, 0, "", true},
	{"e-mail over mTLS not flagged", "/v1/notes", `{"text":"write to jane.roe@example.com"}`, true, 0, "", false},
}

func TestPluginNativeCleartext(t *testing.T) {
	cfg, err := os.ReadFile("testdata/cleartext.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range CleartextCases {
		t.Run(tt.Name, func(t *testing.T) {
			opt := proxytest.NewEmulatorOption().WithVMContext(NewVMContext).WithPluginConfiguration(cfg)
			if tt.MTLS {
				opt = opt.WithProperty([]string{"connection", "mtls"}, []byte{1}).
					WithProperty([]string{"connection", "uri_san_peer_certificate"}, []byte("spiffe://bank.example/ns/default/dc/dc1/svc/web"))
			} else {
				opt = opt.WithProperty([]string{"connection", "mtls"}, []byte{0})
			}
			host, reset := proxytest.NewHostEmulator(opt)
			defer reset()
			if host.StartVM() != proxywasm.OnVMStartStatusOK || host.StartPlugin() != proxywasm.OnPluginStartStatusOK {
				t.Fatalf("start failed: %v", host.GetCriticalLogs())
			}
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, [][2]string{{":method", "POST"}, {":path", tt.Path}}, false)
			host.CallOnRequestBody(id, []byte(tt.Body), true)
			r := host.GetSentLocalResponse(id)
			switch {
			case tt.Status == 0 && r != nil:
				t.Fatalf("refused with %d: %s", r.StatusCode, r.Data)
			case tt.Status != 0 && (r == nil || int(r.StatusCode) != tt.Status):
				t.Fatalf("local reply = %+v, want %d", r, tt.Status)
			case r != nil:
				var body map[string]string
				if err := json.Unmarshal(r.Data, &body); err != nil || body["reason"] != tt.Blocked || !strings.Contains(body["message"], "mTLS") {
					t.Errorf("reply body = %s", r.Data)
				}
			default:
				host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, true)
			}
			evs, raw := flushed(t, host, id)
			if len(evs) != 1 {
				t.Fatalf("records = %s", raw)
			}
			ev := evs[0]
			if ev.Blocked != tt.Blocked || strings.Contains(strings.Join(ev.PII, ","), cleartextDetection) != tt.Flagged {
				t.Errorf("record blocked %q pii %v; want blocked %q, cleartext flagged %v", ev.Blocked, ev.PII, tt.Blocked, tt.Flagged)
			}
			if strings.Contains(raw, "4111 1111 1111 1111") || strings.Contains(raw, "DE89370400440532013000") {
				t.Errorf("a value in clear in the record: %s", raw)
			}
		})
	}
}
