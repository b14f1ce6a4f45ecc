// Package rollout is the decision engine of progressive delivery: a rollout
// moves a canary (a CanaryRoute's weight for the new subset, or a
// FilterRelease's rolloutPercent) through steps, and at every analysis
// interval asks Prometheus whether the new version is healthy. A breach
// counts toward a failure limit; at the limit the rollout is rolled back to
// where it started, a health check follows, and an escalation fires if
// health does not come back. Pauses, manual-approval gates and time-outs on
// every wait are steps too. Every decision carries its evidence (query,
// value, threshold) so it can be recorded in the signed change log and
// emitted as an audit event.
//
// The engine is pure: it owns no goroutine, no clock and no network. The
// caller gives it a Querier (Prometheus), an Actuator (the policy store)
// and the time, and calls Tick; the state it returns is what to persist so a
// restarted plane resumes where it was.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Spec is a rollout as a policy declares it.
type Spec struct {
	// Name identifies the rollout (the policy's metadata.name).
	Name string `json:"name"`
	// Target is what moves: "CanaryRoute/<service>" (Weight is the new
	// subset's share) or "FilterRelease/<name>" (Weight is rolloutPercent).
	Target string `json:"target"`
	// Subset is the canary subset of a CanaryRoute (e.g. v2).
	Subset string `json:"subset,omitempty"`
	// Steps run in order; the last should reach 100.
	Steps []Step `json:"steps"`
	// Analysis runs at every interval while a step is in progress.
	Analysis Analysis `json:"analysis"`
	// StepTimeout bounds every wait (analysis of one step, an approval):
	// a step that has not passed by then fails the rollout (rolled back).
	StepTimeout time.Duration `json:"stepTimeout,omitempty"`
	// HealthTimeout bounds the health check after a rollback; past it the
	// rollout escalates.
	HealthTimeout time.Duration `json:"healthTimeout,omitempty"`
}

// Step is one stage of a rollout.
type Step struct {
	// Weight is the canary's share at this step, 0..100.
	Weight int `json:"weight"`
	// Hold is how long the step must stay healthy before the next: at
	// least one analysis interval.
	Hold time.Duration `json:"hold,omitempty"`
	// Approval makes the rollout wait for `meshwarden rollout promote`
	// before this step's weight is applied.
	Approval bool `json:"approval,omitempty"`
}

// Analysis is how health is judged.
type Analysis struct {
	// Interval between analyses.
	Interval time.Duration `json:"interval"`
	// FailureLimit is how many failed analyses roll back (default 1).
	FailureLimit int `json:"failureLimit,omitempty"`
	// InconclusiveLimit is how many analyses in a row without an answer
	// (query error, no data) pause the rollout (default 3). They never
	// count as success.
	InconclusiveLimit int `json:"inconclusiveLimit,omitempty"`
	// OnInconclusive is what InconclusiveLimit does: "pause" (default)
	// or "rollback".
	OnInconclusive string `json:"onInconclusive,omitempty"`
	// QueryTimeout bounds each query (default 10s).
	QueryTimeout time.Duration `json:"queryTimeout,omitempty"`
	// Metrics are the checks; all must pass.
	Metrics []Metric `json:"metrics"`
	// Health are the checks after a rollback, when the canary has no
	// traffic left to judge: service-wide ones (default: Metrics).
	Health []Metric `json:"health,omitempty"`
}

// Metric is one PromQL check with a threshold. The query may use
// {{service}}, {{subset}} and {{target}}; it must return one sample.
type Metric struct {
	Name  string   `json:"name"`
	Query string   `json:"query"`
	Max   *float64 `json:"max,omitempty"` // healthy while value <= Max
	Min   *float64 `json:"min,omitempty"` // healthy while value >= Min
}

