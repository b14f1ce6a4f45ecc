package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/exitcode"
	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/consulwatch"
	"github.com/meshwarden/meshwarden/controlplane/planetest"
	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/policies"
)

// TestPolicyEndToEnd runs the policy CLI against a real control plane on a
// real Consul agent with a connected gateway node: validate the examples
// against Consul, diff them (the canary subsets and filters appear), apply
// them (the plane serves the revision, the change is recorded), diff again
// (nothing changes), and apply a bad set (rejected whole, last good set
// kept, rejection visible in status).
func TestPolicyEndToEnd(t *testing.T) {
	agent, client := consultest.Start(t)
	for _, r := range []*api.AgentServiceRegistration{
		{ID: "payments-1", Name: "payments", Address: "127.0.0.1", Port: 19001, Meta: map[string]string{"version": "v1"}},
		{ID: "payments-2", Name: "payments", Address: "127.0.0.1", Port: 19002, Meta: map[string]string{"version": "v2"}},
	} {
		if err := client.Agent().ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	sha := func(c string) string { return strings.Repeat(c, 64) }
	s, err := controlplane.NewWithContext(t.Context(), controlplane.Config{
		Consul:       client,
		Debounce:     5 * time.Millisecond,
		LoadPolicies: policies.LoadSet,
		Translate: translate.Options{ModuleBaseURL: "http://127.0.0.1:1/modules/",
			ModuleSHA256: map[string]string{"dye": sha("1"), "audit": sha("2"), "trace": sha("3")}},
		Watch: consulwatch.Options{WaitTime: 30 * time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
		// The CLI's secure path (TLS, tokens) runs in e2e and the demo;
		// this test is about diff, apply and the change log.
		InsecureNoAuth: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, _ := planetest.Serve(t, s)
	admin := httptest.NewServer(s.AdminHandler(true))
	t.Cleanup(admin.Close)
	plane := strings.TrimPrefix(admin.URL, "http://")

	// A gateway node connects over ADS.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	t.Cleanup(func() { scancel(); conn.Close() })
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: &corev3.Node{Id: "gw-1", Cluster: meshnames.GatewayNodeCluster}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	probe.Until(t, "the gateway's config_dump", 30*time.Second, func() bool { return probe.GetJSON(t, admin.URL+"/v1/config_dump?node=gw-1", nil) == 200 })
	probe.Until(t, "payments in the plane's catalog", 30*time.Second, func() bool { return s.Watcher().Catalog().Services["payments"] != nil })

	consulAddr := "127.0.0.1:" + itoa(agent.Ports.HTTP)
	out, _, err := runCLI(t, "policy", "validate", examples, "--consul", consulAddr)
	if err != nil || !strings.Contains(out, "OK: 5 file(s)") {
		t.Fatalf("validate against Consul: %v\n%s", err, out)
	}

	out, _, err = runCLI(t, "policy", "diff", examples, "--plane", plane, "--insecure")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=== node gw-1:", "added clusters/payments~v2", "added extension_configs/mw.audit", "x-mw-dye"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}

	if _, _, err := runCLI(t, "policy", "diff", examples, "--plane", plane, "--insecure", "--exit-code"); exitcode.Of(err) != exitcode.Findings {
		t.Errorf("diff --exit-code with changes: %v (exit %d), want exit 1", err, exitcode.Of(err))
	}

	// version names the client's build and, asked, the plane's.
	out, _, err = runCLI(t, "version", "--plane", plane, "--insecure")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 2 ||
		!strings.HasPrefix(lines[1], "plane "+plane+": meshwarden ") || !strings.Contains(lines[1], runtime.Version()) {
		t.Errorf("version with the plane: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "version", "--plane", "127.0.0.1:1", "--insecure")
	if err != nil || !strings.Contains(out, "plane 127.0.0.1:1: unreachable: ") {
		t.Errorf("version with no plane: %v\n%s", err, out)
	}

	// profile fetches the plane's goroutine profile through its admin API.
	prof := filepath.Join(t.TempDir(), "goroutine.pb.gz")
	if _, _, err := runCLI(t, "profile", "goroutine", "--plane", plane, "--insecure", "-o", prof); err != nil {
		t.Errorf("profile goroutine from the plane: %v", err)
	} else if b, _ := os.ReadFile(prof); len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("plane goroutine profile: %d bytes, want gzip", len(b))
	}

	// proxy-status lists the gateway; it never ACKs in this test, so it is
	// not SYNCED and the command says so with exit 1.
	out, _, err = runCLI(t, "proxy-status", "--plane", plane, "--insecure")
	if exitcode.Of(err) != exitcode.Findings || !strings.Contains(out, "NODE ") || !regexp.MustCompile(`(?m)^gw-1\s+meshwarden-gateway\s+gateway\s+1\s+NOT ACKED\s`).MatchString(out) {
		t.Errorf("proxy-status: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "proxy-config", "gw-1", "clusters", "--plane", plane, "--insecure", "-o", "json")
	var clusters []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &clusters) != nil || len(clusters) == 0 || clusters[0]["name"] == nil {
		t.Errorf("proxy-config gw-1 clusters: %v\n%.500s", err, out)
	}
	if _, _, err := runCLI(t, "proxy-config", "gw-1", "listenerz", "--plane", plane, "--insecure"); exitcode.Of(err) != exitcode.Usage || !strings.Contains(err.Error(), "use listeners, routes") {
		t.Errorf("proxy-config with a bad kind: %v", err)
	}

	log := filepath.Join(t.TempDir(), "changes.jsonl")
	out, _, err = runCLI(t, "policy", "apply", examples, "--plane", plane, "--insecure", "--changelog", log)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := policies.ReadDir(examples)
	rev := policies.Revision(files)
	if !strings.Contains(out, "applied revision "+rev) {
		t.Errorf("apply output:\n%s", out)
	}
	var st controlplane.Status
	probe.GetJSON(t, admin.URL+"/v1/status", &st)
	if st.PolicyRevision != rev {
		t.Errorf("plane serves revision %q, want %q", st.PolicyRevision, rev)
	}
	recs, err := policies.ReadChangeLog(log)
	if err != nil || len(recs) != 1 || !strings.Contains(recs[0].Diff, "clusters/payments~v2") {
		t.Fatalf("change record: %v %+v", err, recs)
	}
	probe.Until(t, "the applied set on the node", 30*time.Second, func() bool {
		out, _, err := runCLI(t, "policy", "diff", examples, "--plane", plane, "--insecure", "--exit-code")
		return err == nil && strings.Contains(out, "=== node gw-1: 0 changed, 0 added, 0 removed")
	})

	// A set that the plane must refuse: the selector matches nothing in Consul.
	bad := t.TempDir()
	writeFile(t, filepath.Join(bad, "canary.yaml"), strings.Replace(string(files["canary-payments.yaml"]), "version: v2", "version: v9", 1))
	_, stderr, err := runCLI(t, "policy", "apply", bad, "--plane", plane, "--insecure", "--changelog", log)
	if err == nil || !strings.Contains(stderr, `no instance of "payments" carries version=v9`) {
		t.Errorf("bad set: err %v\n%s", err, stderr)
	}
	out, _, err = runCLI(t, "policy", "status", "--plane", plane, "--insecure")
	t.Logf("policy status after a rejected apply:\n%s", out)
	if err != nil || !strings.Contains(out, "policy revision in force: "+rev) || !strings.Contains(out, "last rejection: ") ||
		!strings.Contains(out, " policy:\n") || !strings.Contains(out, "version=v9") {
		t.Errorf("status after a rejection: %v\n%s", err, out)
	}
	if recs, _ := policies.ReadChangeLog(log); len(recs) != 1 {
		t.Errorf("a rejected set was recorded: %d records", len(recs))
	}
}
