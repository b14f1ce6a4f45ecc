package policies

import (
	"net"
	"net/url"
	"sort"
	"time"

	"github.com/meshwarden/meshwarden/ir"
)

// rollouts builds the Rollout documents against the routes and filters
// already built: the target must exist in the set, and one target has at
// most one rollout.
func (b *builder) rollouts(docs []*doc) {
	first := map[string]*doc{}
	for _, x := range docs {
		r, ok := b.rollout(x, x.spec.Interface().(*RolloutSpec))
		if !ok {
			continue
		}
		target := "CanaryRoute/" + r.Service
		if r.Filter != "" {
			target = "FilterRelease/" + r.Filter
		}
		if f, dup := first[target]; dup {
			x.dec.errPath("spec", "%s already has a Rollout at %s: two rollouts on one target would fight over its weight; keep one", target, f.source())
			continue
		}
		first[target] = x
		b.ps.Rollouts = append(b.ps.Rollouts, r)
	}
	sort.Slice(b.ps.Rollouts, func(i, j int) bool { return b.ps.Rollouts[i].Name < b.ps.Rollouts[j].Name })
}

func (b *builder) rollout(x *doc, s *RolloutSpec) (ir.Rollout, bool) {
	d := x.dec
	before := len(b.diags.Errors)
	r := ir.Rollout{Name: x.name, StepTimeout: s.StepTimeout, Source: x.source(),
		Interval: s.Analysis.Interval, FailureLimit: int(s.Analysis.FailureLimit), InconclusiveLimit: int(s.Analysis.InconclusiveLimit),
		OnInconclusive: s.Analysis.OnInconclusive, QueryTimeout: s.Analysis.QueryTimeout,
		HealthTimeout: s.Rollback.HealthTimeout, Webhook: s.Rollback.Webhook}
	canary := b.rolloutTarget(d, s, &r)
	r.Steps = rolloutSteps(d, s.Steps, canary)
	a := s.Analysis
	if _, ok := d.positions["spec.analysis.interval"]; ok && a.Interval < time.Second {
		d.errPath("spec.analysis.interval", "%s is below 1s: Prometheus scrapes every few seconds, give e.g. \"10s\"", a.Interval)
	}
	switch a.OnInconclusive {
	case "", "pause", "rollback":
	default:
		d.errPath("spec.analysis.onInconclusive", "%q: use pause (traffic stays, the rollout waits for a person) or rollback", a.OnInconclusive)
	}
	if _, ok := d.positions["spec.analysis.metrics"]; ok && len(a.Metrics) == 0 {
		d.errPath("spec.analysis.metrics", "is empty: a rollout without a check would promote anything; give at least one query with max or min")
	}
	r.Metrics = rolloutMetrics(d, "spec.analysis.metrics", a.Metrics)
	r.Health = rolloutMetrics(d, "spec.rollback.health", s.Rollback.Health)
	for path, v := range map[string]time.Duration{"spec.stepTimeout": s.StepTimeout, "spec.rollback.healthTimeout": s.Rollback.HealthTimeout, "spec.analysis.queryTimeout": a.QueryTimeout} {
		if v < 0 || (v > 0 && v < time.Second) {
			d.errPath(path, "%s is below 1s: give a timeout such as \"5m\"", v)
		}
	}
	if s.StepTimeout > 0 && s.StepTimeout < a.Interval {
		d.errPath("spec.stepTimeout", "%s is shorter than analysis.interval (%s): no step could ever pass; make it several intervals", s.StepTimeout, a.Interval)
	}
	if s.Rollback.Webhook != "" {
		checkWebhook(d, s.Rollback.Webhook)
	}
	return r, len(b.diags.Errors) == before
}