// Validate checks a spec and names the field to change.
func (s *Spec) Validate() error {
	switch {
	case s.Name == "":
		return errors.New("metadata.name: a rollout needs a name")
	case !strings.HasPrefix(s.Target, "CanaryRoute/") && !strings.HasPrefix(s.Target, "FilterRelease/"):
		return fmt.Errorf("spec.target %q: use CanaryRoute/<service> or FilterRelease/<name>", s.Target)
	case strings.HasPrefix(s.Target, "CanaryRoute/") && s.Subset == "":
		return errors.New("spec.subset: a CanaryRoute rollout names the subset it moves traffic to")
	case len(s.Steps) == 0:
		return errors.New("spec.steps: give at least one step (e.g. weight 10, 50, 100)")
	case s.Analysis.Interval <= 0:
		return errors.New("spec.analysis.interval: give how often to analyse, e.g. 30s")
	case len(s.Analysis.Metrics) == 0:
		return errors.New("spec.analysis.metrics: a rollout without a check would promote anything; give at least one query with max or min")
	}
	last := -1
	for i, st := range s.Steps {
		if st.Weight < 0 || st.Weight > 100 {
			return fmt.Errorf("spec.steps[%d].weight %d: use 0..100", i, st.Weight)
		}
		if st.Weight < last {
			return fmt.Errorf("spec.steps[%d].weight %d: steps only go up (previous %d)", i, st.Weight, last)
		}
		last = st.Weight
	}
	for field, ms := range map[string][]Metric{"metrics": s.Analysis.Metrics, "health": s.Analysis.Health} {
		for i, m := range ms {
			if m.Name == "" || m.Query == "" {
				return fmt.Errorf("spec.analysis.%s[%d]: give name and query", field, i)
			}
			if m.Max == nil && m.Min == nil {
				return fmt.Errorf("spec.analysis.%s[%d] (%s): give max or min", field, i, m.Name)
			}
		}
	}
	return nil
}

func (s *Spec) failureLimit() int {
	if s.Analysis.FailureLimit > 0 {
		return s.Analysis.FailureLimit
	}
	return 1
}

func (s *Spec) inconclusiveLimit() int {
	if s.Analysis.InconclusiveLimit > 0 {
		return s.Analysis.InconclusiveLimit
	}
	return 3
}

func (s *Spec) stepTimeout() time.Duration {
	if s.StepTimeout > 0 {
		return s.StepTimeout
	}
	return 30 * time.Minute
}

func (s *Spec) healthTimeout() time.Duration {
	if s.HealthTimeout > 0 {
		return s.HealthTimeout
	}
	return 5 * time.Minute
}

// Phase is where a rollout is.
type Phase string

// The phases.
const (
	Progressing      Phase = "Progressing"
	AwaitingApproval Phase = "AwaitingApproval"
	Paused           Phase = "Paused"
	Promoted         Phase = "Promoted"
	Aborted          Phase = "Aborted"     // by an operator; traffic back to the start
	RollingBack      Phase = "RollingBack" // breach: traffic back, checking health
	RolledBack       Phase = "RolledBack"  // back and healthy
	Escalated        Phase = "Escalated"   // back but not healthy within HealthTimeout
	Refused          Phase = "Refused"     // never started (conflict); nothing moved
)

// Terminal reports whether nothing more happens in p.
func (p Phase) Terminal() bool {
	return p == Promoted || p == Aborted || p == RolledBack || p == Escalated || p == Refused
}

// State is what to persist between ticks.
type State struct {
	Phase Phase `json:"phase"`
	// Step is the index of the current step; Weight the weight applied.
	Step   int `json:"step"`
	Weight int `json:"weight"`
	// StartWeight is where the rollout began (restored on rollback).
	StartWeight int `json:"startWeight"`
	// Failures and Inconclusive count analyses of the current step.
	Failures     int `json:"failures"`
	Inconclusive int `json:"inconclusive"`
	// Passed counts passed analyses of the current step.
	Passed int `json:"passed"`
	// StepSince is when the current step (or wait) began; LastAnalysis
	// when the last analysis ran.
	StepSince    time.Time `json:"stepSince"`
	LastAnalysis time.Time `json:"lastAnalysis,omitempty"`
	// Reason says why the rollout is paused or where it ended.
	Reason string `json:"reason,omitempty"`
	// Approved is set by Promote for an approval gate.
	Approved bool `json:"approved,omitempty"`
}

// Decision is one thing the engine did, with its evidence.
type Decision struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"` // start, analysis, step, pause, await-approval, promote, rollback, healthy, escalate, abort, resume
	Step   int       `json:"step"`
	Weight int       `json:"weight"`
	Result string    `json:"result,omitempty"` // pass, fail, inconclusive
	// Evidence of an analysis: one entry per metric.
	Evidence []Evidence `json:"evidence,omitempty"`
	Reason   string     `json:"reason,omitempty"`
}

// Evidence is one metric's outcome.
type Evidence struct {
	Metric    string  `json:"metric"`
	Query     string  `json:"query"`
	Value     float64 `json:"value"`
	Threshold string  `json:"threshold"`
	Result    string  `json:"result"`
	Error     string  `json:"error,omitempty"`
}

