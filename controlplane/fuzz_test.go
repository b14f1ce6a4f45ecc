package controlplane

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

// FuzzPipeline feeds arbitrary policy files through the plane's pipeline:
// whatever the loader accepts must either be refused by translation with an
// error, or yield snapshots that pass Envoy's validation and are consistent.
// It must never panic.
func FuzzPipeline(f *testing.F) {
	seeds, _ := filepath.Glob("../policies/examples/*.yaml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("apiVersion: meshwarden.io/v1alpha1\nkind: CanaryRoute\nmetadata: {name: x}\nspec: {service: payments}\n"))
	// A CanaryRoute and a ResiliencePolicy with every setting, in one file.
	if canary, err := os.ReadFile("../policies/examples/canary-payments.yaml"); err == nil {
		if res, err := os.ReadFile("../policies/examples/extra/resilience-payments.yaml"); err == nil {
			f.Add(append(append(canary, []byte("\n---\n")...), res...))
		}
	}
	cat := &ir.Catalog{Services: map[string]*ir.Service{
		"payments": {Name: "payments", Instances: []ir.Instance{
			{ID: "p1", Address: "10.0.0.1", Port: 8080, Meta: map[string]string{"version": "v1"}, Healthy: true},
			{ID: "p2", Address: "10.0.0.2", Port: 8080, Tags: []string{"version=v2"}, Healthy: true},
		}},
	}}
	sums := map[string]string{
		"dye":   "1111111111111111111111111111111111111111111111111111111111111111",
		"audit": "2222222222222222222222222222222222222222222222222222222222222222",
		"trace": "3333333333333333333333333333333333333333333333333333333333333333",
	}
	nodes := []translate.Node{{ID: "s1", Service: "payments"}, {ID: "gw", Gateway: true}}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := policies.LoadSet(map[string][]byte{"fuzz.yaml": data}, cat)
		if err != nil {
			return
		}
		shared, err := translate.Build(cat, ps, translate.Options{ModuleBaseURL: "http://127.0.0.1:1/modules/", ModuleSHA256: sums})
		if err != nil {
			return
		}
		if err := shared.Validate(); err != nil {
			t.Fatalf("accepted policy produced invalid shared resources: %v\n%s", err, data)
		}
		for _, n := range nodes {
			snap, err := shared.ForNode(n, nil)
			if err != nil {
				t.Fatalf("node %s: %v", n.ID, err)
			}
			if err := snap.Validate(); err != nil {
				t.Fatalf("node %s: invalid resources: %v\n%s", n.ID, err, data)
			}
			if err := snap.CacheSnapshotConsistent(); err != nil {
				t.Fatalf("node %s: inconsistent: %v", n.ID, err)
			}
		}
	})
}
