// Package ir is the intermediate representation between Meshwarden's inputs
// (policy files, the Consul catalog) and the control plane's xDS translator.
// Every type is a plain struct with a Validate method; the translator only
// ever sees validated IR, in the manner of envoyproxy/gateway.
//
// Policies produce a [PolicySet]; the Consul watcher produces a [Catalog];
// the translator turns both into xDS resources per node.
package ir

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/meshwarden/meshwarden/internal/dyeing"
)

// PolicySet is every policy in force, decoded and validated. It is replaced
// whole: a bad file rejects the whole new set and the last good one stays.
type PolicySet struct {
	// Revision is the content hash of the source files (sha256 hex).
	Revision string
	// Sources lists the files the set came from (for messages and records).
	Sources []string
	// Routes are canary / lane routes per upstream service, sorted by Service.
	Routes []Route
	// Filters are the proxy-wasm filters to run, in filters.Order().
	Filters []Filter
	// Certificates is the certificate policy; zero means defaults.
	Certificates CertPolicy
	// Access lists who may call which service, one policy per service,
	// sorted by Service; a service without one admits every caller.
	Access []AccessPolicy
	// Rollouts are progressive deliveries of a CanaryRoute's subset or a
	// FilterRelease, one per target, sorted by Name.
	Rollouts []Rollout `json:",omitempty"`
	// Resilience lists timeouts, retries, outlier detection, circuit
	// breakers, rate limits, faults and mirroring per service, sorted by
	// Service (see resilience.go).
	Resilience []Resilience `json:",omitempty"`
	// Compliance tags services and restricts where their traffic may go
	// (compliance.go), one per service, sorted by Service.
	Compliance []Compliance `json:",omitempty"`
}

// Route says how traffic to one service is split into subsets.
type Route struct {
	Service string
	// Subsets name groups of instances by Consul meta/tags.
	Subsets []Subset
	// Lanes send dyed requests (dyeing.Header == Lane) to a subset; first match wins.
	Lanes []LaneRule
	// Weights split undyed traffic among subsets; they sum to 100. Empty
	// means all undyed traffic goes to DefaultSubset.
	Weights []WeightedSubset
	// DefaultSubset receives undyed traffic when Weights is empty; empty
	// means all healthy instances.
	DefaultSubset string
	// Timeout per request; zero means 15s.
	Timeout time.Duration
	// Retries on connect-failure / 5xx / reset; zero means none.
	Retries uint32
	// Source is "file:line" for messages.
	Source string
}

// Subset selects instances whose meta (or tags, as "key=value") match every pair.
type Subset struct {
	Name     string
	Selector map[string]string
}

// LaneRule routes requests whose lane header equals Lane (and whose headers
// match every Headers entry exactly) to Subset.
type LaneRule struct {
	Lane    string
	Subset  string
	Headers map[string]string
}

// WeightedSubset is one arm of a weighted split.
type WeightedSubset struct {
	Subset string
	Weight uint32
}

// Filter is one proxy-wasm filter to run, with its configuration.
type Filter struct {
	// Name is one of filters.Order() ("dye", "audit", "trace").
	Name string
	// Config is the filter's JSON configuration, already validated by the
	// filter's own Config type.
	Config json.RawMessage
	// SHA256 pins the module (hex). Empty means the module server's current
	// build of Name.
	SHA256 string
	// Services limits where the filter runs ("gateway" is the gateway);
	// empty means everywhere.
	Services []string
	// RolloutPercent stages a release: the share of proxies (by stable
	// hash of node id) that run SHA256, the rest run PreviousSHA256.
	RolloutPercent uint32
	PreviousSHA256 string
	// FailOpen lets traffic through when the filter cannot run.
	FailOpen bool
	Source   string
}

