package policies

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/filters"
	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/dye/dyeconfig"
	"github.com/meshwarden/meshwarden/filters/kit/kitconfig"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/ir"
)

// builder turns decoded documents into the IR, checking what spans fields
// and documents, and cross-references against the catalog.
type builder struct {
	diags *Diagnostics
	cat   *ir.Catalog
	ps    *ir.PolicySet
}

func (b *builder) build(docs []*doc) {
	seen := map[string]*doc{}
	byKind := map[string][]*doc{}
	for _, x := range docs {
		if !x.spec.IsValid() {
			continue
		}
		if x.name != "" {
			key := x.kind + "/" + x.ns + "/" + x.name
			if first, dup := seen[key]; dup {
				// A second document of the same kind and name is an error
				// of its own; it takes no further part in the set.
				x.dec.errPath("metadata.name", "%s %q is already defined at %s: give each policy its own name", x.kind, x.name, first.source())
				continue
			}
			seen[key] = x
		}
		byKind[x.kind] = append(byKind[x.kind], x)
	}
	configs := map[string]*doc{}
	for _, name := range filters.Order() {
		kind := filterKind(name)
		list := byKind[kind]
		for _, x := range list[min(len(list), 1):] {
			x.dec.errPath("kind", "only one %s may be in force and %s already defines one: merge their rules into one document", kind, list[0].source())
		}
		if len(list) > 0 {
			configs[name] = list[0]
		}
	}
	releases := map[string]*doc{}
	for _, x := range byKind[KindFilterRelease] {
		spec := x.spec.Interface().(*FilterReleaseSpec)
		b.checkRelease(x, spec)
		if filterKind(spec.Filter) == "" {
			continue
		}
		if first, dup := releases[spec.Filter]; dup {
			x.dec.errPath("spec.filter", "filter %q already has a release at %s: keep one FilterRelease per filter", spec.Filter, first.source())
			continue
		}
		releases[spec.Filter] = x
	}
	for _, name := range filters.Order() {
		cfg, rel := configs[name], releases[name]
		if cfg == nil {
			if rel != nil {
				rel.dec.errPath("spec.filter", "filter %q has a release but no %s configures it: add a document of kind %s", name, filterKind(name), filterKind(name))
			}
			continue
		}
		f, ok := b.filterConfig(name, cfg)
		if !ok {
			continue
		}
		if rel != nil {
			spec := rel.spec.Interface().(*FilterReleaseSpec)
			f.SHA256 = spec.SHA256
			f.Services = append([]string(nil), spec.Services...)
			f.RolloutPercent = 100
			if spec.RolloutPercent != nil {
				f.RolloutPercent = *spec.RolloutPercent
			}
			f.PreviousSHA256 = spec.PreviousSHA256
			f.FailOpen = spec.FailOpen
			f.Source = rel.source()
		}
		b.ps.Filters = append(b.ps.Filters, f)
	}

	b.ps.Routes = onePerService(byKind[KindCanaryRoute],
		func(x *doc) (ir.Route, bool) { return b.route(x, x.spec.Interface().(*CanaryRouteSpec)) },
		func(r ir.Route) string { return r.Service },
		"service %q already has a CanaryRoute at %s: keep one route per service")

	certs := byKind[KindCertificatePolicy]
	for _, x := range certs[min(len(certs), 1):] {
		x.dec.errPath("kind", "only one CertificatePolicy may be in force and %s already defines one: merge them", certs[0].source())
	}
	if len(certs) > 0 {
		b.certs(certs[0], certs[0].spec.Interface().(*CertificatePolicySpec))
	}

	b.ps.Access = onePerService(byKind[KindAccessPolicy],
		func(x *doc) (ir.AccessPolicy, bool) { return b.access(x, x.spec.Interface().(*AccessPolicySpec)) },
		func(p ir.AccessPolicy) string { return p.Service },
		"service %q already has an AccessPolicy at %s: list every allowed caller in one document")

	b.rollouts(byKind[KindRollout])
	b.checkResilienceRoutes(byKind[KindResiliencePolicy])
	b.ps.Resilience = onePerService(byKind[KindResiliencePolicy],
		func(x *doc) (ir.Resilience, bool) { return b.resilience(x, x.spec.Interface().(*ResiliencePolicySpec)) },
		func(r ir.Resilience) string { return r.Service },
		"service %q already has a ResiliencePolicy at %s: merge them into one document")
	b.ps.Compliance = onePerService(byKind[KindCompliancePolicy],
		func(x *doc) (ir.Compliance, bool) { return b.compliance(x, x.spec.Interface().(*CompliancePolicySpec)) },
		func(c ir.Compliance) string { return c.Service },
		"service %q already has a CompliancePolicy at %s: keep one per service")
}

