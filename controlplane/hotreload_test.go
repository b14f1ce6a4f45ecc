package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/moduleserver"
	"github.com/meshwarden/meshwarden/ir"
	"github.com/meshwarden/meshwarden/policies"
)

// TestPolicyDirAndModuleHotReload: a policy file dropped in --policy-dir is
// applied; a broken edit is rejected and the last good set keeps serving; a
// rebuilt module changes the sha256 the ECDS resource pins.
func TestPolicyDirAndModuleHotReload(t *testing.T) {
	policyDir, filtersDir := t.TempDir(), t.TempDir()
	writeModule := func(content string) string {
		t.Helper()
		path := filepath.Join(filtersDir, "dye.wasm")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Duration(len(content)) * time.Second) // distinct mtime per build
		if err := os.Chtimes(path, later, later); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		return hex.EncodeToString(sum[:])
	}
	sha1 := writeModule("\x00asm\x01\x00\x00\x00 build one")
	mods := moduleserver.New(filtersDir, nil)
	p := startPlane(t, func(c *Config) { c.PolicyDir = policyDir; c.Modules = mods })
	register(t, p.consul, "echo-1", "echo", 9001, map[string]string{"version": "v2"}, api.HealthPassing)
	ads := dialADS(t, p.addr, "web-1", "web", nil)
	ads.waitFor("echo cluster", func(c *adsClient) bool { return c.clusterNames()["echo"] })

	writePolicy := func(content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(policyDir, "p.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dyeSHA := func(c *adsClient) string {
		for _, a := range c.last[resource.ExtensionConfigType].GetResources() {
			var tec corev3.TypedExtensionConfig
			if err := a.UnmarshalTo(&tec); err != nil {
				t.Fatal(err)
			}
			var w wasmfilterv3.Wasm
			if err := tec.GetTypedConfig().UnmarshalTo(&w); err != nil {
				t.Fatal(err)
			}
			if tec.GetName() == "mw.dye" {
				return w.GetConfig().GetVmConfig().GetCode().GetRemote().GetSha256()
			}
		}
		return ""
	}

	writePolicy(`{"Routes":[{"Service":"echo","Subsets":[{"Name":"v2","Selector":{"version":"v2"}}],"Lanes":[{"Lane":"canary","Subset":"v2"}],"Source":"p.json:1"}],
		"Filters":[{"Name":"dye","Config":{"lanes":["canary"]},"Source":"p.json:1"}]}`)
	ads.waitFor("policy from the dir: subset cluster and dye filter", func(c *adsClient) bool {
		return c.clusterNames()["echo~v2"] && dyeSHA(c) == sha1
	})
	good := p.s.PolicyRevision()

	writePolicy(`{"Routes":[{"Service":"echo","Subsets":[],"Lanes":[{"Lane":"canary","Subset":"v9"}],"Source":"p.json:1"}]}`)
	waitUntil(t, "broken edit rejected", func() bool {
		st := p.s.Status()
		return st.LastRejection != nil && st.LastRejection.Kind == "policy" && strings.Contains(st.LastRejection.Error, "v9")
	})
	if p.s.PolicyRevision() != good {
		t.Fatal("a rejected set replaced the good one")
	}

	sha2 := writeModule("\x00asm\x01\x00\x00\x00 build two, longer")
	ads.waitFor("rebuilt module pinned by ECDS", func(c *adsClient) bool {
		return dyeSHA(c) == sha2 && c.clusterNames()["echo~v2"]
	})

	// A set naming a filter that is not built yet is rejected, and applied
	// once the module appears, without touching the policy file.
	writePolicy(`{"Filters":[{"Name":"trace","Config":{},"Source":"p.json:1"}]}`)
	waitUntil(t, "unbuilt filter rejected", func() bool {
		st := p.s.Status()
		return st.LastRejection != nil && strings.Contains(st.LastRejection.Error, `filter "trace" has no module`)
	})
	if err := os.WriteFile(filepath.Join(filtersDir, "trace.wasm"), []byte("\x00asm\x01\x00\x00\x00 trace"), 0o644); err != nil {
		t.Fatal(err)
	}
	ads.waitFor("trace filter after its module was built", func(c *adsClient) bool {
		for _, a := range c.last[resource.ExtensionConfigType].GetResources() {
			var tec corev3.TypedExtensionConfig
			if err := a.UnmarshalTo(&tec); err != nil {
				t.Fatal(err)
			}
			if tec.GetName() == "mw.trace" {
				return true
			}
		}
		return false
	})
}