// rolloutTarget fills r's target from s, checks it against the set and
// reports whether it is a CanaryRoute (weights) rather than a release.
func (b *builder) rolloutTarget(d *decoder, s *RolloutSpec, r *ir.Rollout) bool {
	switch {
	case s.CanaryRoute != nil && s.FilterRelease != nil:
		d.errPath("spec.filterRelease", "give either canaryRoute or filterRelease, not both: one rollout moves one thing")
	case s.CanaryRoute == nil && s.FilterRelease == nil:
		d.errPath("spec", "missing target: add canaryRoute {service, subset} (steps of weight) or filterRelease {filter} (steps of rolloutPercent)")
	case s.FilterRelease != nil:
		r.Filter = s.FilterRelease.Filter
		var f *ir.Filter
		for i := range b.ps.Filters {
			if b.ps.Filters[i].Name == r.Filter {
				f = &b.ps.Filters[i]
			}
		}
		switch {
		case r.Filter == "":
		case f == nil || f.SHA256 == "":
			d.errPath("spec.filterRelease.filter", "no FilterRelease for filter %q in the set: add one (the rollout moves its rolloutPercent)", r.Filter)
		case f.PreviousSHA256 == "":
			d.errPath("spec.filterRelease.filter", "the FilterRelease of %q (%s) has no previousSha256: name the build the other proxies keep running, so a rollback has somewhere to go", r.Filter, f.Source)
		}
		return false
	}
	if s.CanaryRoute == nil {
		return true
	}
	c := s.CanaryRoute
	r.Service, r.Subset, r.StableSubset = c.Service, c.Subset, c.StableSubset
	var route *ir.Route
	for i := range b.ps.Routes {
		if b.ps.Routes[i].Service == c.Service {
			route = &b.ps.Routes[i]
		}
	}
	if route == nil {
		if c.Service != "" {
			d.errPath("spec.canaryRoute.service", "no CanaryRoute for service %q in the set: add one with the subsets the rollout moves between", c.Service)
		}
		return true
	}
	subsets := map[string]int{}
	for i, ss := range route.Subsets {
		subsets[ss.Name] = i
	}
	if _, ok := subsets[c.Subset]; !ok && c.Subset != "" {
		d.errPath("spec.canaryRoute.subset", "subset %q is not defined in the CanaryRoute of %q (%s)%s", c.Subset, c.Service, route.Source, known(subsets))
	}
	if r.StableSubset == "" {
		r.StableSubset = stableOf(route, c.Subset)
	}
	if _, ok := subsets[r.StableSubset]; !ok && c.StableSubset != "" {
		d.errPath("spec.canaryRoute.stableSubset", "subset %q is not defined in the CanaryRoute of %q (%s)%s", c.StableSubset, c.Service, route.Source, known(subsets))
	}
	switch {
	case r.StableSubset == "" && c.Subset != "":
		d.errPath("spec.canaryRoute", "cannot tell which subset keeps the rest of the traffic: set stableSubset (or defaultSubset in the CanaryRoute)")
	case r.StableSubset == c.Subset && c.Subset != "":
		d.errPath("spec.canaryRoute.stableSubset", "is the canary subset %q itself: name the subset that keeps the rest", c.Subset)
	}
	return true
}

// stableOf is the subset that keeps the rest of a route's undyed traffic:
// its default subset, or its one weighted subset other than canary.
func stableOf(route *ir.Route, canary string) string {
	if route.DefaultSubset != "" {
		return route.DefaultSubset
	}
	other := ""
	for _, w := range route.Weights {
		if w.Subset != canary {
			if other != "" {
				return ""
			}
			other = w.Subset
		}
	}
	return other
}

func rolloutSteps(d *decoder, steps []RolloutStepSpec, canary bool) []ir.RolloutStep {
	if _, ok := d.positions["spec.steps"]; ok && len(steps) == 0 {
		d.errPath("spec.steps", "is empty: give at least one step, e.g. weight 10, 50, 100")
	}
	var out []ir.RolloutStep
	last := -1
	for i, st := range steps {
		p := indexPath("spec.steps", i)
		share := st.Weight
		field, other := "weight", st.RolloutPercent
		if !canary {
			share, field, other = st.RolloutPercent, "rolloutPercent", st.Weight
		}
		if other != nil {
			wrong := "rolloutPercent"
			if !canary {
				wrong = "weight"
			}
			d.errPath(p+"."+wrong, "a %s target moves %s, not %s: rename the field", map[bool]string{true: "canaryRoute", false: "filterRelease"}[canary], field, wrong)
			continue
		}
		if share == nil {
			d.errPath(p, "missing %s: give the share at this step, 0..100", field)
			continue
		}
		w := int(*share)
		if w > 100 {
			d.errPath(p+"."+field, "%d is over 100: shares are percentages", w)
		} else if w < last {
			d.errPath(p+"."+field, "%d is below the previous step's %d: steps only go up (a rollback is automatic)", w, last)
		}
		last = w
		if st.Pause < 0 {
			d.errPath(p+".pause", "%s is negative", st.Pause)
		}
		out = append(out, ir.RolloutStep{Weight: w, Pause: st.Pause, Approval: st.Approval})
	}
	return out
}

func rolloutMetrics(d *decoder, path string, ms []RolloutMetricSpec) []ir.RolloutMetric {
	var out []ir.RolloutMetric
	names := map[string]int{}
	for i, m := range ms {
		p := indexPath(path, i)
		if m.Max == nil && m.Min == nil {
			d.errPath(p, "%s has no threshold: give max (healthy while value <= max) or min", m.Name)
		}
		if m.Max != nil && m.Min != nil && *m.Min > *m.Max {
			d.errPath(p+".min", "%g is above max %g: no value could pass", *m.Min, *m.Max)
		}
		if j, dup := names[m.Name]; dup && m.Name != "" {
			d.errPath(p+".name", "%q is already the name of %s[%d]: decisions name checks, give each its own", m.Name, path, j)
		}
		names[m.Name] = i
		out = append(out, ir.RolloutMetric{Name: m.Name, Query: m.Query, Min: m.Min, Max: m.Max})
	}
	return out
}

// checkWebhook admits https URLs, and http only to loopback (no
// escalation travels in clear over a network).
func checkWebhook(d *decoder, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		d.errPath("spec.rollback.webhook", "%q is not a URL: give e.g. https://alerts.example.com/hook", raw)
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			d.errPath("spec.rollback.webhook", "http to %s would send the escalation in clear: use https (http is allowed on loopback only)", u.Host)
		}
	default:
		d.errPath("spec.rollback.webhook", "scheme %q: use https", u.Scheme)
	}
}
