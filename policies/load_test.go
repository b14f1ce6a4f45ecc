package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/dye/dyeconfig"
)

// TestExamples loads policies/examples (the demo's policies) against the
// test catalog and checks the IR says what the README promises.
func TestExamples(t *testing.T) {
	ps, diags, err := LoadDir("examples", testCatalog())
	if err != nil {
		t.Fatalf("examples rejected:\n%v", err)
	}
	if len(diags.Warnings) > 0 {
		t.Errorf("examples warn: %v", diags.All())
	}
	t.Run("filters in order", func(t *testing.T) {
		var names []string
		for _, f := range ps.Filters {
			names = append(names, f.Name)
		}
		if strings.Join(names, ",") != strings.Join(filters.Order(), ",") {
			t.Errorf("filters %v, want %v", names, filters.Order())
		}
	})
	t.Run("dye: canary by header and 10% sticky split", func(t *testing.T) {
		c, err := dyeconfig.ParseConfig(ps.Filters[0].Config)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Rules) != 2 || c.Rules[0].Lane != "canary" || c.Rules[0].Match.Headers[0].Name != "x-canary" {
			t.Errorf("opt-in rule = %+v", c.Rules)
		}
		r := c.Rules[1]
		if len(r.Split) != 2 || r.Split[0].Lane != "canary" || r.Split[0].Weight != 10 || r.StickyKey == nil || r.StickyKey.Header != "x-user-id" {
			t.Errorf("split rule = %+v", r)
		}
	})
	t.Run("audit: POST /v1/transfers fail-closed", func(t *testing.T) {
		c, err := auditconfig.ParseConfig(ps.Filters[1].Config)
		if err != nil {
			t.Fatal(err)
		}
		r := c.Rules[0]
		if r.OpType != "FUND_TRANSFER" || !r.FailClosed || r.Path.Exact != "/v1/transfers" || r.Methods[0] != "POST" {
			t.Errorf("rule = %+v", r)
		}
	})
	t.Run("canary route payments v1/v2", func(t *testing.T) {
		if len(ps.Routes) != 1 {
			t.Fatalf("routes = %+v", ps.Routes)
		}
		r := ps.Routes[0]
		if r.Service != "payments" || len(r.Subsets) != 2 || r.Subsets[1].Selector["version"] != "v2" ||
			r.Lanes[0].Lane != "canary" || r.Lanes[0].Subset != "v2" || r.DefaultSubset != "v1" || r.Timeout != 5*time.Second || r.Retries != 2 {
			t.Errorf("route = %+v", r)
		}
		if !strings.HasPrefix(r.Source, filepath.Join("examples", "canary-payments.yaml")+":") {
			t.Errorf("source = %q", r.Source)
		}
	})
	t.Run("certificates", func(t *testing.T) {
		if c := ps.Certificates; c.LeafTTL != 24*time.Hour || c.RenewBefore != 8*time.Hour || c.Issuer != "consul" {
			t.Errorf("certificates = %+v", c)
		}
	})
	t.Run("extra examples load with the main set", func(t *testing.T) {
		files, err := ReadDir("examples")
		if err != nil {
			t.Fatal(err)
		}
		extra, err := ReadDir("examples/extra")
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range extra {
			files[k] = v
		}
		ps, _, err := LoadFiles(files, testCatalog())
		if err != nil {
			t.Fatal(err)
		}
		if ps.Filters[0].RolloutPercent != 25 || ps.Filters[0].PreviousSHA256 == "" || len(ps.Access) != 1 {
			t.Errorf("release/access not applied: %+v %+v", ps.Filters[0], ps.Access)
		}
		if len(ps.Rollouts) != 1 || ps.Rollouts[0].StableSubset != "v1" || len(ps.Rollouts[0].Steps) != 3 || !ps.Rollouts[0].Steps[1].Approval {
			t.Errorf("rollout example: %+v", ps.Rollouts)
		}
	})
}