// TestNoConfigUntilPolicyDirIsValid: with a policy directory, the plane sends
// no proxy any configuration (which would carry no filters, so no audit)
// until a valid policy set from it is applied, and /readyz says why.
func TestNoConfigUntilPolicyDirIsValid(t *testing.T) {
	policyDir := t.TempDir()
	file := filepath.Join(policyDir, "p.yaml")
	if err := os.WriteFile(file, []byte(`{"routes": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPlane(t, func(c *Config) { c.PolicyDir = policyDir })
	register(t, p.consul, "echo-1", "echo", 9001, map[string]string{"version": "v1"}, api.HealthPassing)
	ads := dialADS(t, p.addr, "web-1", "web", nil)

	readyz := func() (int, string) {
		resp, err := http.Get(p.admin.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := readyz()
		st := p.s.Status()
		if code == http.StatusServiceUnavailable && strings.Contains(body, "no valid policy set") &&
			strings.Contains(body, "last rejection") && st.AwaitingPolicies && st.Nodes == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d %q, status %+v: want 503 naming the rejected policy set, with web-1 connected", code, body, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ads.mu.Lock()
	got := len(ads.last)
	ads.mu.Unlock()
	if got != 0 {
		t.Fatalf("web-1 received %d resource types before any valid policy set was applied", got)
	}

	if err := os.WriteFile(file, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ads.waitFor("configuration once the policy set is valid", func(c *adsClient) bool { return c.clusterNames()["echo"] })
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("readyz after a valid set: %d %q", code, body)
	}
	if p.s.Status().AwaitingPolicies {
		t.Fatal("still awaiting policies after a valid set was applied")
	}
}

// TestRejectedPolicyRetriedWhenCatalogChanges: a canary whose subsets no
// instance carries yet is rejected; once the instances register in Consul
// the same files are applied without anyone editing them (a plane started
// before its services used to stay without a policy set).
func TestRejectedPolicyRetriedWhenCatalogChanges(t *testing.T) {
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "canary.yaml"), []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// The loader judges the files against the catalog, as policies.LoadFiles
	// does for a CanaryRoute's subsets.
	loader := func(files map[string][]byte, cat *ir.Catalog) (*ir.PolicySet, error) {
		if svc := cat.Services["payments"]; svc == nil || len(svc.Instances) < 2 {
			return nil, errors.New(`canary.json: no instance of "payments" carries version=v2`)
		}
		return jsonLoader(files, cat)
	}
	p := startPlane(t, func(c *Config) { c.PolicyDir, c.LoadPolicies = policyDir, loader })
	deadline := time.Now().Add(20 * time.Second)
	rejected := func() bool {
		r := p.s.Status().LastRejection
		return r != nil && strings.Contains(r.Error, "no instance of")
	}
	for !rejected() {
		if time.Now().After(deadline) {
			t.Fatalf("last rejection %+v: want the canary rejected while payments has no instances", p.s.Status().LastRejection)
		}
		time.Sleep(20 * time.Millisecond)
	}
	register(t, p.consul, "payments-1", "payments", 9001, map[string]string{"version": "v1"}, api.HealthPassing)
	register(t, p.consul, "payments-2", "payments", 9002, map[string]string{"version": "v2"}, api.HealthPassing)
	deadline = time.Now().Add(30 * time.Second)
	for p.s.Status().AwaitingPolicies {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v: the unchanged files were not applied after the instances registered", p.s.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPolicyDirReadsWhatTheCLIReads: --policy-dir reads the files
// `meshwarden policy` reads (policies.ReadDir): *.yaml and *.yml, no .json
// files, no dotfiles, so the plane and the CLI agree on a directory's
// revision.
func TestPolicyDirReadsWhatTheCLIReads(t *testing.T) {
	policyDir := t.TempDir()
	for name, content := range map[string]string{"p.yaml": `{}`, "q.yml": `{}`, ".hidden.yaml": `{`, "x.json": `{`} {
		if err := os.WriteFile(filepath.Join(policyDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []string, 8)
	loader := func(files map[string][]byte, cat *ir.Catalog) (*ir.PolicySet, error) {
		got <- slices.Sorted(maps.Keys(files))
		return jsonLoader(files, cat)
	}
	startPlane(t, func(c *Config) { c.PolicyDir, c.LoadPolicies = policyDir, loader })
	cli, err := policies.ReadDir(policyDir)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(maps.Keys(cli))
	select {
	case names := <-got:
		if !slices.Equal(names, want) || !slices.Equal(names, []string{"p.yaml", "q.yml"}) {
			t.Fatalf("plane loaded %q, the policy CLI reads %q: want both [p.yaml q.yml]", names, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the policy directory was never loaded")
	}
}
