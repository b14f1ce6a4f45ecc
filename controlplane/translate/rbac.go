package translate

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/ir"
)

// Names of the access filters on a sidecar's inbound listener. Deny rules
// run first (RBAC action DENY), then allow rules (action ALLOW, absent when
// the policy's default is allow). Both come after the Wasm filters, so the
// dye filter has settled the lane and the audit filter sees the denial, and
// before the router.
const (
	RBACDenyFilterName  = "mw.access.deny"
	RBACAllowFilterName = "mw.access.allow"
	// RBACStatPrefix prefixes Envoy's RBAC stats (enforced and shadow),
	// which are tracked per rule.
	RBACStatPrefix = "mw_access."
)

// accessPolicyFor returns the access policy of the node's service, or nil.
func (s *Shared) accessPolicyFor(n Node) *ir.AccessPolicy {
	if n.Gateway {
		return nil
	}
	for i := range s.policy.Access {
		if s.policy.Access[i].Service == n.Service {
			return &s.policy.Access[i]
		}
	}
	return nil
}

// rbacFilters turns the node's access policy into Envoy RBAC HTTP filters:
// enforced rules, or shadow rules in dry-run (counted, never enforced).
func (s *Shared) rbacFilters(n Node) ([]*hcmv3.HttpFilter, error) {
	p := s.accessPolicyFor(n)
	if p == nil {
		return nil, nil
	}
	deny := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
	allow := &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	for _, r := range p.Rules {
		pol, err := s.rbacPolicy(r)
		if err != nil {
			return nil, fmt.Errorf("%s: access policy %q rule %q: %w", r.Source, p.Name, r.Name, err)
		}
		if r.Deny {
			deny.Policies[r.Name] = pol
		} else {
			allow.Policies[r.Name] = pol
		}
	}
	var out []*hcmv3.HttpFilter
	add := func(name string, rules *rbacv3.RBAC) error {
		cfg := &rbacfilter.RBAC{TrackPerRuleStats: true}
		if p.DryRun {
			cfg.ShadowRules, cfg.ShadowRulesStatPrefix = rules, RBACStatPrefix
		} else {
			cfg.Rules, cfg.RulesStatPrefix = rules, RBACStatPrefix
		}
		// Deterministic: the policies map must marshal the same way every
		// time, or the snapshot version (a content hash) would flap.
		a := &anypb.Any{}
		err := anypb.MarshalFrom(a, cfg, proto.MarshalOptions{Deterministic: true})
		if err != nil {
			return fmt.Errorf("marshal rbac filter: %w", err)
		}
		out = append(out, &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
		return nil
	}
	if len(deny.Policies) > 0 {
		if err := add(RBACDenyFilterName, deny); err != nil {
			return nil, err
		}
	}
	if !p.DefaultAllow {
		// An ALLOW filter with no policy refuses everything: a policy
		// with only deny rules and the default deny admits nobody.
		if err := add(RBACAllowFilterName, allow); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Shared) rbacPolicy(r ir.AccessRule) (*rbacv3.Policy, error) {
	var ids []*rbacv3.Principal
	for _, from := range r.From {
		ids = append(ids, s.principal(from))
	}
	var conds []*rbacv3.Permission
	if len(r.Methods) > 0 {
		var or []*rbacv3.Permission
		for _, m := range r.Methods {
			or = append(or, headerPermission(":method", m))
		}
		conds = append(conds, orPermissions(or))
	}
	if len(r.Paths) > 0 {
		var or []*rbacv3.Permission
		for _, p := range r.Paths {
			m, err := PathStringMatcher(p)
			if err != nil {
				return nil, err
			}
			or = append(or, &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: m},
			}}})
		}
		conds = append(conds, orPermissions(or))
	}
	if len(r.Lanes) > 0 {
		var or []*rbacv3.Permission
		for _, l := range r.Lanes {
			or = append(or, headerPermission(dyeing.Header, l))
		}
		conds = append(conds, orPermissions(or))
	}
	perm := &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	switch len(conds) {
	case 0:
	case 1:
		perm = conds[0]
	default:
		perm = &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: conds}}}
	}
	pr := ids[0]
	if len(ids) > 1 {
		pr = &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
	}
	return &rbacv3.Policy{Permissions: []*rbacv3.Permission{perm}, Principals: []*rbacv3.Principal{pr}}, nil
}

// principal matches the authenticated peer (the URI SAN of its mTLS
// certificate): "*" is any SPIFFE id, "…/*" a prefix, a service name its
// Consul Connect SPIFFE id.
func (s *Shared) principal(from string) *rbacv3.Principal {
	var m *matcherv3.StringMatcher
	switch {
	case from == "*":
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://"}}
	case strings.HasSuffix(from, "/*"):
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: strings.TrimSuffix(from, "*")}}
	case strings.HasPrefix(from, "spiffe://"):
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: from}}
	case s.opts.TrustDomain != "":
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ir.SpiffeID(s.opts.TrustDomain, s.opts.Datacenter, from)}}
	default:
		// No trust domain configured: any trust domain and datacenter,
		// this service's path.
		m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
			Regex: `spiffe://[^/]+/ns/default/dc/[^/]+/svc/` + regexp.QuoteMeta(from),
		}}}
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func headerPermission(name, exact string) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
		Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: exact},
		}},
	}}}
}

func orPermissions(or []*rbacv3.Permission) *rbacv3.Permission {
	if len(or) == 1 {
		return or[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: or}}}
}

// PathStringMatcher turns an access path (exact, or "*" for one segment and
// a final "**" for the rest) into a string matcher on the path without its
// query: exact, a prefix for ".../**", else an RE2 regex matching the whole
// path.
func PathStringMatcher(p string) (*matcherv3.StringMatcher, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("path %q does not start with '/'", p)
	}
	if !strings.Contains(p, "*") {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: p}}, nil
	}
	if head, ok := strings.CutSuffix(p, "/**"); ok && !strings.Contains(head, "*") {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: head + "/"}}, nil
	}
	segs := strings.Split(p[1:], "/")
	var b strings.Builder
	for i, s := range segs {
		b.WriteByte('/')
		switch {
		case s == "**" && i == len(segs)-1:
			b.WriteString(".*")
		case s == "*":
			b.WriteString("[^/]+")
		case strings.Contains(s, "*"):
			return nil, fmt.Errorf("path %q: '*' must be a whole segment", p)
		default:
			b.WriteString(regexp.QuoteMeta(s))
		}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: b.String()}}}, nil
}

// accessWarnings notes access policies for services Consul does not know.
func accessWarnings(ps *ir.PolicySet, known map[string]bool) []string {
	var out []string
	for _, p := range ps.Access {
		if !known[p.Service] {
			out = append(out, fmt.Sprintf("%s: access policy for service %q, which Consul does not know (yet): it applies once the service registers", p.Source, p.Service))
		}
	}
	sort.Strings(out)
	return out
}
