package preview

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meshwarden/meshwarden/internal/ir"
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

// FuzzPipeline runs the whole path files → IR → xDS: every set the loader
// accepts must translate for every node into resources that pass Envoy's
// proto validation. A set the translator refuses, or resources Envoy would
// NACK, mean the loader let through something it should have explained.
//
//	go test ./policies/preview -run '^$' -fuzz FuzzPipeline -fuzztime 60s
func FuzzPipeline(f *testing.F) {
	for _, pat := range []string{"../testdata/in/*.yaml", "../examples/*.yaml", "../examples/extra/*.yaml"} {
		files, _ := filepath.Glob(pat)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
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