// onePerService builds each document of a kind that allows one per service
// and returns what was built, sorted by service; a second document for a
// service is an error (dupFormat takes the service and the first document).
func onePerService[T any](docs []*doc, build func(*doc) (T, bool), service func(T) string, dupFormat string) []T {
	var out []T
	first := map[string]*doc{}
	for _, x := range docs {
		r, ok := build(x)
		if !ok {
			continue
		}
		svc := service(r)
		if f, dup := first[svc]; dup {
			x.dec.errPath("spec.service", dupFormat, svc, f.source())
			continue
		}
		first[svc] = x
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return service(out[i]) < service(out[j]) })
	return out
}

// filterConfig validates a filter policy with the filter's own rules and
// returns it as an ir.Filter whose Config is the user's JSON (without
// defaults: the filter applies them).
func (b *builder) filterConfig(name string, x *doc) (ir.Filter, bool) {
	raw, err := json.Marshal(x.spec.Interface())
	if err != nil {
		x.dec.errPath("spec", "cannot encode as JSON: %v", err)
		return ir.Filter{}, false
	}
	// Validate a defaulted copy, as the filter will.
	cp := x.spec.Type().Elem()
	tmp := newOf(cp)
	if err := json.Unmarshal(raw, tmp); err != nil {
		x.dec.errPath("spec", "cannot decode: %v", err)
		return ir.Filter{}, false
	}
	v := tmp.(kitconfig.Config)
	v.SetDefaults()
	if err := v.Validate(); err != nil {
		if fe := (*kitconfig.FieldError)(nil); errors.As(err, &fe) {
			x.dec.errPath("spec."+fe.Field, "%s", fe.Reason)
		} else {
			x.dec.errPath("spec", "%v", err)
		}
		return ir.Filter{}, false
	}
	// The filter's own parser is the last word: it is what runs in the proxy.
	var perr error
	switch name {
	case "dye":
		_, perr = dyeconfig.ParseConfig(raw)
	case "audit":
		_, perr = auditconfig.ParseConfig(raw)
	case "trace":
		_, perr = traceconfig.ParseConfig(raw)
	}
	if perr != nil {
		x.dec.errPath("spec", "the %s filter rejects this configuration: %v", name, perr)
		return ir.Filter{}, false
	}
	return ir.Filter{Name: name, Config: raw, RolloutPercent: 100, Source: x.source()}, true
}

func (b *builder) checkRelease(x *doc, s *FilterReleaseSpec) {
	d := x.dec
	if _, ok := d.positions["spec.filter"]; ok && filterKind(s.Filter) == "" {
		msg := fmt.Sprintf("%q is not a filter", s.Filter)
		if sg := suggest(s.Filter, filters.Order()); sg != "" {
			msg += fmt.Sprintf(": did you mean %q?", sg)
		}
		d.errPath("spec.filter", "%s (filters: %s)", msg, strings.Join(filters.Order(), ", "))
	}
	if _, ok := d.positions["spec.sha256"]; ok && !isSHA256(s.SHA256) {
		d.errPath("spec.sha256", "%q is not a sha256: give the module's 64 lowercase hex digits (sha256sum FILE.wasm)", s.SHA256)
	}
	for i, svc := range s.Services {
		if err := checkService(svc); err != nil {
			d.errPath(indexPath("spec.services", i), "%v", err)
			continue
		}
		if svc != "gateway" {
			b.warnMissingService(d, indexPath("spec.services", i), svc)
		}
	}
	pct := uint32(100)
	if s.RolloutPercent != nil {
		pct = *s.RolloutPercent
	}
	if pct > 100 {
		d.errPath("spec.rolloutPercent", "%d is over 100: give the percentage of proxies, 0 to 100", pct)
	}
	switch {
	case pct < 100 && s.PreviousSHA256 == "":
		d.errPath("spec.rolloutPercent", "a staged rollout (%d%%) needs previousSha256: name the build the other %d%% keep running", pct, 100-pct)
	case s.PreviousSHA256 != "" && !isSHA256(s.PreviousSHA256):
		d.errPath("spec.previousSha256", "%q is not a sha256: give the previous module's 64 lowercase hex digits", s.PreviousSHA256)
	case s.PreviousSHA256 != "" && s.PreviousSHA256 == s.SHA256:
		d.errPath("spec.previousSha256", "is the same build as sha256: a rollout needs two different builds, or remove previousSha256")
	}
}

