package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/rollout"
	"github.com/meshwarden/meshwarden/internal/httpget"
	"github.com/meshwarden/meshwarden/internal/lifecycle"
)

// RolloutPolicy is the demo's (and the e2e's) Rollout of payments v2:
// 20 → 50 → 100 % of undyed traffic, analysed every second on the v2
// error ratio over 5s (Prometheus scrapes every 500ms here), rolled back
// after 2 failed analyses, health checked on v1 after a rollback.
func RolloutPolicy(name string) string {
	return fmt.Sprintf(`apiVersion: meshwarden.io/v1alpha1
kind: Rollout
metadata: {name: %s}
spec:
  canaryRoute: {service: payments, subset: v2}
  steps: [{weight: 20, pause: 3s}, {weight: 50, pause: 2s}, {weight: 100}]
  analysis:
    interval: 1s
    failureLimit: 2
    inconclusiveLimit: 5
    metrics:
      - name: error-rate
        query: (sum(rate(meshwarden_gateway_requests_total{cluster="{{service}}~{{subset}}",code=~"5.."}[5s])) or vector(0)) / sum(rate(meshwarden_gateway_requests_total{cluster="{{service}}~{{subset}}"}[5s]))
        max: 0.01
  stepTimeout: 30s
  rollback:
    healthTimeout: 20s
    health:
      - name: stable-error-rate
        query: (sum(rate(meshwarden_gateway_requests_total{cluster="payments~v1",code=~"5.."}[5s])) or vector(0)) / sum(rate(meshwarden_gateway_requests_total{cluster="payments~v1"}[5s]))
        max: 0.01
`, name)
}

// RolloutResult is what the progressive-delivery chapter measured.
type RolloutResult struct {
	Good, Bad rollout.Phase
	// GoodFailed and BadFailed count failed requests during each rollout.
	GoodFailed, BadFailed int
	// DecisionLatency is from the bad v2 starting to fail (at its first
	// step's share) to the rollback decision.
	DecisionLatency time.Duration
	// FailedAfter counts requests that failed more than 500ms after the
	// rollback decision (traffic still on v2): 0 when it moved.
	FailedAfter int
}

// UndyedUser finds a user id the demo's DyePolicy leaves out of its sticky
// canary lane, so that its requests follow the route's weights.
func UndyedUser(ctx context.Context, c *Client) (map[string]string, error) {
	for i := range 50 {
		hdr := map[string]string{"x-user-id": fmt.Sprintf("rollout-user-%d", i)}
		r, err := c.Do(ctx, http.MethodGet, "/pay", hdr, nil)
		if err == nil && r.Status == 200 && r.Echo.Headers["x-mw-dye"] == "" {
			return hdr, nil
		}
	}
	return nil, fmt.Errorf("no user id outside the canary lane in 50 tries")
}

// steady sends rps requests per second and counts failures until stopped.
type steady struct {
	mu    sync.Mutex
	fails []time.Time
	stop  func()
}

func startSteady(c *Client, rps int, hdr map[string]string) *steady {
	s := &steady{}
	s.stop = Paced(rps, func(ctx context.Context) {
		r, err := c.Do(ctx, http.MethodGet, "/pay", hdr, nil)
		if err != nil || r.Status != 200 {
			s.mu.Lock()
			s.fails = append(s.fails, time.Now())
			s.mu.Unlock()
		}
	})
	return s
}

func (s *steady) end() []time.Time {
	s.stop()
	return s.fails
}

// Paced calls each rps times a second, each call in its own goroutine with
// a 10 s deadline, until the returned stop is called; stop waits for the
// calls in flight.
func Paced(rps int, each func(ctx context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		lifecycle.Every(ctx, time.Second/time.Duration(rps), func() {
			wg.Go(func() {
				rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer rcancel()
				each(rctx)
			})
		})
	}()
	return func() { cancel(); <-done }
}

// rolloutChapter runs chapter 9 when the stack has a Prometheus (nil
// otherwise).
func rolloutChapter(ctx context.Context, st *Stack, out io.Writer) *RolloutResult {
	if st.Prometheus == nil {
		return nil
	}
	fmt.Fprintln(out, "\n== 9. Progressive delivery: metric-gated canary, automatic rollback")
	r, err := rolloutStory(ctx, st, out)
	if err != nil {
		fmt.Fprintf(out, "  rollout chapter failed: %v\n", err)
	}
	return r
}

// summary prints the chapter's line of the demo's summary (nothing for a
// nil result).
func (r *RolloutResult) summary(out io.Writer) {
	if r == nil {
		return
	}
	fmt.Fprintf(out, "  rollouts: good v2 %s (%d failed), bad v2 %s (%d failed; rollback decided %s after v2 began failing, %d failed after it)\n",
		r.Good, r.GoodFailed, r.Bad, r.BadFailed, r.DecisionLatency.Round(10*time.Millisecond), r.FailedAfter)
}

