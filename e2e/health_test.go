package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/health"
)

// TestResilienceHealthInDemoStack: in the demo's stack the plane scrapes
// the gateway's /metrics and scores the subsets the traffic reaches.
func TestResilienceHealthInDemoStack(t *testing.T) {
	st := startStack(t, false)
	hc, err := st.AdminClient(st.OperatorTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second) // two 15s scrapes with traffic between them
	for {
		for range 10 {
			req, _ := http.NewRequest(http.MethodGet, "http://"+st.GatewayAddr+"/hello", nil)
			req.Host = "payments"
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		resp, err := hc.Get(st.AdminURL("/v1/health"))
		if err != nil {
			t.Fatal(err)
		}
		var hs health.Status
		err = json.NewDecoder(resp.Body).Decode(&hs)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/health: %d %v", resp.StatusCode, err)
		}
		for _, sc := range hs.Scores {
			if sc.Service == "payments" && sc.Signals.Requests > 0 {
				if sc.Score <= 0 || sc.Score > 1 || sc.Signals.ErrorRate != 0 {
					t.Fatalf("payments score %+v", sc)
				}
				t.Logf("payments/%s score %.3f (p95 %.1fms, %.1f rps)", sc.Subset, sc.Score, sc.Signals.P95Seconds*1000, sc.Signals.RPS)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no payments score within 90s: %+v", hs)
		}
		time.Sleep(time.Second)
	}
}
