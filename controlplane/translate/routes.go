package translate

import (
	"maps"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/ir"
)

// retryOn is the set of failures a route policy's retries cover.
const retryOn = "connect-failure,reset,5xx"

// serviceRoutes returns the routes to svc under prefix: one per lane rule
// (lane header match, first wins), then the default (weighted or single).
// rs (may be nil) lays the resilience policy over them (resilience.go).
func serviceRoutes(svc string, r *ir.Route, rs *ir.Resilience, prefix, rewrite string) []*routev3.Route {
	if r == nil {
		r = &ir.Route{Service: svc}
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	action := func(subset string) *routev3.RouteAction {
		a := &routev3.RouteAction{Timeout: durationpb.New(timeout), PrefixRewrite: rewrite}
		if r.Retries > 0 {
			a.RetryPolicy = &routev3.RetryPolicy{RetryOn: retryOn, NumRetries: wrapperspb.UInt32(r.Retries)}
		}
		applyRouteResilience(a, rs, subset)
		return a
	}
	perFilter := routeFilterConfig(rs)
	match := func(headers []*routev3.HeaderMatcher) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}, Headers: headers}
	}
	var out []*routev3.Route
	for _, l := range r.Lanes {
		hs := []*routev3.HeaderMatcher{exactHeader(dyeing.Header, l.Lane)}
		for _, k := range slices.Sorted(maps.Keys(l.Headers)) {
			hs = append(hs, exactHeader(k, l.Headers[k]))
		}
		a := action(l.Subset)
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ClusterName(svc, l.Subset)}
		out = append(out, &routev3.Route{
			Name:                 svc + "/lane/" + l.Lane,
			Match:                match(hs),
			Action:               &routev3.Route_Route{Route: a},
			TypedPerFilterConfig: perFilter,
		})
	}
	whole := r.DefaultSubset // the subset the default route sends everything to
	if len(r.Weights) > 0 {
		whole = ""
	}
	a := action(whole)
	if len(r.Weights) > 0 {
		wc := &routev3.WeightedCluster{}
		for _, w := range r.Weights {
			if w.Weight == 0 {
				continue
			}
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
				Name: ClusterName(svc, w.Subset), Weight: wrapperspb.UInt32(w.Weight),
			})
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	} else {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ClusterName(svc, r.DefaultSubset)}
	}
	out = append(out, &routev3.Route{
		Name:                 svc + "/default",
		Match:                match(nil),
		Action:               &routev3.Route_Route{Route: a},
		TypedPerFilterConfig: perFilter,
	})
	return out
}

func exactHeader(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value},
		}},
	}
}
