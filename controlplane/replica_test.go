package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/policystore"
	"github.com/meshwarden/meshwarden/ir"
)

// routeLoader reads each file as "service=<name> weight=<v2 percent>" and
// makes a canary route of it, so that different files make different
// xDS for the same node.
func routeLoader(files map[string][]byte, _ *ir.Catalog) (*ir.PolicySet, error) {
	ps := &ir.PolicySet{}
	for name, b := range files {
		var svc string
		var w uint32
		if _, err := fmt.Sscanf(string(b), "service=%s weight=%d", &svc, &w); err != nil {
			return nil, fmt.Errorf("%s:1: want \"service=<name> weight=<n>\": %w", name, err)
		}
		ps.Routes = append(ps.Routes, ir.Route{Service: svc, Source: name,
			Subsets: []ir.Subset{{Name: "v1", Selector: map[string]string{"version": "v1"}}, {Name: "v2", Selector: map[string]string{"version": "v2"}}},
			Weights: []ir.WeightedSubset{{Subset: "v1", Weight: 100 - w}, {Subset: "v2", Weight: w}}})
		ps.Sources = append(ps.Sources, name)
	}
	return ps, ps.Validate()
}

// replicas starts n planes sharing one Consul (ACLs on) and the KV store.
func replicas(t *testing.T, n int) []*securePlane {
	t.Helper()
	first := startPlaneOpts(t, planeOpts{ttl: time.Second, store: true, loader: routeLoader})
	for _, v := range []string{"v1", "v2"} {
		if err := first.mgmt.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "shop-" + v, Name: "shop", Address: "127.0.0.1", Port: 9100,
			Meta: map[string]string{"version": v}}); err != nil {
			t.Fatal(err)
		}
	}
	out := []*securePlane{first}
	for range n - 1 {
		out = append(out, startPlaneOpts(t, planeOpts{ttl: time.Second, store: true, loader: routeLoader, with: first}))
	}
	return out
}

// apply posts files to a replica's admin API as the operator.
func (p *securePlane) apply(t *testing.T, files map[string]string, ifRevision string) (int, map[string]any) {
	t.Helper()
	hc, err := auth.ClientOptions{CAFile: p.caFile, Token: p.tokens["operator"]}.HTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(files)
	req, _ := http.NewRequest(http.MethodPost, p.admin+"/v1/policies:apply", strings.NewReader(string(b)))
	if ifRevision != "" {
		req.Header.Set("If-Match", `"`+ifRevision+`"`)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body
}

// nodeVersion connects a gateway node to p and returns the version of its
// first CDS response after p serves revision rev.
func (p *securePlane) nodeVersion(t *testing.T, id, rev string) string {
	t.Helper()
	waitUntil(t, 15*time.Second, "replica serves "+rev[:12], func() bool { return p.s.PolicyRevision() == rev })
	st := p.stream(t, p.tlsDial(t), p.tokens["gateway"], &corev3.Node{Id: id, Cluster: meshnames.GatewayNodeCluster}, resource.ClusterType)
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return r.GetVersionInfo()
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	probe.Until(t, what, d, cond)
}

// TestReplicaApplyReachesEveryReplica: a set applied on one replica is in
// force on the other, which serves the same snapshot (same content-hash
// version) to the same kind of node; the store's history chains them.
func TestReplicaApplyReachesEveryReplica(t *testing.T) {
	rs := replicas(t, 2)
	a, b := rs[0], rs[1]
	code, body := a.apply(t, map[string]string{"shop.txt": "service=shop weight=10"}, "")
	if code != 200 {
		t.Fatalf("apply on A: %d %v", code, body)
	}
	rev := body["revision"].(string)
	va, vb := a.nodeVersion(t, "gw-a", rev), b.nodeVersion(t, "gw-b", rev)
	if va == "" || va != vb {
		t.Fatalf("replicas serve different snapshots for the same node kind: %q vs %q", va, vb)
	}
	// B applies the next set; A follows.
	code, body = b.apply(t, map[string]string{"shop.txt": "service=shop weight=50"}, rev)
	if code != 200 {
		t.Fatalf("apply on B: %d %v", code, body)
	}
	rev2 := body["revision"].(string)
	waitUntil(t, 15*time.Second, "A follows B's apply", func() bool { return a.s.PolicyRevision() == rev2 })
	st := a.s.Status()
	if st.PolicyStore == nil || st.PolicyStore.Seq != 2 || st.PolicyStore.Revision != rev2 || !strings.Contains(st.PolicyStore.AppliedBy, "ops-alice") {
		t.Fatalf("A's store status: %+v", st.PolicyStore)
	}
	hist, err := policystore.New(a.mgmt, "").History(context.Background())
	if err != nil || len(hist) != 2 || hist[0].Revision != rev || hist[1].Revision != rev2 || hist[1].PrevHash != hist[0].Hash {
		t.Fatalf("history: %v %+v", err, hist)
	}
}

// TestReplicaConcurrentApply: two operators apply different sets on two
// replicas over the same previewed revision at the same moment: exactly
// one wins; the other gets 409 naming the revision in force, and both
// replicas end on the winner.
func TestReplicaConcurrentApply(t *testing.T) {
	rs := replicas(t, 2)
	code, body := rs[0].apply(t, map[string]string{"shop.txt": "service=shop weight=10"}, "")
	if code != 200 {
		t.Fatalf("first apply: %d %v", code, body)
	}
	base := body["revision"].(string)
	waitUntil(t, 15*time.Second, "both replicas on the base", func() bool { return rs[1].s.PolicyRevision() == base })
	for round := range 5 {
		var wg sync.WaitGroup
		codes := make([]int, 2)
		bodies := make([]map[string]any, 2)
		for i, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], bodies[i] = r.apply(t, map[string]string{"shop.txt": fmt.Sprintf("service=shop weight=%d", 20+round*10+i)}, base)
			}()
		}
		wg.Wait()
		won := 0
		winner := ""
		for i := range rs {
			switch codes[i] {
			case 200:
				won++
				winner = bodies[i]["revision"].(string)
			case 409:
				if !strings.Contains(fmt.Sprint(bodies[i]["error"]), "apply again") {
					t.Errorf("409 does not say what to do: %v", bodies[i])
				}
			default:
				t.Fatalf("round %d replica %d: %d %v", round, i, codes[i], bodies[i])
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d applies won over the same base (codes %v)", round, won, codes)
		}
		for _, r := range rs {
			waitUntil(t, 15*time.Second, "every replica on the winner", func() bool { return r.s.PolicyRevision() == winner })
		}
		base = winner
	}
}

