package policies

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshwarden/meshwarden/ir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/out and schema/")

// testCatalog is the Consul side the goldens are checked against: payments
// has a v1 instance (meta) and a v2 instance (tag), orders has one instance.
func testCatalog() *ir.Catalog {
	return &ir.Catalog{Index: 7, Services: map[string]*ir.Service{
		"payments": {Name: "payments", Instances: []ir.Instance{
			{ID: "payments-1", Node: "n1", Address: "127.0.0.1", Port: 9001, Meta: map[string]string{"version": "v1"}, Healthy: true},
			{ID: "payments-2", Node: "n1", Address: "127.0.0.1", Port: 9002, Tags: []string{"version=v2"}, Healthy: true},
		}},
		"orders": {Name: "orders", Instances: []ir.Instance{
			{ID: "orders-1", Node: "n1", Address: "127.0.0.1", Port: 9101, Meta: map[string]string{"version": "v1"}, Healthy: true},
		}},
	}}
}

// render is the golden form of one load: the diagnostics, one per line,
// then the IR as indented JSON when the set was accepted.
func render(t *testing.T, ps *ir.PolicySet, diags *Diagnostics) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# diagnostics\n")
	for _, l := range diags.All() {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if ps == nil {
		b.WriteString("# rejected\n")
		return b.Bytes()
	}
	b.WriteString("# accepted: ir.PolicySet\n")
	js, err := json.MarshalIndent(ps, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b.Write(js)
	b.WriteByte('\n')
	return b.Bytes()
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run go test ./policies -run %s -update to create it", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden (rerun with -update if the change is intended):\n%s", path, UnifiedDiff("want", "got", string(want), string(got)))
	}
}

// TestGolden loads each testdata/in/*.yaml alone against testCatalog and
// compares the diagnostics (every user-facing message) and the IR with
// testdata/out/*.txt.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			ps, diags, err := LoadFiles(map[string][]byte{filepath.Base(in): src}, testCatalog())
			if (err != nil) != diags.HasErrors() || (err != nil) != (ps == nil) {
				t.Fatalf("inconsistent result: set %v, diagnostics %v, err %v", ps != nil, diags.HasErrors(), err)
			}
			// Inputs named *-ok or empty must load; every other input is an
			// error case and must be rejected.
			wantOK := strings.HasSuffix(name, "-ok") || name == "empty"
			if wantOK != (err == nil) {
				t.Errorf("accepted = %v, want %v; diagnostics:\n%s", err == nil, wantOK, strings.Join(diags.All(), "\n"))
			}
			for _, d := range diags.Errors {
				if d.Line == 0 || d.Column == 0 {
					t.Errorf("error without a position: %s", d)
				}
			}
			checkGolden(t, filepath.Join("testdata/out", name+".txt"), render(t, ps, diags))
		})
	}
}
