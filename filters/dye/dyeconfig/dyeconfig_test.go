package dyeconfig

import (
	"testing"

	"github.com/meshwarden/meshwarden/filters/kit/kittest"
	"github.com/meshwarden/meshwarden/internal/dyeing"
)

func TestParseConfigErrors(t *testing.T) {
	kittest.ConfigErrors(t, ParseConfig, [][3]string{
		{"unknown field", `{"rulez": []}`, `unknown field "rulez"`},
		{"bad mode", `{"mode": "sideways"}`, "mode: \"sideways\" is not a mode"},
		{"bad lane", `{"rules": [{"lane": "Canary"}]}`, "rules[0].lane: lane \"Canary\" is not valid"},
		{"lane and split", `{"rules": [{"lane": "a", "split": [{"lane": "b", "weight": 100}]}]}`, "rules[0]: sets both lane and split"},
		{"weights", `{"rules": [{"split": [{"lane": "b", "weight": 60}, {"weight": 30}]}]}`, "rules[0].split: weights sum to 90"},
		{"sticky both", `{"rules": [{"split": [{"lane": "b", "weight": 100}], "stickyKey": {"header": "a", "cookie": "b"}}]}`, "rules[0].stickyKey: must set exactly one"},
		{"bad cidr", `{"trust": {"sourceCIDRs": ["10.0.0.0/33"]}}`, "trust.sourceCIDRs[0]:"},
		{"bad spiffe", `{"trust": {"peerIdentities": ["bank/*"]}}`, "trust.peerIdentities[0]: \"bank/*\" is not a SPIFFE id"},
		{"lower method", `{"rules": [{"lane": "a", "match": {"methods": ["post"]}}]}`, "rules[0].match.methods[0]"},
		{"bad path prefix", `{"rules": [{"lane": "a", "match": {"pathPrefix": "v1"}}]}`, "rules[0].match.pathPrefix"},
		{"empty lane scope", `{"lanes": [{"lane": "a", "tenants": []}]}`, "lanes[0].tenants: is empty"},
		{"duplicate rule name", `{"rules": [{"name": "x", "lane": "a"}, {"name": "x", "lane": "b"}]}`, "rules[1].name"},
		{"upper header", `{"rules": [{"lane": "a", "match": {"headers": [{"name": "X-Beta"}]}}]}`, "rules[0].match.headers[0].name"},
		{"trailing", `{} {}`, "trailing data"},
		{"stray brace", `{} }`, "trailing data"},
		{"wrong type", `{"rules": [{"lane": "a", "match": {"methods": "POST"}}]}`, "dye config: json: rules[0].match.methods: want an array, got a string"},
		{"not json", `{"mode": ingress}`, "dye config: json: invalid character 'i' looking for beginning of value (at byte 9)"},
	})
	if c, err := ParseConfig(nil); err != nil || c.Mode != ModeIngress || c.Tenant.Header != dyeing.TenantHeader {
		t.Errorf("empty config = %+v, %v; want defaults", c, err)
	}
}
