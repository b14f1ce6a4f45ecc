package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"

	"github.com/meshwarden/meshwarden/controlplane/rollout"
	"github.com/meshwarden/meshwarden/ir"
)

// promFake answers every query with value (or err, or no sample).
type promFake struct {
	mu    sync.Mutex
	value float64
	empty bool
	err   error
}

func (p *promFake) set(v float64, empty bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.value, p.empty, p.err = v, empty, err
}

func (p *promFake) Query(context.Context, string) ([]float64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	if p.empty {
		return nil, nil
	}
	return []float64{p.value}, nil
}

// eventLog collects recorded decisions.
type eventLog struct {
	mu  sync.Mutex
	evs []RolloutEvent
}

func (l *eventLog) record(_ context.Context, e RolloutEvent) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, e)
	return nil
}

func (l *eventLog) actions() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		s := e.Decision.Action
		if e.Decision.Result != "" {
			s += ":" + e.Decision.Result
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// wholeLoader reads each file as a complete ir.PolicySet (rollouts too).
func wholeLoader(files map[string][]byte, _ *ir.Catalog) (*ir.PolicySet, error) {
	out := &ir.PolicySet{}
	for name, b := range files {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, errors.New(name + ": " + err.Error())
		}
	}
	return out, nil
}

func max01() *float64 { v := 0.01; return &v }

func paymentsRoute(weights ...ir.WeightedSubset) ir.Route {
	r := ir.Route{Service: "payments", Source: "test",
		Subsets: []ir.Subset{{Name: "v1", Selector: map[string]string{"version": "v1"}}, {Name: "v2", Selector: map[string]string{"version": "v2"}}}}
	if len(weights) == 0 {
		r.DefaultSubset = "v1"
	}
	r.Weights = weights
	return r
}

func paymentsRollout(name string, steps ...int) ir.Rollout {
	r := ir.Rollout{Name: name, Service: "payments", Subset: "v2", StableSubset: "v1", Interval: 100 * time.Millisecond,
		FailureLimit: 2, InconclusiveLimit: 2, HealthTimeout: 2 * time.Second, Source: "test:1",
		Metrics: []ir.RolloutMetric{{Name: "error-rate", Query: `rate5xx{subset="{{subset}}"}`, Max: max01()}}}
	for _, w := range steps {
		r.Steps = append(r.Steps, ir.RolloutStep{Weight: w})
	}
	return r
}

type rolloutPlane struct {
	*plane
	prom *promFake
	log  *eventLog
}

// paymentsSet is revision r1: the payments route and the rollouts.
func paymentsSet(rollouts ...ir.Rollout) *ir.PolicySet {
	return &ir.PolicySet{Revision: "r1", Routes: []ir.Route{paymentsRoute()}, Rollouts: rollouts}
}

// startAwaitingApproval starts a plane with paymentsSet holding rollout
// payments-v2 over steps whose second step needs approval, and waits until
// the rollout stops there.
func startAwaitingApproval(t *testing.T, steps ...int) (*rolloutPlane, *ir.PolicySet) {
	t.Helper()
	rule := paymentsRollout("payments-v2", steps...)
	rule.Steps[1].Approval = true
	ps := paymentsSet(rule)
	p := startRolloutPlane(t, nil, ps)
	p.waitPhase(t, "payments-v2", rollout.AwaitingApproval)
	return p, ps
}

func startRolloutPlane(t *testing.T, consul *api.Client, ps *ir.PolicySet) *rolloutPlane {
	t.Helper()
	rp := &rolloutPlane{prom: &promFake{}, log: &eventLog{}}
	mutate := func(c *Config) {
		c.Policies, c.LoadPolicies = ps, wholeLoader
		c.Rollouts = RolloutOptions{Querier: rp.prom, Record: rp.log.record, Tick: 20 * time.Millisecond}
	}
	if consul == nil {
		rp.plane = startPlane(t, mutate)
	} else {
		rp.plane = startPlaneOn(t, consul, mutate)
	}
	return rp
}

// canaryWeight is the v2 share the translator sees now.
func (p *rolloutPlane) canaryWeight() int {
	ps := p.s.withIntentions(p.s.currentPolicy())
	for _, r := range ps.Routes {
		if r.Service != "payments" {
			continue
		}
		if len(r.Weights) == 0 {
			if r.DefaultSubset == "v2" {
				return 100
			}
			return 0
		}
		for _, w := range r.Weights {
			if w.Subset == "v2" {
				return int(w.Weight)
			}
		}
	}
	return 0
}

