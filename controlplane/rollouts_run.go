package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/rollout"
	"github.com/meshwarden/meshwarden/ir"
)

// shareActuator records the share a rollout applies; the record stores it
// and the overlay serves it once the record is committed.
type shareActuator struct{ r *RolloutRecord }

func (a shareActuator) SetWeight(_ context.Context, w int) error {
	a.r.Override = &w
	return nil
}

func (c *rolloutController) engine(r *RolloutRecord) *rollout.Engine {
	svc := r.rule.Service
	if svc == "" {
		svc = r.rule.Filter
	}
	if svc == "" { // a record read back without its policy (commands)
		_, svc = splitTarget(r.Target)
	}
	return &rollout.Engine{Spec: r.Spec, Querier: c.opts.Querier, Actuator: shareActuator{r}, Service: svc}
}

func splitTarget(t string) (kind, name string) {
	for i := range len(t) {
		if t[i] == '/' {
			return t[:i], t[i+1:]
		}
	}
	return t, ""
}

// advance runs one Rollout policy: starts it (or refuses it), notices a
// manual edit of its target, or ticks its engine.
func (c *rolloutController) advance(ctx context.Context, now time.Time, ps *ir.PolicySet, rule ir.Rollout, recs map[string]*RolloutRecord) {
	gen := generation(rule)
	r := recs[rule.Name]
	base, share, ok := targetState(ps, rule)
	if r == nil || r.Generation != gen {
		if r != nil && !r.State.Phase.Terminal() {
			c.supersededWhileActive(ctx, now, r, rule, gen)
			return
		}
		c.start(ctx, now, rule, gen, r, recs, base, share, ok)
		return
	}
	r.rule = rule
	if r.State.Phase == rollout.Refused && holder(recs, r) == nil {
		c.start(ctx, now, rule, gen, r, recs, base, share, ok) // the target is free now
		return
	}
	if r.State.Phase.Terminal() {
		if r.Override != nil && (!ok || base != r.Base) { // the files took over
			r.Override, r.Base = nil, base
			_ = c.commit(ctx, r, nil, "controlplane")
		}
		return
	}
	var ds []rollout.Decision
	st := r.State
	switch {
	case !ok:
		if st.Phase != rollout.Paused {
			st.Phase, st.Reason = rollout.Paused, fmt.Sprintf("%s is no longer in the policy set: paused; restore it, or meshwarden rollout abort %s", r.Target, r.Name)
			ds = append(ds, rollout.Decision{Time: now, Action: "pause", Step: st.Step, Weight: st.Weight, Reason: st.Reason})
		}
	case base != r.Base:
		st.Phase = rollout.Paused
		st.Reason = fmt.Sprintf("%s was edited outside the rollout (its share is now %d%%, the rollout had set %d%%): paused and the edit is in force; meshwarden rollout promote %s resumes from step %d, abort goes back to %d%%",
			r.Target, share, st.Weight, r.Name, st.Step+1, st.StartWeight)
		st.Weight = share
		r.Override, r.Base = nil, base
		ds = append(ds, rollout.Decision{Time: now, Action: "pause", Step: st.Step, Weight: share, Reason: st.Reason})
	default:
		var err error
		st, ds, err = c.engine(r).Tick(ctx, now, st)
		if err != nil {
			c.s.log.Error("rollout tick", "rollout", r.Name, "err", err)
		}
	}
	if len(ds) == 0 && st == r.State {
		return
	}
	r.State = st
	_ = c.commit(ctx, r, ds, "controlplane")
}

