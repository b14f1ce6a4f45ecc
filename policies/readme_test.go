package policies

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeResilienceExample loads the ResiliencePolicy example of
// README.md with the payments CanaryRoute of examples/ against the test
// catalog: the documented example must be accepted, and say what it shows.
func TestReadmeResilienceExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### ResiliencePolicy")
	if !ok {
		t.Fatal("README.md has no ResiliencePolicy section")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the ResiliencePolicy section has no yaml example")
	}
	canary, err := os.ReadFile("examples/canary-payments.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ps, diags, err := LoadFiles(map[string][]byte{"readme.yaml": []byte(block), "canary-payments.yaml": canary}, testCatalog())
	if err != nil {
		t.Fatalf("README example rejected:\n%v", err)
	}
	if len(diags.Warnings) > 0 {
		t.Errorf("README example warns: %v", diags.All())
	}
	if len(ps.Resilience) != 1 {
		t.Fatalf("%d resilience policies, want 1", len(ps.Resilience))
	}
	r := ps.Resilience[0]
	v2 := r.For("v2")
	if r.Service != "payments" || v2.Retry == nil || v2.Retry.Attempts != 2 || v2.Breaker.MaxRequests != 20 ||
		r.For("v1").Breaker.MaxRequests != 200 || r.Mirror.Percent != 10 || r.Fault.DelayPercent != 1 || r.Health.LatencyTarget.String() != "250ms" {
		t.Fatalf("README example decoded to %+v", r)
	}
}
