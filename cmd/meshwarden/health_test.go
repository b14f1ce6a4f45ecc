package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/health"
)

// TestResilienceHealthCommand reads scores from a stand-in of the plane's
// admin API: the table, the exit status on an unhealthy subset, and the
// score in 'policy status'.
func TestResilienceHealthCommand(t *testing.T) {
	st := health.Status{Targets: []string{"http://127.0.0.1:9901/metrics"}, ProbeInterval: 5 * time.Second, Threshold: 0.7, LastScrape: time.Now(),
		Scores: []health.Score{
			{Service: "payments", Subset: "v1", Score: 0.98, Signals: health.Signals{P95Seconds: 0.012, RPS: 40}},
			{Service: "payments", Subset: "v2", Score: 0.31, Unhealthy: true, Signals: health.Signals{P95Seconds: 0.4, ErrorRate: 0.5, RPS: 4}},
		}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(st) })
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"policy_revision": "abc", "health": st})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	plane := strings.TrimPrefix(srv.URL, "http://")
	out, _, err := runCLI(t, "health", "--plane", plane, "--insecure")
	if err == nil || !strings.Contains(err.Error(), "1 of 2 subsets are UNHEALTHY") {
		t.Fatalf("health with an unhealthy subset: err %v", err)
	}
	for _, want := range []string{"payments             v2         0.310 UNHEALTHY", "errors=50.0%", "0.980 ok", "probing every 5s"} {
		if !strings.Contains(out, want) {
			t.Errorf("health output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCLI(t, "policy", "status", "--plane", plane, "--insecure")
	if err != nil || !strings.Contains(out, "subset health:") || !strings.Contains(out, "UNHEALTHY") {
		t.Fatalf("policy status (%v):\n%s", err, out)
	}
	st.Scores = st.Scores[:1]
	if _, _, err := runCLI(t, "health", "--plane", plane, "--insecure"); err != nil {
		t.Fatalf("health with every subset healthy: %v", err)
	}
}

func TestResilienceHealthFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--health-threshold", "1.5"},
		{"--health-scrape", "127.0.0.1:9901"},
		{"--health-interval", "10ms"},
	} {
		_, _, err := runCLI(t, append([]string{"controlplane", "--insecure-dev"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "--health-") {
			t.Errorf("%v: err %v, want a refusal naming the flag", args, err)
		}
	}
}
