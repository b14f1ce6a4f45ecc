package rollout

import "github.com/meshwarden/meshwarden/ir"

// SpecFromIR is the engine's spec of a Rollout policy.
func SpecFromIR(r ir.Rollout) Spec {
	s := Spec{Name: r.Name, Subset: r.Subset, StepTimeout: r.StepTimeout, HealthTimeout: r.HealthTimeout,
		Analysis: Analysis{Interval: r.Interval, FailureLimit: r.FailureLimit, InconclusiveLimit: r.InconclusiveLimit,
			OnInconclusive: r.OnInconclusive, QueryTimeout: r.QueryTimeout, Metrics: metrics(r.Metrics), Health: metrics(r.Health)}}
	s.Target = "CanaryRoute/" + r.Service
	if r.Filter != "" {
		s.Target = "FilterRelease/" + r.Filter
	}
	for _, st := range r.Steps {
		s.Steps = append(s.Steps, Step{Weight: st.Weight, Hold: st.Pause, Approval: st.Approval})
	}
	return s
}

func metrics(ms []ir.RolloutMetric) []Metric {
	var out []Metric
	for _, m := range ms {
		out = append(out, Metric{Name: m.Name, Query: m.Query, Min: m.Min, Max: m.Max})
	}
	return out
}