func (b *builder) route(x *doc, s *CanaryRouteSpec) (ir.Route, bool) {
	d := x.dec
	before := len(b.diags.Errors)
	r := ir.Route{Service: s.Service, DefaultSubset: s.DefaultSubset, Timeout: s.Timeout, Retries: s.Retries, Source: x.source()}
	if _, ok := d.positions["spec.service"]; ok && !d.failed["spec.service"] {
		if err := checkService(s.Service); err != nil {
			d.errPath("spec.service", "%v", err)
		}
	}
	subsets := map[string]int{}
	for i, ss := range s.Subsets {
		p := indexPath("spec.subsets", i)
		if _, named := d.positions[p+".name"]; !named {
			// Reported as a missing required field.
		} else if err := dyeing.CheckLane(ss.Name); err != nil {
			d.errPath(p+".name", "%v", err)
		} else if j, dup := subsets[ss.Name]; dup {
			d.errPath(p+".name", "subset %q is already defined at spec.subsets[%d]: give each subset its own name", ss.Name, j)
		} else {
			subsets[ss.Name] = i
		}
		if _, present := d.positions[p+".selector"]; present && len(ss.Selector) == 0 && !d.failedUnder(p+".selector") {
			d.errPath(p+".selector", "is empty: give at least one meta key, e.g. version: v2")
		}
		r.Subsets = append(r.Subsets, ir.Subset{Name: ss.Name, Selector: ss.Selector})
	}
	if _, present := d.positions["spec.subsets"]; present && len(s.Subsets) == 0 {
		d.errPath("spec.subsets", "is empty: define at least one subset")
	}
	lanes := map[string]int{}
	for i, l := range s.Lanes {
		p := indexPath("spec.lanes", i)
		if err := dyeing.CheckLane(l.Lane); err != nil {
			d.errPath(p+".lane", "%v", err)
		}
		if _, ok := subsets[l.Subset]; !ok && l.Subset != "" {
			d.errPath(p+".subset", "subset %q is not defined in spec.subsets%s", l.Subset, known(subsets))
		}
		if j, dup := lanes[l.Lane]; dup && len(l.Headers) == 0 && len(s.Lanes[j].Headers) == 0 {
			d.errPath(p+".lane", "lane %q is already routed by spec.lanes[%d]: this rule can never match, remove it", l.Lane, j)
		}
		lanes[l.Lane] = i
		for h := range l.Headers {
			if !kitconfig.ValidHeaderName(h) {
				d.errPath(childPath(p+".headers", h), "%q is not a header name: use lowercase letters, digits and '-'", h)
			}
		}
		r.Lanes = append(r.Lanes, ir.LaneRule{Lane: l.Lane, Subset: l.Subset, Headers: l.Headers})
	}
	var sum uint32
	for i, w := range s.Weights {
		p := indexPath("spec.weights", i)
		if _, ok := subsets[w.Subset]; !ok && w.Subset != "" {
			d.errPath(p+".subset", "subset %q is not defined in spec.subsets%s", w.Subset, known(subsets))
		}
		if w.Weight > 100 {
			d.errPath(p+".weight", "%d is over 100: weights are percentages", w.Weight)
		}
		sum += w.Weight
		r.Weights = append(r.Weights, ir.WeightedSubset{Subset: w.Subset, Weight: w.Weight})
	}
	if len(s.Weights) > 0 && sum != 100 && !d.failedUnder("spec.weights") {
		d.errPath("spec.weights", "weights sum to %d: make them sum to 100", sum)
	}
	if s.DefaultSubset != "" {
		if _, ok := subsets[s.DefaultSubset]; !ok {
			d.errPath("spec.defaultSubset", "subset %q is not defined in spec.subsets%s", s.DefaultSubset, known(subsets))
		}
		if len(s.Weights) > 0 {
			d.errPath("spec.defaultSubset", "is ignored when weights are set: remove defaultSubset, or remove weights")
		}
	}
	if s.Timeout > 0 && s.Timeout < time.Millisecond {
		d.errPath("spec.timeout", "%s is below 1ms: give a timeout such as \"2s\"", s.Timeout)
	}
	if s.Retries > 10 {
		d.errPath("spec.retries", "%d retries is too many: use 0 to 10", s.Retries)
	}
	if b.cat != nil && s.Service != "" && !d.failed["spec.service"] {
		svc, ok := b.cat.Services[s.Service]
		if !ok {
			b.warnMissingService(d, "spec.service", s.Service)
		} else {
			for i, ss := range s.Subsets {
				if len(ss.Selector) == 0 {
					continue
				}
				if !anyMatches(svc, ss.Selector) {
					d.errPath(indexPath("spec.subsets", i)+".selector", "no instance of %q carries %s%s: fix the selector or register such an instance in Consul", s.Service, formatSelector(ss.Selector), carried(svc, ss.Selector))
				}
			}
		}
	}
	return r, len(b.diags.Errors) == before
}

