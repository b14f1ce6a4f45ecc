package policies

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/ir"
)

// KindResiliencePolicy is the kind of a [ResiliencePolicySpec] document.
const KindResiliencePolicy = "ResiliencePolicy"

// ResiliencePolicySpec is the spec of a ResiliencePolicy: how calls to one
// service are protected (anchors: Istio DestinationRule/VirtualService,
// Envoy Gateway BackendTrafficPolicy). Every setting becomes an Envoy
// resource field that Envoy and the Meshwarden gateway both obey.
type ResiliencePolicySpec struct {
	// Service is the Consul service name.
	Service string `json:"service" mw:"required"`
	ResilienceSettingsSpec
	// Subsets override timeout, retries, outlierDetection and
	// circuitBreaker for one subset of the service's CanaryRoute: its
	// cluster, and the routes that send all their traffic to it.
	Subsets []SubsetResilienceSpec `json:"subsets,omitempty"`
	// RateLimit admits at most requests per interval per proxy and route
	// (Envoy local rate limit); the rest get 429.
	RateLimit *RateLimitSpec `json:"rateLimit,omitempty"`
	// Fault injects delays and aborts for game days (Envoy fault filter).
	Fault *FaultSpec `json:"fault,omitempty"`
	// Mirror copies a share of requests, fire-and-forget, to a service
	// (or a subset); responses are discarded, Host gets "-shadow".
	Mirror *MirrorSpec `json:"mirror,omitempty"`
	// HealthWeights weigh the health score's signals (they sum to 1;
	// default 0.25 each).
	HealthWeights *HealthWeightsSpec `json:"healthWeights,omitempty"`
}

// ResilienceSettingsSpec are the settings a subset may override.
type ResilienceSettingsSpec struct {
	// Timeout per request, e.g. "2s" (default: the route's, 15s).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retries retry failed requests within a budget.
	Retries *RetrySpec `json:"retries,omitempty"`
	// OutlierDetection ejects endpoints that fail in a row.
	OutlierDetection *OutlierSpec `json:"outlierDetection,omitempty"`
	// CircuitBreaker caps connections and requests to the cluster; over
	// the caps requests fail fast with 503 and x-envoy-overloaded.
	CircuitBreaker *CircuitBreakerSpec `json:"circuitBreaker,omitempty"`
}

// SubsetResilienceSpec overrides settings for one subset.
type SubsetResilienceSpec struct {
	Subset string `json:"subset" mw:"required"`
	ResilienceSettingsSpec
}

// RetrySpec is a retry policy with a retry budget.
type RetrySpec struct {
	// Attempts is the number of retries after the first try (1-10).
	Attempts uint32 `json:"attempts" mw:"required,max=10"`
	// PerTryTimeout bounds each try, e.g. "500ms".
	PerTryTimeout time.Duration `json:"perTryTimeout,omitempty"`
	// On lists conditions: connect-failure, reset, 5xx, gateway-error,
	// retriable-status-codes (default connect-failure, reset, 5xx).
	On []string `json:"on,omitempty"`
	// StatusCodes are retried with retriable-status-codes.
	StatusCodes []uint32 `json:"statusCodes,omitempty"`
	// BudgetPercent caps concurrent retries at this share of the active
	// requests (default 20; Envoy retry_budget).
	BudgetPercent *float64 `json:"budgetPercent,omitempty"`
	// MinConcurrency retries are always allowed (default 3).
	MinConcurrency *uint32 `json:"minConcurrency,omitempty"`
}

// OutlierSpec is passive health checking.
type OutlierSpec struct {
	// Consecutive5xx failures eject an endpoint (default 5).
	Consecutive5xx uint32 `json:"consecutive5xx,omitempty" mw:"max=1000"`
	// Interval between ejection sweeps (default 10s).
	Interval time.Duration `json:"interval,omitempty"`
	// BaseEjectionTime is the first ejection's length (default 30s),
	// multiplied by the number of ejections.
	BaseEjectionTime time.Duration `json:"baseEjectionTime,omitempty"`
	// MaxEjectionTime caps an ejection (default 300s).
	MaxEjectionTime time.Duration `json:"maxEjectionTime,omitempty"`
	// MaxEjectionPercent of endpoints may be ejected at once (default 10).
	MaxEjectionPercent uint32 `json:"maxEjectionPercent,omitempty" mw:"max=100"`
	// Consecutive5xxWhenUnhealthy replaces consecutive5xx while the plane
	// scores the subset below its health threshold (--health-scrape):
	// the health score tightens ejection. Default: no change.
	Consecutive5xxWhenUnhealthy uint32 `json:"consecutive5xxWhenUnhealthy,omitempty"`
}

