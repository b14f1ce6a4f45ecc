package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/meshwarden/meshwarden/controlplane/auth"
	"github.com/meshwarden/meshwarden/controlplane/rollout"
	"github.com/meshwarden/meshwarden/ir"
)

// overlay returns ps with every committed rollout's share applied to its
// target, as long as the files still define the target as when the
// rollout set it (otherwise the files win: a person took over).
func (c *rolloutController) overlay(ps *ir.PolicySet) *ir.PolicySet {
	if ps == nil {
		return nil
	}
	c.mu.Lock()
	// One override per target: the latest started rollout's (an ended
	// one may still hold its last share until the files change).
	byTarget := map[string]*RolloutRecord{}
	for _, r := range c.committed {
		if o := byTarget[r.Target]; r.Override != nil && (o == nil || r.Started.After(o.Started)) {
			byTarget[r.Target] = r
		}
	}
	c.mu.Unlock()
	active := make([]*RolloutRecord, 0, len(byTarget))
	for _, r := range byTarget {
		active = append(active, r)
	}
	if len(active) == 0 {
		return ps
	}
	out := *ps
	out.Routes = append([]ir.Route(nil), ps.Routes...)
	out.Filters = append([]ir.Filter(nil), ps.Filters...)
	for _, r := range active {
		kind, name := splitTarget(r.Target)
		w := *r.Override
		switch kind {
		case "CanaryRoute":
			for i := range out.Routes {
				rt := &out.Routes[i]
				rule := ir.Rollout{Service: name, Subset: r.Spec.Subset}
				if base, _, _ := targetState(&ir.PolicySet{Routes: []ir.Route{*rt}}, rule); rt.Service != name || base != r.Base {
					continue
				}
				stable := stableSubset(r, rt)
				rt.Weights = []ir.WeightedSubset{{Subset: stable, Weight: uint32(100 - w)}, {Subset: r.Spec.Subset, Weight: uint32(w)}}
				rt.DefaultSubset = ""
			}
		case "FilterRelease":
			for i := range out.Filters {
				f := &out.Filters[i]
				if base, _, _ := targetState(&ir.PolicySet{Filters: []ir.Filter{*f}}, ir.Rollout{Filter: name}); f.Name == name && base == r.Base {
					f.RolloutPercent = uint32(w)
				}
			}
		}
	}
	return &out
}

func stableSubset(r *RolloutRecord, rt *ir.Route) string {
	if r.StableSubset != "" {
		return r.StableSubset
	}
	return stableOfRoute(rt, r.Spec.Subset)
}

// stableOfRoute mirrors the policy loader's default: the route's default
// subset, or its one other weighted subset.
func stableOfRoute(rt *ir.Route, canary string) string {
	if rt.DefaultSubset != "" {
		return rt.DefaultSubset
	}
	for _, w := range rt.Weights {
		if w.Subset != canary {
			return w.Subset
		}
	}
	return ""
}

// ErrNoRollout says no rollout has that name.
var ErrNoRollout = errors.New("no such rollout")

// Rollouts lists every rollout's record, sorted by name.
func (s *Server) Rollouts(ctx context.Context) ([]*RolloutRecord, error) {
	if s.rollouts == nil {
		return nil, errors.New("this plane runs no rollouts")
	}
	recs, err := s.rollouts.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*RolloutRecord, 0, len(recs))
	for _, r := range recs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RolloutCommand is an operator's promote or abort of rollout name; who is
// the authenticated principal, recorded with the decision.
func (s *Server) RolloutCommand(ctx context.Context, name, verb, who string) (*RolloutRecord, error) {
	c := s.rollouts
	if c == nil {
		return nil, errors.New("this plane runs no rollouts")
	}
	c.runMu.Lock()
	defer c.runMu.Unlock()
	recs, err := c.load(ctx)
	if err != nil {
		return nil, err
	}
	r := recs[name]
	if r == nil {
		return nil, fmt.Errorf("%w %q: meshwarden rollout status lists them", ErrNoRollout, name)
	}
	if ps := s.currentPolicy(); ps != nil {
		for _, rule := range ps.Rollouts {
			if rule.Name == name {
				r.rule = rule
			}
		}
	}
	now := time.Now()
	e := c.engine(r)
	var st rollout.State
	var ds []rollout.Decision
	switch verb {
	case "promote":
		st, ds, err = e.Promote(ctx, now, r.State)
		if err == nil && r.Override == nil && st.Phase != rollout.Promoted {
			// Resuming after a manual edit: the rollout takes the target
			// over again from the files as they are now.
			if ps := s.currentPolicy(); ps != nil {
				r.Base, _, _ = targetState(ps, r.rule)
			}
		}
	case "abort":
		st, ds, err = e.Abort(ctx, now, r.State, who)
	default:
		return nil, fmt.Errorf("unknown command %q: use promote or abort", verb)
	}
	if err != nil {
		return nil, err
	}
	for i := range ds {
		if ds[i].Reason == "" {
			ds[i].Reason = verb + " by " + who
		} else {
			ds[i].Reason += " (" + who + ")"
		}
	}
	r.State = st
	if err := c.commit(ctx, r, ds, who); err != nil {
		return nil, err
	}
	return r, nil
}

// rolloutRoutes adds the rollout endpoints to the admin API.
func (s *Server) rolloutRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/rollouts", s.require(auth.OperatorRead, func(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
		recs, err := s.Rollouts(r.Context())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, recs)
	}))
	mux.HandleFunc("POST /v1/rollouts/{name}/{verb}", s.require(auth.MeshWrite, func(w http.ResponseWriter, r *http.Request, who auth.Principal) {
		rec, err := s.RolloutCommand(r.Context(), r.PathValue("name"), r.PathValue("verb"), who.String())
		switch {
		case errors.Is(err, ErrNoRollout):
			writeJSON(w, http.StatusNotFound, map[string]any{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, rec)
		}
	}))
}

// policyReady is the policy set in force and whether it is the one to
// act on: false while the plane still waits for its first set (policy
// directory or store), when no set is in force yet.
func (s *Server) policyReady() (*ir.PolicySet, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy, !s.awaitPolicies && s.policy != nil
}

// currentPolicy is the policy set in force.
func (s *Server) currentPolicy() *ir.PolicySet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}