func (p *rolloutPlane) record(t *testing.T, name string) *RolloutRecord {
	t.Helper()
	recs, err := p.s.Rollouts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Name == name {
			return r
		}
	}
	return nil
}

func (p *rolloutPlane) waitPhase(t *testing.T, name string, want rollout.Phase) *RolloutRecord {
	t.Helper()
	var r *RolloutRecord
	waitUntil(t, name+" "+string(want), func() bool {
		r = p.record(t, name)
		if r == nil || r.State.Phase != want {
			return false
		}
		// Stored; and what the overlay serves follows it.
		c := p.s.rollouts
		c.mu.Lock()
		defer c.mu.Unlock()
		m := c.committed[name]
		return m != nil && m.State.Phase == want
	})
	return r
}

func applySet(t *testing.T, p *rolloutPlane, ps *ir.PolicySet) {
	t.Helper()
	b, err := json.Marshal(ps)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.s.ApplyPolicies(context.Background(), map[string][]byte{"set.json": b}); err != nil {
		t.Fatal(err)
	}
}

// gatewayWeights reads the payments split from a real ADS stream.
func gatewayWeights(c *adsClient) map[string]uint32 {
	out := map[string]uint32{}
	for _, a := range c.last[resource.RouteType].GetResources() {
		var rc routev3.RouteConfiguration
		if err := a.UnmarshalTo(&rc); err != nil {
			c.t.Fatal(err)
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				if rt.GetName() != "payments/default" {
					continue
				}
				if cl := rt.GetRoute().GetCluster(); cl != "" {
					out[cl] = 100
				}
				for _, wc := range rt.GetRoute().GetWeightedClusters().GetClusters() {
					out[wc.GetName()] = wc.GetWeight().GetValue()
				}
			}
		}
	}
	return out
}

// TestRolloutPromotesHealthyCanaryThroughXDS: healthy analyses walk the
// steps; every step's weight reaches a real ADS stream; the last promotes
// and the decisions (with evidence) are recorded.
func TestRolloutPromotesHealthyCanaryThroughXDS(t *testing.T) {
	ps := paymentsSet(paymentsRollout("payments-v2", 10, 50, 100))
	p := startRolloutPlane(t, nil, ps)
	register(t, p.consul, "payments-1", "payments", 9001, map[string]string{"version": "v1"}, api.HealthPassing)
	register(t, p.consul, "payments-2", "payments", 9002, map[string]string{"version": "v2"}, api.HealthPassing)
	ads := dialADS(t, p.addr, "web-1", "web", nil)
	seen := map[uint32]bool{}
	ads.waitFor("v2 at 100% on the wire", func(c *adsClient) bool {
		w := gatewayWeights(c)
		seen[w["payments~v2"]] = true
		return w["payments~v2"] == 100
	})
	r := p.waitPhase(t, "payments-v2", rollout.Promoted)
	if !seen[10] && !seen[50] {
		t.Errorf("the stream never carried an intermediate step (saw %v)", seen)
	}
	if r.Override == nil || *r.Override != 100 || p.canaryWeight() != 100 {
		t.Fatalf("promoted rollout must keep v2 at 100%% until the files say so: override %v, effective %d", r.Override, p.canaryWeight())
	}
	acts := p.log.actions()
	if !strings.HasPrefix(acts, "start,step,analysis:pass") || !strings.HasSuffix(acts, "promote") || strings.Count(acts, "step") < 3 {
		t.Fatalf("decisions %s", acts)
	}
	p.log.mu.Lock()
	ev := p.log.evs[2].Decision.Evidence
	p.log.mu.Unlock()
	if len(ev) != 1 || ev[0].Query != `rate5xx{subset="v2"}` || ev[0].Threshold != "<= 0.01" || ev[0].Result != "pass" {
		t.Fatalf("evidence %+v", ev)
	}
	// The operator makes it permanent: the files win, the override goes.
	applySet(t, p, &ir.PolicySet{Revision: "r2", Routes: []ir.Route{paymentsRoute(ir.WeightedSubset{Subset: "v2", Weight: 100})}, Rollouts: ps.Rollouts})
	waitUntil(t, "override dropped once the files carry the result", func() bool {
		r := p.record(t, "payments-v2")
		return r.Override == nil && p.canaryWeight() == 100
	})
}