// CertPolicy sets certificate lifetimes and rotation.
type CertPolicy struct {
	// LeafTTL is the requested leaf lifetime; zero means the issuer's default.
	LeafTTL time.Duration
	// RenewBefore is how long before expiry a leaf is renewed; zero means 1/3 of its life.
	RenewBefore time.Duration
	// Issuer is "consul" (default), "acme" or "file".
	Issuer string
}

// AccessPolicy says who may call Service. Deny rules are checked first: a
// matching deny rule refuses the request. Otherwise a matching allow rule
// admits it, and a request no rule matches is refused unless DefaultAllow.
type AccessPolicy struct {
	Service string
	// Name is the policy document's name (or the intention source).
	Name         string
	DefaultAllow bool
	// DryRun evaluates without enforcing: would-be denials are counted.
	DryRun bool
	Rules  []AccessRule
	Source string
}

// AccessRule allows or denies callers. Every non-empty condition must
// match; within a condition one entry suffices.
type AccessRule struct {
	// Name is unique within the policy; it names the rule in denials,
	// audit records and metrics.
	Name string
	Deny bool
	// From lists principals: a SPIFFE id, a prefix ending in "/*", or "*"
	// (any authenticated peer). Service names are resolved to SPIFFE ids
	// by the translator (see SpiffeID).
	From []string
	// Methods are upper-case HTTP methods.
	Methods []string
	// Paths are exact paths or patterns ("*" one segment, final "**" the rest).
	Paths []string
	// Lanes are dye lanes (dyeing.Header values).
	Lanes  []string
	Source string
}

// SpiffeID returns the SPIFFE id Consul Connect gives service svc:
// spiffe://<trustDomain>/ns/default/dc/<dc>/svc/<svc>.
func SpiffeID(trustDomain, dc, svc string) string {
	return "spiffe://" + trustDomain + "/ns/default/dc/" + dc + "/svc/" + svc
}

// Catalog is the Consul side: every service and its instances.
type Catalog struct {
	// Index is Consul's raft index the catalog was read at.
	Index    uint64
	Services map[string]*Service
}

// Service is one Consul service.
type Service struct {
	Name      string
	Instances []Instance
}

// Instance is one registered service instance.
type Instance struct {
	ID      string
	Node    string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Healthy bool
	// Datacenter and NodeMeta are the Consul node's (residency: Region).
	Datacenter string            `json:",omitempty"`
	NodeMeta   map[string]string `json:",omitempty"`
}

