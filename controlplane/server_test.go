package controlplane

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
	"github.com/meshwarden/meshwarden/internal/testenv/promseries"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/translate"
	"github.com/meshwarden/meshwarden/ir"
)

func register(t testing.TB, c *api.Client, id, name string, port int, meta map[string]string, status string) {
	t.Helper()
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: name, Address: "127.0.0.1", Port: port, Meta: meta,
		Check: &api.AgentServiceCheck{CheckID: "check:" + id, TTL: "10m", Status: status},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestADSOnRealConsul registers services in a real agent, flips health and
// changes meta, and checks what a real ADS stream receives.
func TestADSOnRealConsul(t *testing.T) {
	p := startPlane(t, func(c *Config) {
		c.Policies = &ir.PolicySet{Routes: []ir.Route{{
			Service: "echo",
			Subsets: []ir.Subset{{Name: "v2", Selector: map[string]string{"version": "v2"}}},
			Lanes:   []ir.LaneRule{{Lane: "canary", Subset: "v2"}},
			Source:  "test",
		}}}
	})
	register(t, p.consul, "echo-1", "echo", 9001, map[string]string{"version": "v1"}, api.HealthPassing)
	ads := dialADS(t, p.addr, "web-1", "web", map[string]any{"local_app_port": "9300"})

	t.Run("healthy instance arrives", func(t *testing.T) {
		ads.waitFor("echo endpoint 127.0.0.1:9001", func(c *adsClient) bool {
			eps, _ := c.endpoints("echo")
			return slices.Equal(eps, []string{"127.0.0.1:9001"})
		})
		ads.waitFor("outbound vhost echo and cluster echo~v2", func(c *adsClient) bool {
			return c.vhosts(translate.OutboundRouteName)["echo"] && c.clusterNames()["echo~v2"]
		})
	})
	t.Run("critical instance leaves EDS", func(t *testing.T) {
		if err := p.consul.Agent().UpdateTTL("check:echo-1", "test", api.HealthCritical); err != nil {
			t.Fatal(err)
		}
		ads.waitFor("no echo endpoints", func(c *adsClient) bool {
			eps, ok := c.endpoints("echo")
			return ok && len(eps) == 0
		})
	})
	t.Run("meta change moves the instance into subset v2", func(t *testing.T) {
		register(t, p.consul, "echo-1", "echo", 9001, map[string]string{"version": "v2"}, api.HealthPassing)
		// Re-registering keeps the check's critical state: pass it again.
		if err := p.consul.Agent().UpdateTTL("check:echo-1", "test", api.HealthPassing); err != nil {
			t.Fatal(err)
		}
		ads.waitFor("echo~v2 endpoint", func(c *adsClient) bool {
			eps, _ := c.endpoints("echo~v2")
			return slices.Equal(eps, []string{"127.0.0.1:9001"})
		})
	})
	t.Run("new service gets a cluster and a virtual host", func(t *testing.T) {
		register(t, p.consul, "billing-1", "billing", 9100, nil, api.HealthPassing)
		ads.waitFor("billing cluster, vhost and endpoint", func(c *adsClient) bool {
			eps, _ := c.endpoints("billing")
			return c.clusterNames()["billing"] && c.vhosts(translate.OutboundRouteName)["billing"] && len(eps) == 1
		})
	})
	t.Run("admin API", func(t *testing.T) {
		var st Status
		getJSON(t, p.admin.URL+"/v1/status", &st)
		if st.Consul.Index == 0 || !st.Consul.Synced || st.Nodes != 1 {
			t.Fatalf("status = %+v", st)
		}
		var nodes []NodeStatus
		getJSON(t, p.admin.URL+"/v1/nodes", &nodes)
		if len(nodes) != 1 || nodes[0].ID != "web-1" || nodes[0].Service != "web" || nodes[0].Metadata["local_app_port"] != "9300" {
			t.Fatalf("nodes = %+v", nodes)
		}
		body := get(t, p.admin.URL+"/v1/config_dump?node=web-1", 200)
		for _, want := range []string{"cluster_name: billing", "port_value: 9300", "name: mw-outbound"} {
			if !strings.Contains(body, want) {
				t.Errorf("config_dump lacks %q", want)
			}
		}
		get(t, p.admin.URL+"/v1/config_dump?node=nobody", 404)
		get(t, p.admin.URL+"/readyz", 200)
		metrics := get(t, p.admin.URL+"/metrics", 200)
		if !strings.Contains(metrics, "meshwarden_controlplane_snapshots_published_total") {
			t.Error("metrics lack snapshots_published_total")
		}
	})
	t.Run("consul outage keeps the snapshot and reports staleness", func(t *testing.T) {
		before, err := p.s.Cache().GetSnapshot("web-1")
		if err != nil {
			t.Fatal(err)
		}
		p.agent.Stop()
		deadline := time.Now().Add(15 * time.Second)
		for {
			st := p.s.Status()
			if st.Consul.Stale && st.Consul.Staleness > 0 && st.Consul.LastError != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never went stale: %+v", st.Consul)
			}
			time.Sleep(50 * time.Millisecond)
		}
		after, err := p.s.Cache().GetSnapshot("web-1")
		if err != nil {
			t.Fatal(err)
		}
		if after.GetVersion(resource.ClusterType) != before.GetVersion(resource.ClusterType) {
			t.Fatal("snapshot changed during the outage")
		}
		if g := metricValue(t, p.s, "meshwarden_controlplane_consul_staleness_seconds"); g <= 0 {
			t.Fatalf("staleness gauge = %v", g)
		}
	})
}

