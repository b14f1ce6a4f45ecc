package promagent

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestScrapeQueryAndRules: a real Prometheus scrapes a target, answers a
// query on what it scraped and evaluates a recording rule.
func TestScrapeQueryAndRules(t *testing.T) {
	if _, err := FindBinary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "demo_requests_total", Help: "x"}, []string{"code"})
	reg.MustRegister(c)
	c.WithLabelValues("200").Add(40)
	c.WithLabelValues("503").Add(2)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	rules := filepath.Join(t.TempDir(), "r.yml")
	if err := os.WriteFile(rules, []byte("groups:\n- name: g\n  rules:\n  - record: job:demo_requests:sum\n    expr: sum by (job) (demo_requests_total)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := Start(ctx, Options{Targets: []Target{{Job: "demo", Addrs: []string{srv.Listener.Addr().String()}}}, RuleFiles: []string{rules}, ScrapeInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	var got []Sample
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got, err = p.Query(ctx, `job:demo_requests:sum{job="demo"}`)
		if err == nil && len(got) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recording rule never produced a sample: %v %v", got, err)
		}
	}
	if got[0].Value != 42 || got[0].Metric["job"] != "demo" {
		t.Fatalf("got %+v, want 42 for job demo", got)
	}
	ratio, err := p.Query(ctx, `sum(demo_requests_total{code=~"5.."}) / sum(demo_requests_total)`)
	if err != nil || len(ratio) != 1 || fmt.Sprintf("%.4f", ratio[0].Value) != "0.0476" {
		t.Fatalf("error ratio: %+v %v", ratio, err)
	}
	if _, err := p.Query(ctx, `sum(`); err == nil {
		t.Fatal("a malformed query must fail")
	}
}