func (b *builder) certs(x *doc, s *CertificatePolicySpec) {
	d := x.dec
	switch s.Issuer {
	case "", "consul", "acme", "file":
	default:
		d.errPath("spec.issuer", "%q is not an issuer: use consul, acme or file", s.Issuer)
	}
	if s.LeafTTL > 0 && s.LeafTTL < time.Minute {
		d.errPath("spec.leafTTL", "%s is too short: give at least \"1m\" (leaves are renewed before expiry)", s.LeafTTL)
	}
	if s.LeafTTL > 0 && s.RenewBefore >= s.LeafTTL {
		d.errPath("spec.renewBefore", "%s is not shorter than leafTTL (%s): renew before the leaf expires, e.g. a third of leafTTL", s.RenewBefore, s.LeafTTL)
	}
	b.ps.Certificates = ir.CertPolicy{LeafTTL: s.LeafTTL, RenewBefore: s.RenewBefore, Issuer: s.Issuer}
}

func (b *builder) access(x *doc, s *AccessPolicySpec) (ir.AccessPolicy, bool) {
	d := x.dec
	before := len(b.diags.Errors)
	b.checkSpecService(d, s.Service)
	if s.Default != "" && s.Default != "deny" && s.Default != "allow" {
		d.errPath("spec.default", "%q is not a default: use deny (the default) or allow", s.Default)
	}
	p := ir.AccessPolicy{Service: s.Service, Name: x.name, DefaultAllow: s.Default == "allow", DryRun: s.DryRun, Source: x.source()}
	if _, present := d.positions["spec.allow"]; present && len(s.Allow) == 0 {
		d.errPath("spec.allow", "is empty: list the callers allowed to call %q (SPIFFE ids, service names), or \"*\" for every authenticated caller", s.Service)
	}
	if len(s.Allow) == 0 && len(s.Rules) == 0 && !d.failed["spec.allow"] {
		d.errPath("spec", "has neither allow nor rules: list the callers allowed to call %q", s.Service)
	}
	names := map[string]string{}
	if len(s.Allow) > 0 {
		for i, id := range s.Allow {
			b.checkCaller(d, indexPath("spec.allow", i), id)
		}
		p.Rules = append(p.Rules, ir.AccessRule{Name: "allow", From: s.Allow, Source: d.source("spec.allow")})
		names["allow"] = "spec.allow"
	}
	hasDeny := false
	for i, r := range s.Rules {
		rp := indexPath("spec.rules", i)
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("rule-%d", i)
		} else if !validRuleName(name) {
			d.errPath(rp+".name", "%q is not a rule name: use lowercase letters, digits and '-'", name)
		}
		if first, dup := names[name]; dup {
			d.errPath(rp+".name", "rule %q is already defined at %s: give each rule its own name", name, first)
		}
		names[name] = rp
		if _, present := d.positions[rp+".from"]; present && len(r.From) == 0 {
			d.errPath(rp+".from", "is empty: list the callers this rule applies to, or \"*\" for every authenticated caller")
		}
		for j, id := range r.From {
			b.checkCaller(d, indexPath(rp+".from", j), id)
		}
		for j, m := range r.Methods {
			if !validMethod(m) {
				d.errPath(indexPath(rp+".methods", j), "%q is not an HTTP method: use upper case, e.g. GET or POST", m)
			}
		}
		for j, path := range r.Paths {
			if err := CheckPathPattern(path); err != nil {
				d.errPath(indexPath(rp+".paths", j), "%v", err)
			}
		}
		for j, l := range r.Lanes {
			if err := dyeing.CheckLane(l); err != nil {
				d.errPath(indexPath(rp+".lanes", j), "%v", err)
			}
		}
		if _, present := d.positions[rp+".action"]; present && r.Action != "allow" && r.Action != "deny" {
			d.errPath(rp+".action", "%q is not an action: use allow or deny", r.Action)
		}
		deny := r.Action == "deny"
		hasDeny = hasDeny || deny
		p.Rules = append(p.Rules, ir.AccessRule{Name: name, Deny: deny, From: r.From, Methods: r.Methods, Paths: r.Paths, Lanes: r.Lanes, Source: d.source(rp)})
	}
	if p.DefaultAllow && !hasDeny {
		d.warnPath("spec.default", "is allow and no rule denies: this policy admits every caller; add a deny rule or remove default: allow")
	}
	b.warnContradictions(d, s, p)
	return p, len(b.diags.Errors) == before
}

