package gateway

import (
	"net/http"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestRouteMatching(t *testing.T) {
	r := func(name string, m *route.RouteMatch) *route.Route {
		return &route.Route{Name: name, Match: m, Action: routeTo(name)}
	}
	exact := func(s string) *matcher.StringMatcher {
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}}
	}
	rc := &route.RouteConfiguration{Name: "t", VirtualHosts: []*route.VirtualHost{
		{Name: "exact", Domains: []string{"api.example.com"}, Routes: []*route.Route{
			r("regex", &route.RouteMatch{PathSpecifier: &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: "/v[0-9]+/items"}}}),
			r("sep", &route.RouteMatch{PathSpecifier: &route.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/docs"}}),
			r("path", &route.RouteMatch{PathSpecifier: &route.RouteMatch_Path{Path: "/Exact"}, CaseSensitive: wrapperspb.Bool(false)}),
			r("not-beta", prefixMatch("/", &route.HeaderMatcher{Name: "x-beta", InvertMatch: true,
				HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{StringMatch: exact("1")}})),
			r("rest", prefixMatch("/")),
		}},
		{Name: "suffix-long", Domains: []string{"*.eu.example.com"}, Routes: []*route.Route{r("suffix-long", prefixMatch("/"))}},
		{Name: "suffix", Domains: []string{"*.example.com"}, Routes: []*route.Route{r("suffix", prefixMatch("/"))}},
		{Name: "prefix", Domains: []string{"internal.*"}, Routes: []*route.Route{r("prefix", prefixMatch("/"))}},
		{Name: "port", Domains: []string{"svc:8443"}, Routes: []*route.Route{r("port", prefixMatch("/"))}},
		{Name: "star", Domains: []string{"*"}, Routes: []*route.Route{r("star", prefixMatch("/"))}},
	}}
	tbl, err := compileRouteConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, host, path string
		hdr              http.Header
		want             string
	}{
		{"regex matches the whole path", "api.example.com", "/v2/items?x=1", nil, "regex"},
		{"regex is anchored", "api.example.com", "/v2/items/9", http.Header{"X-Beta": {"1"}}, "rest"},
		{"path separated prefix: exact", "api.example.com", "/docs", nil, "sep"},
		{"path separated prefix: segment", "api.example.com", "/docs/a", nil, "sep"},
		{"path separated prefix: not a segment", "api.example.com", "/docsx", http.Header{"X-Beta": {"1"}}, "rest"},
		{"case-insensitive path", "api.example.com", "/exact", nil, "path"},
		{"inverted header: absent header does not match", "api.example.com", "/z", nil, "rest"},
		{"inverted header: other value matches", "api.example.com", "/z", http.Header{"X-Beta": {"0"}}, "not-beta"},
		{"port stripped", "api.example.com:8080", "/z", http.Header{"X-Beta": {"1"}}, "rest"},
		{"longest suffix wins", "a.eu.example.com", "/", nil, "suffix-long"},
		{"suffix", "a.example.com", "/", nil, "suffix"},
		{"suffix does not match the bare domain", "example.com", "/", nil, "star"},
		{"prefix wildcard", "internal.corp", "/", nil, "prefix"},
		{"domain with port matched before stripping", "svc:8443", "/", nil, "port"},
		{"fallback", "other", "/", nil, "star"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.hdr
			if h == nil {
				h = http.Header{}
			}
			got := tbl.match(tc.host, tc.path, h)
			if got == nil || got.name != tc.want {
				t.Fatalf("match(%q, %q) = %v, want %s", tc.host, tc.path, got, tc.want)
			}
		})
	}
	t.Run("invalid regex refused", func(t *testing.T) {
		bad := &route.RouteConfiguration{VirtualHosts: []*route.VirtualHost{{Name: "v", Domains: []string{"*"},
			Routes: []*route.Route{r("x", &route.RouteMatch{PathSpecifier: &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: "("}}})}}}}
		if _, err := compileRouteConfig(bad); err == nil {
			t.Fatal("invalid regex accepted")
		}
	})
	t.Run("duplicate domain refused", func(t *testing.T) {
		bad := &route.RouteConfiguration{VirtualHosts: []*route.VirtualHost{
			{Name: "a", Domains: []string{"x"}}, {Name: "b", Domains: []string{"x"}}}}
		if _, err := compileRouteConfig(bad); err == nil {
			t.Fatal("duplicate domain accepted")
		}
	})
}
