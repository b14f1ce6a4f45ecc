// Package dyeconfig is the configuration of the dye filter (filters/dye):
// its schema, defaults, strict parsing and validation. It imports no ABI
// package, so the policy loader and the control plane decode and validate
// the same type the filter runs with, without linking guest code.
package dyeconfig

import (
	"net/netip"
	"strings"

	"github.com/meshwarden/meshwarden/filters/kit/kitconfig"
	"github.com/meshwarden/meshwarden/internal/dyeing"
	"github.com/meshwarden/meshwarden/internal/guestfmt"
)

// Modes of the filter.
const (
	// ModeIngress is the default: the filter faces callers. A dye (header or
	// baggage) is kept only from a trusted peer; otherwise it is stripped and
	// the rules decide.
	ModeIngress = "ingress"
	// ModeEgress is for a sidecar's outbound listener: the caller is the
	// local application, so its dye is trusted, and the lane header is
	// restored from baggage when the application forwarded only the W3C
	// headers.
	ModeEgress = "egress"
)

// Config is the dye filter's configuration (the plugin configuration in
// Envoy and the gateway, and the `spec:` of a dye policy).
type Config struct {
	// Mode is "ingress" (default) or "egress".
	Mode string `json:"mode,omitempty"`
	// Rules are evaluated in order; the first that matches sets the lane.
	Rules []Rule `json:"rules,omitempty"`
	// DefaultLane is the lane of a request no rule matched. Empty leaves
	// the request undyed (no lane header, no baggage member).
	DefaultLane string `json:"defaultLane,omitempty"`
	// Trust lists the peers whose dye is kept as it arrives.
	Trust Trust `json:"trust,omitempty"`
	// Tenant says where a request's tenant comes from.
	Tenant Tenant `json:"tenant,omitempty"`
	// Lanes restricts lanes to tenants. A lane not listed is open to every
	// tenant; a listed lane is set (by a rule or kept from a trusted peer)
	// only for the tenants named.
	Lanes []LaneScope `json:"lanes,omitempty"`
	// DisableBaggage stops the filter from writing the baggage member.
	DisableBaggage bool `json:"disableBaggage,omitempty"`
}

// Rule sets a lane when every condition of Match holds (an empty Match
// always holds). Exactly one of Lane and Split is set.
type Rule struct {
	// Name identifies the rule in logs and seeds its sticky hash.
	Name string `json:"name,omitempty"`
	// Match holds the conditions, all of which must hold.
	Match Match `json:"match,omitempty"`
	// Lane is the lane to set.
	Lane string `json:"lane,omitempty"`
	// Split sends shares of the matching requests to lanes. Weights are
	// percentages summing to 100; an empty Lane means "leave undyed".
	Split []SplitTarget `json:"split,omitempty"`
	// StickyKey chooses the value hashed to pick a split arm, so one user
	// stays in one lane. Without it, or when the request lacks the key,
	// the arm is drawn at random.
	StickyKey *KeySource `json:"stickyKey,omitempty"`
	// Tenants restricts the rule to requests of these tenants.
	Tenants []string `json:"tenants,omitempty"`
}

// Match is a conjunction of request conditions.
type Match struct {
	// Headers must all match.
	Headers []ValueMatch `json:"headers,omitempty"`
	// Cookies must all match.
	Cookies []ValueMatch `json:"cookies,omitempty"`
	// QueryParams must all match.
	QueryParams []ValueMatch `json:"queryParams,omitempty"`
	// PathPrefix must prefix the request path (query excluded).
	PathPrefix string `json:"pathPrefix,omitempty"`
	// Methods lists the accepted methods (upper case); empty accepts all.
	Methods []string `json:"methods,omitempty"`
	// PeerIdentities lists accepted peer SPIFFE ids; an entry ending in
	// "/*" accepts every id under that prefix.
	PeerIdentities []string `json:"peerIdentities,omitempty"`
}

// ValueMatch matches one named value. With neither Exact nor Prefix set, the
// value only has to be present.
type ValueMatch struct {
	// Name of the header (case-insensitive), cookie or query parameter.
	Name string `json:"name"`
	// Exact is the value required.
	Exact string `json:"exact,omitempty"`
	// Prefix is a required prefix of the value.
	Prefix string `json:"prefix,omitempty"`
}

// SplitTarget is one arm of a split.
type SplitTarget struct {
	// Lane of the arm; empty leaves the request undyed.
	Lane string `json:"lane,omitempty"`
	// Weight is the arm's percentage, 0 to 100.
	Weight uint32 `json:"weight"`
}

