package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshwarden/meshwarden/ir"
)

// proxyMetrics is a registry with the gateway's series, served over HTTP
// as a gateway serves them.
type proxyMetrics struct {
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	saturation *prometheus.GaugeVec
	srv        *httptest.Server
}

func newProxyMetrics(t *testing.T) *proxyMetrics {
	reg := prometheus.NewRegistry()
	p := &proxyMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: requestsMetric, Help: "h"}, []string{"route", "cluster", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: latencyMetric, Help: "h",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"route", "cluster"}),
		saturation: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: saturationMetric, Help: "h"}, []string{"cluster"}),
	}
	reg.MustRegister(p.requests, p.latency, p.saturation)
	p.srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *proxyMetrics) serve(cluster string, n int, code string, latency time.Duration) {
	for range n {
		p.requests.WithLabelValues("r", cluster, code).Inc()
		p.latency.WithLabelValues("r", cluster).Observe(latency.Seconds())
	}
}

func scoreOf(t *testing.T, s *Scorer, svc, subset string) Score {
	t.Helper()
	for _, sc := range s.Status().Scores {
		if sc.Service == svc && sc.Subset == subset {
			return sc
		}
	}
	t.Fatalf("no score for %s/%s in %+v", svc, subset, s.Status().Scores)
	return Score{}
}

func TestResilienceHealthScoreSignals(t *testing.T) {
	p := newProxyMetrics(t)
	ps := &ir.PolicySet{Resilience: []ir.Resilience{{Service: "shop", Source: "t",
		Health: &ir.HealthWeights{Latency: 0.4, Errors: 0.4, Throughput: 0.1, Saturation: 0.1, LatencyTarget: 200 * time.Millisecond}}}}
	s := New(Config{Targets: []string{p.srv.URL}, Interval: time.Minute, FastInterval: time.Second, Policy: func() *ir.PolicySet { return ps }})
	ctx := context.Background()
	p.serve("shop~v1", 10, "200", 3*time.Millisecond)
	p.serve("shop~v2", 10, "200", 3*time.Millisecond)
	s.Probe(ctx)
	p.serve("shop~v1", 100, "200", 3*time.Millisecond)
	p.serve("shop~v2", 100, "200", 3*time.Millisecond)
	s.Probe(ctx)
	if sc := scoreOf(t, s, "shop", "v1"); sc.Score < 0.99 || sc.Unhealthy {
		t.Fatalf("healthy subset scored %+v", sc)
	}
	if s.ProbeInterval() != time.Minute {
		t.Fatalf("probe interval %v while healthy, want 1m", s.ProbeInterval())
	}

	// v2 turns bad: half its requests fail and take 400ms (twice the
	// latency target), its pool is 80% full; v1 loses most of its traffic.
	p.serve("shop~v1", 10, "200", 3*time.Millisecond)
	p.serve("shop~v2", 50, "200", 400*time.Millisecond)
	p.serve("shop~v2", 50, "503", 400*time.Millisecond)
	p.saturation.WithLabelValues("shop~v2").Set(0.8)
	time.Sleep(10 * time.Millisecond) // the window must not be empty
	s.Probe(ctx)
	v2 := scoreOf(t, s, "shop", "v2")
	if v2.Signals.ErrorRate != 0.5 || v2.Signals.P95Seconds < 0.25 || v2.Badness["latency"] != 1 || v2.Signals.Saturation != 0.8 {
		t.Fatalf("v2 signals %+v badness %v", v2.Signals, v2.Badness)
	}
	// 1 - (0.4*1 + 0.4*0.5 + 0.1*drop + 0.1*0.8), drop about 0 (traffic held)
	if v2.Score > 0.33 || v2.Score < 0.2 || !v2.Unhealthy {
		t.Fatalf("v2 score %v (unhealthy %v), want about 0.32 and unhealthy", v2.Score, v2.Unhealthy)
	}
	v1 := scoreOf(t, s, "shop", "v1")
	if v1.Signals.ThroughputDrop < 0.5 {
		t.Fatalf("v1 lost most traffic but throughput drop is %v", v1.Signals.ThroughputDrop)
	}
	if s.ProbeInterval() != time.Second {
		t.Fatalf("probe interval %v while v2 is unhealthy, want the fast 1s", s.ProbeInterval())
	}
	n, err := testutil.GatherAndCount(registryWith(s), "meshwarden_controlplane_subset_health_score")
	if err != nil || n != 2 {
		t.Fatalf("exported %d score series (%v), want 2", n, err)
	}
	if !strings.Contains(FormatScore(v2), "UNHEALTHY") {
		t.Fatalf("text form %q does not say UNHEALTHY", FormatScore(v2))
	}
}

func registryWith(c prometheus.Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c)
	return r
}

// TestResilienceHealthScrapeFailureKeepsScores: a failed scrape is not a
// window (its sums would be wrong); scores stay until a good scrape, and a
// cluster that is gone loses its score.
func TestResilienceHealthScrapeFailureKeepsScores(t *testing.T) {
	p := newProxyMetrics(t)
	up := true
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		p.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer flaky.Close()
	s := New(Config{Targets: []string{flaky.URL}})
	ctx := context.Background()
	p.serve("shop~v1", 10, "200", time.Millisecond)
	s.Probe(ctx)
	p.serve("shop~v1", 10, "503", time.Millisecond)
	s.Probe(ctx)
	if sc := scoreOf(t, s, "shop", "v1"); sc.Signals.ErrorRate != 1 {
		t.Fatalf("score before the outage %+v", sc)
	}
	up = false
	s.Probe(ctx)
	if st := s.Status(); len(st.ScrapeErrors) != 1 || len(st.Scores) != 1 {
		t.Fatalf("during the outage: %+v", st)
	}
	up = true
	p.serve("shop~v1", 10, "200", time.Millisecond)
	s.Probe(ctx)
	// The window runs from the last good scrape: 10 good requests.
	if sc := scoreOf(t, s, "shop", "v1"); sc.Signals.ErrorRate != 0 || sc.Signals.Requests != 10 {
		t.Fatalf("after the outage %+v", sc.Signals)
	}
	p.requests.Reset()
	p.latency.Reset()
	p.serve("shop~v2", 1, "200", time.Millisecond)
	s.Probe(ctx)
	if st := s.Status(); len(st.Scores) != 0 && st.Scores[0].Subset == "v1" {
		t.Fatalf("a cluster that is gone kept its score: %+v", st.Scores)
	}
}

func TestResilienceHealthScrapeFailure(t *testing.T) {
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	defer dead.Close()
	s := New(Config{Targets: []string{dead.URL}})
	s.Probe(context.Background())
	st := s.Status()
	if len(st.ScrapeErrors) != 1 || !strings.Contains(st.ScrapeErrors[0], "HTTP 403") || len(st.Scores) != 0 {
		t.Fatalf("status after a failed scrape: %+v", st)
	}
}

func TestHealthQuantile(t *testing.T) {
	// 100 observations: 90 ≤ 0.1s, 10 in (0.1, 0.5]: p95 is halfway in the second bucket.
	got := quantile(0.95, map[float64]float64{0.1: 90, 0.5: 100, 1e308: 100})
	if got < 0.29 || got > 0.31 {
		t.Fatalf("p95 = %v, want 0.3", got)
	}
}