// TestRollbackOnBreachThenHealthy: a breach at the failure limit moves
// traffic back to where the rollout started; a healthy check ends it.
func TestRollbackOnBreachThenHealthy(t *testing.T) {
	ps := paymentsSet(paymentsRollout("payments-v2", 20, 100))
	p := startRolloutPlane(t, nil, ps)
	p.prom.set(0.5, false, nil)
	r := p.waitPhase(t, "payments-v2", rollout.RollingBack)
	if p.canaryWeight() != 0 || *r.Override != 0 {
		t.Fatalf("after rollback v2 has %d%%", p.canaryWeight())
	}
	if !strings.Contains(r.State.Reason, "error-rate = 0.5 (want <= 0.01)") {
		t.Fatalf("reason %q must carry the evidence", r.State.Reason)
	}
	p.prom.set(0, false, nil)
	p.waitPhase(t, "payments-v2", rollout.RolledBack)
	if got := p.log.actions(); !strings.Contains(got, "analysis:fail,analysis:fail,rollback") || !strings.HasSuffix(got, "healthy") {
		t.Fatalf("decisions %s", got)
	}
}

// TestRollbackEscalatesToWebhook: health does not return within the
// timeout: the rollout escalates and the webhook is called.
func TestRollbackEscalatesToWebhook(t *testing.T) {
	rule := paymentsRollout("payments-v2", 20, 100)
	rule.Webhook = "http://127.0.0.1:1/hook"
	rule.HealthTimeout = 300 * time.Millisecond
	ps := paymentsSet(rule)
	var mu sync.Mutex
	var calls []string
	p := &rolloutPlane{prom: &promFake{value: 1}, log: &eventLog{}}
	p.plane = startPlane(t, func(c *Config) {
		c.Policies, c.LoadPolicies = ps, wholeLoader
		c.Rollouts = RolloutOptions{Querier: p.prom, Record: p.log.record, Tick: 20 * time.Millisecond,
			Notify: func(_ context.Context, url string, e RolloutEvent) error {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, url+" "+e.Decision.Action)
				return nil
			}}
	})
	r := p.waitPhase(t, "payments-v2", rollout.Escalated)
	if !strings.Contains(r.State.Reason, "a person must look") {
		t.Fatalf("reason %q", r.State.Reason)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(calls, ";") != "http://127.0.0.1:1/hook rollback;http://127.0.0.1:1/hook escalate" {
		t.Fatalf("webhook calls %q", calls)
	}
}

// TestRolloutPausesWhenPrometheusIsDown: failing queries are inconclusive,
// never a pass; at the limit the rollout pauses and says why.
func TestRolloutPausesWhenPrometheusIsDown(t *testing.T) {
	ps := paymentsSet(paymentsRollout("payments-v2", 20, 100))
	p := startRolloutPlane(t, nil, ps)
	p.prom.set(0, false, errors.New(`Get "http://127.0.0.1:9/api/v1/query": connect: connection refused`))
	r := p.waitPhase(t, "payments-v2", rollout.Paused)
	if !strings.Contains(r.State.Reason, "connection refused") || p.canaryWeight() != 20 {
		t.Fatalf("paused with %q at %d%%; want the cause and traffic kept at 20%%", r.State.Reason, p.canaryWeight())
	}
	if strings.Contains(p.log.actions(), "pass") {
		t.Fatalf("a failed query counted as a pass: %s", p.log.actions())
	}
	// Prometheus is back: the operator resumes.
	p.prom.set(0, false, nil)
	if _, err := p.s.RolloutCommand(context.Background(), "payments-v2", "promote", "test operator"); err != nil {
		t.Fatal(err)
	}
	p.waitPhase(t, "payments-v2", rollout.Promoted)
}

// TestRolloutEmptyResultIsInconclusive: a query that returns no sample
// (e.g. no traffic yet) never promotes.
func TestRolloutEmptyResultIsInconclusive(t *testing.T) {
	rule := paymentsRollout("payments-v2", 20, 100)
	rule.OnInconclusive = "rollback"
	ps := paymentsSet(rule)
	p := startRolloutPlane(t, nil, ps)
	p.prom.set(0, true, nil)
	r := p.waitPhase(t, "payments-v2", rollout.RollingBack)
	if !strings.Contains(r.State.Reason, "0 samples") || p.canaryWeight() != 0 {
		t.Fatalf("reason %q, weight %d", r.State.Reason, p.canaryWeight())
	}
	if got := p.log.actions(); strings.Contains(got, "analysis:pass") || !strings.Contains(got, "analysis:inconclusive,analysis:inconclusive,rollback") {
		t.Fatalf("decisions %s", got)
	}
}