// CircuitBreakerSpec caps the load on one cluster.
type CircuitBreakerSpec struct {
	MaxConnections     uint32 `json:"maxConnections,omitempty"`
	MaxPendingRequests uint32 `json:"maxPendingRequests,omitempty"`
	MaxRequests        uint32 `json:"maxRequests,omitempty"`
	MaxRetries         uint32 `json:"maxRetries,omitempty"`
}

// RateLimitSpec is a token bucket: requests per interval.
type RateLimitSpec struct {
	Requests uint32        `json:"requests" mw:"required"`
	Interval time.Duration `json:"interval" mw:"required"`
}

// FaultSpec injects a fixed delay and/or an abort into a share of requests.
type FaultSpec struct {
	Delay *FaultDelaySpec `json:"delay,omitempty"`
	Abort *FaultAbortSpec `json:"abort,omitempty"`
}

// FaultDelaySpec delays percent of requests by fixed.
type FaultDelaySpec struct {
	Fixed   time.Duration `json:"fixed" mw:"required"`
	Percent float64       `json:"percent" mw:"required"`
}

// FaultAbortSpec answers percent of requests with httpStatus.
type FaultAbortSpec struct {
	HTTPStatus uint32  `json:"httpStatus" mw:"required"`
	Percent    float64 `json:"percent" mw:"required"`
}

