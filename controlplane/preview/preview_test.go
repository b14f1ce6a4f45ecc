package preview

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

// testOpts pins a module hash per filter, as the module server would.
var testOpts = translate.Options{ModuleBaseURL: "http://127.0.0.1:18000/modules/", ModuleSHA256: map[string]string{
	"dye": strings.Repeat("1", 64), "audit": strings.Repeat("2", 64), "trace": strings.Repeat("3", 64),
}}

func startConsul(t *testing.T) *api.Client {
	t.Helper()
	_, c := consultest.Start(t)
	return c
}

// registerPayments registers payments v1 (meta) and v2 (meta) and orders in
// a real Consul agent and waits until the catalog shows them.
func registerPayments(t *testing.T, c *api.Client) *ir.Catalog {
	t.Helper()
	regs := []*api.AgentServiceRegistration{
		{ID: "payments-1", Name: "payments", Address: "127.0.0.1", Port: 19001, Meta: map[string]string{"version": "v1"}},
		{ID: "payments-2", Name: "payments", Address: "127.0.0.1", Port: 19002, Meta: map[string]string{"version": "v2"}},
		{ID: "orders-1", Name: "orders", Address: "127.0.0.1", Port: 19101, Meta: map[string]string{"version": "v1"}},
	}
	for _, r := range regs {
		if err := c.Agent().ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		cat, err := CatalogFromConsul(ctx, c)
		if err == nil && cat.Services["payments"] != nil && len(cat.Services["payments"].Instances) == 2 && cat.Services["orders"] != nil {
			return cat
		}
		select {
		case <-ctx.Done():
			t.Fatalf("catalog never showed the registrations: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func examplesWithout(t *testing.T, drop string) map[string][]byte {
	t.Helper()
	files, err := policies.ReadDir("../../policies/examples")
	if err != nil {
		t.Fatal(err)
	}
	if drop != "" {
		if _, ok := files[drop]; !ok {
			t.Fatalf("example %s not found", drop)
		}
		delete(files, drop)
	}
	return files
}

func load(t *testing.T, files map[string][]byte, cat *ir.Catalog) *ir.PolicySet {
	t.Helper()
	ps, diags, err := policies.LoadFiles(files, cat)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(diags.Warnings) > 0 {
		t.Fatalf("unexpected warnings: %v", diags.All())
	}
	return ps
}

// TestLocalDiffWithConsul validates the examples against a real Consul
// catalog, translates the set with and without the payments CanaryRoute
// through the control plane's translator, and checks the preview shows the
// canary clusters and the lane route appear, and nothing else moves.
func TestLocalDiffWithConsul(t *testing.T) {
	client := startConsul(t)
	cat := registerPayments(t, client)

	before := load(t, examplesWithout(t, "canary-payments.yaml"), cat)
	after := load(t, examplesWithout(t, ""), cat)
	nodes := DefaultNodes(cat)
	if len(nodes) < 3 {
		t.Fatalf("nodes = %v, want gateway and the services", nodes)
	}
	cur, err := Translate(cat, before, nodes, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	cand, err := Translate(cat, after, nodes, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	rep := Compare(cur, cand)
	if !rep.Changed() {
		t.Fatal("adding a CanaryRoute changed nothing")
	}
	var out strings.Builder
	if err := rep.Format(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"=== node gateway:", "clusters/payments~v2", "+", "x-mw-dye"} {
		if !strings.Contains(text, want) {
			t.Errorf("preview lacks %q:\n%s", want, text)
		}
	}
	// The same set against itself is no change at all.
	if same := Compare(cand, cand); same.Changed() {
		t.Errorf("a set compared with itself shows changes: %+v", same)
	}
	// A subset that no instance carries is refused before translation.
	files := examplesWithout(t, "")
	files["canary-payments.yaml"] = []byte(strings.Replace(string(files["canary-payments.yaml"]), "version: v2", "version: v3", 1))
	_, diags, err := policies.LoadFiles(files, cat)
	if err == nil || !strings.Contains(diags.Error(), `no instance of "payments" carries version=v3`) {
		t.Errorf("selector v3 against Consul: err %v", err)
	}
}

// planeStub serves the admin API contract PlaneClient speaks, backed by the
// real translator and a fixed catalog, so the client, the report and the
// contract are exercised end to end without a whole control plane.
func planeStub(t *testing.T, cat *ir.Catalog, current *ir.PolicySet) *httptest.Server {
	t.Helper()
	nodes := DefaultNodes(cat)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		var ids []map[string]string
		for _, n := range nodes {
			ids = append(ids, map[string]string{"id": n.ID})
		}
		json.NewEncoder(w).Encode(ids)
	})
	mux.HandleFunc("GET /v1/config_dump", func(w http.ResponseWriter, r *http.Request) {
		shared, err := translate.Build(cat, current, testOpts)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		for _, n := range nodes {
			if n.ID == r.URL.Query().Get("node") {
				snap, err := shared.ForNode(n, nil)
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				y, _ := snap.YAML()
				w.Write(y)
				return
			}
		}
		http.Error(w, "unknown node", http.StatusNotFound)
	})
	translateBody := func(w http.ResponseWriter, r *http.Request) (*ir.PolicySet, bool) {
		var files map[string]string
		if err := json.NewDecoder(r.Body).Decode(&files); err != nil {
			http.Error(w, err.Error(), 400)
			return nil, false
		}
		fb := map[string][]byte{}
		for k, v := range files {
			fb[k] = []byte(v)
		}
		ps, _, err := policies.LoadFiles(fb, cat)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return nil, false
		}
		return ps, true
	}
	mux.HandleFunc("POST /v1/policies:translate", func(w http.ResponseWriter, r *http.Request) {
		ps, ok := translateBody(w, r)
		if !ok {
			return
		}
		shared, err := translate.Build(cat, ps, testOpts)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		out := map[string]any{}
		for _, n := range nodes {
			snap, _ := shared.ForNode(n, nil)
			out[n.ID], _ = snap.Dump()
		}
		json.NewEncoder(w).Encode(map[string]any{"revision": ps.Revision, "nodes": out})
	})
	mux.HandleFunc("POST /v1/policies:apply", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Meshwarden-Identity") != "" {
			http.Error(w, "the client must not name its own identity", 400)
			return
		}
		if ps, ok := translateBody(w, r); ok {
			json.NewEncoder(w).Encode(map[string]string{"revision": ps.Revision, "applied_by": "consul token 1234 (alice)"})
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestPlaneClient(t *testing.T) {
	cat := &ir.Catalog{Services: map[string]*ir.Service{"payments": {Name: "payments", Instances: []ir.Instance{
		{ID: "p1", Address: "127.0.0.1", Port: 1, Meta: map[string]string{"version": "v1"}, Healthy: true},
		{ID: "p2", Address: "127.0.0.1", Port: 2, Meta: map[string]string{"version": "v2"}, Healthy: true},
	}}}}
	current := load(t, examplesWithout(t, "canary-payments.yaml"), cat)
	srv := planeStub(t, cat, current)
	c := &PlaneClient{Base: strings.TrimPrefix(srv.URL, "http://")}
	ctx := context.Background()

	t.Run("diff", func(t *testing.T) {
		rep, err := c.Diff(ctx, examplesWithout(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Nodes) != 2 || !rep.Changed() {
			t.Fatalf("report = %+v, want 2 nodes with changes", rep)
		}
		var sb strings.Builder
		rep.Format(&sb)
		if !strings.Contains(sb.String(), "added clusters/payments~v2") {
			t.Errorf("diff lacks the new subset cluster:\n%s", sb.String())
		}
	})
	t.Run("diff of the current set is empty", func(t *testing.T) {
		rep, err := c.Diff(ctx, examplesWithout(t, "canary-payments.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Changed() {
			t.Errorf("no-op set shows changes: %+v", rep)
		}
	})
	t.Run("apply", func(t *testing.T) {
		files := examplesWithout(t, "")
		res, err := c.Apply(ctx, files)
		if err != nil {
			t.Fatal(err)
		}
		if res.AppliedBy != "consul token 1234 (alice)" {
			t.Errorf("applied_by %q, want the plane's principal", res.AppliedBy)
		}
		if res.Revision != policies.Revision(files) {
			t.Errorf("revision %s, want %s", res.Revision, policies.Revision(files))
		}
	})
	t.Run("rejected set", func(t *testing.T) {
		bad := map[string][]byte{"x.yaml": []byte("apiVersion: meshwarden.io/v1alpha1\nkind: CanaryRoute\nmetadata: {name: x}\nspec: {service: payments, subsets: [{name: v1, selector: {version: v9}}]}\n")}
		_, err := c.Apply(ctx, bad)
		var pe *PlaneError
		if !errors.As(err, &pe) || pe.Status != http.StatusUnprocessableEntity || !strings.Contains(pe.Body, "x.yaml:4:") {
			t.Errorf("apply of a bad set: %v", err)
		}
	})
	t.Run("unreachable plane", func(t *testing.T) {
		dead := &PlaneClient{Base: "127.0.0.1:1"}
		if _, err := dead.Nodes(ctx); err == nil || !strings.Contains(err.Error(), "--plane") {
			t.Errorf("unreachable plane: %v", err)
		}
	})
}

func TestFromDumpNames(t *testing.T) {
	res, err := FromDump(map[string]any{
		"version":   "abc",
		"clusters":  []any{map[string]any{"name": "a", "x": 1}},
		"endpoints": []any{map[string]any{"cluster_name": "a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res["clusters/a"] != "name: a\nx: 1\n" || res["endpoints/a"] == "" {
		t.Errorf("FromDump = %q", res)
	}
	_ = os.Getenv
	_ = filepath.Join
}

// TestCompareLeavesSecretsOut: a node's current secrets (its leaf and the
// roots) are not in a translation; the diff must not call them removed.
func TestCompareLeavesSecretsOut(t *testing.T) {
	cur := map[string]Resources{"gw": {"secrets/mw-roots": "roots", "secrets/mw-leaf:gw": "leaf", "clusters/a": "x"}}
	cand := map[string]Resources{"gw": {"clusters/a": "x", "clusters/b": "y"}}
	rep := Compare(cur, cand)
	if len(rep.Nodes) != 1 || len(rep.Nodes[0].Changes) != 1 || rep.Nodes[0].Changes[0].Resource != "clusters/b" || rep.Nodes[0].Unchanged != 1 {
		t.Fatalf("changes %+v, want only clusters/b added and clusters/a unchanged", rep.Nodes)
	}
	var out strings.Builder
	if err := rep.Format(&out); err != nil || strings.Contains(out.String(), "removed secrets/") || !strings.Contains(out.String(), "SDS secrets are not compared") {
		t.Fatalf("format: %v\n%s", err, out.String())
	}
}
