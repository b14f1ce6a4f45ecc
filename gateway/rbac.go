package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
)

// The gateway enforces envoy.filters.http.rbac as Envoy does, for the subset
// the control plane emits (and a little more): policies whose principals are
// any, authenticated (by the peer certificate's URI SAN, else its subject),
// header, and/or/not; whose permissions are any, header (":method",
// ":path", ":authority" and real headers), url_path, and/or/not. Enforced
// rules refuse; shadow rules only count. Anything else is refused at
// configuration time (NACK), never ignored: an authorization rule the
// gateway cannot evaluate must not silently admit traffic.

// accessDeniedDetails is Envoy's response code details for an RBAC denial;
// the audit filter reads it (property response.code_details) to record an
// ACCESS_DENIED event with the matched rule.
const accessDeniedDetails = "rbac_access_denied_matched_policy["

// rbacFilterRT is one compiled RBAC HTTP filter.
type rbacFilterRT struct {
	name     string
	enforced *rbacEngine // nil: nothing enforced
	shadow   *rbacEngine // nil: no shadow rules
}

type rbacEngine struct {
	deny     bool // action DENY (else ALLOW)
	policies []rbacPolicy
}

type rbacPolicy struct {
	name        string
	permissions []permFn
	principals  []principalFn
}

// accessRequest is what RBAC sees of one request.
type accessRequest struct {
	// principal is the peer certificate's URI SAN (else its subject);
	// authenticated says a verified client certificate was presented.
	principal     string
	authenticated bool
	path          string // without the query
	headers       http.Header
}

type (
	permFn      func(*accessRequest) bool
	principalFn func(*accessRequest) bool
)

// accessDecision is the outcome of every RBAC filter of the listener.
type accessDecision struct {
	denied bool
	filter string
	// rule is the matched policy name, "none" when no policy matched.
	rule string
}

func newAccessRequest(r *http.Request) *accessRequest {
	ar := &accessRequest{path: r.URL.Path, headers: make(http.Header, len(r.Header)+3)}
	if r.URL.RawPath != "" {
		ar.path = r.URL.RawPath
	}
	for k, v := range r.Header {
		ar.headers[k] = v
	}
	ar.headers[":method"] = []string{r.Method}
	ar.headers[":path"] = []string{r.URL.RequestURI()}
	ar.headers[":authority"] = []string{r.Host}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		ar.authenticated = true
		ar.principal = certPrincipal(r.TLS.PeerCertificates[0])
	}
	return ar
}

