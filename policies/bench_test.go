package policies

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/ir"
)

// BenchmarkLoadExamples loads the example directory's files (5 files, 5
// documents) with the test catalog.
func BenchmarkLoadExamples(b *testing.B) {
	files, err := ReadDir("examples")
	if err != nil {
		b.Fatal(err)
	}
	cat := testCatalog()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := LoadFiles(files, cat); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadManyRoutes loads 1000 CanaryRoutes (one per service, 100
// files of 10 documents) against a catalog with those 1000 services, the
// scale of a large mesh's policy repository.
func BenchmarkLoadManyRoutes(b *testing.B) {
	files := map[string][]byte{}
	cat := &ir.Catalog{Services: map[string]*ir.Service{}}
	for f := 0; f < 100; f++ {
		var sb strings.Builder
		for d := 0; d < 10; d++ {
			svc := fmt.Sprintf("svc-%d-%d", f, d)
			cat.Services[svc] = &ir.Service{Name: svc, Instances: []ir.Instance{
				{ID: svc + "-1", Meta: map[string]string{"version": "v1"}},
				{ID: svc + "-2", Meta: map[string]string{"version": "v2"}},
			}}
			fmt.Fprintf(&sb, "---\napiVersion: meshwarden.io/v1alpha1\nkind: CanaryRoute\nmetadata: {name: %s}\nspec:\n  service: %s\n  subsets:\n    - name: v1\n      selector: {version: v1}\n    - name: v2\n      selector: {version: v2}\n  lanes:\n    - lane: canary\n      subset: v2\n  weights:\n    - subset: v1\n      weight: 90\n    - subset: v2\n      weight: 10\n  timeout: 5s\n", svc, svc)
		}
		files[fmt.Sprintf("routes-%03d.yaml", f)] = []byte(sb.String())
	}
	b.ReportAllocs()
	for b.Loop() {
		ps, _, err := LoadFiles(files, cat)
		if err != nil {
			b.Fatal(err)
		}
		if len(ps.Routes) != 1000 {
			b.Fatalf("%d routes", len(ps.Routes))
		}
	}
}