// KeySource names the request value a sticky split hashes. Exactly one field
// is set.
type KeySource struct {
	Header string `json:"header,omitempty"`
	Cookie string `json:"cookie,omitempty"`
}

// Trust lists the peers whose inbound dye is kept.
type Trust struct {
	// PeerIdentities are SPIFFE ids; an entry ending in "/*" trusts every
	// id under that prefix.
	PeerIdentities []string `json:"peerIdentities,omitempty"`
	// SourceCIDRs trusts peers by source address, e.g. "10.0.0.0/8".
	SourceCIDRs []string `json:"sourceCIDRs,omitempty"`
}

// Tenant says where a request's tenant comes from: first the peer identity
// mapping, then the header.
type Tenant struct {
	// Header carries the tenant (default internal/dyeing.TenantHeader). It is
	// read from trusted peers only, unless TrustHeader is set.
	Header string `json:"header,omitempty"`
	// TrustHeader reads Header from any peer: set it only when an
	// authentication layer in front sets the header and strips callers'.
	TrustHeader bool `json:"trustHeader,omitempty"`
	// Identities maps peer SPIFFE ids to tenants.
	Identities []TenantIdentity `json:"identities,omitempty"`
}

// TenantIdentity maps peer identities to a tenant.
type TenantIdentity struct {
	// Peer is a SPIFFE id, or a prefix ending in "/*".
	Peer string `json:"peer"`
	// Tenant is the tenant name.
	Tenant string `json:"tenant"`
}

// LaneScope restricts a lane to tenants.
type LaneScope struct {
	// Lane is the lane name.
	Lane string `json:"lane"`
	// Tenants may use the lane.
	Tenants []string `json:"tenants"`
}

// ParseConfig decodes a JSON configuration strictly (unknown fields are
// errors), applies defaults and validates it. Empty input is the default
// configuration.
func ParseConfig(data []byte) (*Config, error) {
	return kitconfig.Parse[Config]("dye", data)
}

// SetDefaults fills the fields whose zero value means "default".
func (c *Config) SetDefaults() {
	kitconfig.Default(&c.Mode, ModeIngress)
	kitconfig.Default(&c.Tenant.Header, dyeing.TenantHeader)
}

// Validate checks the configuration and names the field at fault.
func (c *Config) Validate() error {
	if c.Mode != "" && c.Mode != ModeIngress && c.Mode != ModeEgress {
		return fieldErr("mode", "%q is not a mode: use %q or %q", c.Mode, ModeIngress, ModeEgress)
	}
	if c.DefaultLane != "" {
		if err := dyeing.CheckLane(c.DefaultLane); err != nil {
			return fieldErr("defaultLane", "%v", err)
		}
	}
	names := map[string]bool{}
	for i := range c.Rules {
		r := &c.Rules[i]
		p := guestfmt.Sprintf("rules[%d]", i)
		if r.Name != "" {
			if names[r.Name] {
				return fieldErr(p+".name", "%q is used by an earlier rule: give each rule its own name", r.Name)
			}
			names[r.Name] = true
		}
		if err := r.validate(p); err != nil {
			return err
		}
	}
	for i, id := range c.Trust.PeerIdentities {
		if err := kitconfig.CheckIdentity(id); err != nil {
			return fieldErr(guestfmt.Sprintf("trust.peerIdentities[%d]", i), "%v", err)
		}
	}
	for i, s := range c.Trust.SourceCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fieldErr(guestfmt.Sprintf("trust.sourceCIDRs[%d]", i), "%q is not a CIDR: write it like 10.0.0.0/8 or fd00::/8", s)
		}
	}
	if c.Tenant.Header != "" && !kitconfig.ValidHeaderName(c.Tenant.Header) {
		return fieldErr("tenant.header", kitconfig.HeaderNameReason, c.Tenant.Header)
	}
	for i, ti := range c.Tenant.Identities {
		p := guestfmt.Sprintf("tenant.identities[%d]", i)
		if err := kitconfig.CheckIdentity(ti.Peer); err != nil {
			return fieldErr(p+".peer", "%v", err)
		}
		if err := CheckTenant(ti.Tenant); err != nil {
			return fieldErr(p+".tenant", "%v", err)
		}
	}
	seen := map[string]bool{}
	for i, ls := range c.Lanes {
		p := guestfmt.Sprintf("lanes[%d]", i)
		if err := dyeing.CheckLane(ls.Lane); err != nil {
			return fieldErr(p+".lane", "%v", err)
		}
		if seen[ls.Lane] {
			return fieldErr(p+".lane", "%q is scoped twice: merge the tenants into one entry", ls.Lane)
		}
		seen[ls.Lane] = true
		if len(ls.Tenants) == 0 {
			return fieldErr(p+".tenants", "is empty: name at least one tenant, or remove the entry to open the lane to all")
		}
		for j, t := range ls.Tenants {
			if err := CheckTenant(t); err != nil {
				return fieldErr(guestfmt.Sprintf("%s.tenants[%d]", p, j), "%v", err)
			}
		}
	}
	return nil
}

