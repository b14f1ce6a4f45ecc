package policies

import (
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/meshwarden/meshwarden/ir"
)

var (
	complianceTagRe = regexp.MustCompile(`^[A-Za-z0-9._:/=-]{1,64}$`) // as the audit filter's tags
	regionRe        = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	metaKeyRe       = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`) // Consul's meta key rule
)

// compliance validates a CompliancePolicy and returns its IR.
func (b *builder) compliance(x *doc, s *CompliancePolicySpec) (ir.Compliance, bool) {
	d := x.dec
	before := len(b.diags.Errors)
	c := ir.Compliance{Service: s.Service, Tags: s.Tags, Source: x.source()}
	b.checkSpecService(d, s.Service)
	checkNames(d, "spec.tags", "tag", s.Tags, complianceTagRe, "%q is not a tag: use 1 to 64 letters, digits and . _ : / = -, e.g. pci or region=eu")
	if s.Residency == nil {
		if len(s.Tags) == 0 && !d.failedUnder("spec.tags") {
			d.errPath("spec", "has neither tags nor residency: tag the service (tags: [pci]) or restrict its regions (residency: {regions: [eu]})")
		}
		return c, len(b.diags.Errors) == before
	}
	r := s.Residency
	if _, present := d.positions["spec.residency.regions"]; present && len(r.Regions) == 0 {
		d.errPath("spec.residency.regions", "is empty: list the regions the service's traffic may go to, e.g. [eu-west, eu-central]")
	}
	checkNames(d, "spec.residency.regions", "region", r.Regions, regionRe, "%q is not a region: use 1 to 64 letters, digits, '.', '_' or '-' as in the node meta or datacenter name")
	if r.RegionKey != "" && !metaKeyRe.MatchString(r.RegionKey) {
		d.errPath("spec.residency.regionKey", "%q is not a Consul node meta key: use letters, digits, '_' and '-' (default region)", r.RegionKey)
	}
	c.Regions, c.RegionKey, c.Source = r.Regions, r.RegionKey, d.source("spec.residency")
	if c.RegionKey == "" {
		c.RegionKey = ir.DefaultRegionKey
	}
	if len(b.diags.Errors) == before {
		b.warnNoAllowedInstance(d, &c)
	}
	return c, len(b.diags.Errors) == before
}

// warnNoAllowedInstance warns when the catalog has instances of the
// service but none healthy in an allowed region: every request is refused.
func (b *builder) warnNoAllowedInstance(d *decoder, c *ir.Compliance) {
	if b.cat == nil || len(c.Regions) == 0 {
		return
	}
	svc := b.cat.Services[c.Service]
	if svc == nil || len(svc.Instances) == 0 {
		return
	}
	var outside []string
	for _, in := range svc.Instances {
		if in.Healthy && c.Allows(in) {
			return
		}
		if reg := in.Region(c.RegionKey); in.Healthy && reg != "" && !slices.Contains(outside, reg) {
			outside = append(outside, reg)
		}
	}
	sort.Strings(outside)
	where := "carry no region"
	if len(outside) > 0 {
		where = "are in " + strings.Join(outside, ", ")
	}
	d.warnPath("spec.residency.regions", "no healthy instance of %q is in %s (its healthy instances %s): every request to it is refused with 451 until one registers there",
		c.Service, strings.Join(c.Regions, ", "), where)
}

// checkNames reports, at path[i], each name that does not match re (with
// invalid, a format of the name) or repeats an earlier one ("<noun> %q is
// already listed at <first path>").
func checkNames(d *decoder, path, noun string, names []string, re *regexp.Regexp, invalid string) {
	seen := map[string]string{}
	for i, n := range names {
		p := indexPath(path, i)
		if !re.MatchString(n) {
			d.errPath(p, invalid, n)
		} else if first, dup := seen[n]; dup {
			d.errPath(p, "%s %q is already listed at %s", noun, n, first)
		}
		seen[n] = p
	}
}
