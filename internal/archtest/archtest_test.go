// Package archtest checks that imports only go down the spine
// (policies → ir → controlplane/translate → xDS) and that the bottom layers
// (internal/, the wasm filters) depend on nothing above them. It reads the
// import graph with `go list -deps -json`, as the go tool sees it.
package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/meshwarden/meshwarden"

// rule forbids packages under From (the path below the module, a folder and
// everything in it) to depend, directly or not, on anything under a Forbid
// folder, except the packages listed in Except.
type rule struct {
	why    string
	from   string
	forbid []string
	except []string // packages under from the rule does not apply to
	goos   string   // "" native; "wasip1" for the guests
}

var rules = []rule{
	{why: "the policy layer sits above the plane and the gateway that consume it",
		from: "policies", forbid: []string{"controlplane", "gateway"}},
	{why: "the IR is the pivot: it knows neither its producers nor its consumers",
		from: "ir", forbid: []string{"policies", "controlplane", "gateway", "filters", "auditstore"}},
	{why: "the wasm filters are guests: they know neither the IR nor the plane",
		from: "filters", forbid: []string{"ir", "controlplane"}},
	{why: "the wasm filters are guests: built for wasip1, they know neither the IR, the plane nor the host",
		from: "filters", forbid: []string{"ir", "controlplane", "gateway"}, goos: "wasip1",
		// Test support that runs the guests through the gateway's host.
		except: []string{"filters/kit/kittest", "filters/internal/v8host"}},
	{why: "internal/ is the bottom: shared types and test environments, below the plane and the gateway",
		from: "internal", forbid: []string{"controlplane", "gateway", "cmd"}},
	{why: "the gateway is a client of the plane, not a part of it",
		from: "gateway", forbid: []string{"controlplane", "policies"}},
}

type pkg struct {
	ImportPath string
	Deps       []string
	Error      *struct{ Err string }
}

// under reports whether p is the folder dir (below the module) or in it.
func under(p, dir string) bool {
	d := module + "/" + dir
	return p == d || strings.HasPrefix(p, d+"/")
}

// list returns every package of the module with its transitive deps.
func list(t *testing.T, goos string) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Deps,Error", "-e", "./...")
	cmd.Dir = filepath.Join("..", "..")
	if goos != "" {
		cmd.Args[len(cmd.Args)-1] = "./filters/..."
		cmd.Env = append(cmd.Environ(), "GOOS="+goos, "GOARCH=wasm")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// violations lists "pkg -> dep" for every dependency r forbids.
func (r rule) violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		if !under(p.ImportPath, r.from) || excepted(p.ImportPath, r.except) {
			continue
		}
		for _, d := range p.Deps {
			for _, f := range r.forbid {
				if under(d, f) {
					out = append(out, fmt.Sprintf("%s -> %s", p.ImportPath, d))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func excepted(p string, except []string) bool {
	for _, e := range except {
		if under(p, e) {
			return true
		}
	}
	return false
}

// TestImportsGoDown: every rule holds for the module as it is.
func TestImportsGoDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	graphs := map[string][]pkg{}
	for _, r := range rules {
		t.Run(r.from+"/"+r.goos, func(t *testing.T) {
			pkgs, ok := graphs[r.goos]
			if !ok {
				pkgs = list(t, r.goos)
				graphs[r.goos] = pkgs
			}
			n := 0
			for _, p := range pkgs {
				if p.Error != nil {
					t.Errorf("%s: %s", p.ImportPath, p.Error.Err)
				}
				if under(p.ImportPath, r.from) {
					n++
				}
			}
			if n == 0 {
				t.Fatalf("no package under %s: the rule checks nothing (moved folder?)", r.from)
			}
			if v := r.violations(pkgs); len(v) > 0 {
				t.Errorf("%s; these imports go up:\n  %s", r.why, strings.Join(v, "\n  "))
			}
		})
	}
}

// TestRulesCatchAnUpwardImport: the check itself fails on a graph with an
// upward import, so a green TestImportsGoDown means something.
func TestRulesCatchAnUpwardImport(t *testing.T) {
	graph := []pkg{
		{ImportPath: module + "/policies/preview", Deps: []string{"fmt", module + "/controlplane/translate"}},
		{ImportPath: module + "/internal/demo", Deps: []string{module + "/gateway"}},
		{ImportPath: module + "/filters/trace", Deps: []string{module + "/ir"}},
		{ImportPath: module + "/filters/kit/kittest", Deps: []string{module + "/gateway/wasmhost"}},
		{ImportPath: module + "/irregular", Deps: []string{module + "/controlplane"}},
	}
	want := map[string]int{"policies": 1, "internal": 1, "filters": 1, "ir": 0}
	for _, r := range rules {
		if w, ok := want[r.from]; ok && r.goos == "" {
			if got := len(r.violations(graph)); got != w {
				t.Errorf("rule %s found %d violations in %v, want %d", r.from, got, graph, w)
			}
		}
	}
	// The wasip1 rule forbids the host too, but not to test support.
	for _, r := range rules {
		if r.goos == "wasip1" {
			if got := r.violations(graph); len(got) != 1 || !strings.Contains(got[0], "filters/trace") {
				t.Errorf("wasip1 rule: %v, want only filters/trace -> ir", got)
			}
		}
	}
}
