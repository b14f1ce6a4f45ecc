package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/rollout"
	"github.com/meshwarden/meshwarden/internal/testenv/promagent"
)

// traffic sends requests through the gateway at a steady rate and keeps,
// per request, when it ended, which version answered and its status.
type traffic struct {
	mu     sync.Mutex
	events []hit
	stop   func()
}

type hit struct {
	at      time.Time
	version string
	status  int
}

func startTraffic(c *demo.Client, rps int, hdr map[string]string) *traffic {
	tr := &traffic{}
	tr.stop = demo.Paced(rps, func(ctx context.Context) {
		r, err := c.Do(ctx, http.MethodGet, "/pay", hdr, nil)
		h := hit{at: time.Now(), status: r.Status}
		if err != nil {
			h.status = -1
		}
		if v := r.Header.Get("x-served-by"); v != "" {
			h.version = strings.TrimPrefix(v, "payments-")
		}
		tr.mu.Lock()
		tr.events = append(tr.events, h)
		tr.mu.Unlock()
	})
	return tr
}

// since returns the hits that ended after t.
func (tr *traffic) since(t time.Time) []hit {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []hit
	for _, h := range tr.events {
		if h.at.After(t) {
			out = append(out, h)
		}
	}
	return out
}

// rolloutStatus asks the plane through the CLI, as an operator would.
func rolloutStatus(t *testing.T, st *demo.Stack, name string) (controlplane.RolloutRecord, string) {
	t.Helper()
	args := append([]string{"rollout", "status", name, "--format", "json"}, st.PlaneFlags()...)
	out, err := exec.Command(testEnv.binary, args...).CombinedOutput()
	if err != nil {
		return controlplane.RolloutRecord{}, fmt.Sprintf("%v: %s", err, out)
	}
	var recs []controlplane.RolloutRecord
	if err := json.Unmarshal(out, &recs); err != nil || len(recs) != 1 {
		return controlplane.RolloutRecord{}, fmt.Sprintf("%v: %s", err, out)
	}
	return recs[0], string(recs[0].State.Phase) + ": " + recs[0].State.Reason
}

func waitRollout(t *testing.T, st *demo.Stack, name string, want rollout.Phase, within time.Duration) controlplane.RolloutRecord {
	t.Helper()
	var rec controlplane.RolloutRecord
	eventually(t, within, name+" "+string(want), func() (bool, string) {
		var msg string
		rec, msg = rolloutStatus(t, st, name)
		return rec.State.Phase == want, msg
	})
	return rec
}

// watchRouteVersion polls the gateway's config_dump every 10ms and, when
// the returned func is called, stops and returns when its accepted route
// version changed.
func watchRouteVersion(t *testing.T, st *demo.Stack) func() []time.Time {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []time.Time, 1)
	go func() {
		var out []time.Time
		last := ""
		for ctx.Err() == nil {
			var d struct {
				Versions map[string]string `json:"versions"`
			}
			if resp, err := http.Get("http://" + st.GatewayAdmin + "/config_dump"); err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&d)
				resp.Body.Close()
			}
			v := d.Versions["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"]
			if v != "" && v != last {
				if last != "" {
					out = append(out, time.Now())
				}
				last = v
			}
			time.Sleep(10 * time.Millisecond)
		}
		done <- out
	}()
	return func() []time.Time { cancel(); return <-done }
}