// TestAllErrorsOfARun checks that errors in several files are all reported
// in one run, sorted by file and line, and that the set is rejected whole.
func TestAllErrorsOfARun(t *testing.T) {
	good, err := os.ReadFile("examples/trace.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"b.yaml":    []byte("apiVersion: meshwarden.io/v1alpha1\nkind: CertificatePolicy\nmetadata: {name: c}\nspec: {leafTTL: soon, issuer: vault}\n"),
		"a.yaml":    []byte("apiVersion: meshwarden.io/v1alpha1\nkind: AccessPolicy\nmetadata: {name: a}\nspec: {service: payments, allow: [spiffe//nobody]}\n"),
		"trace.yml": good,
	}
	ps, diags, err := LoadFiles(files, nil)
	if err == nil || ps != nil {
		t.Fatalf("bad set accepted")
	}
	want := []string{
		`a.yaml:4:35: spec.allow[0]: "spiffe//nobody" is not a SPIFFE id`,
		`b.yaml:4:17: spec.leafTTL: "soon" is not a duration`,
		`b.yaml:4:31: spec.issuer: "vault" is not an issuer`,
	}
	if len(diags.Errors) != len(want) {
		t.Fatalf("errors:\n%s", diags.Error())
	}
	for i, w := range want {
		if !strings.HasPrefix(diags.Errors[i].String(), w) {
			t.Errorf("error %d = %s, want prefix %s", i, diags.Errors[i], w)
		}
	}
	if !strings.HasPrefix(err.Error(), "3 policy errors:\n") {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestRevision(t *testing.T) {
	a := map[string][]byte{"x.yaml": []byte("a"), "y.yaml": []byte("b")}
	tests := []struct {
		name string
		b    map[string][]byte
		same bool
	}{
		{"same content", map[string][]byte{"y.yaml": []byte("b"), "x.yaml": []byte("a")}, true},
		{"content changed", map[string][]byte{"x.yaml": []byte("a"), "y.yaml": []byte("c")}, false},
		{"renamed", map[string][]byte{"x.yaml": []byte("a"), "z.yaml": []byte("b")}, false},
		{"boundary moved", map[string][]byte{"x.yaml": []byte("ay.yaml"), "": []byte("b")}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Revision(a) == Revision(tc.b); got != tc.same {
				t.Errorf("same revision = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("trace.yaml", "apiVersion: meshwarden.io/v1alpha1\nkind: TracePolicy\nmetadata: {name: t}\nspec: {}\n")
	write("notes.txt", "not a policy")
	write(".hidden.yaml", "garbage: [")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	ps, _, err := LoadDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Sources) != 1 || ps.Sources[0] != filepath.Join(dir, "trace.yaml") || len(ps.Filters) != 1 {
		t.Errorf("set = %+v", ps)
	}
	// The revision does not depend on where the directory is.
	files, _ := ReadDir(dir)
	if ps.Revision != Revision(files) {
		t.Errorf("revision depends on the directory path")
	}
	if _, _, err := LoadDir(filepath.Join(dir, "missing"), nil); err == nil {
		t.Errorf("missing directory loaded")
	}
	js := []byte(ps.Filters[0].Config)
	if !strings.Contains(string(js), "{}") {
		t.Errorf("empty trace spec config = %s", js)
	}
}

// TestNoDocumentLost guards against goccy/go-yaml dropping every document
// after an empty one: each document must be seen, whatever surrounds it.
func TestNoDocumentLost(t *testing.T) {
	trace := "apiVersion: meshwarden.io/v1alpha1\nkind: TracePolicy\nmetadata: {name: t}\nspec: {}\n"
	certs := "apiVersion: meshwarden.io/v1alpha1\nkind: CertificatePolicy\nmetadata: {name: c}\nspec: {leafTTL: 2h}\n"
	tests := []struct {
		name, src string
	}{
		{"empty document first", "---\n---\n" + trace + "---\n" + certs},
		{"comment-only document", trace + "---\n# nothing here\n---\n" + certs},
		{"empty documents between", trace + "---\n---\n---\n" + certs},
		{"end marker", trace + "...\n---\n" + certs},
		{"marker with trailing comment", trace + "--- # next\n" + certs},
		{"CRLF", strings.ReplaceAll(trace+"---\n---\n"+certs, "\n", "\r\n")},
		{"directive", "%YAML 1.2\n---\n" + trace + "---\n" + certs},
		{"comment before first marker", "# header\n\n---\n" + trace + "...\n" + certs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, diags, err := LoadFiles(map[string][]byte{"p.yaml": []byte(tc.src)}, nil)
			if err != nil {
				t.Fatalf("%v", diags.Error())
			}
			if len(ps.Filters) != 1 || ps.Certificates.LeafTTL != 2*time.Hour {
				t.Errorf("a document was lost: filters %d, certificates %+v", len(ps.Filters), ps.Certificates)
			}
		})
	}
	// An error in the last document is reported at its own line.
	src := trace + "---\n---\n" + strings.Replace(certs, "2h", "2 hours", 1)
	_, diags, _ := LoadFiles(map[string][]byte{"p.yaml": []byte(src)}, nil)
	if len(diags.Errors) != 1 || diags.Errors[0].Line != 10 {
		t.Errorf("errors = %v, want one at line 10", diags.All())
	}
}