// TestNACKKeepsLastGood has the client reject a new configuration and
// checks the node is put back on its last accepted snapshot, the rejection
// is counted and reported, and later good changes still flow.
// The context given to NewWithContext does not end the ADS streams: the
// plane's Shutdown ends them after deregistering, not the caller's cancel.
func TestNewContextCancelKeepsStreams(t *testing.T) {
	agent, client := consultest.Start(t)
	ctx, cancel := context.WithCancel(t.Context())
	p := startPlaneCtx(t, ctx, client, nil)
	p.agent = agent
	register(t, p.consul, "echo-1", "echo", 9001, nil, api.HealthPassing)
	ads := dialADS(t, p.addr, "web-1", "web", map[string]any{"local_app_port": "9300"})
	ads.waitFor("echo endpoint 127.0.0.1:9001", func(c *adsClient) bool {
		eps, _ := c.endpoints("echo")
		return slices.Equal(eps, []string{"127.0.0.1:9001"})
	})
	cancel()
	register(t, p.consul, "echo-2", "echo", 9002, nil, api.HealthPassing)
	ads.waitFor("echo endpoints 9001 and 9002 after the cancel", func(c *adsClient) bool {
		eps, _ := c.endpoints("echo")
		slices.Sort(eps)
		return slices.Equal(eps, []string{"127.0.0.1:9001", "127.0.0.1:9002"})
	})
}

func TestNACKKeepsLastGood(t *testing.T) {
	p := startPlane(t, nil)
	register(t, p.consul, "echo-1", "echo", 9001, nil, api.HealthPassing)
	ads := dialADS(t, p.addr, "web-1", "web", nil)
	ads.waitFor("echo endpoint", func(c *adsClient) bool {
		eps, _ := c.endpoints("echo")
		return len(eps) == 1
	})
	// Wait until the plane saw the ACKs of the snapshot in force.
	var goodVersion string
	waitUntil(t, "current version acknowledged", func() bool {
		n := p.s.Nodes()
		if len(n) == 1 && n[0].Version != "" && n[0].GoodVersion == n[0].Version {
			goodVersion = n[0].Version
			return true
		}
		return false
	})

	nacked := make(chan string, 16)
	ads.setNack(func(r *discovery.DiscoveryResponse) string {
		if r.GetTypeUrl() == resource.ClusterType && r.GetVersionInfo() != goodVersion {
			select {
			case nacked <- r.GetNonce():
			default:
			}
			return "cluster bad: simulated rejection"
		}
		return ""
	})
	register(t, p.consul, "bad-1", "bad", 9200, nil, api.HealthPassing)
	var nonce string
	select {
	case nonce = <-nacked:
	case <-time.After(20 * time.Second):
		t.Fatal("the new cluster set never arrived")
	}
	waitUntil(t, "rollback to the good snapshot", func() bool {
		s, err := p.s.Cache().GetSnapshot("web-1")
		return err == nil && s.GetVersion(resource.ClusterType) == goodVersion
	})
	st := p.s.Status()
	if st.LastRejection == nil || st.LastRejection.Kind != "nack" || st.LastRejection.Node != "web-1" ||
		st.LastRejection.Nonce != nonce || !strings.Contains(st.LastRejection.Error, "simulated rejection") {
		t.Fatalf("last rejection = %+v (nonce %s)", st.LastRejection, nonce)
	}
	if n := metricValue(t, p.s, "meshwarden_controlplane_nacks_total"); n < 1 {
		t.Fatalf("nack counter = %v", n)
	}
	ads.mu.Lock()
	accepted := ads.clusterNames()
	ads.mu.Unlock()
	if accepted["bad"] {
		t.Fatal("client state includes the rejected cluster")
	}

	// A later, different change is tried again and accepted.
	ads.setNack(nil)
	register(t, p.consul, "later-1", "later", 9300, nil, api.HealthPassing)
	ads.waitFor("later cluster after the NACK", func(c *adsClient) bool { return c.clusterNames()["later"] })
}

