package gateway

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// routeTable is a compiled RouteConfiguration. Matching follows Envoy: the
// virtual host by :authority (exact, then the longest suffix wildcard
// "*.example.com", then the longest prefix wildcard "example.*", then "*";
// tried with the port and then with the port stripped), then the first route
// of that host whose path and header matchers all match.
type routeTable struct {
	name   string
	exact  map[string]*vhost
	suffix []wildDomain // "*.x.com" → ".x.com", longest first
	prefix []wildDomain // "x.*" → "x.", longest first
	star   *vhost
}

type wildDomain struct {
	part string
	vh   *vhost
}

type vhost struct {
	name   string
	routes []*compiledRoute
}

type pathKind int

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparatedPrefix
)

type compiledRoute struct {
	name          string
	kind          pathKind
	path          string
	re            *regexp.Regexp
	caseSensitive bool
	headers       []headerMatch

	// Action: exactly one of clusters (with weights) or direct.
	clusters      []weightedCluster
	totalWeight   uint32
	direct        *directResponse
	timeout       time.Duration
	retry         *retryPolicy
	prefixRewrite string
	hostRewrite   string

	// Resilience (resilience.go): per-route rate limit and fault
	// injection, and request mirrors.
	rateLimit *tokenBucket
	fault     *faultRT
	mirrors   []mirrorRT
}

type weightedCluster struct {
	name   string
	weight uint32
}

type directResponse struct {
	status  int
	body    []byte
	headers [][2]string // the route's response_headers_to_add
}

type retryPolicy struct {
	on        map[string]bool
	num       int
	perTry    time.Duration
	retriable map[int]bool
}

type headerMatch struct {
	name    string
	present *bool
	str     func(string) bool
	invert  bool
	emptyOK bool // treat_missing_header_as_empty
}

func compileRouteConfig(rc *route.RouteConfiguration) (*routeTable, error) {
	t := &routeTable{name: rc.GetName(), exact: map[string]*vhost{}}
	for i, v := range rc.GetVirtualHosts() {
		vh := &vhost{name: v.GetName()}
		for j, r := range v.GetRoutes() {
			cr, err := compileRoute(r)
			if err != nil {
				return nil, fmt.Errorf("virtual_hosts[%d] %q routes[%d] %q: %w", i, v.GetName(), j, r.GetName(), err)
			}
			vh.routes = append(vh.routes, cr)
		}
		for _, d := range v.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if t.star != nil {
					return nil, fmt.Errorf("virtual_hosts[%d] %q: domain \"*\" is used twice", i, v.GetName())
				}
				t.star = vh
			case strings.HasPrefix(d, "*"):
				t.suffix = append(t.suffix, wildDomain{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				t.prefix = append(t.prefix, wildDomain{d[:len(d)-1], vh})
			default:
				if _, dup := t.exact[d]; dup {
					return nil, fmt.Errorf("virtual_hosts[%d] %q: domain %q is used twice", i, v.GetName(), d)
				}
				t.exact[d] = vh
			}
		}
	}
	byLen := func(a, b wildDomain) int { return len(b.part) - len(a.part) }
	slices.SortStableFunc(t.suffix, byLen)
	slices.SortStableFunc(t.prefix, byLen)
	return t, nil
}

