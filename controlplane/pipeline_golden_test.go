package controlplane

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the current pipeline")

// pipelineInput is one testdata/in case: Consul state, policy files (inline,
// or globs of files in the repository), plane options and nodes.
type pipelineInput struct {
	Catalog      map[string][]ir.Instance `json:"catalog"`
	Policies     map[string]string        `json:"policies"`
	PolicyGlobs  []string                 `json:"policyGlobs"`
	ModuleSHA256 map[string]string        `json:"moduleSHA256"`
	Nodes        []struct {
		ID       string            `json:"id"`
		Cluster  string            `json:"cluster"`
		Metadata map[string]string `json:"metadata"`
	} `json:"nodes"`
}

// TestPipelineGolden runs the whole pipeline the plane runs: policy files
// through policies.LoadFiles (the production loader), the catalog, then
// translation, validation and consistency, per node. User-facing errors
// (policy diagnostics, translation errors) are part of the goldens.
func TestPipelineGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var pi pipelineInput
			if err := yaml.UnmarshalStrict(raw, &pi); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			got := runPipeline(t, &pi)
			out := filepath.Join("testdata", "out", name+".yaml")
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run go test ./controlplane -run TestPipelineGolden -update)", err)
			}
			if string(want) != string(got) {
				t.Errorf("%s differs; if intended, rerun with -update.\n--- got:\n%s", out, got)
			}
		})
	}
}

func runPipeline(t *testing.T, pi *pipelineInput) []byte {
	t.Helper()
	cat := &ir.Catalog{Services: map[string]*ir.Service{}}
	for n, ins := range pi.Catalog {
		cat.Services[n] = &ir.Service{Name: n, Instances: ins}
	}
	files := map[string][]byte{}
	for n, c := range pi.Policies {
		files[n] = []byte(c)
	}
	for _, g := range pi.PolicyGlobs {
		matches, err := filepath.Glob(g)
		if err != nil || len(matches) == 0 {
			t.Fatalf("policy glob %q matched nothing: %v", g, err)
		}
		sort.Strings(matches)
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			files[filepath.Base(m)] = b
		}
	}
	doc := map[string]any{}
	emit := func() []byte {
		b, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ps, err := loadForTest(files, cat)
	if err != nil {
		doc["error"] = err.Error()
		return emit()
	}
	shared, err := translate.Build(cat, ps, translate.Options{
		ModuleBaseURL: "http://127.0.0.1:18001/modules/", ModuleSHA256: pi.ModuleSHA256,
	})
	if err == nil {
		err = shared.Validate()
	}
	if err != nil {
		doc["error"] = err.Error()
		return emit()
	}
	if len(shared.Warnings) > 0 {
		doc["warnings"] = shared.Warnings
	}
	nodes := map[string]any{}
	for _, n := range pi.Nodes {
		tn, err := translate.NodeFromMetadata(n.ID, n.Cluster, n.Metadata)
		if err != nil {
			nodes[n.ID] = map[string]any{"error": err.Error()}
			continue
		}
		snap, err := shared.ForNode(tn, nil)
		if err != nil {
			nodes[n.ID] = map[string]any{"error": err.Error()}
			continue
		}
		if err := snap.Validate(); err != nil {
			t.Errorf("node %s: ValidateAll: %v", n.ID, err)
		}
		if err := snap.CacheSnapshotConsistent(); err != nil {
			t.Errorf("node %s: %v", n.ID, err)
		}
		d, err := snap.Dump()
		if err != nil {
			t.Fatal(err)
		}
		nodes[n.ID] = d
	}
	doc["nodes"] = nodes
	return emit()
}

// loadForTest is the CLI's loader: policies.LoadFiles, errors as diagnostics.
func loadForTest(files map[string][]byte, cat *ir.Catalog) (*ir.PolicySet, error) {
	ps, diags, err := policies.LoadFiles(files, cat)
	if err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return ps, nil
}
