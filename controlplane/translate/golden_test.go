package translate

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshwarden/meshwarden/ir"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the current translator")

// goldenInput is one testdata/in file: Consul state, policies (as IR, in
// its JSON field names), plane options and the nodes to render.
type goldenInput struct {
	Options Options
	Catalog map[string][]ir.Instance
	Policy  ir.PolicySet
	Nodes   []struct {
		ID       string
		Cluster  string
		Metadata map[string]string
	}
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var gi goldenInput
			if err := yaml.UnmarshalStrict(raw, &gi); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			got := render(t, &gi)
			out := filepath.Join("testdata", "out", name+".yaml")
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run go test ./controlplane/translate -run TestGolden -update)", err)
			}
			if string(want) != string(got) {
				t.Errorf("%s differs from the translator's output; if the change is intended, run with -update.\n--- got:\n%s", out, got)
			}
		})
	}
}

// render translates gi into the golden output: per node its resources, or
// the user-facing error; every resource must pass ValidateAll and every
// snapshot must be consistent.
func render(t *testing.T, gi *goldenInput) []byte {
	t.Helper()
	cat := &ir.Catalog{Services: map[string]*ir.Service{}}
	for name, ins := range gi.Catalog {
		cat.Services[name] = &ir.Service{Name: name, Instances: ins}
	}
	doc := map[string]any{}
	shared, err := Build(cat, &gi.Policy, gi.Options)
	if err != nil {
		doc["error"] = err.Error()
		b, _ := yaml.Marshal(doc)
		return b
	}
	if len(shared.Warnings) > 0 {
		doc["warnings"] = shared.Warnings
	}
	nodes := map[string]any{}
	for _, gn := range gi.Nodes {
		n, err := NodeFromMetadata(gn.ID, gn.Cluster, gn.Metadata)
		if err != nil {
			nodes[gn.ID] = map[string]any{"error": err.Error()}
			continue
		}
		snap, err := shared.ForNode(n, nil)
		if err != nil {
			nodes[gn.ID] = map[string]any{"error": err.Error()}
			continue
		}
		if err := snap.Validate(); err != nil {
			t.Errorf("node %s: ValidateAll: %v", gn.ID, err)
		}
		if err := snap.CacheSnapshotConsistent(); err != nil {
			t.Errorf("node %s: not consistent: %v", gn.ID, err)
		}
		d, err := snap.Dump()
		if err != nil {
			t.Fatal(err)
		}
		nodes[gn.ID] = d
	}
	doc["nodes"] = nodes
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