// warnContradictions warns when one caller is both allowed and denied by
// rules whose method, path and lane conditions are the same: deny wins.
func (b *builder) warnContradictions(d *decoder, s *AccessPolicySpec, p ir.AccessPolicy) {
	offset := 0
	if len(s.Allow) > 0 {
		offset = 1
	}
	path := func(k int) string {
		if k < offset {
			return "spec.allow"
		}
		return indexPath("spec.rules", k-offset)
	}
	for i, deny := range p.Rules {
		if !deny.Deny {
			continue
		}
		for k, allow := range p.Rules {
			if allow.Deny || !slices.Equal(allow.Methods, deny.Methods) || !slices.Equal(allow.Paths, deny.Paths) || !slices.Equal(allow.Lanes, deny.Lanes) {
				continue
			}
			for _, c := range deny.From {
				if slices.Contains(allow.From, c) {
					d.warnPath(path(i), "caller %q is both allowed by %s (%q) and denied by this rule (%q) for the same requests: deny wins, remove it from one of them", c, path(k), allow.Name, deny.Name)
				}
			}
		}
	}
}

// checkCaller checks a caller entry: "*", a SPIFFE id or a prefix ending in
// "/*", or a Consul service name (which must be registered when the catalog
// is known).
func (b *builder) checkCaller(d *decoder, path, id string) {
	if id == "*" || d.failed[path] {
		return
	}
	if strings.Contains(id, ":") || strings.Contains(id, "/") {
		if err := CheckSpiffeID(id); err != nil {
			d.errPath(path, "%v", err)
		}
		return
	}
	if err := checkService(id); err != nil {
		d.errPath(path, "%q is neither a SPIFFE id nor a service name: write spiffe://<trust-domain>/<path>, a prefix ending in /*, a Consul service name, or \"*\"", id)
		return
	}
	if b.cat != nil {
		if _, ok := b.cat.Services[id]; !ok {
			d.errPath(path, "service %q is not registered in Consul: check the name, register the service first, or name the caller by its SPIFFE id", id)
		}
	}
}

