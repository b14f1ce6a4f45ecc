package preview

import (
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/internal/testenv/fuzzseed"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

func fuzzCatalog() *ir.Catalog {
	return &ir.Catalog{Services: map[string]*ir.Service{
		"payments": {Name: "payments", Instances: []ir.Instance{
			{ID: "p1", Address: "127.0.0.1", Port: 9001, Meta: map[string]string{"version": "v1"}, Healthy: true},
			{ID: "p2", Address: "127.0.0.1", Port: 9002, Tags: []string{"version=v2"}, Healthy: true},
		}},
		"orders": {Name: "orders", Instances: []ir.Instance{{ID: "o1", Address: "127.0.0.1", Port: 9101, Healthy: true}}},
	}}
}

// extremeSet holds valid but extreme values: long timeouts, many retries,
// 63-character lanes, odd header names and meta values, "*" access, a staged
// release at 0%.
const extremeSet = `apiVersion: meshwarden.io/v1alpha1
kind: CanaryRoute
metadata: {name: extreme}
spec:
  service: payments
  subsets:
    - name: v1
      selector: {version: v1}
    - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
      selector: {version: v2}
  lanes:
    - lane: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
      subset: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
      headers: {x_odd__name: "va lue ü", x-empty: ""}
  weights:
    - {subset: v1, weight: 0}
    - {subset: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, weight: 100}
  timeout: 8760h
  retries: 10
---
apiVersion: meshwarden.io/v1alpha1
kind: AccessPolicy
metadata: {name: everyone}
spec: {service: orders, allow: ["*", "spiffe://x/*"]}
---
apiVersion: meshwarden.io/v1alpha1
kind: TracePolicy
metadata: {name: t}
spec: {}
---
apiVersion: meshwarden.io/v1alpha1
kind: FilterRelease
metadata: {name: r}
spec:
  filter: trace
  sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
  previousSha256: 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
  rolloutPercent: 0
  services: [gateway, payments, not-yet-registered]
  failOpen: true
`

// TestExtremeButValid checks that the loader accepts extremeSet and that the
// translator turns it into resources Envoy's validation accepts.
func TestExtremeButValid(t *testing.T) {
	cat := fuzzCatalog()
	ps, diags, err := policies.LoadFiles(map[string][]byte{"extreme.yaml": []byte(extremeSet)}, cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(diags.Warnings) != 1 || !strings.Contains(diags.Warnings[0].Message, "not-yet-registered") {
		t.Errorf("warnings = %v", diags.All())
	}
	if _, err := Translate(cat, ps, DefaultNodes(cat), testOpts); err != nil {
		t.Fatal(err)
	}
}

// FuzzPipeline runs the whole path files → IR → xDS: every set the loader
// accepts must translate for every node into resources that pass Envoy's
// proto validation. A set the translator refuses, or resources Envoy would
// NACK, mean the loader let through something it should have explained.
//
//	go test ./controlplane/preview -run '^$' -fuzz FuzzPipeline -fuzztime 60s
func FuzzPipeline(f *testing.F) {
	fuzzseed.AddFiles(f, "../../policies/testdata/in/*.yaml", "../../policies/examples/*.yaml", "../../policies/examples/extra/*.yaml")
	f.Add([]byte(extremeSet))
	cat := fuzzCatalog()
	nodes := DefaultNodes(cat)
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, _, err := policies.LoadFiles(map[string][]byte{"fuzz.yaml": data}, cat)
		if err != nil {
			return
		}
		if _, err := Translate(cat, ps, nodes, testOpts); err != nil {
			t.Fatalf("loader accepted a set the translator refuses: %v", err)
		}
	})
}