// Querier asks Prometheus: one instant query, its samples' values.
type Querier interface {
	Query(ctx context.Context, q string) ([]float64, error)
}

// Actuator moves traffic: SetWeight applies the canary's share.
type Actuator interface {
	SetWeight(ctx context.Context, weight int) error
}

// Engine runs one rollout.
type Engine struct {
	Spec     Spec
	Querier  Querier
	Actuator Actuator
	// Service is substituted for {{service}}.
	Service string
}

// Start begins a rollout from startWeight (the canary's share now).
func (e *Engine) Start(ctx context.Context, now time.Time, startWeight int) (State, []Decision, error) {
	if err := e.Spec.Validate(); err != nil {
		return State{}, nil, err
	}
	st := State{Phase: Progressing, Step: 0, StartWeight: startWeight, Weight: startWeight, StepSince: now}
	ds := []Decision{{Time: now, Action: "start", Weight: startWeight, Reason: fmt.Sprintf("%d steps, analysis every %s", len(e.Spec.Steps), e.Spec.Analysis.Interval)}}
	return e.enterStep(ctx, now, st, ds)
}

// enterStep applies the current step's weight, or waits for approval.
func (e *Engine) enterStep(ctx context.Context, now time.Time, st State, ds []Decision) (State, []Decision, error) {
	step := e.Spec.Steps[st.Step]
	st.Failures, st.Inconclusive, st.Passed, st.StepSince = 0, 0, 0, now
	if step.Approval && !st.Approved {
		st.Phase = AwaitingApproval
		st.Reason = fmt.Sprintf("step %d (weight %d) waits for approval: meshwarden rollout promote %s", st.Step+1, step.Weight, e.Spec.Name)
		return st, append(ds, Decision{Time: now, Action: "await-approval", Step: st.Step, Weight: st.Weight, Reason: st.Reason}), nil
	}
	st.Approved = false
	if err := e.Actuator.SetWeight(ctx, step.Weight); err != nil {
		st.Phase, st.Reason = Paused, "cannot apply weight: "+err.Error()
		return st, append(ds, Decision{Time: now, Action: "pause", Step: st.Step, Weight: st.Weight, Reason: st.Reason}), nil
	}
	// The first analysis of a step comes one interval after its weight
	// took effect, so it judges the new split.
	st.Phase, st.Weight, st.Reason, st.LastAnalysis = Progressing, step.Weight, "", now
	return st, append(ds, Decision{Time: now, Action: "step", Step: st.Step, Weight: step.Weight,
		Reason: fmt.Sprintf("step %d of %d: canary at %d%%", st.Step+1, len(e.Spec.Steps), step.Weight)}), nil
}

// Tick advances the rollout at time now: it analyses when an interval has
// passed and moves, pauses, promotes or rolls back accordingly.
func (e *Engine) Tick(ctx context.Context, now time.Time, st State) (State, []Decision, error) {
	var ds []Decision
	switch st.Phase {
	case Progressing:
	case AwaitingApproval:
		if now.Sub(st.StepSince) > e.Spec.stepTimeout() {
			return e.rollback(ctx, now, st, ds, fmt.Sprintf("no approval within %s", e.Spec.stepTimeout()))
		}
		return st, nil, nil
	case RollingBack:
		return e.checkHealth(ctx, now, st)
	default:
		return st, nil, nil
	}
	if !st.LastAnalysis.IsZero() && now.Sub(st.LastAnalysis) < e.Spec.Analysis.Interval {
		return st, nil, nil
	}
	st.LastAnalysis = now
	result, ev := e.analyse(ctx, e.Spec.Analysis.Metrics)
	ds = append(ds, Decision{Time: now, Action: "analysis", Step: st.Step, Weight: st.Weight, Result: result, Evidence: ev})
	switch result {
	case "fail":
		st.Failures++
		st.Inconclusive = 0
		if st.Failures >= e.Spec.failureLimit() {
			return e.rollback(ctx, now, st, ds, fmt.Sprintf("%d failed analyses at weight %d (limit %d): %s", st.Failures, st.Weight, e.Spec.failureLimit(), failed(ev)))
		}
	case "inconclusive":
		st.Inconclusive++
		if st.Inconclusive >= e.Spec.inconclusiveLimit() && e.Spec.Analysis.OnInconclusive == "rollback" {
			return e.rollback(ctx, now, st, ds, fmt.Sprintf("%d analyses in a row without an answer (%s); onInconclusive: rollback", st.Inconclusive, failed(ev)))
		}
		if st.Inconclusive >= e.Spec.inconclusiveLimit() {
			st.Phase = Paused
			st.Reason = fmt.Sprintf("%d analyses in a row without an answer (%s): paused, traffic stays at %d%%; fix the metrics or Prometheus, then meshwarden rollout promote (resume) or abort", st.Inconclusive, failed(ev), st.Weight)
			return st, append(ds, Decision{Time: now, Action: "pause", Step: st.Step, Weight: st.Weight, Reason: st.Reason}), nil
		}
	case "pass":
		st.Inconclusive = 0
		st.Passed++
	}
	if now.Sub(st.StepSince) > e.Spec.stepTimeout() {
		return e.rollback(ctx, now, st, ds, fmt.Sprintf("step %d did not pass within %s", st.Step+1, e.Spec.stepTimeout()))
	}
	hold := max(e.Spec.Steps[st.Step].Hold, e.Spec.Analysis.Interval)
	if result != "pass" || st.Passed == 0 || now.Sub(st.StepSince) < hold {
		return st, ds, nil
	}
	if st.Step == len(e.Spec.Steps)-1 {
		st.Phase, st.Reason = Promoted, fmt.Sprintf("every step passed; canary at %d%%", st.Weight)
		return st, append(ds, Decision{Time: now, Action: "promote", Step: st.Step, Weight: st.Weight, Reason: st.Reason}), nil
	}
	st.Step++
	return e.enterStep(ctx, now, st, ds)
}

