package translate

// Residency (CompliancePolicy residency): the plane never emits an
// endpoint outside a service's allowed regions, and when no healthy
// endpoint is left in them while some exist elsewhere, the service's
// routes answer 451 with the reason instead of a bare 503.
//
// Design: the service's own clusters (the default one and every subset)
// are filtered, rather than a separate filtered cluster per residency
// class. A residency rule covers the whole service, so no route of it may
// reach an unfiltered cluster, and keeping the cluster names lets canary
// routes, RBAC and the gateway work unchanged; a filtered copy beside an
// unfiltered one would leave the unfiltered one one route mistake away.

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/meshwarden/meshwarden/internal/auditevent"
	"github.com/meshwarden/meshwarden/internal/meshnames"
	"github.com/meshwarden/meshwarden/ir"
)

// residency returns svc with only the instances c allows, and whether the
// service must be refused: no healthy instance left while healthy ones
// exist outside the allowed regions (then a warning says so).
func (s *Shared) residency(svc *ir.Service, c *ir.Compliance) (*ir.Service, bool) {
	if svc == nil || c == nil || len(c.Regions) == 0 {
		return svc, false
	}
	kept := &ir.Service{Name: svc.Name}
	healthyKept := 0
	var elsewhere []string
	for _, in := range svc.Instances {
		if c.Allows(in) {
			kept.Instances = append(kept.Instances, in)
			if in.Healthy {
				healthyKept++
			}
			continue
		}
		if in.Healthy {
			if r := in.Region(c.RegionKey); !slices.Contains(elsewhere, r) {
				elsewhere = append(elsewhere, r)
			}
		}
	}
	if healthyKept > 0 || len(elsewhere) == 0 {
		return kept, false
	}
	sort.Strings(elsewhere)
	for i, r := range elsewhere {
		if r == "" {
			elsewhere[i] = "(no region)"
		}
	}
	s.Warnings = append(s.Warnings, fmt.Sprintf("%s: service %q has no healthy instance in its allowed regions (%s), only in %s: its routes answer %d until one registers there",
		c.Source, c.Service, strings.Join(c.Regions, ", "), strings.Join(elsewhere, ", "), meshnames.ResidencyRefusedStatus))
	return kept, true
}

// refusedEntry is e with every route of the service replaced by a 451
// direct response naming the reason; its clusters (empty) stay, so the
// cluster names routes and RBAC refer to keep existing.
func (s *Shared) refusedEntry(e *serviceEntry, name string, c *ir.Compliance) (*serviceEntry, error) {
	tags := s.serviceTags[name]
	out := &serviceEntry{key: e.key, clusters: e.clusters, meshOf: e.meshOf, endpoints: e.endpoints}
	vh := proto.Clone(e.vhost).(*routev3.VirtualHost)
	vh.Routes = []*routev3.Route{refusalRoute(name+"/residency", "/", name, c.Regions, tags)}
	out.vhost = vh
	out.byPath = []*routev3.Route{refusalRoute(name+"/residency-by-path", "/"+name+"/", name, c.Regions, tags)}
	h := sha256.New()
	for _, group := range [][]types.Resource{out.clusters, out.endpoints, {out.vhost}, {out.byPath[0]}} {
		if err := hashAll(h, group); err != nil {
			return nil, err
		}
	}
	copy(out.digest[:], h.Sum(nil))
	return out, nil
}

// refusalRoute answers every request under prefix with 451, a JSON reason
// and the headers the audit filter records the refusal from.
func refusalRoute(routeName, prefix, svc string, allowed, tags []string) *routev3.Route {
	regions := strings.Join(allowed, ",")
	body := []byte(`{"error":"residency_refused","service":`)
	body = auditevent.AppendJSONString(body, svc)
	body = append(body, `,"allowed_regions":`...)
	body = auditevent.AppendJSONString(body, regions)
	body = append(body, `,"message":`...)
	body = auditevent.AppendJSONString(body, "no healthy instance of "+svc+" is in an allowed region ("+regions+"): the request was not sent elsewhere")
	body = append(body, '}', '\n')
	hdrs := [][2]string{{"content-type", "application/json"}, {meshnames.RefusedHeader, meshnames.RefusedResidency + ":" + regions}}
	if len(tags) > 0 {
		hdrs = append(hdrs, [2]string{meshnames.ComplianceTagsHeader, strings.Join(tags, ",")})
	}
	var add []*corev3.HeaderValueOption
	for _, kv := range hdrs {
		add = append(add, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: kv[0], Value: kv[1]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &routev3.Route{
		Name:  routeName,
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: meshnames.ResidencyRefusedStatus,
			Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: body}},
		}},
		ResponseHeadersToAdd: add,
	}
}

// tagRe is the audit filter's tag syntax.
var tagRe = regexp.MustCompile(`^[A-Za-z0-9._:/=-]{1,64}$`)

// collectServiceTags gathers each service's compliance tags: its
// CompliancePolicy's, then those its instances list in the Consul service
// meta meshnames.ComplianceTagsMeta (comma-separated; a tag that is not
// valid is left out with a warning).
func (s *Shared) collectServiceTags(cat *ir.Catalog, names []string, comp map[string]*ir.Compliance) {
	s.serviceTags = map[string][]string{}
	for _, name := range names {
		var tags []string
		if c := comp[name]; c != nil {
			tags = append(tags, c.Tags...)
		}
		if svc := cat.Services[name]; svc != nil {
			for _, in := range svc.Instances {
				v := in.Meta[meshnames.ComplianceTagsMeta]
				if v == "" {
					continue
				}
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					switch {
					case t == "" || slices.Contains(tags, t):
					case !tagRe.MatchString(t):
						s.Warnings = append(s.Warnings, fmt.Sprintf("consul: instance %s of %q: meta %s: %q is not a tag (letters, digits and . _ : / = -): left out",
							in.ID, name, meshnames.ComplianceTagsMeta, t))
					default:
						tags = append(tags, t)
					}
				}
			}
		}
		if len(tags) > 0 {
			s.serviceTags[name] = tags
		}
	}
}

// withServiceTags appends svc's compliance tags (collectServiceTags) to
// the audit configuration's serviceTags, so every record the sidecar of
// svc writes carries them. Without tags the configuration is returned
// unchanged.
func (s *Shared) withServiceTags(conf json.RawMessage, svc string) (json.RawMessage, error) {
	add := s.serviceTags[svc]
	if len(add) == 0 {
		return conf, nil
	}
	m := map[string]json.RawMessage{}
	if len(conf) > 0 {
		if err := json.Unmarshal(conf, &m); err != nil {
			return nil, err
		}
	}
	var tags []string
	if raw, ok := m["serviceTags"]; ok {
		if err := json.Unmarshal(raw, &tags); err != nil {
			return nil, fmt.Errorf("serviceTags: %w", err)
		}
	}
	for _, t := range add {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	b, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	m["serviceTags"] = b
	return json.Marshal(m)
}
