package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwarden/meshwarden/controlplane"
	"github.com/meshwarden/meshwarden/controlplane/consulwatch"
	"github.com/meshwarden/meshwarden/internal/testenv/consulagent/consultest"
	"github.com/meshwarden/meshwarden/internal/testenv/probe"
	"github.com/meshwarden/meshwarden/policies"
)

// zeroProm answers every query with 0 (a healthy canary).
type zeroProm struct{}

func (zeroProm) Query(context.Context, string) ([]float64, error) { return []float64{0}, nil }

const rolloutSet = `apiVersion: meshwarden.io/v1alpha1
kind: CanaryRoute
metadata: {name: payments}
spec:
  service: payments
  subsets:
    - {name: v1, selector: {version: v1}}
    - {name: v2, selector: {version: v2}}
  defaultSubset: v1
---
apiVersion: meshwarden.io/v1alpha1
kind: Rollout
metadata: {name: payments-v2}
spec:
  canaryRoute: {service: payments, subset: v2}
  steps: [{weight: 30, approval: true}, {weight: 100}]
  analysis:
    interval: 1s
    metrics: [{name: error-rate, query: 'errors{subset="{{subset}}"}', max: 0.01}]
`

// TestRolloutCLIOnARealPlane drives a rollout with the CLI against a real
// plane on a real Consul: status shows the approval gate, promote passes
// it (named after the caller), the rollout is promoted, history lists the
// decisions with their evidence from the plane and from the verified
// change log, and an unknown rollout is an error that says what to do.
func TestRolloutCLIOnARealPlane(t *testing.T) {
	_, client := consultest.Start(t)
	logPath := filepath.Join(t.TempDir(), "changes.jsonl")
	cl, err := policies.OpenChangeLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := controlplane.NewWithContext(t.Context(), controlplane.Config{Consul: client, LoadPolicies: policies.LoadSet, InsecureNoAuth: true,
		Watch:    consulwatch.Options{WaitTime: 5 * time.Second},
		Rollouts: controlplane.RolloutOptions{Querier: zeroProm{}, Tick: 50 * time.Millisecond, Record: rolloutRecorder(cl)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	admin := httptest.NewServer(s.AdminHandler(false))
	t.Cleanup(admin.Close)
	if _, _, err := s.ApplyPolicies(ctx, map[string][]byte{"set.yaml": []byte(rolloutSet)}); err != nil {
		t.Fatal(err)
	}
	plane := []string{"--plane", strings.TrimPrefix(admin.URL, "http://"), "--insecure"}
	cli := func(args ...string) (string, error) {
		out, stderr, err := runCLI(t, append(args, plane...)...)
		return out + stderr, err
	}
	var out string
	probe.Until(t, "the approval gate", 30*time.Second, func() bool {
		out, _ = cli("rollout", "status")
		return strings.Contains(out, "payments-v2  CanaryRoute/payments  AwaitingApproval  step 1/2")
	})
	if !strings.Contains(out, "meshwarden rollout promote payments-v2") {
		t.Fatalf("status must say how to approve:\n%s", out)
	}
	if out, err = cli("rollout", "promote", "payments-v2"); err != nil || !strings.Contains(out, "canary at 30%") {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	probe.Until(t, "promoted", 30*time.Second, func() bool {
		out, _ = cli("rollout", "status", "payments-v2")
		return strings.Contains(out, "Promoted  step 2/2  canary at 100%")
	})
	if !strings.Contains(out, "write that split into the CanaryRoute/payments policy") {
		t.Fatalf("a promoted rollout must say how to make it permanent:\n%s", out)
	}
	out, err = cli("rollout", "history", "payments-v2")
	if err != nil || !strings.Contains(out, `error-rate = 0 (want <= 0.01) pass  errors{subset="v2"}`) || !strings.Contains(out, "approved (unauthenticated (--insecure-dev))") {
		t.Fatalf("history: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "rollout", "history", "--changelog", logPath)
	if err != nil || !strings.Contains(out, "OK: change log chain verified") || !strings.Contains(out, "promote") || !strings.Contains(out, `errors{subset="v2"}`) {
		t.Fatalf("history from the change log: %v\n%s", err, out)
	}
	recs, err := policies.ReadChangeLog(logPath)
	if err != nil || len(recs) == 0 || recs[len(recs)-1].OpType != policies.OpRolloutDecision || recs[len(recs)-1].Resource != "rollout:payments-v2" {
		t.Fatalf("change log records: %v %+v", err, recs)
	}
	if out, err = cli("rollout", "status", "--format", "yaml"); err == nil || !strings.Contains(out+err.Error(), "use text or json") {
		t.Fatalf("--format yaml: %v\n%s", err, out)
	}
	if out, err = cli("rollout", "abort", "nope"); err == nil || !strings.Contains(out+err.Error(), "meshwarden rollout status lists them") {
		t.Fatalf("abort of an unknown rollout: %v\n%s", err, out)
	}
}
