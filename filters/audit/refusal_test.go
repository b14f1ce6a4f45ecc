//go:build !wasip1

package audit

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/internal/meshnames"
)

// TestPluginNativeResidencyRefusal: a direct 451 carrying the residency
// headers leaves a record: the audited request's own (blocked, tags
// merged) or a RESIDENCY_REFUSED one; an upstream's 451 with the same
// headers (code details not direct_response) leaves none.
func TestPluginNativeResidencyRefusal(t *testing.T) {
	cfg := `{"rules":[{"methods":["POST"],"path":{"prefix":"/v1/transfers"},"opType":"FUND_TRANSFER","tags":["pci"]}],"collector":{"cluster":"mw-audit","token":"change-me"}}`
	reply := [][2]string{{":status", "451"}, {meshnames.RefusedHeader, "residency:eu"}, {meshnames.ComplianceTagsHeader, "pci,gdpr,region=eu"}}
	tests := []struct {
		name, method, path, details string
		want                        string // op_type of the record, "" for none
		wantTags                    string
	}{
		{"audited transfer", "POST", "/v1/transfers", "direct_response", "FUND_TRANSFER", "pci,gdpr,region=eu"},
		{"unaudited read", "GET", "/v1/accounts/A-1", "direct_response", OpResidencyRefused, "pci,gdpr,region=eu"},
		{"upstream's own 451", "GET", "/v1/accounts/A-1", "via_upstream", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, reset := startNativeWith(t, cfg, map[string]string{"response.code_details": tt.details, "node.cluster": "payments"})
			defer reset()
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, [][2]string{{":method", tt.method}, {":path", tt.path}}, true)
			host.CallOnResponseHeaders(id, reply, true)
			evs, raw := flushed(t, host, id)
			if tt.want == "" {
				if len(evs) != 0 {
					t.Fatalf("records = %s, want none", raw)
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("records = %s", raw)
			}
			e := evs[0]
			if e.OpType != tt.want || e.Blocked != "residency:eu" || e.Status != 451 || strings.Join(e.Tags, ",") != tt.wantTags {
				t.Errorf("record = %+v", e)
			}
			if tt.want == OpResidencyRefused && e.Resource != "payments#residency" {
				t.Errorf("resource = %q", e.Resource)
			}
		})
	}
}

// TestPluginNativeServiceTags: serviceTags (set by the plane from the
// sidecar's CompliancePolicy) follow the rule's tags in every record: an
// audited request's, and an ACCESS_DENIED one's.
func TestPluginNativeServiceTags(t *testing.T) {
	cfg := `{"rules":[{"methods":["POST"],"path":{"prefix":"/v1/transfers"},"opType":"FUND_TRANSFER","tags":["pci"]}],"serviceTags":["pci","gdpr","region=eu"],"collector":{"cluster":"mw-audit","token":"change-me"}}`
	tests := []struct {
		name, method, details, status string
		wantOp, wantTags              string
	}{
		{"audited transfer", "POST", "", "201", "FUND_TRANSFER", "pci,gdpr,region=eu"},
		{"access denied", "GET", "rbac_access_denied_matched_policy[none]", "403", OpAccessDenied, "pci,gdpr,region=eu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			props := map[string]string{"node.cluster": "payments"}
			if tt.details != "" {
				props["response.code_details"] = tt.details
			}
			host, reset := startNativeWith(t, cfg, props)
			defer reset()
			id := host.InitializeHttpContext()
			host.CallOnRequestHeaders(id, [][2]string{{":method", tt.method}, {":path", "/v1/transfers"}}, true)
			host.CallOnResponseHeaders(id, [][2]string{{":status", tt.status}}, true)
			evs, raw := flushed(t, host, id)
			if len(evs) != 1 || evs[0].OpType != tt.wantOp || strings.Join(evs[0].Tags, ",") != tt.wantTags {
				t.Fatalf("records = %s", raw)
			}
		})
	}
}