func compileRoute(r *route.Route) (*compiledRoute, error) {
	m := r.GetMatch()
	cr := &compiledRoute{name: r.GetName(), caseSensitive: m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()}
	switch {
	case m.GetSafeRegex() != nil:
		re, err := compileRegex(m.GetSafeRegex().GetRegex())
		if err != nil {
			return nil, err
		}
		cr.kind, cr.re = pathRegex, re
	case m.GetPathSeparatedPrefix() != "":
		cr.kind, cr.path = pathSeparatedPrefix, m.GetPathSeparatedPrefix()
	case m.GetPath() != "":
		cr.kind, cr.path = pathExact, m.GetPath()
	case m.GetPathSpecifier() == nil:
		return nil, errors.New("match has no path specifier: set prefix, path, safe_regex or path_separated_prefix")
	default:
		if _, ok := m.GetPathSpecifier().(*route.RouteMatch_Prefix); !ok {
			return nil, fmt.Errorf("path specifier %T is not supported by the gateway", m.GetPathSpecifier())
		}
		cr.kind, cr.path = pathPrefix, m.GetPrefix()
	}
	if !cr.caseSensitive {
		cr.path = strings.ToLower(cr.path)
	}
	for _, h := range m.GetHeaders() {
		hm, err := compileHeaderMatch(h)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", h.GetName(), err)
		}
		cr.headers = append(cr.headers, hm)
	}
	switch a := r.GetAction().(type) {
	case *route.Route_Route:
		ra := a.Route
		switch {
		case ra.GetCluster() != "":
			cr.clusters = []weightedCluster{{ra.GetCluster(), 1}}
			cr.totalWeight = 1
		case ra.GetWeightedClusters() != nil:
			for _, c := range ra.GetWeightedClusters().GetClusters() {
				w := c.GetWeight().GetValue()
				if w == 0 {
					continue
				}
				cr.clusters = append(cr.clusters, weightedCluster{c.GetName(), w})
				cr.totalWeight += w
			}
			if cr.totalWeight == 0 {
				return nil, errors.New("weighted_clusters: every weight is zero")
			}
		default:
			return nil, errors.New("route action needs cluster or weighted_clusters (cluster_header and plugins are not supported)")
		}
		cr.timeout = 15 * time.Second // Envoy's default route timeout
		if ra.GetTimeout() != nil {
			cr.timeout = ra.GetTimeout().AsDuration()
		}
		cr.prefixRewrite = ra.GetPrefixRewrite()
		cr.hostRewrite = ra.GetHostRewriteLiteral()
		if rp := ra.GetRetryPolicy(); rp != nil {
			p := &retryPolicy{on: map[string]bool{}, num: 1, retriable: map[int]bool{}}
			for _, s := range strings.Split(rp.GetRetryOn(), ",") {
				if s = strings.TrimSpace(s); s != "" {
					p.on[s] = true
				}
			}
			if rp.GetNumRetries() != nil {
				p.num = int(rp.GetNumRetries().GetValue())
			}
			if rp.GetPerTryTimeout() != nil {
				p.perTry = rp.GetPerTryTimeout().AsDuration()
			}
			for _, c := range rp.GetRetriableStatusCodes() {
				p.retriable[int(c)] = true
			}
			cr.retry = p
		}
	case *route.Route_DirectResponse:
		d := &directResponse{status: int(a.DirectResponse.GetStatus())}
		if b := a.DirectResponse.GetBody(); b != nil {
			body, err := dataSource(b)
			if err != nil {
				return nil, fmt.Errorf("direct_response body: %w", err)
			}
			d.body = body
		}
		for _, o := range r.GetResponseHeadersToAdd() {
			if hv := o.GetHeader(); hv != nil && hv.GetKey() != "" {
				d.headers = append(d.headers, [2]string{strings.ToLower(hv.GetKey()), hv.GetValue()})
			}
		}
		cr.direct = d
	default:
		return nil, fmt.Errorf("route action %T is not supported by the gateway: use route or direct_response", r.GetAction())
	}
	if err := compileRouteResilience(cr, r); err != nil {
		return nil, err
	}
	return cr, nil
}

func compileHeaderMatch(h *route.HeaderMatcher) (headerMatch, error) {
	hm := headerMatch{name: http.CanonicalHeaderKey(h.GetName()), invert: h.GetInvertMatch(), emptyOK: h.GetTreatMissingHeaderAsEmpty()}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case nil:
		t := true
		hm.present = &t
	case *route.HeaderMatcher_PresentMatch:
		v := s.PresentMatch
		hm.present = &v
	case *route.HeaderMatcher_ExactMatch:
		v := s.ExactMatch
		hm.str = func(x string) bool { return x == v }
	case *route.HeaderMatcher_PrefixMatch:
		v := s.PrefixMatch
		hm.str = func(x string) bool { return strings.HasPrefix(x, v) }
	case *route.HeaderMatcher_SuffixMatch:
		v := s.SuffixMatch
		hm.str = func(x string) bool { return strings.HasSuffix(x, v) }
	case *route.HeaderMatcher_ContainsMatch:
		v := s.ContainsMatch
		hm.str = func(x string) bool { return strings.Contains(x, v) }
	case *route.HeaderMatcher_SafeRegexMatch:
		re, err := compileRegex(s.SafeRegexMatch.GetRegex())
		if err != nil {
			return hm, err
		}
		hm.str = re.MatchString
	case *route.HeaderMatcher_StringMatch:
		f, err := stringMatcher(s.StringMatch)
		if err != nil {
			return hm, err
		}
		hm.str = f
	default:
		return hm, fmt.Errorf("header matcher %T is not supported by the gateway", s)
	}
	return hm, nil
}

