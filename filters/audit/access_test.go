//go:build !wasip1

package audit

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/proxywasm"
	"github.com/meshwarden/meshwarden/filters/proxywasm/proxytest"
	"github.com/meshwarden/meshwarden/internal/auditevent"
)

func startNativeWith(t *testing.T, cfg string, props map[string]string) (*proxytest.HostEmulator, func()) {
	t.Helper()
	opt := proxytest.NewEmulatorOption().WithVMContext(NewVMContext).WithPluginConfiguration([]byte(cfg))
	for k, v := range props {
		opt = opt.WithProperty(splitDots(k), []byte(v))
	}
	host, reset := proxytest.NewHostEmulator(opt)
	if host.StartVM() != proxywasm.OnVMStartStatusOK || host.StartPlugin() != proxywasm.OnPluginStartStatusOK {
		reset()
		t.Fatalf("start failed: %v", host.GetCriticalLogs())
	}
	return host, reset
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// TestAccessDeniedRecorded: a 403 whose response code details are the RBAC
// filter's (as Envoy and the gateway set them) yields one ACCESS_DENIED
// record naming the caller, the target and the rule, even for a request no
// audit rule selects; a 403 from the app yields none.
func TestAccessDeniedRecorded(t *testing.T) {
	const caller = "spiffe://bank.example/ns/default/dc/dc1/svc/intruder"
	tests := []struct {
		name    string
		details string
		grpc    bool
		want    int
	}{
		{"rbac denial", "rbac_access_denied_matched_policy[none]", false, 1},
		{"app's own 403", "via_upstream", false, 0},
		{"rbac denial of a gRPC call", "rbac_access_denied_matched_policy[none]", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, reset := startNativeWith(t, testConfig, map[string]string{
				"connection.uri_san_peer_certificate": caller,
				"node.cluster":                        "payments",
				"response.code_details":               tt.details,
			})
			defer reset()
			id := host.InitializeHttpContext()
			req := [][2]string{{":method", "GET"}, {":path", "/v1/balance?x=1"}, {"x-mw-dye", "canary"}}
			resp, wantStatus := [][2]string{{":status", "403"}}, 403
			if tt.grpc {
				req = append(req, [2]string{"content-type", "application/grpc"})
				resp, wantStatus = [][2]string{{":status", "200"}, {"grpc-status", "7"}}, 200
			}
			host.CallOnRequestHeaders(id, req, true)
			host.CallOnResponseHeaders(id, resp, false)
			host.CompleteHttpContext(id)
			host.Tick()
			var got []auditevent.Event
			for _, c := range host.GetCallouts() {
				got = append(got, decodeBatch(t, c).Events...)
			}
			if len(got) != tt.want {
				t.Fatalf("%d records, want %d: %+v", len(got), tt.want, got)
			}
			if n, _ := host.GetCounterMetric(MetricAccessDenied); int(n) != tt.want {
				t.Errorf("%s = %d, want %d", MetricAccessDenied, n, tt.want)
			}
			if tt.want == 0 {
				return
			}
			ev := got[0]
			if ev.OpType != OpAccessDenied || ev.Subject != caller || ev.Resource != "payments#none" || ev.Status != wantStatus ||
				ev.Method != "GET" || ev.Path != "/v1/balance" || ev.Dye != "canary" || ev.Phase != auditevent.PhaseOutcome || ev.Level != auditevent.LevelNotice {
				t.Errorf("record = %+v", ev)
			}
		})
	}
}

// TestAccessSubjectHeaderTrust: x-mw-subject is honoured only from a peer in
// subject.trustedPeers; from anyone else it is stripped (the upstream never
// sees it) and the record's subject is the authenticated peer.
func TestAccessSubjectHeaderTrust(t *testing.T) {
	const cfg = `{"rules":[{"methods":["POST"],"path":{"exact":"/v1/x"},"opType":"X"}],"subject":{"header":"x-mw-subject","trustedPeers":["spiffe://bank.example/ns/edge/*"]},"collector":{"token":"s3cret"}}`
	const cfgNoTrust = `{"rules":[{"methods":["POST"],"path":{"exact":"/v1/x"},"opType":"X"}],"subject":{"header":"x-mw-subject"},"collector":{"token":"s3cret"}}`
	const cfgNoHeader = `{"rules":[{"methods":["POST"],"path":{"exact":"/v1/x"},"opType":"X"}],"collector":{"token":"s3cret"}}`
	tests := []struct {
		name, cfg, peer    string
		wantSubject        string
		wantHeaderUpstream bool
		wantStrippedMetric uint64
	}{
		{"trusted peer", cfg, "spiffe://bank.example/ns/edge/sa/gw", "alice", true, 0},
		{"untrusted peer", cfg, "spiffe://bank.example/ns/web/sa/app", "spiffe://bank.example/ns/web/sa/app", false, 1},
		{"no trusted peers: nobody", cfgNoTrust, "spiffe://bank.example/ns/edge/sa/gw", "spiffe://bank.example/ns/edge/sa/gw", false, 1},
		{"no header configured: default stripped", cfgNoHeader, "", "anonymous", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, reset := startNativeWith(t, tt.cfg, map[string]string{"connection.uri_san_peer_certificate": tt.peer})
			defer reset()
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, [][2]string{{":method", "POST"}, {":path", "/v1/x"}, {"x-mw-subject", "alice"}}, true)
			sawHeader := false
			for _, kv := range host.GetCurrentRequestHeaders(id) {
				if kv[0] == "x-mw-subject" {
					sawHeader = true
				}
			}
			if sawHeader != tt.wantHeaderUpstream {
				t.Errorf("x-mw-subject forwarded = %v, want %v", sawHeader, tt.wantHeaderUpstream)
			}
			host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, true)
			host.CompleteHttpContext(id)
			host.Tick()
			calls := host.GetCallouts()
			if len(calls) != 1 {
				t.Fatalf("%d callouts, want 1", len(calls))
			}
			if evs := decodeBatch(t, calls[0]).Events; len(evs) != 1 || evs[0].Subject != tt.wantSubject {
				t.Errorf("records %+v, want subject %q", evs, tt.wantSubject)
			}
			if n, _ := host.GetCounterMetric(MetricStripped); n != tt.wantStrippedMetric {
				t.Errorf("%s = %d, want %d", MetricStripped, n, tt.wantStrippedMetric)
			}
		})
	}
}
