package translate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshwarden/meshwarden/internal/dye"
	"github.com/meshwarden/meshwarden/internal/ir"
)

// retryOn is the set of failures a route policy's retries cover.
const retryOn = "connect-failure,reset,5xx"

// routeConfig builds the route configuration name: a virtual host per
// upstream service (domains <svc>, <svc>.service.consul and both with any
// port). The gateway's also has a catch-all virtual host that routes the
// path prefix /<svc>/ to svc, with the prefix rewritten to /.
func (s *Shared) routeConfig(name string, services []string, routes map[string]*ir.Route, gateway bool) (types.Resource, error) {
	rc := &routev3.RouteConfiguration{Name: name}
	var catchAll []*routev3.Route
	for _, svc := range services {
		r := routes[svc]
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    svc,
			Domains: []string{svc, svc + ".service.consul", svc + ":*", svc + ".service.consul:*"},
			Routes:  serviceRoutes(svc, r, "/", ""),
		})
		if gateway {
			catchAll = append(catchAll, serviceRoutes(svc, r, "/"+svc+"/", "/")...)
		}
	}
	if gateway {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    "mw-by-path",
			Domains: []string{"*"},
			Routes:  catchAll,
		})
	}
	return rc, nil
}

// serviceRoutes returns the routes to svc under prefix: one per lane rule
// (lane header match, first wins), then the default (weighted or single).
func serviceRoutes(svc string, r *ir.Route, prefix, rewrite string) []*routev3.Route {
	if r == nil {
		r = &ir.Route{Service: svc}
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	action := func() *routev3.RouteAction {
		a := &routev3.RouteAction{Timeout: durationpb.New(timeout), PrefixRewrite: rewrite}
		if r.Retries > 0 {
			a.RetryPolicy = &routev3.RetryPolicy{RetryOn: retryOn, NumRetries: wrapperspb.UInt32(r.Retries)}
		}
		return a
	}
	match := func(headers []*routev3.HeaderMatcher) *routev3.RouteMatch {
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}, Headers: headers}
	}
	var out []*routev3.Route
	for _, l := range r.Lanes {
		hs := []*routev3.HeaderMatcher{exactHeader(dye.Header, l.Lane)}
		for _, k := range sortedKeys(l.Headers) {
			hs = append(hs, exactHeader(k, l.Headers[k]))
		}
		a := action()
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ClusterName(svc, l.Subset)}
		out = append(out, &routev3.Route{
			Name:   svc + "/lane/" + l.Lane,
			Match:  match(hs),
			Action: &routev3.Route_Route{Route: a},
		})
	}
	a := action()
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
		Name:   svc + "/default",
		Match:  match(nil),
		Action: &routev3.Route_Route{Route: a},
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