// rolloutPlaneKilled: the plane is killed -9 while a rollout waits at an
// approval gate; traffic keeps its split meanwhile, the restarted plane
// serves the rollout's share from its first snapshot, resumes the same
// rollout (not a new one) and a promote finishes it.
func rolloutPlaneKilled(t *testing.T, st *demo.Stack, tr *traffic) {
	policy := strings.Replace(demo.RolloutPolicy("payments-v2-restart"), "steps: [{weight: 20, pause: 3s}, {weight: 50, pause: 2s}, {weight: 100}]",
		"steps: [{weight: 20}, {weight: 50, approval: true}, {weight: 100}]", 1)
	if !strings.Contains(policy, "approval: true") {
		t.Fatal("the demo's Rollout policy changed: update this test")
	}
	writePolicy(t, st, "rollout.yaml", policy)
	t.Cleanup(func() { os.Remove(filepath.Join(st.PolicyDir, "rollout.yaml")) })
	before := waitRollout(t, st, "payments-v2-restart", rollout.AwaitingApproval, 30*time.Second)
	killed := time.Now()
	st.Plane.Kill()
	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.StartPlane(ctx); err != nil {
		t.Fatal(err)
	}
	after := waitRollout(t, st, "payments-v2-restart", rollout.AwaitingApproval, 30*time.Second)
	if !after.Started.Equal(before.Started) || after.State.Weight != 50-30 || len(after.History) != len(before.History) {
		t.Fatalf("after the restart: started %v (was %v), weight %d, %d decisions (was %d): want the same rollout, untouched",
			after.Started, before.Started, after.State.Weight, len(after.History), len(before.History))
	}
	time.Sleep(time.Second) // the gateway reconnects and gets its snapshot
	// Every second from the kill on, v2 kept its 20 %.
	hits := tr.since(killed)
	for sec := 0; sec < int(time.Since(killed).Seconds())-1; sec++ {
		from, to := killed.Add(time.Duration(sec)*time.Second), killed.Add(time.Duration(sec+1)*time.Second)
		v2 := 0
		for _, h := range hits {
			if h.at.After(from) && h.at.Before(to) && h.version == "v2" {
				v2++
			}
		}
		if v2 == 0 {
			t.Errorf("second %d after the kill: no request reached v2 (the rollout's 20%% was lost)", sec)
		}
	}
	args := append([]string{"rollout", "promote", "payments-v2-restart"}, st.PlaneFlags()...)
	if out, err := exec.Command(testEnv.binary, args...).CombinedOutput(); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	waitRollout(t, st, "payments-v2-restart", rollout.Promoted, 30*time.Second)
}

