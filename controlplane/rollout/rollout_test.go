package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

type fakeQuerier struct {
	vals map[string][]float64 // by query; missing: error
	err  error
}

func (f *fakeQuerier) Query(_ context.Context, q string) ([]float64, error) {
	if f.err != nil {
		return nil, f.err
	}
	v, ok := f.vals[q]
	if !ok {
		return nil, errors.New("unknown query " + q)
	}
	return v, nil
}

type fakeActuator struct {
	weights []int
	err     error
}

func (f *fakeActuator) SetWeight(_ context.Context, w int) error {
	if f.err != nil {
		return f.err
	}
	f.weights = append(f.weights, w)
	return nil
}

func ptr(f float64) *float64 { return &f }

const errQ = `sum(rate(meshwarden_gateway_requests_total{cluster="payments~v2",code=~"5.."}[1m])) / sum(rate(meshwarden_gateway_requests_total{cluster="payments~v2"}[1m]))`

func spec() Spec {
	return Spec{Name: "payments-v2", Target: "CanaryRoute/payments", Subset: "v2",
		Steps: []Step{{Weight: 10}, {Weight: 50, Approval: true}, {Weight: 100}},
		Analysis: Analysis{Interval: 10 * time.Second, FailureLimit: 2, Metrics: []Metric{
			{Name: "error-rate", Query: `sum(rate(meshwarden_gateway_requests_total{cluster="{{service}}~{{subset}}",code=~"5.."}[1m])) / sum(rate(meshwarden_gateway_requests_total{cluster="{{service}}~{{subset}}"}[1m]))`, Max: ptr(0.01)},
		}},
		HealthTimeout: time.Minute,
	}
}

// newEngine is an engine of spec() on payments asking q, with a fresh
// fake actuator.
func newEngine(q *fakeQuerier) (*Engine, *fakeActuator) {
	a := &fakeActuator{}
	return &Engine{Spec: spec(), Querier: q, Actuator: a, Service: "payments"}, a
}