// rolloutStory is the progressive-delivery chapter: a good v2 promoted to
// 100 %, then a bad v2 (half its requests fail) rolled back, with every
// decision and its evidence printed.
func rolloutStory(ctx context.Context, st *Stack, out io.Writer) (*RolloutResult, error) {
	c := st.NewClient()
	hdr, err := UndyedUser(ctx, c)
	if err != nil {
		return nil, err
	}
	var v2 *Upstream
	for _, u := range st.Upstreams {
		if u.Service == "payments" && u.Version == "v2" {
			v2 = u
		}
	}
	res := &RolloutResult{}
	file := filepath.Join(st.PolicyDir, "rollout-demo.yaml")
	defer os.Remove(file)
	fmt.Fprintf(out, "  Prometheus %s scrapes the gateway every 500ms; 50 req/s of undyed traffic (x-user-id %s)\n", st.Prometheus.URL(), hdr["x-user-id"])
	for _, run := range []struct {
		name, what string
		fail       int
		want       rollout.Phase
		phase      *rollout.Phase
		failed     *int
	}{
		{"payments-v2-good", "a good v2", 0, rollout.Promoted, &res.Good, &res.GoodFailed},
		{"payments-v2-bad", "a bad v2 (half its answers are 503)", 50, rollout.RolledBack, &res.Bad, &res.BadFailed},
	} {
		fmt.Fprintf(out, "  -- %s: policy %s (steps 20%% → 50%% → 100%%, analysis every 1s, error rate <= 1%%)\n", run.what, run.name)
		load := startSteady(c, 50, hdr)
		if err := os.WriteFile(file, []byte(RolloutPolicy(run.name)), 0o644); err != nil {
			return res, err
		}
		// The bad version starts failing once it has its first share.
		if _, err := waitRolloutPhase(ctx, st, run.name, rollout.Progressing, 20*time.Second); err != nil {
			_ = load.end()
			return res, err
		}
		v2.SetFailPercent(run.fail)
		breach := time.Now()
		rec, err := waitRolloutPhase(ctx, st, run.name, run.want, 45*time.Second)
		time.Sleep(500 * time.Millisecond) // requests in flight end
		fails := load.end()
		v2.SetFailPercent(0)
		failed := len(fails)
		*run.failed = failed
		if rec != nil {
			*run.phase = rec.State.Phase
			printDecisions(out, rec.History)
			for _, d := range rec.History {
				if d.Action != "rollback" || run.fail == 0 {
					continue
				}
				res.DecisionLatency = d.Time.Sub(breach)
				for _, f := range fails {
					if f.After(d.Time.Add(500 * time.Millisecond)) {
						res.FailedAfter++
					}
				}
			}
		}
		if err != nil {
			return res, err
		}
		fmt.Fprintf(out, "     => %s; %d of the requests failed\n", rec.State.Phase, failed)
	}
	fmt.Fprintf(out, "  v2 failing → rollback decision: %s; requests failed later than 0.5s after it: %d (traffic is back on v1)\n",
		res.DecisionLatency.Round(10*time.Millisecond), res.FailedAfter)
	fmt.Fprintf(out, "  every decision is in the plane's signed change log: meshwarden rollout history --changelog %s\n", filepath.Join(st.opts.WorkDir, "policy-changes.jsonl"))
	return res, nil
}

func waitRolloutPhase(ctx context.Context, st *Stack, name string, want rollout.Phase, within time.Duration) (*controlplane.RolloutRecord, error) {
	hc, err := st.AdminClient(st.OperatorTokenFile)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last *controlplane.RolloutRecord
	for {
		if rec, err := getRollout(ctx, hc, st.AdminURL("/v1/rollouts"), name); err == nil && rec != nil {
			last = rec
			if rec.State.Phase == want || rec.State.Phase.Terminal() || (want == rollout.Progressing && rec.State.Weight > 0) {
				return rec, nil
			}
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return last, fmt.Errorf("rollout %s is %s after %s, want %s: %s", name, last.State.Phase, within, want, last.State.Reason)
			}
			return nil, fmt.Errorf("rollout %s did not appear within %s", name, within)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func getRollout(ctx context.Context, hc *http.Client, url, name string) (*controlplane.RolloutRecord, error) {
	resp, err := httpget.Get(ctx, hc, url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var recs []controlplane.RolloutRecord
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		return nil, err
	}
	for i := range recs {
		if recs[i].Name == name {
			return &recs[i], nil
		}
	}
	return nil, nil
}

func printDecisions(out io.Writer, ds []rollout.Decision) {
	for _, d := range ds {
		line := fmt.Sprintf("     %s %-8s step %d  v2 %3d%%", d.Time.Format("15:04:05.000"), d.Action, d.Step+1, d.Weight)
		for _, x := range d.Evidence {
			v := fmt.Sprintf("%.4f", x.Value)
			if x.Error != "" {
				v = x.Error
			}
			line += fmt.Sprintf("  %s %s = %s (want %s)", x.Result, x.Metric, v, x.Threshold)
		}
		if d.Action != "analysis" && d.Reason != "" {
			line += "  " + strings.SplitN(d.Reason, ":", 2)[0]
		}
		fmt.Fprintln(out, line)
	}
}
