package policies

import (
	"reflect"
	"time"

	"github.com/meshwarden/meshwarden/filters/audit/auditconfig"
	"github.com/meshwarden/meshwarden/filters/dye/dyeconfig"
	"github.com/meshwarden/meshwarden/filters/trace/traceconfig"
)

// APIVersion is the only apiVersion policy documents may carry.
const APIVersion = "meshwarden.io/v1alpha1"

// The kinds of policy document.
const (
	KindDyePolicy         = "DyePolicy"
	KindAuditPolicy       = "AuditPolicy"
	KindTracePolicy       = "TracePolicy"
	KindCanaryRoute       = "CanaryRoute"
	KindFilterRelease     = "FilterRelease"
	KindCertificatePolicy = "CertificatePolicy"
	KindAccessPolicy      = "AccessPolicy"
	KindRollout           = "Rollout"
	KindCompliancePolicy  = "CompliancePolicy"
)

// Document is one YAML document of a policy file, Kubernetes-shaped.
// Fields tagged mw:"required" must be present; the JSON Schema says so too.
type Document struct {
	APIVersion string   `json:"apiVersion" mw:"required"`
	Kind       string   `json:"kind" mw:"required"`
	Metadata   Metadata `json:"metadata" mw:"required"`
	Spec       rawNode  `json:"spec" mw:"required"`
}

// Metadata names a policy document.
type Metadata struct {
	// Name is unique per kind (and namespace): lowercase letters, digits, '-'.
	Name string `json:"name" mw:"required"`
	// Namespace groups policies of one team; it is informational.
	Namespace string `json:"namespace,omitempty"`
	// Labels are free-form key/value pairs.
	Labels map[string]string `json:"labels,omitempty"`
}

// CanaryRouteSpec is the spec of a CanaryRoute: how traffic to one service is
// split into subsets of its instances.
type CanaryRouteSpec struct {
	// Service is the Consul service name.
	Service string `json:"service" mw:"required"`
	// Subsets name groups of instances by Consul meta (or "key=value" tags).
	Subsets []SubsetSpec `json:"subsets" mw:"required"`
	// Lanes send dyed requests to a subset; the first match wins.
	Lanes []LaneSpec `json:"lanes,omitempty"`
	// Weights split undyed traffic; they sum to 100.
	Weights []WeightSpec `json:"weights,omitempty"`
	// DefaultSubset receives undyed traffic when Weights is empty.
	DefaultSubset string `json:"defaultSubset,omitempty"`
	// Timeout per request, a Go duration such as "15s" (default 15s).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Retries on connect failure, 5xx or reset (default 0).
	Retries uint32 `json:"retries,omitempty" mw:"max=10"`
}

// SubsetSpec names a group of instances.
type SubsetSpec struct {
	Name     string            `json:"name" mw:"required"`
	Selector map[string]string `json:"selector" mw:"required"`
}

// LaneSpec routes requests dyed with Lane (and carrying every header in
// Headers, exact values) to Subset.
type LaneSpec struct {
	Lane    string            `json:"lane" mw:"required"`
	Subset  string            `json:"subset" mw:"required"`
	Headers map[string]string `json:"headers,omitempty"`
}

// WeightSpec is one arm of the undyed split.
type WeightSpec struct {
	Subset string `json:"subset" mw:"required"`
	Weight uint32 `json:"weight" mw:"required,max=100"`
}

// FilterReleaseSpec is the spec of a FilterRelease: which build of a filter
// runs where, and how it is staged.
type FilterReleaseSpec struct {
	// Filter is one of filters.Order(): dye, audit, trace.
	Filter string `json:"filter" mw:"required,enum=dye|audit|trace"`
	// SHA256 pins the .wasm module (64 hex digits).
	SHA256 string `json:"sha256" mw:"required"`
	// Services limits where the filter runs ("gateway" is the gateway);
	// empty means everywhere.
	Services []string `json:"services,omitempty"`
	// RolloutPercent is the share of proxies running SHA256 (default 100);
	// the rest run PreviousSHA256.
	RolloutPercent *uint32 `json:"rolloutPercent,omitempty" mw:"max=100"`
	// PreviousSHA256 is the build the other proxies keep running; required
	// when RolloutPercent is below 100.
	PreviousSHA256 string `json:"previousSha256,omitempty"`
	// FailOpen lets traffic through when the filter cannot run.
	FailOpen bool `json:"failOpen,omitempty"`
}

// CertificatePolicySpec is the spec of a CertificatePolicy.
type CertificatePolicySpec struct {
	// LeafTTL is the requested leaf lifetime, e.g. "24h".
	LeafTTL time.Duration `json:"leafTTL,omitempty"`
	// RenewBefore is how long before expiry a leaf is renewed.
	RenewBefore time.Duration `json:"renewBefore,omitempty"`
	// Issuer is "consul" (default), "acme" or "file".
	Issuer string `json:"issuer,omitempty" mw:"enum=consul|acme|file"`
}