// MirrorSpec copies requests to another service or subset.
type MirrorSpec struct {
	Service string  `json:"service" mw:"required"`
	Subset  string  `json:"subset,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// HealthWeightsSpec weighs the health score's four signals.
type HealthWeightsSpec struct {
	Latency    float64 `json:"latency"`
	Errors     float64 `json:"errors"`
	Throughput float64 `json:"throughput"`
	Saturation float64 `json:"saturation"`
	// LatencyTarget is the p95 latency that counts as fully bad, e.g.
	// "250ms" (default: the route's timeout).
	LatencyTarget time.Duration `json:"latencyTarget,omitempty"`
}

// retryConditions are the retry_on values the gateway and Envoy both obey.
var retryConditions = []string{"5xx", "connect-failure", "gateway-error", "reset", "retriable-status-codes"}

// resilience builds one ResiliencePolicy, reporting every bad field.
func (b *builder) resilience(x *doc, s *ResiliencePolicySpec) (ir.Resilience, bool) {
	d := x.dec
	before := len(b.diags.Errors)
	r := ir.Resilience{Service: s.Service, Name: x.name, Source: x.source()}
	b.checkSpecService(d, s.Service)
	r.ResilienceSettings = b.resilienceSettings(d, "spec", s.ResilienceSettingsSpec)
	seen := map[string]bool{}
	for i, o := range s.Subsets {
		p := indexPath("spec.subsets", i)
		if seen[o.Subset] {
			d.errPath(p+".subset", "subset %q is already overridden: merge the two entries", o.Subset)
		}
		seen[o.Subset] = true
		r.Subsets = append(r.Subsets, ir.SubsetResilience{Subset: o.Subset, ResilienceSettings: b.resilienceSettings(d, p, o.ResilienceSettingsSpec)})
	}
	sort.Slice(r.Subsets, func(i, j int) bool { return r.Subsets[i].Subset < r.Subsets[j].Subset })
	if rl := s.RateLimit; rl != nil {
		if rl.Requests == 0 {
			d.errPath("spec.rateLimit.requests", "must be at least 1")
		}
		if rl.Interval < 50*time.Millisecond && !d.failed["spec.rateLimit.interval"] {
			d.errPath("spec.rateLimit.interval", "%s is below 50ms (Envoy's minimum fill interval): use e.g. \"1s\"", rl.Interval)
		}
		r.RateLimit = &ir.RateLimit{Requests: rl.Requests, Interval: rl.Interval}
	}
	if f := s.Fault; f != nil {
		r.Fault = &ir.Fault{}
		if f.Delay != nil {
			checkPercent(d, "spec.fault.delay.percent", f.Delay.Percent)
			if f.Delay.Fixed <= 0 && !d.failed["spec.fault.delay.fixed"] {
				d.errPath("spec.fault.delay.fixed", "must be positive, e.g. \"200ms\"")
			}
			r.Fault.Delay, r.Fault.DelayPercent = f.Delay.Fixed, f.Delay.Percent
		}
		if f.Abort != nil {
			checkPercent(d, "spec.fault.abort.percent", f.Abort.Percent)
			if f.Abort.HTTPStatus < 200 || f.Abort.HTTPStatus > 599 {
				d.errPath("spec.fault.abort.httpStatus", "%d is not an HTTP status: use 200-599, e.g. 503", f.Abort.HTTPStatus)
			}
			r.Fault.AbortStatus, r.Fault.AbortPercent = f.Abort.HTTPStatus, f.Abort.Percent
		}
		if f.Delay == nil && f.Abort == nil {
			d.errPath("spec.fault", "is empty: give delay, abort or both")
		}
	}
	if m := s.Mirror; m != nil {
		pct := m.Percent
		if _, set := d.positions["spec.mirror.percent"]; !set {
			pct = 100
		}
		checkPercent(d, "spec.mirror.percent", pct)
		if err := checkService(m.Service); err != nil && m.Service != "" {
			d.errPath("spec.mirror.service", "%v", err)
		} else if m.Service == s.Service && m.Subset == "" {
			d.errPath("spec.mirror.service", "mirrors %q to itself: name another service or a subset", m.Service)
		} else {
			b.warnMissingService(d, "spec.mirror.service", m.Service)
		}
		r.Mirror = &ir.Mirror{Service: m.Service, Subset: m.Subset, Percent: pct}
	}
	if w := s.HealthWeights; w != nil {
		sum := w.Latency + w.Errors + w.Throughput + w.Saturation
		if w.Latency < 0 || w.Errors < 0 || w.Throughput < 0 || w.Saturation < 0 || sum < 0.999 || sum > 1.001 {
			d.errPath("spec.healthWeights", "weights must be 0-1 and sum to 1 (they sum to %g)", sum)
		}
		r.Health = &ir.HealthWeights{Latency: w.Latency, Errors: w.Errors, Throughput: w.Throughput, Saturation: w.Saturation, LatencyTarget: w.LatencyTarget}
	}
	return r, len(b.diags.Errors) == before
}

// resilienceSettings checks the overridable settings under path.
func (b *builder) resilienceSettings(d *decoder, path string, s ResilienceSettingsSpec) ir.ResilienceSettings {
	out := ir.ResilienceSettings{Timeout: s.Timeout}
	if s.Timeout > 0 && s.Timeout < time.Millisecond {
		d.errPath(path+".timeout", "%s is below 1ms: give a timeout such as \"2s\"", s.Timeout)
	}
	if rs := s.Retries; rs != nil {
		p := path + ".retries"
		rt := &ir.Retry{Attempts: rs.Attempts, PerTryTimeout: rs.PerTryTimeout, StatusCodes: rs.StatusCodes, BudgetPercent: 20, MinConcurrency: 3}
		if _, set := d.positions[p+".attempts"]; set && (rs.Attempts == 0 || rs.Attempts > 10) {
			d.errPath(p+".attempts", "%d is out of range: use 1-10, or remove retries to disable them", rs.Attempts)
		}
		if s.Timeout > 0 && rs.PerTryTimeout > s.Timeout {
			d.errPath(p+".perTryTimeout", "%s is longer than the timeout %s: a try could never time out on its own", rs.PerTryTimeout, s.Timeout)
		}
		rt.On = rs.On
		if len(rt.On) == 0 {
			rt.On = []string{"connect-failure", "reset", "5xx"}
		}
		for i, c := range rs.On {
			if !slices.Contains(retryConditions, c) {
				d.errPath(indexPath(p+".on", i), "%q is not a retry condition: use %s", c, strings.Join(retryConditions, ", "))
			}
		}
		if len(rs.StatusCodes) > 0 && !slices.Contains(rt.On, "retriable-status-codes") {
			d.errPath(p+".statusCodes", "has no effect without retriable-status-codes in on: add it")
		}
		for i, c := range rs.StatusCodes {
			if c < 100 || c > 599 {
				d.errPath(indexPath(p+".statusCodes", i), "%d is not an HTTP status", c)
			}
		}
		if rs.BudgetPercent != nil {
			checkPercent(d, p+".budgetPercent", *rs.BudgetPercent)
			rt.BudgetPercent = *rs.BudgetPercent
		}
		if rs.MinConcurrency != nil {
			rt.MinConcurrency = *rs.MinConcurrency
		}
		out.Retry = rt
	}
	if o := s.OutlierDetection; o != nil {
		od := &ir.Outlier{Consecutive5xx: o.Consecutive5xx, Interval: o.Interval, BaseEjectionTime: o.BaseEjectionTime, MaxEjectionTime: o.MaxEjectionTime, MaxEjectionPercent: o.MaxEjectionPercent,
			Consecutive5xxUnhealthy: o.Consecutive5xxWhenUnhealthy}
		if c := o.Consecutive5xxWhenUnhealthy; c > 0 && (o.Consecutive5xx == 0 && c > 5 || o.Consecutive5xx > 0 && c > o.Consecutive5xx) {
			d.errPath(path+".outlierDetection.consecutive5xxWhenUnhealthy", "%d is more than consecutive5xx: it should eject sooner, not later", c)
		}
		if _, set := d.positions[path+".outlierDetection.consecutive5xx"]; set && o.Consecutive5xx == 0 {
			d.errPath(path+".outlierDetection.consecutive5xx", "must be at least 1: remove outlierDetection to disable it")
		}
		if o.MaxEjectionPercent > 100 {
			d.errPath(path+".outlierDetection.maxEjectionPercent", "%d is over 100: it is a percentage of the endpoints", o.MaxEjectionPercent)
		}
		if o.MaxEjectionTime > 0 && o.BaseEjectionTime > o.MaxEjectionTime {
			d.errPath(path+".outlierDetection.maxEjectionTime", "%s is shorter than baseEjectionTime %s", o.MaxEjectionTime, o.BaseEjectionTime)
		}
		out.Outlier = od
	}
	if c := s.CircuitBreaker; c != nil {
		if c.MaxConnections == 0 && c.MaxPendingRequests == 0 && c.MaxRequests == 0 && c.MaxRetries == 0 {
			d.errPath(path+".circuitBreaker", "is empty: set maxConnections, maxPendingRequests, maxRequests or maxRetries")
		}
		out.Breaker = &ir.Breaker{MaxConnections: c.MaxConnections, MaxPendingRequests: c.MaxPendingRequests, MaxRequests: c.MaxRequests, MaxRetries: c.MaxRetries}
	}
	return out
}

func checkPercent(d *decoder, path string, p float64) {
	if (p < 0 || p > 100) && !d.failed[path] {
		d.errPath(path, "%g is not a percentage: use 0 to 100", p)
	}
}

// checkResilienceRoutes reports conflicts with the CanaryRoutes: a subset
// the route does not define, and timeout/retries set in both.
func (b *builder) checkResilienceRoutes(docs []*doc) {
	routes := map[string]ir.Route{}
	for _, r := range b.ps.Routes {
		routes[r.Service] = r
	}
	for _, x := range docs {
		s := x.spec.Interface().(*ResiliencePolicySpec)
		rt, hasRoute := routes[s.Service]
		for i, o := range s.Subsets {
			if o.Subset != "" && !routeHas(rt, o.Subset) {
				x.dec.errPath(indexPath("spec.subsets", i)+".subset", "subset %q is not defined by a CanaryRoute of %q: define it there first", o.Subset, s.Service)
			}
		}
		if m := s.Mirror; m != nil && m.Subset != "" && !routeHas(routes[m.Service], m.Subset) {
			x.dec.errPath("spec.mirror.subset", "subset %q is not defined by a CanaryRoute of %q: define it there first", m.Subset, m.Service)
		}
		if hasRoute && rt.Timeout != 0 && s.Timeout != 0 {
			x.dec.errPath("spec.timeout", "the CanaryRoute at %s sets a timeout too: keep it in one place", rt.Source)
		}
		if hasRoute && rt.Retries != 0 && s.Retries != nil {
			x.dec.errPath("spec.retries", "the CanaryRoute at %s sets retries too: keep them in one place", rt.Source)
		}
	}
}

func routeHas(r ir.Route, subset string) bool {
	for _, s := range r.Subsets {
		if s.Name == subset {
			return true
		}
	}
	return false
}
