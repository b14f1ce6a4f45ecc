package ir

import (
	"errors"
	"fmt"
	"time"
)

// Resilience is how the mesh protects calls to one service: per request
// (timeout, retries, rate limit, fault injection, mirroring) and per
// upstream cluster (outlier detection, circuit breakers). Subset overrides
// replace the service-level values for that subset's cluster and for the
// routes that send all their traffic to it (lane routes, defaultSubset).
type Resilience struct {
	Service string
	// Name is the policy document's name.
	Name string
	ResilienceSettings
	// Subsets are per-subset overrides, sorted by Subset.
	Subsets []SubsetResilience
	// RateLimit, Fault and Mirror apply to every route of the service.
	RateLimit *RateLimit
	Fault     *Fault
	Mirror    *Mirror
	// Health weighs the four health signals; nil means equal weights.
	Health *HealthWeights
	Source string
}

// ResilienceSettings are the fields a subset may override; a nil or zero
// field inherits the service-level value.
type ResilienceSettings struct {
	// Timeout per request; zero means the route's (default 15s).
	Timeout time.Duration
	Retry   *Retry
	Outlier *Outlier
	Breaker *Breaker
}

// SubsetResilience overrides settings for one subset of the service's
// CanaryRoute.
type SubsetResilience struct {
	Subset string
	ResilienceSettings
}

// Retry is a route retry policy with a cluster retry budget.
type Retry struct {
	// Attempts is the number of retries (not counting the first try).
	Attempts uint32
	// PerTryTimeout bounds each try; zero means the route timeout.
	PerTryTimeout time.Duration
	// On lists Envoy retry_on conditions (connect-failure, reset, 5xx,
	// gateway-error, retriable-status-codes, ...).
	On []string
	// StatusCodes are retried when On has retriable-status-codes.
	StatusCodes []uint32
	// BudgetPercent caps concurrent retries at this share of active
	// requests (Envoy retry_budget); zero means no budget (max_retries).
	BudgetPercent float64
	// MinConcurrency is the retries always allowed regardless of budget.
	MinConcurrency uint32
}

// Outlier is passive health checking: eject an endpoint after consecutive
// 5xx or gateway errors.
type Outlier struct {
	Consecutive5xx     uint32
	Interval           time.Duration
	BaseEjectionTime   time.Duration
	MaxEjectionTime    time.Duration
	MaxEjectionPercent uint32
	// Consecutive5xxUnhealthy replaces Consecutive5xx while the plane
	// scores the subset unhealthy (zero: the score does not change it).
	Consecutive5xxUnhealthy uint32 `json:",omitempty"`
}

// Breaker is a cluster's circuit breaker thresholds; zero means Envoy's
// default (1024, except MaxRetries 3).
type Breaker struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32
}

// RateLimit is a local token bucket per proxy and route.
type RateLimit struct {
	// Requests are admitted per Interval (the bucket size and refill).
	Requests uint32
	Interval time.Duration
}

// Fault injects delays and aborts into a share of requests (game days).
type Fault struct {
	Delay        time.Duration
	DelayPercent float64
	AbortStatus  uint32
	AbortPercent float64
}

// Mirror copies a share of requests, fire-and-forget, to another service
// (or subset); the copy's Host gets the suffix "-shadow".
type Mirror struct {
	Service string
	Subset  string
	Percent float64
}

// HealthWeights weigh the health score's signals; they sum to 1.
type HealthWeights struct {
	Latency, Errors, Throughput, Saturation float64
	// LatencyTarget is the p95 that counts as fully bad; zero means the
	// route's timeout.
	LatencyTarget time.Duration `json:",omitempty"`
}

// For returns the settings of subset ("" for the service), overrides laid
// over the service-level values.
func (r *Resilience) For(subset string) ResilienceSettings {
	if r == nil {
		return ResilienceSettings{}
	}
	s := r.ResilienceSettings
	for _, o := range r.Subsets {
		if o.Subset != subset {
			continue
		}
		if o.Timeout != 0 {
			s.Timeout = o.Timeout
		}
		if o.Retry != nil {
			s.Retry = o.Retry
		}
		if o.Outlier != nil {
			s.Outlier = o.Outlier
		}
		if o.Breaker != nil {
			s.Breaker = o.Breaker
		}
	}
	return s
}