// analyse runs every metric: fail if any breaches, inconclusive if any
// has no answer (and none breaches), else pass.
func (e *Engine) analyse(ctx context.Context, metrics []Metric) (string, []Evidence) {
	result := "pass"
	var ev []Evidence
	for _, m := range metrics {
		q := e.expand(m.Query)
		x := Evidence{Metric: m.Name, Query: q, Threshold: threshold(m)}
		vals, err := e.query(ctx, q)
		switch {
		case err != nil:
			x.Result, x.Error = "inconclusive", err.Error()
		case len(vals) != 1 || math.IsNaN(vals[0]) || math.IsInf(vals[0], 0):
			x.Result, x.Error = "inconclusive", fmt.Sprintf("%d samples (want exactly one number)", len(vals))
		default:
			x.Value = vals[0]
			x.Result = "pass"
			if (m.Max != nil && x.Value > *m.Max) || (m.Min != nil && x.Value < *m.Min) {
				x.Result = "fail"
			}
		}
		if x.Result == "fail" {
			result = "fail"
		} else if x.Result == "inconclusive" && result == "pass" {
			result = "inconclusive"
		}
		ev = append(ev, x)
	}
	return result, ev
}

func (e *Engine) query(ctx context.Context, q string) ([]float64, error) {
	to := e.Spec.Analysis.QueryTimeout
	if to <= 0 {
		to = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	return e.Querier.Query(ctx, q)
}

func (e *Engine) expand(q string) string {
	return strings.NewReplacer("{{service}}", e.Service, "{{subset}}", e.Spec.Subset, "{{target}}", e.Spec.Target).Replace(q)
}

func threshold(m Metric) string {
	var parts []string
	if m.Min != nil {
		parts = append(parts, fmt.Sprintf(">= %g", *m.Min))
	}
	if m.Max != nil {
		parts = append(parts, fmt.Sprintf("<= %g", *m.Max))
	}
	return strings.Join(parts, " and ")
}

func failed(ev []Evidence) string {
	var out []string
	for _, x := range ev {
		switch x.Result {
		case "fail":
			out = append(out, fmt.Sprintf("%s = %g (want %s)", x.Metric, x.Value, x.Threshold))
		case "inconclusive":
			out = append(out, fmt.Sprintf("%s: %s", x.Metric, x.Error))
		}
	}
	return strings.Join(out, "; ")
}

// rollback moves traffic back to the start weight and starts the health
// check.
func (e *Engine) rollback(ctx context.Context, now time.Time, st State, ds []Decision, why string) (State, []Decision, error) {
	if err := e.Actuator.SetWeight(ctx, st.StartWeight); err != nil {
		st.Phase, st.Reason = Paused, "rollback failed, traffic may still be on the canary: "+err.Error()
		return st, append(ds, Decision{Time: now, Action: "pause", Step: st.Step, Weight: st.Weight, Reason: st.Reason}),
			fmt.Errorf("rollback of %s: %w", e.Spec.Name, err)
	}
	st.Phase, st.Weight, st.Reason, st.StepSince, st.LastAnalysis = RollingBack, st.StartWeight, why, now, time.Time{}
	st.Failures, st.Inconclusive, st.Passed = 0, 0, 0
	return st, append(ds, Decision{Time: now, Action: "rollback", Step: st.Step, Weight: st.StartWeight, Reason: why}), nil
}

// checkHealth runs the analysis after a rollback: a pass ends it
// (RolledBack); no pass within HealthTimeout escalates.
func (e *Engine) checkHealth(ctx context.Context, now time.Time, st State) (State, []Decision, error) {
	if !st.LastAnalysis.IsZero() && now.Sub(st.LastAnalysis) < e.Spec.Analysis.Interval {
		return st, nil, nil
	}
	st.LastAnalysis = now
	checks := e.Spec.Analysis.Health
	if len(checks) == 0 {
		checks = e.Spec.Analysis.Metrics
	}
	result, ev := e.analyse(ctx, checks)
	ds := []Decision{{Time: now, Action: "analysis", Step: st.Step, Weight: st.Weight, Result: result, Evidence: ev, Reason: "health after rollback"}}
	if result == "pass" {
		st.Phase = RolledBack
		return st, append(ds, Decision{Time: now, Action: "healthy", Step: st.Step, Weight: st.Weight, Reason: "healthy after the rollback: " + st.Reason}), nil
	}
	if now.Sub(st.StepSince) > e.Spec.healthTimeout() {
		st.Phase = Escalated
		st.Reason = fmt.Sprintf("not healthy %s after the rollback (%s): a person must look", e.Spec.healthTimeout(), failed(ev))
		return st, append(ds, Decision{Time: now, Action: "escalate", Step: st.Step, Weight: st.Weight, Reason: st.Reason}), nil
	}
	return st, ds, nil
}

// Promote is the operator's go: it passes an approval gate, resumes a
// paused rollout, or (when progressing) skips to the next step.
func (e *Engine) Promote(ctx context.Context, now time.Time, st State) (State, []Decision, error) {
	switch st.Phase {
	case AwaitingApproval:
		st.Approved = true
		return e.enterStep(ctx, now, st, []Decision{{Time: now, Action: "resume", Step: st.Step, Weight: st.Weight, Reason: "approved"}})
	case Paused:
		return e.enterStep(ctx, now, st, []Decision{{Time: now, Action: "resume", Step: st.Step, Weight: st.Weight, Reason: "resumed by an operator"}})
	case Progressing:
		if st.Step == len(e.Spec.Steps)-1 {
			st.Phase, st.Reason = Promoted, "promoted by an operator"
			return st, []Decision{{Time: now, Action: "promote", Step: st.Step, Weight: st.Weight, Reason: st.Reason}}, nil
		}
		st.Step++
		return e.enterStep(ctx, now, st, []Decision{{Time: now, Action: "resume", Step: st.Step, Weight: st.Weight, Reason: "step skipped by an operator"}})
	default:
		return st, nil, fmt.Errorf("rollout %s is %s: nothing to promote", e.Spec.Name, st.Phase)
	}
}

// Abort moves traffic back to the start and ends the rollout.
func (e *Engine) Abort(ctx context.Context, now time.Time, st State, who string) (State, []Decision, error) {
	if st.Phase.Terminal() {
		return st, nil, fmt.Errorf("rollout %s is already %s", e.Spec.Name, st.Phase)
	}
	if err := e.Actuator.SetWeight(ctx, st.StartWeight); err != nil {
		return st, nil, fmt.Errorf("abort %s: %w", e.Spec.Name, err)
	}
	st.Phase, st.Weight, st.Reason = Aborted, st.StartWeight, "aborted by "+who
	return st, []Decision{{Time: now, Action: "abort", Step: st.Step, Weight: st.StartWeight, Reason: st.Reason}}, nil
}

// Observe compares the weight in force with the one the rollout applied:
// a manual edit pauses the rollout (a person took over) until promote or
// abort.
func (e *Engine) Observe(now time.Time, st State, actual int) (State, []Decision) {
	if st.Phase != Progressing || actual == st.Weight {
		return st, nil
	}
	st.Phase = Paused
	st.Reason = fmt.Sprintf("the canary's weight was changed to %d%% outside the rollout (it had set %d%%): paused; meshwarden rollout promote resumes from the current step, abort goes back to %d%%", actual, st.Weight, st.StartWeight)
	st.Weight = actual
	return st, []Decision{{Time: now, Action: "pause", Step: st.Step, Weight: actual, Reason: st.Reason}}
}
