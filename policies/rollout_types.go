package policies

import "time"

// RolloutSpec is the spec of a Rollout: progressive delivery of a canary
// subset of a CanaryRoute (steps of weight) or of a FilterRelease (steps of
// rolloutPercent), each step judged by Prometheus queries; on breach the
// plane moves traffic back, checks health and escalates if it does not
// return. Give exactly one of canaryRoute and filterRelease.
type RolloutSpec struct {
	// CanaryRoute targets the CanaryRoute of a service: the canary subset
	// gets each step's weight, the stable subset the rest.
	CanaryRoute *RolloutCanarySpec `json:"canaryRoute,omitempty"`
	// FilterRelease targets the FilterRelease of a filter: each step sets
	// its rolloutPercent (the release needs previousSha256).
	FilterRelease *RolloutReleaseSpec `json:"filterRelease,omitempty"`
	// Steps run in order; the canary's share only goes up.
	Steps []RolloutStepSpec `json:"steps" mw:"required"`
	// Analysis judges every step.
	Analysis RolloutAnalysisSpec `json:"analysis" mw:"required"`
	// StepTimeout bounds every wait (a step that has not passed, an
	// approval not given): past it the rollout rolls back (default 30m).
	StepTimeout time.Duration `json:"stepTimeout,omitempty"`
	// Rollback says how health is checked after a rollback and whom to
	// tell when it does not return.
	Rollback RolloutRollbackSpec `json:"rollback,omitempty"`
}

// RolloutCanarySpec names a CanaryRoute's subsets.
type RolloutCanarySpec struct {
	// Service is the CanaryRoute's service.
	Service string `json:"service" mw:"required"`
	// Subset is the canary (new version) subset.
	Subset string `json:"subset" mw:"required"`
	// StableSubset receives the rest (default: the route's defaultSubset,
	// or its one other weighted subset).
	StableSubset string `json:"stableSubset,omitempty"`
}

// RolloutReleaseSpec names a FilterRelease by its filter.
type RolloutReleaseSpec struct {
	// Filter is the released filter: dye, audit or trace.
	Filter string `json:"filter" mw:"required,enum=dye|audit|trace"`
}

// RolloutStepSpec is one stage of a rollout.
type RolloutStepSpec struct {
	// Weight is the canary subset's share, 0..100 (canaryRoute targets).
	Weight *uint32 `json:"weight,omitempty" mw:"max=100"`
	// RolloutPercent is the share of proxies on the new build, 0..100
	// (filterRelease targets).
	RolloutPercent *uint32 `json:"rolloutPercent,omitempty" mw:"max=100"`
	// Pause holds the step at least this long, analysis running, before
	// the next (default: one analysis interval).
	Pause time.Duration `json:"pause,omitempty"`
	// Approval waits for `meshwarden rollout promote` before this step's
	// share is applied (bounded by stepTimeout).
	Approval bool `json:"approval,omitempty"`
}

// RolloutAnalysisSpec is how a step is judged.
type RolloutAnalysisSpec struct {
	// Interval between analyses, e.g. "30s" (at least 1s).
	Interval time.Duration `json:"interval" mw:"required"`
	// FailureLimit is how many failed analyses of a step roll back
	// (default 1).
	FailureLimit uint32 `json:"failureLimit,omitempty" mw:"max=100"`
	// InconclusiveLimit is how many analyses in a row without an answer
	// (query error, no sample, Prometheus down) trigger onInconclusive
	// (default 3). They never count as a pass.
	InconclusiveLimit uint32 `json:"inconclusiveLimit,omitempty" mw:"max=100"`
	// OnInconclusive is what happens at inconclusiveLimit: pause (default;
	// traffic stays, the status says why) or rollback.
	OnInconclusive string `json:"onInconclusive,omitempty" mw:"enum=pause|rollback"`
	// QueryTimeout bounds each Prometheus query (default 10s).
	QueryTimeout time.Duration `json:"queryTimeout,omitempty"`
	// Metrics are PromQL checks, all must pass. A query may use
	// {{service}}, {{subset}} and {{target}} and must return one sample.
	Metrics []RolloutMetricSpec `json:"metrics" mw:"required"`
}

// RolloutMetricSpec is one PromQL check with a threshold.
type RolloutMetricSpec struct {
	// Name identifies the check in decisions and the change log.
	Name string `json:"name" mw:"required"`
	// Query is PromQL returning exactly one sample.
	Query string `json:"query" mw:"required"`
	// Max: healthy while value <= max.
	Max *float64 `json:"max,omitempty"`
	// Min: healthy while value >= min.
	Min *float64 `json:"min,omitempty"`
}

// RolloutRollbackSpec is what follows a rollback.
type RolloutRollbackSpec struct {
	// Health are the checks after a rollback, when the canary has no
	// traffic left to judge (default: analysis.metrics).
	Health []RolloutMetricSpec `json:"health,omitempty"`
	// HealthTimeout bounds the health check; past it the rollout
	// escalates (default 5m).
	HealthTimeout time.Duration `json:"healthTimeout,omitempty"`
	// Webhook receives a JSON POST on escalation (and on rollback): an
	// https URL, or http on loopback.
	Webhook string `json:"webhook,omitempty"`
}