// start begins a new generation of a rollout, unless another rollout is
// in progress on the same target (refused: two rollouts would fight).
func (c *rolloutController) start(ctx context.Context, now time.Time, rule ir.Rollout, gen string, old *RolloutRecord, recs map[string]*RolloutRecord, base string, share int, ok bool) {
	r := &RolloutRecord{Name: rule.Name, Target: targetOf(rule), Generation: gen, Spec: rollout.SpecFromIR(rule),
		Base: base, Started: now.UTC(), Source: rule.Source, StableSubset: rule.StableSubset, rule: rule}
	if old != nil {
		r.index, r.History = old.index, old.History
	}
	if o := holder(recs, r); o != nil {
		r.State = rollout.State{Phase: rollout.Refused, StepSince: now,
			Reason: fmt.Sprintf("%s is already being rolled out by %s (%s): refused; this one starts once that one ends (meshwarden rollout abort %s ends it now)", r.Target, o.Name, o.State.Phase, o.Name)}
		_ = c.commit(ctx, r, []rollout.Decision{{Time: now, Action: "refuse", Reason: r.State.Reason}}, "controlplane")
		return
	}
	if !ok {
		r.State = rollout.State{Phase: rollout.Paused, StepSince: now, Reason: r.Target + " is not in the policy set: the rollout waits"}
		_ = c.commit(ctx, r, []rollout.Decision{{Time: now, Action: "pause", Reason: r.State.Reason}}, "controlplane")
		return
	}
	st, ds, err := c.engine(r).Start(ctx, now, share)
	if err != nil {
		st = rollout.State{Phase: rollout.Refused, StepSince: now, Reason: "not started: " + err.Error()}
		ds = []rollout.Decision{{Time: now, Action: "refuse", Reason: st.Reason}}
	}
	r.State = st
	_ = c.commit(ctx, r, ds, "controlplane")
}

// holder is the other rollout in progress on r's target, if any.
func holder(recs map[string]*RolloutRecord, r *RolloutRecord) *RolloutRecord {
	for _, o := range recs {
		if o.Name != r.Name && o.Target == r.Target && !o.State.Phase.Terminal() {
			return o
		}
	}
	return nil
}

// supersededWhileActive notes (once) that the policy changed while its
// previous generation still runs: the running one goes on.
func (c *rolloutController) supersededWhileActive(ctx context.Context, now time.Time, r *RolloutRecord, rule ir.Rollout, gen string) {
	note := fmt.Sprintf("the Rollout policy changed (generation %s) while generation %s is %s: the running one goes on; abort it (meshwarden rollout abort %s) to start the new one", gen, r.Generation, r.State.Phase, r.Name)
	if r.Note == note {
		return
	}
	r.Note = note
	r.rule = rule
	_ = c.commit(ctx, r, []rollout.Decision{{Time: now, Action: "refuse", Step: r.State.Step, Weight: r.State.Weight, Reason: note}}, "controlplane")
}

// removed handles a record whose policy document is gone: an active
// rollout is aborted (traffic back to where it started), and the overlay
// is dropped.
func (c *rolloutController) removed(ctx context.Context, now time.Time, r *RolloutRecord) {
	if r.State.Phase.Terminal() && r.Override == nil {
		return
	}
	var ds []rollout.Decision
	if !r.State.Phase.Terminal() {
		st, d, err := c.engine(r).Abort(ctx, now, r.State, "the policy set (the Rollout document was removed)")
		if err == nil {
			r.State, ds = st, d
		}
	}
	r.Override = nil
	r.Note = "the Rollout document is no longer in the policy set"
	_ = c.commit(ctx, r, ds, "controlplane")
}

// targetState fingerprints a rollout's target as the policy set defines
// it and returns the canary's share there; ok is false when the target is
// not in the set.
func targetState(ps *ir.PolicySet, rule ir.Rollout) (base string, share int, ok bool) {
	if rule.Filter != "" {
		for _, f := range ps.Filters {
			if f.Name == rule.Filter {
				b, _ := json.Marshal([]any{f.SHA256, f.PreviousSHA256, f.RolloutPercent})
				return string(b), int(f.RolloutPercent), true
			}
		}
		return "", 0, false
	}
	for _, rt := range ps.Routes {
		if rt.Service != rule.Service {
			continue
		}
		b, _ := json.Marshal([]any{rt.Weights, rt.DefaultSubset})
		share = 0
		for _, w := range rt.Weights {
			if w.Subset == rule.Subset {
				share = int(w.Weight)
			}
		}
		if len(rt.Weights) == 0 && rt.DefaultSubset == rule.Subset {
			share = 100
		}
		return string(b), share, true
	}
	return "", 0, false
}
