package translate

import (
	"fmt"
	"math"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/ir"
)

// The HTTP filters a ResiliencePolicy configures per route (through
// typed_per_filter_config); the listener runs them, unconfigured, just
// before the router whenever some policy uses them.
const (
	LocalRateLimitFilterName = "envoy.filters.http.local_ratelimit"
	FaultFilterName          = "envoy.filters.http.fault"
	// localRateLimitStatPrefix is the stat prefix of the rate limit filter.
	localRateLimitStatPrefix = "mw_local_rate_limit"
)

// applyRouteResilience lays a resilience policy's per-request settings for
// subset ("" = the whole service or a weighted split) over route action a:
// timeout, retry policy and request mirroring.
func applyRouteResilience(a *routev3.RouteAction, rs *ir.Resilience, subset string) {
	if rs == nil {
		return
	}
	set := rs.For(subset)
	if set.Timeout > 0 {
		a.Timeout = durationpb.New(set.Timeout)
	}
	if rt := set.Retry; rt != nil {
		p := &routev3.RetryPolicy{RetryOn: strings.Join(rt.On, ","), NumRetries: wrapperspb.UInt32(rt.Attempts), RetriableStatusCodes: rt.StatusCodes}
		if rt.PerTryTimeout > 0 {
			p.PerTryTimeout = durationpb.New(rt.PerTryTimeout)
		}
		a.RetryPolicy = p
	}
	if m := rs.Mirror; m != nil && m.Percent > 0 {
		a.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{
			Cluster:         ClusterName(m.Service, m.Subset),
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: fraction(m.Percent)},
		}}
	}
}

// routeFilterConfig is the per-route configuration of the rate limit and
// fault filters (nil when the policy sets neither).
func routeFilterConfig(rs *ir.Resilience) map[string]*anypb.Any {
	if rs == nil || rs.RateLimit == nil && rs.Fault == nil {
		return nil
	}
	out := map[string]*anypb.Any{}
	if rl := rs.RateLimit; rl != nil {
		all := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
		out[LocalRateLimitFilterName] = mustAny(&lrlv3.LocalRateLimit{
			StatPrefix: localRateLimitStatPrefix,
			TokenBucket: &typev3.TokenBucket{
				MaxTokens: rl.Requests, TokensPerFill: wrapperspb.UInt32(rl.Requests), FillInterval: durationpb.New(rl.Interval),
			},
			FilterEnabled:  all,
			FilterEnforced: all,
		})
	}
	if f := rs.Fault; f != nil {
		hf := &faultv3.HTTPFault{}
		if f.Delay > 0 {
			hf.Delay = &commonfaultv3.FaultDelay{
				FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(f.Delay)},
				Percentage:         fraction(f.DelayPercent),
			}
		}
		if f.AbortStatus > 0 {
			hf.Abort = &faultv3.FaultAbort{
				ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: f.AbortStatus},
				Percentage: fraction(f.AbortPercent),
			}
		}
		out[FaultFilterName] = mustAny(hf)
	}
	return out
}

// applyClusterResilience sets a subset's (or the service's) outlier
// detection and circuit breakers, with the retry budget, on cluster c.
func applyClusterResilience(c *clusterv3.Cluster, rs *ir.Resilience, subset string) {
	if rs == nil {
		return
	}
	set := rs.For(subset)
	if o := set.Outlier; o != nil {
		od := &clusterv3.OutlierDetection{}
		if o.Consecutive5xx > 0 {
			od.Consecutive_5Xx = wrapperspb.UInt32(o.Consecutive5xx)
		}
		if o.Interval > 0 {
			od.Interval = durationpb.New(o.Interval)
		}
		if o.BaseEjectionTime > 0 {
			od.BaseEjectionTime = durationpb.New(o.BaseEjectionTime)
		}
		if o.MaxEjectionTime > 0 {
			od.MaxEjectionTime = durationpb.New(o.MaxEjectionTime)
		}
		if o.MaxEjectionPercent > 0 {
			od.MaxEjectionPercent = wrapperspb.UInt32(o.MaxEjectionPercent)
		}
		c.OutlierDetection = od
	}
	if set.Breaker == nil && set.Retry == nil {
		return
	}
	th := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
	if b := set.Breaker; b != nil {
		u32 := func(v uint32) *wrapperspb.UInt32Value {
			if v == 0 {
				return nil
			}
			return wrapperspb.UInt32(v)
		}
		th.MaxConnections, th.MaxPendingRequests = u32(b.MaxConnections), u32(b.MaxPendingRequests)
		th.MaxRequests, th.MaxRetries = u32(b.MaxRequests), u32(b.MaxRetries)
	}
	if rt := set.Retry; rt != nil {
		// Always a budget with retries: budgetPercent 0 leaves
		// minConcurrency as the cap on concurrent retries.
		th.RetryBudget = &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
			BudgetPercent:       &typev3.Percent{Value: rt.BudgetPercent},
			MinRetryConcurrency: wrapperspb.UInt32(rt.MinConcurrency),
		}
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
}

// resilienceFilters are the rate limit and fault HTTP filters, when any
// policy of ps uses them: they do nothing without a route's configuration.
func resilienceFilters(ps *ir.PolicySet) []*hcmv3.HttpFilter {
	var rate, fault bool
	for _, r := range ps.Resilience {
		rate = rate || r.RateLimit != nil
		fault = fault || r.Fault != nil
	}
	var out []*hcmv3.HttpFilter
	if rate {
		out = append(out, &hcmv3.HttpFilter{Name: LocalRateLimitFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{
			TypedConfig: mustAny(&lrlv3.LocalRateLimit{StatPrefix: localRateLimitStatPrefix}),
		}})
	}
	if fault {
		out = append(out, &hcmv3.HttpFilter{Name: FaultFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{
			TypedConfig: mustAny(&faultv3.HTTPFault{}),
		}})
	}
	return out
}

// resilienceWarnings notes policies for services, or mirrors to clusters,
// that Consul does not know (yet).
func resilienceWarnings(ps *ir.PolicySet, known map[string]bool) []string {
	var out []string
	for _, r := range ps.Resilience {
		if !known[r.Service] {
			out = append(out, fmt.Sprintf("%s: resilience policy for service %q, which Consul does not know (yet): it applies once the service registers", r.Source, r.Service))
		}
		if m := r.Mirror; m != nil && !known[m.Service] {
			out = append(out, fmt.Sprintf("%s: mirror to service %q, which Consul does not know (yet): no copy is sent until it registers", r.Source, m.Service))
		}
	}
	return out
}

// fraction turns a percentage (0-100, with up to four decimals) into an
// Envoy fractional percent per million.
func fraction(pct float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(math.Round(pct * 10000)), Denominator: typev3.FractionalPercent_MILLION}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("translate: marshal %T: %v", m, err)) // cannot happen for generated types
	}
	return a
}