func stringMatcher(m *matcher.StringMatcher) (func(string) bool, error) {
	fold := func(s string) string { return s }
	if m.GetIgnoreCase() {
		fold = strings.ToLower
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcher.StringMatcher_Exact:
		v := fold(p.Exact)
		return func(x string) bool { return fold(x) == v }, nil
	case *matcher.StringMatcher_Prefix:
		v := fold(p.Prefix)
		return func(x string) bool { return strings.HasPrefix(fold(x), v) }, nil
	case *matcher.StringMatcher_Suffix:
		v := fold(p.Suffix)
		return func(x string) bool { return strings.HasSuffix(fold(x), v) }, nil
	case *matcher.StringMatcher_Contains:
		v := fold(p.Contains)
		return func(x string) bool { return strings.Contains(fold(x), v) }, nil
	case *matcher.StringMatcher_SafeRegex:
		re, err := compileRegex(p.SafeRegex.GetRegex())
		if err != nil {
			return nil, err
		}
		return re.MatchString, nil
	}
	return nil, fmt.Errorf("string matcher %T is not supported by the gateway", m.GetMatchPattern())
}

// findVHost selects the virtual host for authority.
func (t *routeTable) findVHost(authority string) *vhost {
	host := strings.ToLower(authority)
	if vh := t.lookup(host); vh != nil {
		return vh
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		if vh := t.lookup(h); vh != nil {
			return vh
		}
	}
	return t.star
}

func (t *routeTable) lookup(host string) *vhost {
	if vh := t.exact[host]; vh != nil {
		return vh
	}
	for _, w := range t.suffix {
		// "*.x.com" matches "a.x.com" but not ".x.com" itself.
		if len(host) > len(w.part) && strings.HasSuffix(host, w.part) {
			return w.vh
		}
	}
	for _, w := range t.prefix {
		if len(host) > len(w.part) && strings.HasPrefix(host, w.part) {
			return w.vh
		}
	}
	return nil
}

// match returns the first route of the request's virtual host that matches,
// or nil.
func (t *routeTable) match(authority, path string, h http.Header) *compiledRoute {
	vh := t.findVHost(authority)
	if vh == nil {
		return nil
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for _, r := range vh.routes {
		if r.matches(path, h) {
			return r
		}
	}
	return nil
}

func (r *compiledRoute) matches(path string, h http.Header) bool {
	p := path
	if !r.caseSensitive {
		p = strings.ToLower(p)
	}
	switch r.kind {
	case pathPrefix:
		if !strings.HasPrefix(p, r.path) {
			return false
		}
	case pathExact:
		if p != r.path {
			return false
		}
	case pathRegex:
		if !r.re.MatchString(path) {
			return false
		}
	case pathSeparatedPrefix:
		if !strings.HasPrefix(p, r.path) || (len(p) > len(r.path) && p[len(r.path)] != '/') {
			return false
		}
	}
	for i := range r.headers {
		if !r.headers[i].matches(h) {
			return false
		}
	}
	return true
}

func (m *headerMatch) matches(h http.Header) bool {
	vals, ok := h[m.name]
	if !ok && m.emptyOK {
		vals, ok = []string{""}, true
	}
	var res bool
	switch {
	case m.present != nil:
		res = ok == *m.present
	case !ok:
		return false // a missing header never matches a value matcher, inverted or not
	default:
		res = m.str(strings.Join(vals, ","))
	}
	return res != m.invert
}

// pickCluster chooses a cluster by weight.
func (r *compiledRoute) pickCluster() string {
	if len(r.clusters) == 1 {
		return r.clusters[0].name
	}
	n := rand.Uint32N(r.totalWeight)
	for _, c := range r.clusters {
		if n < c.weight {
			return c.name
		}
		n -= c.weight
	}
	return r.clusters[len(r.clusters)-1].name
}

// shouldRetry reports whether an attempt's outcome (an error, or a status)
// is retriable under the policy.
func (p *retryPolicy) shouldRetry(status int, err error) bool {
	if err != nil {
		return p.on["connect-failure"] || p.on["reset"] || p.on["5xx"] || p.on["gateway-error"]
	}
	switch {
	case p.on["5xx"] && status >= 500:
		return true
	case p.on["gateway-error"] && (status == 502 || status == 503 || status == 504):
		return true
	case p.on["retriable-status-codes"] && p.retriable[status]:
		return true
	}
	return false
}

func (r *compiledRoute) String() string { return r.name + ":" + strconv.Itoa(int(r.kind)) }