// Matches reports whether the instance carries every selector pair, in its
// meta or as a "key=value" tag.
func (in Instance) Matches(sel map[string]string) bool {
	for k, v := range sel {
		if in.Meta[k] == v {
			continue
		}
		found := false
		for _, t := range in.Tags {
			if t == k+"="+v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ServiceNames returns the catalog's service names, sorted.
func (c *Catalog) ServiceNames() []string {
	return slices.Sorted(maps.Keys(c.Services))
}

// Validate checks the set's internal consistency (not against Consul).
func (p *PolicySet) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, r := range p.Routes {
		if seen[r.Service] {
			errs = append(errs, fmt.Errorf("%s: service %q has more than one route policy", r.Source, r.Service))
		}
		seen[r.Service] = true
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	access := map[string]bool{}
	for _, a := range p.Access {
		if access[a.Service] {
			errs = append(errs, fmt.Errorf("%s: service %q has more than one access policy: merge their rules", a.Source, a.Service))
		}
		access[a.Service] = true
		if err := a.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, p.validateResilience()...)
	errs = append(errs, p.validateCompliance()...)
	return errors.Join(errs...)
}

// Validate checks one access policy's shape (the policy loader has already
// given file:line:col errors for user input; this guards other producers
// such as the intentions source).
func (a *AccessPolicy) Validate() error {
	var errs []error
	at := func(src, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: access policy for %q: %s", src, a.Service, fmt.Sprintf(format, args...)))
	}
	if a.Service == "" {
		at(a.Source, "service is empty")
	}
	names := map[string]bool{}
	for _, r := range a.Rules {
		if r.Name == "" || names[r.Name] {
			at(r.Source, "rule name %q is empty or repeated: give each rule its own name", r.Name)
		}
		names[r.Name] = true
		if len(r.From) == 0 {
			at(r.Source, "rule %q has no callers (from): list SPIFFE ids, service names or \"*\"", r.Name)
		}
		for _, f := range r.From {
			if f == "" || strings.ContainsAny(f, " \t") || (strings.Contains(f, "/") && !strings.HasPrefix(f, "spiffe://")) {
				at(r.Source, "rule %q: caller %q is not a SPIFFE id, a service name or \"*\"", r.Name, f)
			}
		}
		for _, p := range r.Paths {
			if !strings.HasPrefix(p, "/") {
				at(r.Source, "rule %q: path %q does not start with '/'", r.Name, p)
			}
		}
	}
	return errors.Join(errs...)
}

// Validate checks one route.
func (r *Route) Validate() error {
	var errs []error
	at := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: route %q: %s", r.Source, r.Service, fmt.Sprintf(format, a...)))
	}
	if r.Service == "" {
		at("service is empty")
	}
	subsets := map[string]bool{}
	for _, s := range r.Subsets {
		if err := dyeing.CheckLane(s.Name); err != nil {
			at("subset name: %v", err)
		}
		if len(s.Selector) == 0 {
			at("subset %q has no selector: give at least one meta key, e.g. version: v2", s.Name)
		}
		subsets[s.Name] = true
	}
	for _, l := range r.Lanes {
		if err := dyeing.CheckLane(l.Lane); err != nil {
			at("lane: %v", err)
		}
		if !subsets[l.Subset] {
			at("lane %q names subset %q, which is not defined in subsets", l.Lane, l.Subset)
		}
	}
	var sum uint32
	for _, w := range r.Weights {
		if !subsets[w.Subset] {
			at("weight names subset %q, which is not defined in subsets", w.Subset)
		}
		sum += w.Weight
	}
	if len(r.Weights) > 0 && sum != 100 {
		at("weights sum to %d: they must sum to 100", sum)
	}
	if r.DefaultSubset != "" && !subsets[r.DefaultSubset] {
		at("defaultSubset %q is not defined in subsets", r.DefaultSubset)
	}
	return errors.Join(errs...)
}

// Rollout moves a canary through Steps, judged at every Interval by
// Prometheus queries, and rolls back on breach. Exactly one of Service
// (a CanaryRoute's canary Subset) or Filter (a FilterRelease) is set.
type Rollout struct {
	Name string
	// Service, Subset and StableSubset: a CanaryRoute target. The canary
	// Subset gets each step's weight, StableSubset the rest.
	Service, Subset, StableSubset string
	// Filter: a FilterRelease target; each step sets its RolloutPercent.
	Filter string
	Steps  []RolloutStep
	// Analysis: every Interval, Metrics must all pass; FailureLimit
	// failures roll back; InconclusiveLimit analyses in a row without an
	// answer pause (OnInconclusive "pause") or roll back ("rollback").
	Interval          time.Duration
	FailureLimit      int
	InconclusiveLimit int
	OnInconclusive    string
	QueryTimeout      time.Duration
	Metrics           []RolloutMetric
	// Health are the checks after a rollback (empty: Metrics), within
	// HealthTimeout; else Webhook (if set) is called and the rollout
	// escalates.
	Health        []RolloutMetric
	StepTimeout   time.Duration
	HealthTimeout time.Duration
	Webhook       string
	Source        string
}

// RolloutStep is one stage: the canary's share (weight or rolloutPercent),
// how long it holds (Pause), and whether a person must approve it first.
type RolloutStep struct {
	Weight   int
	Pause    time.Duration
	Approval bool
}

// RolloutMetric is one PromQL check: healthy while Min <= value <= Max.
type RolloutMetric struct {
	Name     string
	Query    string
	Min, Max *float64
}
