package rollout

import (
	"context"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshwarden/meshwarden/internal/testenv/promagent"
)

// lockedActuator records weights from the test's loop.
type lockedActuator struct {
	mu sync.Mutex
	w  []int
}

func (a *lockedActuator) weight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.w) == 0 {
		return 0
	}
	return a.w[len(a.w)-1]
}

func (a *lockedActuator) SetWeight(_ context.Context, w int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.w = append(a.w, w)
	return nil
}

// TestRollbackOnRealPrometheus: a real Prometheus scrapes a gateway-like
// endpoint; the canary's error rate rises after the first step and the
// engine, querying Prometheus with the same PromQL a user writes, rolls
// back within the failure limit.
func TestRollbackOnRealPrometheus(t *testing.T) {
	if _, err := promagent.FindBinary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshwarden_gateway_requests_total", Help: "x"}, []string{"route", "cluster", "code"})
	reg.MustRegister(reqs)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := promagent.Start(ctx, promagent.Options{Targets: []promagent.Target{{Job: "meshwarden-gateway", Addrs: []string{srv.Listener.Addr().String()}}}, ScrapeInterval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)

	a := &lockedActuator{}
	// Traffic: 50 req/s, to v2 while it has a share (failing with 503 once
	// failing is set), and to v1.
	var bad sync.Mutex
	failing := false
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			bad.Lock()
			code := "200"
			if failing {
				code = "503"
			}
			bad.Unlock()
			// The canary gets its share of the traffic (as the gateway
			// splits it), the stable subset the rest, and it is healthy.
			if w := a.weight(); w > 0 {
				reqs.WithLabelValues("payments", "payments~v2", code).Inc()
			}
			reqs.WithLabelValues("payments", "payments~v1", "200").Inc()
		}
	}()

	q, err := NewPrometheus(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	s := spec()
	s.Steps = []Step{{Weight: 10}, {Weight: 50}, {Weight: 100}}
	s.Analysis = Analysis{Interval: time.Second, FailureLimit: 2, InconclusiveLimit: 10, Metrics: []Metric{{Name: "error-rate",
		Query: `(sum(rate(meshwarden_gateway_requests_total{cluster="{{service}}~{{subset}}",code=~"5.."}[2s])) or vector(0)) / sum(rate(meshwarden_gateway_requests_total{cluster="{{service}}~{{subset}}"}[2s]))`,
		Max:   ptr(0.05)}},
		Health: []Metric{{Name: "service-error-rate",
			Query: `(sum(rate(meshwarden_gateway_requests_total{route="{{service}}",code=~"5.."}[2s])) or vector(0)) / sum(rate(meshwarden_gateway_requests_total{route="{{service}}"}[2s]))`,
			Max:   ptr(0.05)}}}
	e := &Engine{Spec: s, Querier: q, Actuator: a, Service: "payments"}
	// Let Prometheus hold a few scrapes first.
	time.Sleep(2 * time.Second)
	st, _, err := e.Start(ctx, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var log []Decision
	var breach time.Time
	for i := 0; i < 200 && !st.Phase.Terminal(); i++ {
		time.Sleep(250 * time.Millisecond)
		var ds []Decision
		st, ds, err = e.Tick(ctx, time.Now(), st)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, ds...)
		if st.Weight == 50 && breach.IsZero() {
			bad.Lock()
			failing = true
			bad.Unlock()
			breach = time.Now()
		}
	}
	for _, d := range log {
		t.Logf("%s %-10s step=%d weight=%d %s %s", d.Time.Format("15:04:05.000"), d.Action, d.Step, d.Weight, d.Result, d.Reason)
	}
	if st.Phase != RolledBack {
		t.Fatalf("want rolled back (and healthy) after errors at 50%%, got %+v", st)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if got := a.w; len(got) < 3 || got[len(got)-1] != 0 || got[len(got)-2] != 50 {
		t.Fatalf("weights applied %v, want ..., 50, then back to 0", got)
	}
	var rolled time.Time
	for _, d := range log {
		if d.Action == "rollback" {
			rolled = d.Time
		}
	}
	if took := rolled.Sub(breach); took > 10*time.Second {
		t.Fatalf("breach to rollback took %s; the bound is about FailureLimit+2 intervals", took)
	} else {
		t.Logf("decision latency (errors start -> traffic moved back): %s", took.Round(time.Millisecond))
	}
}