// certPrincipal is Envoy's principal of a certificate: the first URI SAN,
// else the first DNS SAN, else the subject.
func certPrincipal(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

// evaluate runs the listener's RBAC filters in order; the first enforced
// denial stops. Shadow rules are evaluated and counted only.
func evaluateAccess(filters []*rbacFilterRT, ar *accessRequest, count func(filter, rule, decision string)) accessDecision {
	for _, f := range filters {
		if f.shadow != nil {
			allowed, rule := f.shadow.evaluate(ar)
			if allowed {
				count(f.name, rule, "would_allow")
			} else {
				count(f.name, rule, "would_deny")
			}
		}
		if f.enforced == nil {
			continue
		}
		allowed, rule := f.enforced.evaluate(ar)
		if !allowed {
			count(f.name, rule, "denied")
			return accessDecision{denied: true, filter: f.name, rule: rule}
		}
		count(f.name, rule, "allowed")
	}
	return accessDecision{}
}

// evaluate says whether the engine admits the request and which policy
// matched ("none" when none did).
func (e *rbacEngine) evaluate(ar *accessRequest) (bool, string) {
	for i := range e.policies {
		p := &e.policies[i]
		if p.matches(ar) {
			return !e.deny, p.name
		}
	}
	return e.deny, "none"
}

func (p *rbacPolicy) matches(ar *accessRequest) bool {
	return anyOf(p.permissions, ar) && anyOf(p.principals, ar)
}

func anyOf[F ~func(*accessRequest) bool](fs []F, ar *accessRequest) bool {
	for _, f := range fs {
		if f(ar) {
			return true
		}
	}
	return false
}

func allOf[F ~func(*accessRequest) bool](fs []F, ar *accessRequest) bool {
	for _, f := range fs {
		if !f(ar) {
			return false
		}
	}
	return true
}

// compileRBACFilter compiles an RBAC HTTP filter config.
func compileRBACFilter(name string, cfg *rbacfilter.RBAC) (*rbacFilterRT, error) {
	if cfg.GetMatcher() != nil || cfg.GetShadowMatcher() != nil {
		return nil, errors.New("rbac matcher / shadow_matcher is not supported by the gateway: use rules and shadow_rules")
	}
	f := &rbacFilterRT{name: name}
	var err error
	if cfg.GetRules() != nil {
		if f.enforced, err = compileRBAC(cfg.GetRules()); err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
	}
	if cfg.GetShadowRules() != nil {
		if f.shadow, err = compileRBAC(cfg.GetShadowRules()); err != nil {
			return nil, fmt.Errorf("shadow_rules: %w", err)
		}
	}
	return f, nil
}

func compileRBAC(r *rbacv3.RBAC) (*rbacEngine, error) {
	e := &rbacEngine{}
	switch r.GetAction() {
	case rbacv3.RBAC_ALLOW:
	case rbacv3.RBAC_DENY:
		e.deny = true
	default:
		return nil, fmt.Errorf("action %s is not supported by the gateway: use ALLOW or DENY", r.GetAction())
	}
	names := make([]string, 0, len(r.GetPolicies()))
	for n := range r.GetPolicies() {
		names = append(names, n)
	}
	sort.Strings(names) // Envoy's map order is unspecified; ours is stable
	for _, n := range names {
		p := r.GetPolicies()[n]
		if p.GetCondition() != nil || p.GetCheckedCondition() != nil {
			return nil, fmt.Errorf("policy %q: conditions (CEL) are not supported by the gateway", n)
		}
		cp := rbacPolicy{name: n}
		for i, pm := range p.GetPermissions() {
			f, err := compilePermission(pm)
			if err != nil {
				return nil, fmt.Errorf("policy %q permissions[%d]: %w", n, i, err)
			}
			cp.permissions = append(cp.permissions, f)
		}
		for i, pr := range p.GetPrincipals() {
			f, err := compilePrincipal(pr)
			if err != nil {
				return nil, fmt.Errorf("policy %q principals[%d]: %w", n, i, err)
			}
			cp.principals = append(cp.principals, f)
		}
		e.policies = append(e.policies, cp)
	}
	return e, nil
}

func compilePermission(p *rbacv3.Permission) (permFn, error) {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return func(*accessRequest) bool { return r.Any }, nil
	case *rbacv3.Permission_Header:
		hm, err := compileHeaderMatch(r.Header)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(r.Header.GetName(), ":") {
			hm.name = r.Header.GetName() // pseudo-headers are not canonicalised
		}
		return func(ar *accessRequest) bool { return hm.matches(ar.headers) }, nil
	case *rbacv3.Permission_UrlPath:
		pm := r.UrlPath.GetPath()
		if pm == nil {
			return nil, errors.New("url_path without path is not supported by the gateway")
		}
		m, err := stringMatcher(pm)
		if err != nil {
			return nil, err
		}
		return func(ar *accessRequest) bool { return m(ar.path) }, nil
	case *rbacv3.Permission_AndRules:
		fs, err := compilePermissions(r.AndRules.GetRules())
		if err != nil {
			return nil, err
		}
		return func(ar *accessRequest) bool { return allOf(fs, ar) }, nil
	case *rbacv3.Permission_OrRules:
		fs, err := compilePermissions(r.OrRules.GetRules())
		if err != nil {
			return nil, err
		}
		return func(ar *accessRequest) bool { return anyOf(fs, ar) }, nil
	case *rbacv3.Permission_NotRule:
		f, err := compilePermission(r.NotRule)
		if err != nil {
			return nil, err
		}
		return func(ar *accessRequest) bool { return !f(ar) }, nil
	}
	return nil, fmt.Errorf("permission %T is not supported by the gateway", p.GetRule())
}

func compilePermissions(ps []*rbacv3.Permission) ([]permFn, error) {
	return compileAll(ps, compilePermission)
}

func compilePrincipal(p *rbacv3.Principal) (principalFn, error) {
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return func(*accessRequest) bool { return id.Any }, nil
	case *rbacv3.Principal_Authenticated_:
		pn := id.Authenticated.GetPrincipalName()
		if pn == nil {
			return func(ar *accessRequest) bool { return ar.authenticated }, nil
		}
		m, err := stringMatcher(pn)
		if err != nil {
			return nil, err
		}
		return func(ar *accessRequest) bool { return ar.authenticated && m(ar.principal) }, nil
	case *rbacv3.Principal_Header:
		hm, err := compileHeaderMatch(id.Header)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(id.Header.GetName(), ":") {
			hm.name = id.Header.GetName()
		}
		return func(ar *accessRequest) bool { return hm.matches(ar.headers) }, nil
	case *rbacv3.Principal_OrIds:
		fs, err := compilePrincipals(id.OrIds.GetIds())
		if err != nil {
			return nil, err
		}
		return func(ar *accessRequest) bool { return anyOf(fs, ar) }, nil
	case *rbacv3.Principal_AndIds:
		fs, err := compilePrincipals(id.AndIds.GetIds())
		if err != nil {
			return nil, err
		}
		return func(ar *accessRequest) bool { return allOf(fs, ar) }, nil
	case *rbacv3.Principal_NotId:
		f, err := compilePrincipal(id.NotId)
		if err != nil {
			return nil, err
		}
		return func(ar *accessRequest) bool { return !f(ar) }, nil
	}
	return nil, fmt.Errorf("principal %T is not supported by the gateway", p.GetIdentifier())
}

func compilePrincipals(ps []*rbacv3.Principal) ([]principalFn, error) {
	return compileAll(ps, compilePrincipal)
}

// compileAll compiles every item, stopping at the first error.
func compileAll[T any, F any](items []T, compile func(T) (F, error)) ([]F, error) {
	out := make([]F, 0, len(items))
	for _, it := range items {
		f, err := compile(it)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}
