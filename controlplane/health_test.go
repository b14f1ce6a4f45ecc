package controlplane

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshwarden/meshwarden/controlplane/health"
	"github.com/meshwarden/meshwarden/ir"
)

// TestResilienceHealthAdminAPI runs the plane with a health scrape target
// serving a proxy's request series and reads the scores from GET
// /v1/health, GET /v1/status and /metrics.
func TestResilienceHealthAdminAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_requests_total", Help: "h"}, []string{"route", "cluster", "code"})
	reg.MustRegister(reqs)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.WithLabelValues("r", "shop~v2", "200").Add(5) // traffic between every two scrapes,
		reqs.WithLabelValues("r", "shop~v2", "503").Add(5) // half of it failing
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	p := startPlane(t, func(c *Config) {
		c.Health = health.Config{Targets: []string{proxy.URL}, Interval: 40 * time.Millisecond, FastInterval: 20 * time.Millisecond, Threshold: 0.9}
		c.Policies = &ir.PolicySet{
			Routes: []ir.Route{{Service: "shop", Subsets: []ir.Subset{{Name: "v2", Selector: map[string]string{"version": "v2"}}}, Source: "t:1"}},
			Resilience: []ir.Resilience{{Service: "shop", Source: "t:2",
				ResilienceSettings: ir.ResilienceSettings{Outlier: &ir.Outlier{Consecutive5xx: 5, Consecutive5xxUnhealthy: 1}}}},
		}
	})
	var st health.Status
	deadline := time.Now().Add(10 * time.Second)
	for len(st.Scores) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no health score within 10s")
		}
		time.Sleep(20 * time.Millisecond)
		getJSON(t, p.admin.URL+"/v1/health", &st)
	}
	sc := st.Scores[0]
	if sc.Service != "shop" || sc.Subset != "v2" || sc.Signals.ErrorRate != 0.5 || !sc.Unhealthy || sc.Score > 0.9 {
		t.Fatalf("score %+v", sc)
	}
	if st.ProbeInterval != 20*time.Millisecond {
		t.Fatalf("probe interval %v with an unhealthy subset, want the fast 20ms", st.ProbeInterval)
	}
	// The unhealthy subset's ejection is tightened in what the plane
	// translates; the policy in force is untouched.
	eff := p.s.withIntentions(p.s.currentPolicy())
	if o := eff.Resilience[0].For("v2").Outlier; o == nil || o.Consecutive5xx != 1 {
		t.Fatalf("effective outlier detection of shop/v2: %+v, want consecutive5xx 1", o)
	}
	if o := p.s.currentPolicy().Resilience[0].For("v2").Outlier; o.Consecutive5xx != 5 {
		t.Fatalf("the policy in force was modified: %+v", o)
	}
	var status struct {
		Health *health.Status `json:"health"`
	}
	getJSON(t, p.admin.URL+"/v1/status", &status)
	if status.Health == nil || len(status.Health.Scores) == 0 {
		t.Fatalf("/v1/status has no health: %+v", status)
	}
	resp, err := http.Get(p.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `meshwarden_controlplane_subset_health_score{service="shop",subset="v2"}`) {
		t.Fatal("/metrics has no meshwarden_controlplane_subset_health_score for shop/v2")
	}
}

func TestResilienceHealthOffSays404(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Consul agent")
	}
	p := startPlane(t, nil)
	resp, err := http.Get(p.admin.URL + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body["error"], "--health-scrape") {
		t.Fatalf("without targets: %d %v, want 404 naming --health-scrape", resp.StatusCode, body)
	}
}