// TestPolicyApplyAndTranslate drives POST /v1/policies:* over HTTP.
func TestPolicyApplyAndTranslate(t *testing.T) {
	var hooked []string
	var changes []PolicyChange
	p := startPlane(t, func(c *Config) {
		c.OnPolicy = func(ps *ir.PolicySet) error { hooked = append(hooked, ps.Revision); return nil }
		c.RecordChange = func(_ context.Context, pc PolicyChange) error { changes = append(changes, pc); return nil }
	})
	register(t, p.consul, "echo-1", "echo", 9001, map[string]string{"version": "v2"}, api.HealthPassing)
	ads := dialADS(t, p.addr, "web-1", "web", nil)
	ads.waitFor("echo cluster", func(c *adsClient) bool { return c.clusterNames()["echo"] })

	good := `{"Routes":[{"Service":"echo","Subsets":[{"Name":"v2","Selector":{"version":"v2"}}],"Lanes":[{"Lane":"canary","Subset":"v2"}],"Source":"canary.json:1"}]}`
	bad := `{"Routes":[{"Service":"echo","Subsets":[{"Name":"v2","Selector":{"version":"v2"}}],"Weights":[{"Subset":"v2","Weight":40}],"Source":"canary.json:1"}]}`
	tests := []struct {
		name, path, file string
		code             int
		want             string
	}{
		{"translate good", "/v1/policies:translate", good, 200, "echo~v2"},
		{"translate bad", "/v1/policies:translate", bad, 422, "weights sum to 40: they must sum to 100"},
		{"apply bad", "/v1/policies:apply", bad, 422, "weights sum to 40"},
		{"apply good", "/v1/policies:apply", good, 200, `"applied": true`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"canary.json": tc.file})
			req, _ := http.NewRequest(http.MethodPost, p.admin.URL+tc.path, strings.NewReader(string(body)))
			req.Header.Set("X-Meshwarden-Identity", "alice@security")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%s: %d %s; want %d containing %q", tc.path, resp.StatusCode, b, tc.code, tc.want)
			}
		})
	}
	ads.waitFor("applied subset cluster", func(c *adsClient) bool { return c.clusterNames()["echo~v2"] })
	if st := p.s.Status(); st.PolicyRevision == "" || st.LastRejection == nil || st.LastRejection.Kind != "policy" {
		t.Fatalf("status after apply = %+v", st)
	}
	if len(hooked) != 1 || hooked[0] != p.s.PolicyRevision() {
		t.Fatalf("OnPolicy calls = %v, want once with the applied revision", hooked)
	}
	// Exactly the applied set is recorded, with who sent it and its files;
	// rejected sets and translations are not.
	if len(changes) != 1 {
		t.Fatalf("RecordChange calls = %d, want 1", len(changes))
	}
	c := changes[0]
	// The identity header the caller typed is ignored: an insecure plane
	// records that it did not authenticate anyone.
	if c.Identity != "unauthenticated (--insecure-dev)" || c.Source != "api" || c.Previous != "" || c.Set.Revision != p.s.PolicyRevision() || string(c.After["canary.json"]) != good {
		t.Fatalf("recorded change = %+v", c)
	}
	// Re-applying the same set is not a change.
	body, _ := json.Marshal(map[string]string{"canary.json": good})
	resp, err := http.Post(p.admin.URL+"/v1/policies:apply", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(changes) != 1 {
		t.Fatalf("re-applying the same set recorded %d changes, want still 1", len(changes))
	}
}

// TestRegisterInConsul registers the plane with its health check and
// deregisters it.
func TestRegisterInConsul(t *testing.T) {
	p := startPlane(t, nil)
	adminAddr := strings.TrimPrefix(p.admin.URL, "http://")
	reg, err := RegisterInConsul(context.Background(), p.consul, p.addr, adminAddr, adminAddr)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "plane passing in consul", func() bool {
		entries, _, err := p.consul.Health().Service(meshnames.PlaneServiceName, "", true, nil)
		return err == nil && len(entries) == 1 && entries[0].Service.Meta["admin_addr"] == adminAddr
	})
	if err := reg.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	entries, _, err := p.consul.Health().Service(meshnames.PlaneServiceName, "", false, nil)
	if err != nil || len(entries) != 0 {
		t.Fatalf("after deregister: %d entries, err %v", len(entries), err)
	}
}

func waitUntil(t testing.TB, what string, ok func() bool) {
	t.Helper()
	probe.Until(t, what, 20*time.Second, ok)
}

func get(t testing.TB, url string, code int) string {
	t.Helper()
	got, b := probe.Get(t, url)
	if got != code {
		t.Fatalf("GET %s: %d %s, want %d", url, got, b, code)
	}
	return string(b)
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(get(t, url, 200)), v); err != nil {
		t.Fatal(err)
	}
}

// metricValue sums every sample of the named metric in the plane's registry.
func metricValue(t testing.TB, s *Server, name string) float64 {
	t.Helper()
	return promseries.Sum(t, s.cfg.Registry, name, nil)
}