// AccessPolicySpec is the spec of an AccessPolicy: who may call a service,
// with which methods, on which paths and in which lanes. Once a policy
// selects a service, a request no rule allows is denied (default "deny").
type AccessPolicySpec struct {
	// Service is the Consul service name (the destination).
	Service string `json:"service" mw:"required"`
	// Allow is shorthand for one allow rule without method, path or lane
	// conditions: callers by SPIFFE id (spiffe://trust-domain/path), a
	// prefix ending in "/*", a Consul service name, or "*" for every
	// authenticated caller.
	Allow []string `json:"allow,omitempty"`
	// Rules allow or deny callers; a matching deny rule wins over any
	// allow rule.
	Rules []AccessRuleSpec `json:"rules,omitempty"`
	// Default decides requests no rule matches: "deny" (default) or
	// "allow" (only useful with deny rules).
	Default string `json:"default,omitempty" mw:"enum=deny|allow"`
	// DryRun evaluates the rules without enforcing them: would-be denials
	// are logged and counted (Envoy shadow rules), nothing is refused.
	DryRun bool `json:"dryRun,omitempty"`
}

// AccessRuleSpec is one rule of an AccessPolicy. A request matches when its
// caller is in From and, for each of Methods, Paths and Lanes that is set,
// it matches one entry.
type AccessRuleSpec struct {
	// Name identifies the rule in denials, audit records and metrics
	// (default "rule-<index>"): lowercase letters, digits and '-'.
	Name string `json:"name,omitempty"`
	// Action is "allow" or "deny".
	Action string `json:"action" mw:"required,enum=allow|deny"`
	// From lists callers: SPIFFE ids, prefixes ending in "/*", Consul
	// service names, or "*" for every authenticated caller.
	From []string `json:"from" mw:"required"`
	// Methods lists HTTP methods (upper case); empty matches all.
	Methods []string `json:"methods,omitempty"`
	// Paths lists request paths (query excluded): an exact path, or a
	// pattern with "*" for one segment and a final "**" for the rest, as in
	// the audit policy, e.g. /v1/accounts/*/transfers or /v1/**.
	Paths []string `json:"paths,omitempty"`
	// Lanes lists dye lanes (the x-mw-dye header after the dye filter ran);
	// empty matches every lane and undyed traffic.
	Lanes []string `json:"lanes,omitempty"`
}

// CompliancePolicySpec tags a service for compliance and, with residency,
// keeps its traffic in the allowed regions. One per service.
type CompliancePolicySpec struct {
	// Service is the Consul service whose traffic the policy covers.
	Service string `json:"service" mw:"required"`
	// Tags are compliance tags (pci, gdpr, region=eu), written into every
	// audit record of the service's sidecars and into residency refusals.
	Tags []string `json:"tags,omitempty"`
	// Residency restricts where the service's traffic may go.
	Residency *ResidencySpec `json:"residency,omitempty"`
}

// ResidencySpec is a residency rule: proxies receive only the service's
// instances in an allowed region, and answer 451 with the reason (and the
// audit filter records it) when none is left.
type ResidencySpec struct {
	// Regions are the allowed regions, matched against the instance's
	// Consul node meta (regionKey), else its datacenter.
	Regions []string `json:"regions" mw:"required"`
	// RegionKey is the node meta key naming a node's region (default
	// region). Service meta is not trusted for this: any registrant could
	// claim a region.
	RegionKey string `json:"regionKey,omitempty"`
}

// filterKinds maps a filter name to the kind that configures it.
func filterKind(filter string) string {
	switch filter {
	case "dye":
		return KindDyePolicy
	case "audit":
		return KindAuditPolicy
	case "trace":
		return KindTracePolicy
	}
	return ""
}

// Kinds returns every kind name, sorted.
func Kinds() []string {
	return []string{KindAccessPolicy, KindAuditPolicy, KindCanaryRoute, KindCertificatePolicy, KindCompliancePolicy, KindDyePolicy, KindFilterRelease, KindResiliencePolicy, KindRollout, KindTracePolicy}
}

// SpecType returns the Go type a kind's spec decodes into, or nil for an
// unknown kind.
// The three filter kinds decode into the filters' own Config types: there is
// one schema per filter, owned by the filter.
func SpecType(kind string) reflect.Type {
	switch kind {
	case KindDyePolicy:
		return reflect.TypeOf(dyeconfig.Config{})
	case KindAuditPolicy:
		return reflect.TypeOf(auditconfig.Config{})
	case KindTracePolicy:
		return reflect.TypeOf(traceconfig.Config{})
	case KindCanaryRoute:
		return reflect.TypeOf(CanaryRouteSpec{})
	case KindFilterRelease:
		return reflect.TypeOf(FilterReleaseSpec{})
	case KindCertificatePolicy:
		return reflect.TypeOf(CertificatePolicySpec{})
	case KindAccessPolicy:
		return reflect.TypeOf(AccessPolicySpec{})
	case KindRollout:
		return reflect.TypeOf(RolloutSpec{})
	case KindResiliencePolicy:
		return reflect.TypeOf(ResiliencePolicySpec{})
	case KindCompliancePolicy:
		return reflect.TypeOf(CompliancePolicySpec{})
	}
	return nil
}