func writePolicy(t *testing.T, st *demo.Stack, file, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(st.PolicyDir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRolloutOnRealPrometheus runs rollouts on the whole product: real
// Consul, the plane (with --prometheus-url), the gateway, two upstream
// versions and a real Prometheus scraping the gateway and the plane with
// the shipped recording rules.
func TestRolloutOnRealPrometheus(t *testing.T) {
	if _, err := promagent.FindBinary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	st := startStackOpts(t, demo.StackOptions{Prometheus: true, PrometheusScrape: 500 * time.Millisecond,
		PrometheusRules: []string{filepath.Join(repoRoot(), "deploy", "prometheus", "meshwarden.rules.yml")}})
	c := st.NewClient()
	hdr, err := demo.UndyedUser(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	tr := startTraffic(c, 50, hdr)
	t.Cleanup(tr.stop)
	t.Run("RolloutPromotesGoodV2", func(t *testing.T) { rolloutGoodV2(t, st, tr) })
	t.Run("RolloutAPIAuthenticated", func(t *testing.T) { rolloutAPIAuth(t, st) })
	t.Run("RollbackBadV2", func(t *testing.T) { rollbackBadV2(t, st, tr) })
	t.Run("RollbackBadFilterRelease", func(t *testing.T) { rollbackBadRelease(t, st) })
	t.Run("RolloutResumesAfterPlaneKilled", func(t *testing.T) { rolloutPlaneKilled(t, st, tr) })
}

func rolloutGoodV2(t *testing.T, st *demo.Stack, tr *traffic) {
	start := time.Now()
	writePolicy(t, st, "rollout.yaml", demo.RolloutPolicy("payments-v2-good"))
	rec := waitRollout(t, st, "payments-v2-good", rollout.Promoted, 45*time.Second)
	t.Logf("good v2 promoted in %s: %d decisions", time.Since(start).Round(100*time.Millisecond), len(rec.History))
	var v1, v2, failed int
	eventually(t, 10*time.Second, "all traffic on v2", func() (bool, string) {
		hits := tr.since(time.Now().Add(-time.Second))
		v1, v2, failed = 0, 0, 0
		for _, h := range hits {
			switch {
			case h.status != 200:
				failed++
			case h.version == "v1":
				v1++
			case h.version == "v2":
				v2++
			}
		}
		return v1 == 0 && v2 > 10, fmt.Sprintf("last second: v1 %d, v2 %d, failed %d", v1, v2, failed)
	})
	for _, h := range tr.since(start) {
		if h.status != 200 {
			t.Fatalf("a healthy rollout failed a request: %+v", h)
		}
	}
}

// rolloutAPIAuth: the rollout endpoints answer only to a Consul token
// with the right; the operator's abort of a finished rollout says why not.
func rolloutAPIAuth(t *testing.T, st *demo.Stack) {
	cfg, err := auth.PlaneTLS(st.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/rollouts"},
		{http.MethodPost, "/v1/rollouts/payments-v2-good/abort"},
	} {
		req, _ := http.NewRequest(c.method, st.AdminURL(c.path), nil)
		resp, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous %s %s: %d, want 401", c.method, c.path, resp.StatusCode)
		}
	}
	args := append([]string{"rollout", "abort", "payments-v2-good"}, st.PlaneFlags()...)
	out, err := exec.Command(testEnv.binary, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already Promoted") {
		t.Errorf("operator abort of a promoted rollout: %v\n%s", err, out)
	}
}

func rollbackBadV2(t *testing.T, st *demo.Stack, tr *traffic) {
	v2 := st.Upstreams[1]
	start := time.Now()
	// Replacing the promoted rollout's document drops its hold on the
	// route (the files say v1) and starts the new one from 0 %; v2 turns
	// bad once it has its first share.
	writePolicy(t, st, "rollout.yaml", demo.RolloutPolicy("payments-v2-bad"))
	eventually(t, 20*time.Second, "payments-v2-bad at its first step", func() (bool, string) {
		rec, msg := rolloutStatus(t, st, "payments-v2-bad")
		return rec.State.Weight == 20, msg
	})
	routes := watchRouteVersion(t, st)
	v2.SetFailPercent(50)
	defer v2.SetFailPercent(0)
	breach := time.Now()
	rec := waitRollout(t, st, "payments-v2-bad", rollout.RolledBack, 45*time.Second)
	changes := routes()
	var firstFail, rolledBack time.Time
	var breaches, peak int
	for _, d := range rec.History {
		t.Logf("  %s %-10s step %d weight %3d%% %s %s", d.Time.Format("15:04:05.000"), d.Action, d.Step+1, d.Weight, d.Result, d.Reason)
		if d.Action == "step" {
			peak = max(peak, d.Weight)
		}
		if d.Action == "analysis" && d.Result == "fail" && d.Reason == "" {
			breaches++
		}
		if d.Action == "rollback" {
			rolledBack = d.Time
		}
	}
	if rolledBack.IsZero() || breaches != 2 {
		t.Fatalf("want a rollback after exactly failureLimit (2) failed analyses, got %d: %+v", breaches, rec.History)
	}
	var lastV2 time.Time
	failed := 0
	for _, h := range tr.since(start) {
		if h.status != 200 {
			failed++
			if firstFail.IsZero() {
				firstFail = h.at
			}
		}
		if h.version == "v2" && h.at.After(lastV2) {
			lastV2 = h.at
		}
	}
	// Traffic moved: nothing reaches v2 a bounded time after the decision,
	// and nothing fails afterwards.
	time.Sleep(2 * time.Second)
	t.Logf("decision → last request on v2: %s", lastV2.Sub(rolledBack).Round(10*time.Millisecond))
	for _, h := range tr.since(rolledBack.Add(1500 * time.Millisecond)) {
		if h.status != 200 || h.version != "v1" {
			var rel []string
			for _, c := range changes {
				rel = append(rel, c.Sub(rolledBack).Round(time.Millisecond).String())
			}
			t.Fatalf("%s after the rollback a request went to %q with status %d (gateway route changes at %v from the decision)", h.at.Sub(rolledBack).Round(time.Millisecond), h.version, h.status, rel)
		}
	}
	var applied time.Time
	for _, c := range changes {
		if c.After(rolledBack) {
			applied = c
			break
		}
	}
	if applied.IsZero() {
		t.Fatalf("the gateway's routes did not change after the rollback decision (%v)", changes)
	}
	t.Logf("decision → the gateway runs the new routes: %s", applied.Sub(rolledBack).Round(time.Millisecond))
	intervals := rolledBack.Sub(breach).Seconds() / 1.0
	t.Logf("decision latency: v2 failing → rollback decision %s (%.1f analysis intervals; first failed request seen %s after the breach); decision → last request on v2 %s; %d requests failed in all",
		rolledBack.Sub(breach).Round(10*time.Millisecond), intervals, firstFail.Sub(breach).Round(10*time.Millisecond), lastV2.Sub(rolledBack).Round(10*time.Millisecond), failed)
	// failureLimit (2) intervals, plus the scrape and the two scrapes a
	// new 5xx counter series needs before rate() sees it, plus the
	// retries (2) that hide some failures: bounded by 8.
	if intervals > 8 {
		t.Errorf("rollback took %.1f intervals after v2 began failing; want within 8", intervals)
	}
	// The budget: v2 at its peak share failing half its requests from the
	// first failure to the decision (+0.5s to move), at 50 req/s.
	if budget := int((rolledBack.Sub(breach).Seconds()+0.5)*50*float64(peak)/100*0.5) + 5; failed > budget {
		t.Errorf("%d requests failed, more than the analysis budget %d", failed, budget)
	}
}

func rollbackBadRelease(t *testing.T, st *demo.Stack) {
	good, err := os.ReadFile(filepath.Join(testEnv.filtersDir, "dye.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	goodSum := sha256.Sum256(good)
	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	copy(garbage, "\x00asm\x01\x00\x00\x00") // a wasm header, then noise: fails to compile
	broken := filepath.Join(testEnv.filtersDir, "rollout-broken.wasm")
	if err := os.WriteFile(broken, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(broken) })
	badSum := sha256.Sum256(garbage)
	writePolicy(t, st, "rollout.yaml", fmt.Sprintf(`apiVersion: meshwarden.io/v1alpha1
kind: FilterRelease
metadata: {name: dye-next}
spec:
  filter: dye
  sha256: %s
  previousSha256: %s
  rolloutPercent: 0
---
apiVersion: meshwarden.io/v1alpha1
kind: Rollout
metadata: {name: dye-next}
spec:
  filterRelease: {filter: dye}
  steps: [{rolloutPercent: 100, pause: 6s}]
  analysis:
    interval: 1s
    metrics:
      - name: module-errors
        query: sum(increase(meshwarden_gateway_filter_module_errors_total{filter="mw.dye"}[20s])) or vector(0)
        max: 0
  rollback:
    healthTimeout: 20s
    health:
      - name: stable-error-rate
        query: meshwarden:gateway_cluster_error_ratio:rate1m{cluster="payments~v1"}
        max: 0.01
`, hex.EncodeToString(badSum[:]), hex.EncodeToString(goodSum[:])))
	rec := waitRollout(t, st, "dye-next", rollout.RolledBack, 45*time.Second)
	if rec.State.Weight != 0 || !strings.Contains(fmt.Sprint(rec.History), "module-errors") {
		t.Fatalf("rolled back to %d%%: %+v", rec.State.Weight, rec.History)
	}
	eventually(t, 15*time.Second, "the gateway runs the previous dye build again", func() (bool, string) {
		f, msg := gatewayFilter(st, "mw.dye")
		return f != nil && f.SHA256 == hex.EncodeToString(goodSum[:]) && f.State != "last_known_good", msg
	})
}