// TestRolloutConflictOnOneServiceRefused: a second rollout of a target
// already being rolled out is refused and moves nothing.
func TestRolloutConflictOnOneServiceRefused(t *testing.T) {
	first := paymentsRollout("first", 20, 100)
	first.Steps[0].Approval = true // holds the target
	ps := paymentsSet(first)
	p := startRolloutPlane(t, nil, ps)
	p.waitPhase(t, "first", rollout.AwaitingApproval)
	applySet(t, p, &ir.PolicySet{Revision: "r2", Routes: ps.Routes, Rollouts: []ir.Rollout{first, paymentsRollout("second", 50, 100)}})
	r := p.waitPhase(t, "second", rollout.Refused)
	if !strings.Contains(r.State.Reason, "already being rolled out by first") || r.Override != nil || p.canaryWeight() != 0 {
		t.Fatalf("refusal %q override %v weight %d", r.State.Reason, r.Override, p.canaryWeight())
	}
	// Once the first ends, the second starts by itself.
	if _, err := p.s.RolloutCommand(context.Background(), "first", "abort", "alice"); err != nil {
		t.Fatal(err)
	}
	p.waitPhase(t, "second", rollout.Promoted)
	if p.canaryWeight() != 100 {
		t.Fatalf("second rollout promoted, v2 at %d%%", p.canaryWeight())
	}
}

// TestRolloutManualEditPauses: someone edits the CanaryRoute during a
// rollout: the edit is in force and the rollout pauses; promote resumes.
func TestRolloutManualEditPauses(t *testing.T) {
	p, ps := startAwaitingApproval(t, 20, 40, 100)
	edited := paymentsRoute(ir.WeightedSubset{Subset: "v1", Weight: 95}, ir.WeightedSubset{Subset: "v2", Weight: 5})
	applySet(t, p, &ir.PolicySet{Revision: "r2", Routes: []ir.Route{edited}, Rollouts: ps.Rollouts})
	r := p.waitPhase(t, "payments-v2", rollout.Paused)
	if !strings.Contains(r.State.Reason, "edited outside the rollout") || p.canaryWeight() != 5 || r.Override != nil {
		t.Fatalf("reason %q, weight %d (want the edit's 5)", r.State.Reason, p.canaryWeight())
	}
	// Resuming returns to the approval gate (the edit stays in force until
	// the step is approved), the second promote approves it.
	r, err := p.s.RolloutCommand(context.Background(), "payments-v2", "promote", "alice")
	if err != nil || r.State.Phase != rollout.AwaitingApproval || p.canaryWeight() != 5 {
		t.Fatalf("resume: %v %v weight %d", r.State.Phase, err, p.canaryWeight())
	}
	if _, err := p.s.RolloutCommand(context.Background(), "payments-v2", "promote", "alice"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "resumed at the step's weight", func() bool { return p.canaryWeight() == 40 })
	if !strings.Contains(p.log.actions(), "pause,resume,await-approval,resume,step") {
		t.Fatalf("decisions %s", p.log.actions())
	}
}

// TestRolloutResumesAfterPlaneRestart: the state lives in Consul KV; a new
// plane on the same Consul continues the rollout where it was.
func TestRolloutResumesAfterPlaneRestart(t *testing.T) {
	p, ps := startAwaitingApproval(t, 30, 60, 100)
	started := p.record(t, "payments-v2").Started
	p.stop()
	q := startRolloutPlane(t, p.consul, ps)
	waitUntil(t, "restarted plane serves the rollout's weight", func() bool { return q.canaryWeight() == 30 })
	r := q.record(t, "payments-v2")
	if r.State.Phase != rollout.AwaitingApproval || !r.Started.Equal(started) {
		t.Fatalf("after restart: %s started %v, want AwaitingApproval from %v", r.State.Phase, r.Started, started)
	}
	if q.log.actions() != "" {
		t.Fatalf("a restarted plane must not start over: %s", q.log.actions())
	}
	if _, err := q.s.RolloutCommand(context.Background(), "payments-v2", "promote", "alice"); err != nil {
		t.Fatal(err)
	}
	q.waitPhase(t, "payments-v2", rollout.Promoted)
}

