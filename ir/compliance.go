package ir

import (
	"fmt"
	"slices"
)

// DefaultRegionKey is the Consul node meta key that names a node's region
// when a residency rule does not name one.
const DefaultRegionKey = "region"

// Compliance is a service's compliance policy: the tags its traffic
// carries (pci, gdpr, region=eu) and, with Regions, a residency rule: the
// proxies send its traffic only to instances whose region is listed.
type Compliance struct {
	Service string
	// Tags are written into the records of refusals and named in replies.
	Tags []string
	// Regions are the allowed regions; empty means no residency rule.
	Regions []string
	// RegionKey is the node meta key naming an instance's region (default
	// DefaultRegionKey); a node without it is in its Consul datacenter.
	RegionKey string
	Source    string
}

// Region is the instance's region under key: its node's meta value, else
// its datacenter. Service meta does not count: whoever registers a service
// could claim any region, while node meta is set by the node's operator.
func (in Instance) Region(key string) string {
	if key == "" {
		key = DefaultRegionKey
	}
	if r := in.NodeMeta[key]; r != "" {
		return r
	}
	return in.Datacenter
}

// Allows reports whether the residency rule lets traffic reach in (always,
// without Regions).
func (c *Compliance) Allows(in Instance) bool {
	return len(c.Regions) == 0 || slices.Contains(c.Regions, in.Region(c.RegionKey))
}

// ComplianceFor returns svc's compliance policy, or nil.
func (p *PolicySet) ComplianceFor(svc string) *Compliance {
	for i := range p.Compliance {
		if p.Compliance[i].Service == svc {
			return &p.Compliance[i]
		}
	}
	return nil
}

func (p *PolicySet) validateCompliance() []error {
	var errs []error
	seen := map[string]bool{}
	for _, c := range p.Compliance {
		if c.Service == "" {
			errs = append(errs, fmt.Errorf("%s: compliance policy: service is empty", c.Source))
		}
		if seen[c.Service] {
			errs = append(errs, fmt.Errorf("%s: service %q has more than one compliance policy: merge them", c.Source, c.Service))
		}
		seen[c.Service] = true
		for _, r := range c.Regions {
			if r == "" {
				errs = append(errs, fmt.Errorf("%s: compliance policy for %q: an allowed region is empty", c.Source, c.Service))
			}
		}
	}
	return errs
}