func actions(ds []Decision) string {
	var out []string
	for _, d := range ds {
		s := d.Action
		if d.Result != "" {
			s += ":" + d.Result
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// TestRolloutPromotesHealthyCanary: healthy analyses walk the steps; the
// approval gate waits for promote; the last step promotes.
func TestRolloutPromotesHealthyCanary(t *testing.T) {
	ctx, t0 := context.Background(), time.Unix(1000, 0)
	q := &fakeQuerier{vals: map[string][]float64{errQ: {0.001}}}
	e, a := newEngine(q)
	st, ds, err := e.Start(ctx, t0, 0)
	if err != nil || st.Phase != Progressing || st.Weight != 10 || actions(ds) != "start,step" {
		t.Fatalf("start: %+v %s %v", st, actions(ds), err)
	}
	st, ds, _ = e.Tick(ctx, t0.Add(10*time.Second), st)
	if st.Phase != AwaitingApproval || actions(ds) != "analysis:pass,await-approval" || st.Weight != 10 {
		t.Fatalf("after a healthy analysis at 10%%: %+v %s", st, actions(ds))
	}
	if ds[0].Evidence[0].Query != errQ || ds[0].Evidence[0].Threshold != "<= 0.01" || ds[0].Evidence[0].Value != 0.001 {
		t.Fatalf("evidence %+v", ds[0].Evidence)
	}
	if st2, ds2, _ := e.Tick(ctx, t0.Add(time.Minute), st); st2.Phase != AwaitingApproval || len(ds2) != 0 {
		t.Fatalf("an approval gate must wait: %+v %s", st2, actions(ds2))
	}
	st, ds, err = e.Promote(ctx, t0.Add(70*time.Second), st)
	if err != nil || st.Phase != Progressing || st.Weight != 50 || actions(ds) != "resume,step" {
		t.Fatalf("promote at the gate: %+v %s %v", st, actions(ds), err)
	}
	if st2, ds2, _ := e.Tick(ctx, t0.Add(75*time.Second), st); len(ds2) != 0 || st2.Weight != 50 {
		t.Fatalf("no analysis before the interval: %+v %s", st2, actions(ds2))
	}
	st, ds, _ = e.Tick(ctx, t0.Add(80*time.Second), st)
	if st.Weight != 100 || st.Phase != Progressing || actions(ds) != "analysis:pass,step" {
		t.Fatalf("want 100%% after a healthy 50%%: %+v %s", st, actions(ds))
	}
	st, ds, _ = e.Tick(ctx, t0.Add(90*time.Second), st)
	if st.Phase != Promoted || actions(ds) != "analysis:pass,promote" {
		t.Fatalf("want promoted: %+v %s", st, actions(ds))
	}
	if got := a.weights; len(got) != 3 || got[0] != 10 || got[1] != 50 || got[2] != 100 {
		t.Fatalf("weights applied %v, want 10 50 100", got)
	}
}

// TestRollbackOnBreach: FailureLimit failed analyses move traffic back to
// the start; a healthy check after it ends RolledBack.
func TestRollbackOnBreach(t *testing.T) {
	ctx, t0 := context.Background(), time.Unix(1000, 0)
	q := &fakeQuerier{vals: map[string][]float64{errQ: {0.2}}}
	e, a := newEngine(q)
	st, _, _ := e.Start(ctx, t0, 0)
	st, ds, _ := e.Tick(ctx, t0.Add(10*time.Second), st)
	if st.Phase != Progressing || st.Failures != 1 || actions(ds) != "analysis:fail" {
		t.Fatalf("one failure of two allowed: %+v %s", st, actions(ds))
	}
	st, ds, _ = e.Tick(ctx, t0.Add(20*time.Second), st)
	if st.Phase != RollingBack || st.Weight != 0 || actions(ds) != "analysis:fail,rollback" ||
		!strings.Contains(ds[1].Reason, "error-rate = 0.2 (want <= 0.01)") {
		t.Fatalf("second failure must roll back: %+v %s %+v", st, actions(ds), ds)
	}
	q.vals[errQ] = []float64{0}
	st, ds, _ = e.Tick(ctx, t0.Add(30*time.Second), st)
	if st.Phase != RolledBack || actions(ds) != "analysis:pass,healthy" {
		t.Fatalf("healthy after rollback: %+v %s", st, actions(ds))
	}
	if got := a.weights; len(got) != 2 || got[1] != 0 {
		t.Fatalf("weights %v, want 10 then back to 0", got)
	}
}

// TestRollbackEscalatesWhenHealthDoesNotReturn.
func TestRollbackEscalatesWhenHealthDoesNotReturn(t *testing.T) {
	ctx, t0 := context.Background(), time.Unix(1000, 0)
	q := &fakeQuerier{vals: map[string][]float64{errQ: {0.5}}}
	e, _ := newEngine(q)
	e.Spec.Analysis.FailureLimit = 1
	st, _, _ := e.Start(ctx, t0, 0)
	st, _, _ = e.Tick(ctx, t0.Add(10*time.Second), st)
	if st.Phase != RollingBack {
		t.Fatalf("%+v", st)
	}
	for i := 2; i <= 8 && st.Phase == RollingBack; i++ {
		st, _, _ = e.Tick(ctx, t0.Add(time.Duration(i)*10*time.Second), st)
	}
	if st.Phase != Escalated || !strings.Contains(st.Reason, "a person must look") {
		t.Fatalf("want escalated: %+v", st)
	}
}

// TestRolloutInconclusiveNeverPromotes: query errors and empty answers
// pause the rollout; they never count as a pass.
func TestRolloutInconclusiveNeverPromotes(t *testing.T) {
	ctx, t0 := context.Background(), time.Unix(1000, 0)
	q := &fakeQuerier{err: errors.New("connection refused")}
	e, _ := newEngine(q)
	e.Spec.Steps = []Step{{Weight: 100}}
	st, _, _ := e.Start(ctx, t0, 0)
	var ds []Decision
	for i := 1; i <= 3; i++ {
		st, ds, _ = e.Tick(ctx, t0.Add(time.Duration(i)*10*time.Second), st)
	}
	if st.Phase != Paused || actions(ds) != "analysis:inconclusive,pause" || !strings.Contains(st.Reason, "connection refused") {
		t.Fatalf("want paused after 3 inconclusive: %+v %s", st, actions(ds))
	}
	q.err, q.vals = nil, map[string][]float64{errQ: {}}
	st, _, _ = e.Promote(ctx, t0.Add(40*time.Second), st)
	st, ds, _ = e.Tick(ctx, t0.Add(50*time.Second), st)
	if st.Phase == Promoted || ds[0].Result != "inconclusive" || !strings.Contains(ds[0].Evidence[0].Error, "0 samples") {
		t.Fatalf("no data must not promote: %+v %s", st, actions(ds))
	}
}

// TestRolloutManualEditPauses and TestRolloutAbort.
func TestRolloutManualEditPausesAndAbortRestores(t *testing.T) {
	ctx, t0 := context.Background(), time.Unix(1000, 0)
	e, a := newEngine(&fakeQuerier{vals: map[string][]float64{errQ: {0}}})
	st, _, _ := e.Start(ctx, t0, 5)
	st, ds := e.Observe(t0.Add(time.Second), st, 30)
	if st.Phase != Paused || st.Weight != 30 || len(ds) != 1 {
		t.Fatalf("manual edit: %+v", st)
	}
	if st2, ds2, _ := e.Tick(ctx, t0.Add(time.Minute), st); st2.Phase != Paused || len(ds2) != 0 {
		t.Fatalf("paused must stay paused: %+v", st2)
	}
	st, ds, err := e.Abort(ctx, t0.Add(2*time.Minute), st, "consul token alice")
	if err != nil || st.Phase != Aborted || st.Weight != 5 || a.weights[len(a.weights)-1] != 5 || !strings.Contains(ds[0].Reason, "alice") {
		t.Fatalf("abort: %+v %v %v", st, a.weights, err)
	}
	if _, _, err := e.Abort(ctx, t0, st, "x"); err == nil {
		t.Fatal("aborting an ended rollout must fail")
	}
}

// TestRolloutStepTimeout: a step that never passes within StepTimeout
// (here: always inconclusive below the pause limit, then failing) rolls back.
func TestRolloutApprovalTimesOut(t *testing.T) {
	ctx, t0 := context.Background(), time.Unix(1000, 0)
	e, _ := newEngine(&fakeQuerier{vals: map[string][]float64{errQ: {0}}})
	e.Spec.Steps = []Step{{Weight: 10, Approval: true}}
	e.Spec.StepTimeout = time.Minute
	st, _, _ := e.Start(ctx, t0, 0)
	if st.Phase != AwaitingApproval {
		t.Fatalf("%+v", st)
	}
	st, ds, _ := e.Tick(ctx, t0.Add(2*time.Minute), st)
	if st.Phase != RollingBack || !strings.Contains(ds[0].Reason, "no approval within 1m0s") {
		t.Fatalf("approval timeout: %+v %s", st, actions(ds))
	}
}

func TestSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Spec)
		want string
	}{
		{func(s *Spec) { s.Target = "Deployment/x" }, "spec.target"},
		{func(s *Spec) { s.Subset = "" }, "spec.subset"},
		{func(s *Spec) { s.Steps = nil }, "spec.steps"},
		{func(s *Spec) { s.Steps = []Step{{Weight: 50}, {Weight: 10}} }, "steps only go up"},
		{func(s *Spec) { s.Steps = []Step{{Weight: 150}} }, "use 0..100"},
		{func(s *Spec) { s.Analysis.Metrics = nil }, "would promote anything"},
		{func(s *Spec) { s.Analysis.Metrics[0].Max = nil }, "give max or min"},
		{func(s *Spec) { s.Analysis.Interval = 0 }, "analysis.interval"},
	} {
		s := spec()
		tc.mut(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
	s := spec()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}