// TestRolloutAdminAPI: list, promote and abort over the admin API; an
// abort moves traffic back.
func TestRolloutAdminAPI(t *testing.T) {
	p, _ := startAwaitingApproval(t, 30, 100)
	var recs []RolloutRecord
	getJSON(t, p.admin.URL+"/v1/rollouts", &recs)
	if len(recs) != 1 || recs[0].Target != "CanaryRoute/payments" || recs[0].State.Weight != 30 {
		t.Fatalf("GET /v1/rollouts: %+v", recs)
	}
	post := func(path string, code int) {
		t.Helper()
		resp, err := p.admin.Client().Post(p.admin.URL+path, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Fatalf("POST %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
	post("/v1/rollouts/nope/promote", 404)
	post("/v1/rollouts/payments-v2/sideways", 409)
	post("/v1/rollouts/payments-v2/abort", 200)
	r := p.waitPhase(t, "payments-v2", rollout.Aborted)
	if p.canaryWeight() != 0 || !strings.Contains(r.State.Reason, "insecure-dev") {
		t.Fatalf("abort: weight %d reason %q", p.canaryWeight(), r.State.Reason)
	}
	post("/v1/rollouts/payments-v2/abort", 409)
}

// TestRollbackOfFilterRelease: a rollout of a FilterRelease moves its
// rolloutPercent and puts it back on breach.
func TestRollbackOfFilterRelease(t *testing.T) {
	f := ir.Filter{Name: "dye", Config: json.RawMessage(`{}`), SHA256: strings.Repeat("a", 64), PreviousSHA256: strings.Repeat("b", 64), RolloutPercent: 0, Source: "test"}
	rule := ir.Rollout{Name: "dye-next", Filter: "dye", Interval: 100 * time.Millisecond, FailureLimit: 1, HealthTimeout: 2 * time.Second,
		Steps:   []ir.RolloutStep{{Weight: 25}, {Weight: 100}},
		Metrics: []ir.RolloutMetric{{Name: "filter-errors", Query: `errors{filter="{{service}}"}`, Max: max01()}}}
	ps := &ir.PolicySet{Revision: "r1", Filters: []ir.Filter{f}, Rollouts: []ir.Rollout{rule}}
	p := startRolloutPlane(t, nil, ps)
	percent := func() uint32 { return p.s.withIntentions(p.s.currentPolicy()).Filters[0].RolloutPercent }
	p.prom.set(0.2, false, nil)
	p.waitPhase(t, "dye-next", rollout.RollingBack)
	if percent() != 0 {
		t.Fatalf("rolloutPercent %d after rollback, want 0", percent())
	}
	p.log.mu.Lock()
	q := p.log.evs[2].Decision.Evidence[0].Query
	p.log.mu.Unlock()
	if q != `errors{filter="dye"}` || !strings.Contains(p.log.actions(), "step,analysis:fail,rollback") {
		t.Fatalf("query %q decisions %s", q, p.log.actions())
	}
}

// TestRolloutPausesWhenPrometheusIsUnreachable: the real Prometheus client
// against an address nothing listens on: the rollout pauses, traffic stays
// at the step's weight, and the reason names the connection error.
func TestRolloutPausesWhenPrometheusIsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	q, err := rollout.NewPrometheus("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	ps := paymentsSet(paymentsRollout("payments-v2", 20, 100))
	p := &rolloutPlane{log: &eventLog{}}
	p.plane = startPlane(t, func(c *Config) {
		c.Policies, c.LoadPolicies = ps, wholeLoader
		c.Rollouts = RolloutOptions{Querier: q, Record: p.log.record, Tick: 20 * time.Millisecond}
	})
	r := p.waitPhase(t, "payments-v2", rollout.Paused)
	if !strings.Contains(r.State.Reason, "connection refused") || !strings.Contains(r.State.Reason, addr) || p.canaryWeight() != 20 {
		t.Fatalf("reason %q, weight %d", r.State.Reason, p.canaryWeight())
	}
}

// TestRolloutWithoutPrometheusSaysSo: a plane started without
// --prometheus-url pauses rollouts and says what to add.
func TestRolloutWithoutPrometheusSaysSo(t *testing.T) {
	ps := paymentsSet(paymentsRollout("payments-v2", 20, 100))
	p := &rolloutPlane{log: &eventLog{}}
	p.plane = startPlane(t, func(c *Config) {
		c.Policies, c.LoadPolicies = ps, wholeLoader
		c.Rollouts = RolloutOptions{Tick: 20 * time.Millisecond}
	})
	r := p.waitPhase(t, "payments-v2", rollout.Paused)
	if !strings.Contains(r.State.Reason, "--prometheus-url") {
		t.Fatalf("reason %q", r.State.Reason)
	}
}