// Validate checks one resilience policy's ranges (the loader has given
// file:line errors already; this guards other producers).
func (r *Resilience) Validate() error {
	var errs []error
	at := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: resilience policy for %q: %s", r.Source, r.Service, fmt.Sprintf(format, a...)))
	}
	if r.Service == "" {
		at("service is empty")
	}
	pct := func(name string, p float64) {
		if p < 0 || p > 100 {
			at("%s %v is not a percentage: use 0 to 100", name, p)
		}
	}
	check := func(s ResilienceSettings) {
		if s.Retry != nil {
			pct("retry budget", s.Retry.BudgetPercent)
			if s.Retry.Attempts == 0 {
				at("retries need at least one attempt")
			}
		}
		if s.Outlier != nil && s.Outlier.MaxEjectionPercent > 100 {
			at("maxEjectionPercent %d is over 100", s.Outlier.MaxEjectionPercent)
		}
	}
	check(r.ResilienceSettings)
	for _, o := range r.Subsets {
		check(o.ResilienceSettings)
	}
	if f := r.Fault; f != nil {
		pct("fault delay percent", f.DelayPercent)
		pct("fault abort percent", f.AbortPercent)
		if f.AbortPercent > 0 && (f.AbortStatus < 200 || f.AbortStatus > 599) {
			at("fault abort status %d is not an HTTP status 200-599", f.AbortStatus)
		}
	}
	if rl := r.RateLimit; rl != nil && (rl.Requests == 0 || rl.Interval < time.Millisecond) {
		at("rate limit needs requests > 0 and an interval of at least 1ms")
	}
	if m := r.Mirror; m != nil {
		pct("mirror percent", m.Percent)
		if m.Service == "" {
			at("mirror service is empty")
		}
	}
	return errors.Join(errs...)
}

// validateResilience checks one policy per service and its conflicts with
// the service's route (timeouts and retries set twice, unknown subsets).
func (p *PolicySet) validateResilience() []error {
	var errs []error
	routes := map[string]*Route{}
	for i := range p.Routes {
		routes[p.Routes[i].Service] = &p.Routes[i]
	}
	seen := map[string]bool{}
	for i := range p.Resilience {
		r := &p.Resilience[i]
		if seen[r.Service] {
			errs = append(errs, fmt.Errorf("%s: service %q has more than one resilience policy: merge them", r.Source, r.Service))
		}
		seen[r.Service] = true
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
		rt := routes[r.Service]
		if rt != nil && (rt.Timeout != 0 && r.Timeout != 0 || rt.Retries != 0 && r.Retry != nil) {
			errs = append(errs, fmt.Errorf("%s: service %q: timeout or retries are set by both the route (%s) and the resilience policy: keep them in one", r.Source, r.Service, rt.Source))
		}
		for _, o := range r.Subsets {
			if !rt.hasSubset(o.Subset) {
				errs = append(errs, fmt.Errorf("%s: service %q: subset %q is not defined by its route", r.Source, r.Service, o.Subset))
			}
		}
		if m := r.Mirror; m != nil && m.Subset != "" && !routes[m.Service].hasSubset(m.Subset) {
			errs = append(errs, fmt.Errorf("%s: service %q: mirror subset %q is not defined by the route of %q", r.Source, r.Service, m.Subset, m.Service))
		}
	}
	return errs
}

func (r *Route) hasSubset(name string) bool {
	if r == nil {
		return false
	}
	for _, s := range r.Subsets {
		if s.Name == name {
			return true
		}
	}
	return false
}

// TightenUnhealthy returns ps with the outlier detection of every subset in
// unhealthy (keyed service → subset, "" for the all-instances cluster)
// switched to its Consecutive5xxUnhealthy, when the policy sets one. ps is
// not modified; it is returned as is when nothing changes.
func TightenUnhealthy(ps *PolicySet, unhealthy map[string]map[string]bool) *PolicySet {
	if ps == nil || len(unhealthy) == 0 {
		return ps
	}
	var out *PolicySet
	for i := range ps.Resilience {
		r := ps.Resilience[i]
		changed := false
		for subset := range unhealthy[r.Service] {
			o := r.For(subset).Outlier
			if o == nil || o.Consecutive5xxUnhealthy == 0 || o.Consecutive5xxUnhealthy == o.Consecutive5xx {
				continue
			}
			tight := *o
			tight.Consecutive5xx = o.Consecutive5xxUnhealthy
			if !changed {
				r.Subsets = append([]SubsetResilience(nil), r.Subsets...)
				changed = true
			}
			if subset == "" {
				r.Outlier = &tight
				continue
			}
			found := false
			for j := range r.Subsets {
				if r.Subsets[j].Subset == subset {
					r.Subsets[j].Outlier, found = &tight, true
				}
			}
			if !found {
				r.Subsets = append(r.Subsets, SubsetResilience{Subset: subset, ResilienceSettings: ResilienceSettings{Outlier: &tight}})
			}
		}
		if !changed {
			continue
		}
		if out == nil {
			cp := *ps
			cp.Resilience = append([]Resilience(nil), ps.Resilience...)
			out = &cp
		}
		out.Resilience[i] = r
	}
	if out == nil {
		return ps
	}
	return out
}