// CheckSpiffeID checks a SPIFFE id (spiffe://trust-domain/path) or a prefix
// of one ending in "/*".
func CheckSpiffeID(id string) error {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return fmt.Errorf("%q is not a SPIFFE id: write spiffe://<trust-domain>/<path>, a prefix ending in /*, or \"*\"", id)
	}
	if k := strings.IndexByte(id, '*'); k >= 0 && !(k == len(id)-1 && strings.HasSuffix(id, "/*")) {
		return fmt.Errorf("%q: '*' is allowed only as a final /* segment", id)
	}
	rest = strings.TrimSuffix(rest, "/*")
	td, p, _ := strings.Cut(rest, "/")
	if td == "" {
		return fmt.Errorf("%q has no trust domain: write spiffe://<trust-domain>/<path>", id)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("%q: trust domain %q may hold only lowercase letters, digits, '-', '.' and '_'", id, td)
		}
	}
	if p == "" {
		return nil
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q: path segments may not be empty, '.' or '..'", id)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return fmt.Errorf("%q: path segment %q may hold only letters, digits, '-', '.' and '_'", id, seg)
			}
		}
	}
	return nil
}

// CheckPathPattern checks an access path: an exact path, or a pattern with
// "*" for one segment and a final "**" for the rest (the audit policy's
// path.pattern).
func CheckPathPattern(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q does not start with '/': write a path such as /v1/payments or /v1/**", p)
	}
	if strings.ContainsAny(p, "?#") {
		return fmt.Errorf("%q holds a query or fragment: paths match without the query", p)
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		switch {
		case s == "**" && i != len(segs)-1:
			return fmt.Errorf("%q: \"**\" may only be the last segment", p)
		case s != "*" && s != "**" && strings.Contains(s, "*"):
			return fmt.Errorf("%q: '*' must be a whole segment (\"*\" one segment, final \"**\" the rest)", p)
		}
	}
	return nil
}

func validRuleName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validMethod(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// checkSpecService checks spec.service of a policy about one service, when
// the document sets it and it decoded: a name that is not a service name is
// an error, a service the catalog does not hold a warning.
func (b *builder) checkSpecService(d *decoder, svc string) {
	if _, ok := d.positions["spec.service"]; !ok || d.failed["spec.service"] {
		return
	}
	if err := checkService(svc); err != nil {
		d.errPath("spec.service", "%v", err)
		return
	}
	b.warnMissingService(d, "spec.service", svc)
}

func (b *builder) warnMissingService(d *decoder, path, svc string) {
	if b.cat == nil {
		return
	}
	if _, ok := b.cat.Services[svc]; !ok {
		d.warnPath(path, "service %q is not registered in Consul (yet): check the name; the policy applies once it registers", svc)
	}
}

func anyMatches(svc *ir.Service, sel map[string]string) bool {
	for _, in := range svc.Instances {
		if in.Matches(sel) {
			return true
		}
	}
	return false
}

// carried lists, for the selector's keys, the values the instances do carry.
func carried(svc *ir.Service, sel map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(sel) {
		vals := map[string]bool{}
		for _, in := range svc.Instances {
			if v, ok := in.Meta[k]; ok {
				vals[k+"="+v] = true
			}
			for _, t := range in.Tags {
				if strings.HasPrefix(t, k+"=") {
					vals[t] = true
				}
			}
		}
		for v := range vals {
			parts = append(parts, v)
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf(" (its %d instances carry none of these keys)", len(svc.Instances))
	}
	sort.Strings(parts)
	return " (instances carry " + strings.Join(parts, ", ") + ")"
}

func formatSelector(sel map[string]string) string {
	parts := make([]string, 0, len(sel))
	for _, k := range sortedKeys(sel) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ",")
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

func known(subsets map[string]int) string {
	if len(subsets) == 0 {
		return ""
	}
	names := slices.Sorted(maps.Keys(subsets))
	return " (defined: " + strings.Join(names, ", ") + ")"
}

func isSHA256(s string) bool {
	if len(s) != 64 || strings.ToLower(s) != s {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// checkService checks a Consul service name.
func checkService(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%q is not a service name: use 1-253 letters, digits, '-', '_' or '.'", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q is not a service name: use 1-253 letters, digits, '-', '_' or '.'", s)
		}
	}
	return nil
}