// TestReplicaStoreUnavailable: with Consul stopped an apply is refused
// with 503 and nothing changes; a set stored by a newer release is refused
// by this one, which keeps serving its set and says why.
func TestReplicaStoreUnavailable(t *testing.T) {
	rs := replicas(t, 1)
	a := rs[0]
	code, body := a.apply(t, map[string]string{"shop.txt": "service=shop weight=10"}, "")
	if code != 200 {
		t.Fatalf("apply: %d %v", code, body)
	}
	rev := body["revision"].(string)

	// A newer release wrote schema 2.
	newer, _ := json.Marshal(map[string]any{"schema": 2, "revision": strings.Repeat("f", 64), "files": map[string]string{"x": "y"}})
	if _, err := a.mgmt.KV().Put(&api.KVPair{Key: policystore.DefaultPrefix + "/current", Value: newer}, nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "the replica reports the newer set", func() bool {
		st := a.s.Status()
		return st.PolicyStore != nil && strings.Contains(st.PolicyStore.Error, "newer meshwarden")
	})
	if got := a.s.PolicyRevision(); got != rev {
		t.Fatalf("serves %s after a newer set was stored, want %s kept", got, rev)
	}

	a.agent.Stop()
	code, body = a.apply(t, map[string]string{"shop.txt": "service=shop weight=30"}, "")
	if code != 503 || !strings.Contains(fmt.Sprint(body["error"]), "nothing was applied") {
		t.Fatalf("apply with Consul down: %d %v", code, body)
	}
	if got := a.s.PolicyRevision(); got != rev {
		t.Fatalf("serves %s after a refused apply, want %s", got, rev)
	}
}

// TestFanOutAcrossReplicas: 20 sidecars on each of two replicas; a Consul
// change reaches all 40, and both replicas end up handing the same version
// to the same kind of node.
func TestFanOutAcrossReplicas(t *testing.T) {
	rs := replicas(t, 2)
	if err := rs[0].mgmt.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "echo-1", Name: "echo", Address: "127.0.0.1", Port: 9300,
		Check: &api.AgentServiceCheck{CheckID: "check:echo-1", TTL: "10m", Status: api.HealthPassing}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	latest := map[string]string{} // sidecar -> last EDS version
	for r, p := range rs {
		for i := range 20 {
			id := fmt.Sprintf("pay-%d-%d", r, i)
			st := p.stream(t, p.tlsDial(t), p.tokens["payments"], &corev3.Node{Id: id, Cluster: "payments"}, resource.EndpointType)
			go func() {
				for {
					resp, err := st.Recv()
					if err != nil {
						return
					}
					_ = st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
					mu.Lock()
					latest[id] = resp.GetVersionInfo()
					mu.Unlock()
				}
			}()
		}
	}
	// agreed returns the one version all 40 sidecars hold, or "".
	agreed := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(latest) < 40 {
			return ""
		}
		v := ""
		for _, got := range latest {
			if v != "" && got != v {
				return ""
			}
			v = got
		}
		return v
	}
	var before string
	waitUntil(t, 20*time.Second, "all 40 sidecars on one version", func() bool { before = agreed(); return before != "" })
	if err := rs[0].mgmt.Agent().UpdateTTL("check:echo-1", "test", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "all 40 sidecars, on both replicas, on one new version", func() bool {
		v := agreed()
		return v != "" && v != before
	})
}