func (r *Rule) validate(p string) error {
	switch {
	case r.Lane != "" && len(r.Split) > 0:
		return fieldErr(p, "sets both lane and split: keep one")
	case r.Lane == "" && len(r.Split) == 0:
		return fieldErr(p, "sets neither lane nor split: add one")
	}
	if r.Lane != "" {
		if err := dyeing.CheckLane(r.Lane); err != nil {
			return fieldErr(p+".lane", "%v", err)
		}
	}
	var sum uint32
	for j, s := range r.Split {
		if s.Lane != "" {
			if err := dyeing.CheckLane(s.Lane); err != nil {
				return fieldErr(guestfmt.Sprintf("%s.split[%d].lane", p, j), "%v", err)
			}
		}
		if s.Weight > 100 {
			return fieldErr(guestfmt.Sprintf("%s.split[%d].weight", p, j), "%d is over 100: weights are percentages", s.Weight)
		}
		sum += s.Weight
	}
	if len(r.Split) > 0 && sum != 100 {
		return fieldErr(p+".split", "weights sum to %d: make them sum to 100", sum)
	}
	if r.StickyKey != nil {
		k := r.StickyKey
		switch {
		case len(r.Split) == 0:
			return fieldErr(p+".stickyKey", "is set without a split: remove it or add split")
		case (k.Header == "") == (k.Cookie == ""):
			return fieldErr(p+".stickyKey", "must set exactly one of header and cookie")
		case k.Header != "" && !kitconfig.ValidHeaderName(k.Header):
			return fieldErr(p+".stickyKey.header", kitconfig.HeaderNameReason, k.Header)
		}
	}
	m := &r.Match
	for _, list := range []struct {
		name string
		vms  []ValueMatch
	}{{"headers", m.Headers}, {"cookies", m.Cookies}, {"queryParams", m.QueryParams}} {
		for j, vm := range list.vms {
			q := guestfmt.Sprintf("%s.match.%s[%d]", p, list.name, j)
			if vm.Name == "" {
				return fieldErr(q+".name", "is empty: name the value to match")
			}
			if list.name == "headers" && !kitconfig.ValidHeaderName(vm.Name) {
				return fieldErr(q+".name", kitconfig.HeaderNameReason, vm.Name)
			}
			if vm.Exact != "" && vm.Prefix != "" {
				return fieldErr(q, "sets both exact and prefix: keep one")
			}
		}
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		return fieldErr(p+".match.pathPrefix", "%q must start with '/'", m.PathPrefix)
	}
	for j, meth := range m.Methods {
		if !kitconfig.ValidMethod(meth) {
			return fieldErr(guestfmt.Sprintf("%s.match.methods[%d]", p, j), kitconfig.MethodReason, meth)
		}
	}
	for j, id := range m.PeerIdentities {
		if err := kitconfig.CheckIdentity(id); err != nil {
			return fieldErr(guestfmt.Sprintf("%s.match.peerIdentities[%d]", p, j), "%v", err)
		}
	}
	for j, t := range r.Tenants {
		if err := CheckTenant(t); err != nil {
			return fieldErr(guestfmt.Sprintf("%s.tenants[%d]", p, j), "%v", err)
		}
	}
	return nil
}

// fieldErr returns a kitconfig.FieldError of the dye filter.
func fieldErr(field, format string, args ...any) error {
	return kitconfig.Errorf("dye", field, format, args...)
}

// CheckTenant checks a tenant name: 1-63 letters, digits, '-', '_' or '.'.
func CheckTenant(t string) error {
	if t == "" || len(t) > 63 {
		return guestfmt.Errorf("%q is not a tenant name: use 1-63 letters, digits, '-', '_' or '.'", t)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return guestfmt.Errorf("%q is not a tenant name: use 1-63 letters, digits, '-', '_' or '.'", t)
		}
	}
	return nil
}
