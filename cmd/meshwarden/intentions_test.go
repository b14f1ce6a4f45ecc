package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
)

// TestIntentionPolicyDiffShowsBothSources: a local `policy diff --consul`
// reads the Consul intentions and merges them as the plane does, so adding
// an AccessPolicy for a service that intentions governed shows the change
// of its inbound RBAC and says the intentions are set aside.
func TestIntentionPolicyDiffShowsBothSources(t *testing.T) {
	a, c := consultest.Start(t)
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "ledger", ID: "ledger-1", Address: "127.0.0.1", Port: 9000}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "ledger",
		Sources: []*api.SourceIntention{{Name: "orders", Action: api.IntentionActionAllow}, {Name: "*", Action: api.IntentionActionDeny}}}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policy := "apiVersion: meshwarden.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: ledger}\nspec:\n  service: ledger\n  allow: [\"spiffe://example.consul/ns/default/dc/dc1/svc/web\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "access.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCLI(t, "policy", "diff", dir, "--consul", a.Addr())
	if err != nil {
		t.Fatalf("diff: %v\n%s\n%s", err, out, stderr)
	}
	if !strings.Contains(stderr, "consul:service-intentions/ledger: ignored, the AccessPolicy at") {
		t.Errorf("stderr lacks the precedence note:\n%s", stderr)
	}
	if !strings.Contains(out, "svc/web") || !strings.Contains(out, "svc/orders") {
		t.Errorf("the diff does not show the intention's rule replaced by the AccessPolicy's:\n%s", out)
	}
}
